"""The event-log port: append-only, de-duplicated by message id, read in sequence order.

Two adapters implement it: ``DuckDBEventLog`` (embedded) and ``PostgresEventLog`` (server).
Quarantined events live beside the log, written in the same transaction as the accepted
ones, so an acknowledged request never loses an event of either kind.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from counterpoint.event.canonical import LogEvent

if TYPE_CHECKING:
    from counterpoint.segment.conditions import EventFilter

__all__ = [
    "AppendResult",
    "EventLog",
    "QuarantineEntry",
    "QuarantineStatus",
    "QuarantinedEvent",
    "StoredEvent",
    "TimelineQuery",
    "stored_flags",
]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event: LogEvent


class QuarantineStatus(enum.StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """An event refused at ingestion, kept with the reason so it can be fixed and replayed."""

    received_at: dt.datetime
    source: str
    reason_code: str
    field: str | None
    detail: str
    fix: str | None
    raw: str
    """The event as received (JSON text, or the file row as JSON)."""


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    id: int
    entry: QuarantineEntry
    status: QuarantineStatus
    resolved_at: dt.datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: int
    duplicates: int
    quarantined: int
    last_seq: int
    stored: tuple[bool, ...] | None = None
    """Per appended event, in order, whether it was stored (``report_stored=True``): false for
    an id the log held already and for a repeat of an earlier event of the same append."""


def stored_flags(message_ids: Sequence[str], stored_ids: Collection[str]) -> tuple[bool, ...]:
    """``AppendResult.stored`` from the ids an append stored: each one's first occurrence."""
    left = set(stored_ids)
    flags = []
    for message_id in message_ids:
        flags.append(message_id in left)
        left.discard(message_id)
    return tuple(flags)


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    subjects: Sequence[str]
    channel: str | None = None
    brand: str | None = None
    function: str | None = None
    exclude_function: str | None = None
    """Leave out events of this function (events without a function stay)."""
    before: tuple[dt.datetime, int] | None = None
    """Keyset cursor: only events strictly older than (occurred_at, seq)."""
    limit: int = 50
    since: dt.datetime | None = None
    """Only events with ``occurred_at > since`` (a look-back window, e.g. a segment's)."""


class EventLog(Protocol):
    def append(
        self,
        events: Sequence[LogEvent],
        quarantine: Sequence[QuarantineEntry] = (),
        *,
        report_stored: bool = False,
    ) -> AppendResult:
        """Store new events and quarantine entries in one durable transaction.

        An event whose message id is already in the log (or earlier in ``events``) is a
        duplicate: counted, not stored. Returns only after the data is durable.
        """
        ...

    def append_arrow(
        self,
        incoming: pa.Table,
        quarantine: Sequence[QuarantineEntry] = (),
        *,
        report_stored: bool = False,
    ) -> AppendResult:
        """``append`` for rows already in the log's Arrow schema (the bulk path)."""
        ...

    def head(self) -> int:
        """The highest sequence number stored (0 for an empty log)."""
        ...

    def read_after(self, position: int, limit: int) -> pa.Table:
        """Events with ``seq > position`` in sequence order, at most ``limit`` (Arrow)."""
        ...

    def timeline(self, query: TimelineQuery) -> list[StoredEvent]:
        """Events of these subjects, newest first."""
        ...

    def count(self) -> int: ...

    def count_by_subject(self, filters: Sequence[EventFilter], now: dt.datetime) -> pa.Table:
        """Per subject, how many of its interactions match each filter (one scan).

        Columns ``subject`` and ``c0`` … ``c{n-1}`` (int64), one per filter in order; only
        subjects with at least one interaction in the longest window appear. An event matches
        a filter exactly as ``counterpoint.segment.conditions.matches`` says: channel and
        action present, ``now - within_days < occurred_at <= now``, every given list matched
        with ``IN``, the function equal. Segments evaluate in bulk from this.
        """
        ...

    def quarantined(
        self, status: QuarantineStatus | None, after_id: int, limit: int
    ) -> list[QuarantinedEvent]: ...

    def resolve_quarantined(
        self, ids: Sequence[int], status: QuarantineStatus, note: str, at: dt.datetime
    ) -> int:
        """Mark open entries replayed or discarded; returns how many changed."""
        ...

    def redact(self, subjects: Sequence[str], pseudonym: str) -> int:
        """Erasure: events of ``subjects`` get ``subject = pseudonym``, an empty payload and no
        anonymous id, event name or acting user's id (channel, action, times, brand, content,
        function, market and synthetic are kept: the aggregates). Anonymous ids of the form
        ``anon:<id>`` among ``subjects`` are cleared wherever they appear. Returns how many
        events changed. Sequence numbers and message ids stay, so de-duplication still works."""
        ...

    def purge_quarantined(self, mentions: Sequence[str]) -> int:
        """Erasure: delete quarantine entries whose raw text or detail contains any of
        ``mentions`` (case-insensitive); returns how many were deleted."""
        ...

    def close(self) -> None: ...
