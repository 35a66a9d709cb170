"""A checkpointed consumer of the event log, following it in a background thread.

A subclass names itself (its checkpoint) and applies chunks of the log (Arrow tables in the
``LOG_SCHEMA`` layout) inside the transaction that advances its checkpoint: a crash means
"resume from the checkpoint", never "lost" or "done twice".

Consumers share one process, one interpreter lock and (on SQLite) one writer. So that a long
backlog (after a bulk import, a rebuild) in one consumer does not hold back the profile
projector, whose freshness is promised, a consumer can

* **give way** (``give_way_to``): before each chunk it waits, for at most ``give_way_s``,
  while that consumer is applying the log;
* **take turns** (``lane``): consumers sharing a lane apply one chunk at a time between
  them, so the projector, once woken, waits for at most one chunk of one of them;
* **keep its chunks short** (``chunk_seconds``): while sharing, it starts with chunks of
  ``_SMALLEST_CHUNK`` rows; the size halves while a chunk takes longer than that to apply and
  doubles (up to ``chunk_size``) while chunks take under half of it. A consumer alone
  (a replay from the command line) reads whole chunks.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.event.log import EventLog
from counterpoint.event.models import ConsumerCheckpoint
from counterpoint.kit.db import upsert

__all__ = ["LogConsumer"]

_log = logging.getLogger(__name__)


_SMALLEST_CHUNK = 1_000


class LogConsumer(abc.ABC):
    name: str = ""
    chunk_size: int = 50_000
    """The largest chunk read at once."""

    def __init__(self, sessions: sessionmaker[Session], log: EventLog) -> None:
        self._sessions = sessions
        self._log = log
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.give_way_to: LogConsumer | None = None
        self.give_way_s = 1.0
        self.lane: threading.Lock | None = None
        self.chunk_seconds: float | None = None
        self._rows = _SMALLEST_CHUNK  # while sharing: start short, grow while chunks are quick
        self._busy = False
        self._progress = threading.Condition()

    # --- sharing the process with other consumers --------------------------------------
    def _set_busy(self, busy: bool) -> None:
        with self._progress:
            self._busy = busy
            self._progress.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait while this consumer is applying the log, for at most ``timeout`` seconds;
        True once it is idle (or its thread stopped)."""
        with self._progress:
            return self._progress.wait_for(lambda: not self._busy or self._thread is None, timeout)

    def _turn(self) -> AbstractContextManager[object]:
        """Held while applying one chunk: this consumer's turn in its lane, if it has one."""
        return self.lane if self.lane is not None else nullcontext()

    def _sharing(self) -> bool:
        """Whether the consumer given way to runs beside this one (a serving process)."""
        first = self.give_way_to
        return first is not None and first.running

    def _give_way(self) -> None:
        if self.give_way_to is not None and self._sharing():
            self.give_way_to.wait_idle(self.give_way_s)

    def _next_rows(self) -> int:
        """Rows to read next: ``chunk_size``, or fewer while sharing with short chunks."""
        if self.chunk_seconds and self._sharing():
            return min(self._rows, self.chunk_size)
        return self.chunk_size

    def _timed(self, rows: int, seconds: float) -> None:
        """Adapt the chunk size to ``chunk_seconds`` after a chunk of ``rows`` took
        ``seconds`` to apply (only while sharing: a lone replay keeps whole chunks)."""
        target = self.chunk_seconds
        if not target or not self._sharing():
            return
        if seconds > target and self._rows > _SMALLEST_CHUNK:
            self._rows = max(_SMALLEST_CHUNK, min(self._rows, self.chunk_size) // 2)
        elif seconds < target / 2 and rows >= self._rows:
            self._rows = min(self.chunk_size, self._rows * 2)

    @abc.abstractmethod
    def apply(self, session: Session, table: pa.Table) -> None:
        """Apply one chunk of the log in ``session`` (committed with the checkpoint)."""

    def reset(self, session: Session) -> None:  # noqa: B027 - optional hook
        """Forget derived state before a rebuild (default: nothing to forget)."""

    def position(self) -> int:
        with self._sessions() as session:
            row = session.get(ConsumerCheckpoint, self.name)
            return row.position if row else 0

    def _checkpoint(self, session: Session) -> int:
        row = session.execute(
            select(ConsumerCheckpoint).where(ConsumerCheckpoint.name == self.name).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            upsert(
                session,
                ConsumerCheckpoint.__table__,
                [{"name": self.name, "position": 0}],
                keys=["name"],
            )
            return 0
        return row.position

    def catch_up(
        self, progress: Callable[[int], None] | None = None, *, give_way: bool = True
    ) -> int:
        """Apply every event after the checkpoint; returns how many were read.

        ``give_way=False``: a caller that needs the result now (the delivery worker settling
        its touches) does not wait for the consumer given way to; it still takes its turn."""
        applied = 0
        with self._lock:
            try:
                while not self._stopping():
                    if give_way:
                        self._give_way()
                    self._set_busy(True)
                    started = time.perf_counter()
                    with self._turn(), self._sessions.begin() as session:
                        position = self._checkpoint(session)
                        table = self._log.read_after(position, self._next_rows())
                        if table.num_rows == 0:
                            break
                        self.apply(session, table)
                        last = int(table.column("seq")[-1].as_py())
                        session.merge(ConsumerCheckpoint(name=self.name, position=last))
                    self._timed(table.num_rows, time.perf_counter() - started)
                    applied += table.num_rows
                    if progress is not None:
                        progress(table.num_rows)
                if applied:
                    self.after_catch_up()
            finally:
                self._set_busy(False)
        return applied

    def _stopping(self) -> bool:
        """Whether ``stop`` is waiting for this consumer: a catch-up then ends after the chunk
        it is applying (each chunk commits with its checkpoint), instead of after the whole
        backlog, which after a bulk import can take an hour."""
        return self._stop.is_set()

    def after_catch_up(self) -> None:  # noqa: B027 - optional hook
        """Runs (under the consumer's lock) after a catch-up that applied events."""

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        with self._lock, self._sessions.begin() as session:
            self.reset(session)
            session.merge(ConsumerCheckpoint(name=self.name, position=0))
        return self.catch_up(progress)

    def wake(self, _position: int = 0) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether its thread follows the log (``start``)."""
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._follow, name=f"{self.name}-consumer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._stop.clear()  # a later catch_up called directly runs in full again
            with self._progress:
                self._thread = None
                self._progress.notify_all()

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # logged; retried on the next wake
                _log.exception("%s consumer failed; will retry", self.name)
                self._stop.wait(1.0)
