"""The server event log: a PostgreSQL table, written by several processes.

Appends take a transaction-level advisory lock so that sequence numbers become visible in
order: a consumer reading ``seq > checkpoint`` can never skip an event committed late.
Bulk appends go through COPY into a temporary table, then one INSERT … ON CONFLICT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import ColumnElement, Engine, Table, and_, delete, func, or_, select, text, update

from counterpoint.event.arrow import LOG_SCHEMA, event_from_row, events_to_arrow
from counterpoint.event.canonical import LOG_COLUMNS, LogEvent
from counterpoint.event.log import (
    AppendResult,
    QuarantinedEvent,
    QuarantineEntry,
    QuarantineStatus,
    StoredEvent,
    TimelineQuery,
    stored_flags,
)
from counterpoint.event.models import EventLogRow, QuarantineRow
from counterpoint.kit.clock import utc
from counterpoint.segment.conditions import EventFilter, window_start

__all__ = ["PostgresEventLog"]

_APPEND_LOCK = 0x636F756E74  # advisory lock key for appends
_COLS = ", ".join(LOG_COLUMNS)
_LOG: Table = EventLogRow.__table__  # type: ignore[assignment]
_Q: Table = QuarantineRow.__table__  # type: ignore[assignment]


class PostgresEventLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(
        self,
        events: Sequence[LogEvent],
        quarantine: Sequence[QuarantineEntry] = (),
        *,
        report_stored: bool = False,
    ) -> AppendResult:
        return self.append_arrow(events_to_arrow(events), quarantine, report_stored=report_stored)

    def append_arrow(
        self,
        incoming: pa.Table,
        quarantine: Sequence[QuarantineEntry] = (),
        *,
        report_stored: bool = False,
    ) -> AppendResult:
        if incoming.schema != LOG_SCHEMA:
            incoming = incoming.select(list(LOG_COLUMNS)).cast(LOG_SCHEMA)
        with self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK})
            accepted = 0
            stored: tuple[bool, ...] | None = () if report_stored else None
            if incoming.num_rows:
                if conn.execute(text("SELECT to_regclass('pg_temp.incoming')")).scalar() is None:
                    conn.execute(
                        text(
                            "CREATE TEMP TABLE incoming ON COMMIT DELETE ROWS AS "
                            f"SELECT {_COLS} FROM event_log WITH NO DATA"
                        )
                    )
                    conn.execute(text("ALTER TABLE incoming ADD COLUMN ord BIGSERIAL"))
                raw = conn.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cur, cur.copy(f"COPY incoming ({_COLS}) FROM STDIN") as cp:
                    columns = [incoming.column(c).to_pylist() for c in LOG_COLUMNS]
                    for row in zip(*columns, strict=True):
                        cp.write_row(row)
                insert = (
                    f"INSERT INTO event_log ({_COLS}) SELECT {_COLS} FROM incoming ORDER BY ord "
                    "ON CONFLICT (message_id) DO NOTHING"
                )
                if report_stored:
                    ids = list(conn.execute(text(insert + " RETURNING message_id")).scalars())
                    stored = stored_flags(incoming.column("message_id").to_pylist(), ids)
                    accepted = len(ids)
                else:
                    accepted = conn.execute(text(insert)).rowcount
            if quarantine:
                conn.execute(
                    _Q.insert(),
                    [
                        {
                            "received_at": q.received_at,
                            "source": q.source,
                            "reason_code": q.reason_code,
                            "field": q.field,
                            "detail": q.detail,
                            "fix": q.fix,
                            "raw": q.raw,
                            "status": QuarantineStatus.OPEN.value,
                        }
                        for q in quarantine
                    ],
                )
        return AppendResult(
            accepted=accepted,
            duplicates=incoming.num_rows - accepted,
            quarantined=len(quarantine),
            last_seq=self.head(),
            stored=stored,
        )

    def head(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(_LOG.c.seq), 0))).scalar_one())

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_LOG)).scalar_one())

    def read_after(self, position: int, limit: int) -> pa.Table:
        columns = [_LOG.c.seq, *(_LOG.c[c] for c in LOG_COLUMNS)]
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*columns).where(_LOG.c.seq > position).order_by(_LOG.c.seq).limit(limit)
            ).all()
        schema = pa.schema([("seq", pa.int64()), *LOG_SCHEMA])
        data = {name: [r[i] for r in rows] for i, name in enumerate(schema.names)}
        return pa.Table.from_pydict(data, schema=schema)

    def timeline(self, query: TimelineQuery) -> list[StoredEvent]:
        if not query.subjects:
            return []
        stmt = select(_LOG).where(_LOG.c.subject.in_(list(query.subjects)))
        for column in ("channel", "brand", "function"):
            value = getattr(query, column)
            if value is not None:
                stmt = stmt.where(_LOG.c[column] == value)
        if query.exclude_function is not None:
            stmt = stmt.where(_LOG.c.function.is_distinct_from(query.exclude_function))
        if query.before is not None:
            at, seq = query.before
            stmt = stmt.where(
                (_LOG.c.occurred_at < at) | ((_LOG.c.occurred_at == at) & (_LOG.c.seq < seq))
            )
        if query.since is not None:
            stmt = stmt.where(_LOG.c.occurred_at > query.since)
        stmt = stmt.order_by(_LOG.c.occurred_at.desc(), _LOG.c.seq.desc()).limit(query.limit)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [StoredEvent(seq=r["seq"], event=event_from_row(dict(r))) for r in rows]

    def count_by_subject(self, filters: Sequence[EventFilter], now: dt.datetime) -> pa.Table:
        """One scan, as in the embedded log: ``count(*) FILTER (WHERE …)`` per filter."""
        counts = [
            func.count().filter(_matches(f, now)).label(f"c{i}") for i, f in enumerate(filters)
        ]
        longest = max((f.within_days for f in filters), default=1)
        stmt = (
            select(_LOG.c.subject, *counts)
            .where(
                _LOG.c.occurred_at > window_start(now, longest),
                _LOG.c.occurred_at <= now,
                _LOG.c.channel.is_not(None),
                _LOG.c.action.is_not(None),
            )
            .group_by(_LOG.c.subject)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        schema = pa.schema(
            [("subject", pa.string()), *((f"c{i}", pa.int64()) for i in range(len(filters)))]
        )
        data = {name: [r[i] for r in rows] for i, name in enumerate(schema.names)}
        return pa.Table.from_pydict(data, schema=schema)

    def quarantined(
        self, status: QuarantineStatus | None, after_id: int, limit: int
    ) -> list[QuarantinedEvent]:
        stmt = select(_Q).where(_Q.c.id > after_id)
        if status is not None:
            stmt = stmt.where(_Q.c.status == status.value)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(_Q.c.id).limit(limit)).mappings().all()
        return [_quarantined(r) for r in rows]

    def resolve_quarantined(
        self, ids: Sequence[int], status: QuarantineStatus, note: str, at: dt.datetime
    ) -> int:
        if not ids:
            return 0
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_Q)
                .where(_Q.c.id.in_(list(ids)), _Q.c.status == QuarantineStatus.OPEN.value)
                .values(status=status.value, resolved_at=at, note=note)
            )
        return result.rowcount

    def redact(self, subjects: Sequence[str], pseudonym: str) -> int:
        if not subjects:
            return 0
        anons = [s.partition(":")[2] for s in subjects if s.startswith("anon:")]
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(_LOG)
                .where(_LOG.c.subject.in_(list(subjects)))
                .values(
                    subject=pseudonym,
                    payload="{}",
                    anonymous_id=None,
                    event_name=None,
                    actor_id=None,
                )
            ).rowcount
            if anons:
                conn.execute(
                    update(_LOG).where(_LOG.c.anonymous_id.in_(anons)).values(anonymous_id=None)
                )
        return int(changed)

    def purge_quarantined(self, mentions: Sequence[str]) -> int:
        needles = sorted({m.lower() for m in mentions if m})
        if not needles:
            return 0
        condition = or_(
            *(
                func.strpos(func.lower(column), needle) > 0
                for needle in needles
                for column in (_Q.c.raw, _Q.c.detail)
            )
        )
        with self._engine.begin() as conn:
            return int(conn.execute(delete(_Q).where(condition)).rowcount)

    def close(self) -> None:
        """The engine belongs to the caller."""


def _matches(f: EventFilter, now: dt.datetime) -> ColumnElement[bool]:
    """One filter over an event row (the statement's WHERE demands channel, action and
    ``occurred_at <= now``); values are bound parameters."""
    parts: list[ColumnElement[bool]] = [_LOG.c.occurred_at > window_start(now, f.within_days)]
    for column in ("channel", "action", "brand", "content_id"):
        values = getattr(f, column)
        if values is not None:
            parts.append(_LOG.c[column].in_([str(v) for v in values]))
    if f.function is not None:
        parts.append(_LOG.c.function == f.function.value)
    return and_(*parts)


def _quarantined(row: Any) -> QuarantinedEvent:
    return QuarantinedEvent(
        id=int(row["id"]),
        entry=QuarantineEntry(
            received_at=utc(row["received_at"]),
            source=row["source"],
            reason_code=row["reason_code"],
            field=row["field"],
            detail=row["detail"],
            fix=row["fix"],
            raw=row["raw"],
        ),
        status=QuarantineStatus(row["status"]),
        resolved_at=utc(row["resolved_at"]) if row["resolved_at"] is not None else None,
        note=row["note"],
    )
