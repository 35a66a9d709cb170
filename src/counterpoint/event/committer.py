"""Group commit: many requests' events become durable in one transaction (one fsync).

Requests hand their events to ``submit`` and wait on the returned future; a single writer
thread gathers whatever arrived within the commit window, appends it to the log at once, and
answers each request with its own accepted / duplicate counts. A request is acknowledged
only after that commit, so an acknowledged event is never lost.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa

from counterpoint.event.arrow import events_to_arrow
from counterpoint.event.canonical import LogEvent
from counterpoint.event.log import AppendResult, EventLog, QuarantineEntry

__all__ = ["GroupCommitter"]


@dataclass
class _Pending:
    events: pa.Table
    quarantine: Sequence[QuarantineEntry]
    future: Future[AppendResult] = field(default_factory=Future)


class GroupCommitter:
    """One writer thread in front of an ``EventLog``."""

    def __init__(
        self,
        log: EventLog,
        *,
        window_s: float = 0.002,
        max_events: int = 20_000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._log = log
        self._window_s = window_s
        self._max_events = max_events
        self._on_commit = on_commit
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-committer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._started:
            self._queue.put(None)
            self._thread.join()
            self._started = False

    def submit(
        self,
        events: pa.Table | Sequence[LogEvent],
        quarantine: Sequence[QuarantineEntry] = (),
    ) -> Future[AppendResult]:
        """Queue events (records, or rows of the log's Arrow schema) and quarantine entries;
        the future resolves once they are durable."""
        if not self._started:
            raise RuntimeError("the committer is not running")
        table = events if isinstance(events, pa.Table) else events_to_arrow(events)
        pending = _Pending(table, quarantine)
        self._queue.put(pending)
        return pending.future

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        group = [first]
        size = first.events.num_rows
        deadline = time.monotonic() + self._window_s
        while size < self._max_events:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return group, True
            group.append(item)
            size += item.events.num_rows
        return group, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group, stopping = self._gather(first)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        events = pa.concat_tables([p.events for p in group])
        quarantine = [q for p in group for q in p.quarantine]
        try:
            result = self._log.append_arrow(events, quarantine, report_stored=True)
        except BaseException as exc:  # every waiting request learns of the failure
            for p in group:
                p.future.set_exception(exc)
            return
        stored = result.stored or ()
        start = 0
        for p in group:
            end = start + p.events.num_rows
            accepted = sum(stored[start:end])
            start = end
            p.future.set_result(
                AppendResult(
                    accepted=accepted,
                    duplicates=p.events.num_rows - accepted,
                    quarantined=len(p.quarantine),
                    last_seq=result.last_seq,
                )
            )
        if self._on_commit is not None and result.accepted:
            self._on_commit(result.last_seq)
