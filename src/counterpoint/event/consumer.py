"""A checkpointed consumer of the event log, following it in a background thread.

A subclass names itself (its checkpoint) and applies chunks of the log (Arrow tables in the
``LOG_SCHEMA`` layout) inside the transaction that advances its checkpoint: a crash means
"resume from the checkpoint", never "lost" or "done twice". The profile projector predates
this class and keeps its own loop; newer consumers (consent, suppression, …) use this one.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.event.log import EventLog
from counterpoint.event.models import ConsumerCheckpoint
from counterpoint.kit.db import upsert

__all__ = ["LogConsumer"]

_log = logging.getLogger(__name__)


class LogConsumer(abc.ABC):
    name: str = ""
    chunk_size: int = 50_000

    def __init__(self, sessions: sessionmaker[Session], log: EventLog) -> None:
        self._sessions = sessions
        self._log = log
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event after the checkpoint; returns how many were read."""
        applied = 0
        with self._lock:
            while True:
                with self._sessions.begin() as session:
                    position = self._checkpoint(session)
                    table = self._log.read_after(position, self.chunk_size)
                    if table.num_rows == 0:
                        break
                    self.apply(session, table)
                    last = int(table.column("seq")[-1].as_py())
                    session.merge(ConsumerCheckpoint(name=self.name, position=last))
                applied += table.num_rows
                if progress is not None:
                    progress(table.num_rows)
            if applied:
                self.after_catch_up()
        return applied

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
            self._thread = None

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # logged; retried on the next wake
                _log.exception("%s consumer failed; will retry", self.name)
                self._stop.wait(1.0)
