"""The embedded event log: one DuckDB file, written by one process.

De-duplication is durable: the log refuses a message id it holds, however long ago it came.
It keeps ``SeenKeys``, the 128-bit MD5s of the stored message ids (compact, and collision-free
in practice), in memory. They are read from the file itself on the first append, so they
survive every restart. Rows whose key the set holds, or that repeat an earlier row of their
batch, are duplicates and are left out; the others take a plain insert.

The set is exact because only this process writes the file (DuckDB locks it against other
processes) and, within the process, every log on the same file appends under one lock. Each
append first folds into the set whatever another log on the file appended since it last
looked, inside the transaction that inserts; the highest sequence number committed in the
process, kept beside the lock, tells whether there is anything to look at.

The log numbers the rows it inserts itself, from that highest number on, so the numbers are
dense: an append rolled back uses none. (Files written before schema version 3 took them from
a sequence, which a rolled-back append consumed; ``read_after`` still reads across such gaps.)

Files made before schema version 2 also carry a unique index on the key. It still refuses
any repeat there, at a cost: DuckDB maintains it on every insert, which halved the rate of a
bulk append. New files have no such index.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from counterpoint.event.arrow import LOG_SCHEMA, event_from_row, events_to_arrow
from counterpoint.event.canonical import LOG_COLUMNS, LogEvent
from counterpoint.event.log import (
    AppendResult,
    QuarantinedEvent,
    QuarantineEntry,
    QuarantineStatus,
    StoredEvent,
    TimelineQuery,
)
from counterpoint.event.seen import Halves, SeenKeys
from counterpoint.kit.clock import utc
from counterpoint.segment.conditions import EventFilter, window_start

__all__ = ["DuckDBEventLog"]

_SCHEMA_VERSION = 3
"""1: with a unique index on ``mid``; 2: without (the set alone de-duplicates); 3: the log
numbers its rows (the table is the same, the sequence is no longer used)."""

_DDL = f"""
CREATE SEQUENCE IF NOT EXISTS event_seq START 1;
CREATE TABLE IF NOT EXISTS event_log (
    seq BIGINT NOT NULL DEFAULT nextval('event_seq'),  -- unique: the log numbers its rows
    -- (the default served files before version 3); no constraint, since DuckDB maintains
    -- every index on each insert
    mid UHUGEINT NOT NULL,  -- md5_number(message_id); unique by SeenKeys
    message_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    subject_hash UBIGINT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL,
    channel VARCHAR, action VARCHAR, event_name VARCHAR, anonymous_id VARCHAR,
    brand VARCHAR, content_id VARCHAR, slide VARCHAR, actor_type VARCHAR, actor_id VARCHAR,
    function VARCHAR, market VARCHAR, payload VARCHAR, synthetic BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_event_subject ON event_log (subject_hash);
CREATE SEQUENCE IF NOT EXISTS quarantine_seq START 1;
CREATE TABLE IF NOT EXISTS quarantine (
    id BIGINT PRIMARY KEY DEFAULT nextval('quarantine_seq'),
    received_at TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, reason_code VARCHAR NOT NULL,
    field VARCHAR, detail VARCHAR NOT NULL, fix VARCHAR, raw VARCHAR NOT NULL,
    status VARCHAR NOT NULL, resolved_at TIMESTAMPTZ, note VARCHAR
);
CREATE TABLE IF NOT EXISTS log_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO log_meta VALUES ('schema_version', '{_SCHEMA_VERSION}') ON CONFLICT DO NOTHING;
"""

_COLS = ", ".join(LOG_COLUMNS)
_PLAIN = f"""
INSERT INTO event_log (seq, mid, subject_hash, {_COLS})
SELECT seq, md5_number(message_id), hash(subject), {_COLS} FROM {{table}}
"""
"""For rows ``SeenKeys`` found new, numbered (``seq``) by ``_numbered``."""
_HALVES = """
SELECT (mid >> 64)::UBIGINT AS hi, (mid & 18446744073709551615::UHUGEINT)::UBIGINT AS lo
FROM (SELECT {mid} AS mid FROM {table})
"""
"""A message id's key as ``SeenKeys`` holds it: the two halves of ``mid``."""
_KEYS = _HALVES.format(mid="md5_number(message_id)", table="incoming")
_NEWER = """
SELECT (mid >> 64)::UBIGINT AS hi, (mid & 18446744073709551615::UHUGEINT)::UBIGINT AS lo, seq
FROM event_log WHERE seq > ?
"""
"""The keys of rows past a position, and their sequence numbers."""


class _SharedFile:
    """What every log on one file in this process shares: the lock their appends take, and
    the highest sequence number any of them committed (guarded by the lock)."""

    __slots__ = ("head", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.head = 0


_FILES: dict[str, _SharedFile] = {}
_FILES_GUARD = threading.Lock()


def _shared_file(path: Path) -> _SharedFile:
    """The one ``_SharedFile`` of a log file in this process."""
    with _FILES_GUARD:
        return _FILES.setdefault(str(path.resolve()), _SharedFile())


_RANGE = f"SELECT seq, {_COLS} FROM event_log WHERE seq > ? AND seq <= ? ORDER BY seq"
_NEXT = f"SELECT seq, {_COLS} FROM event_log WHERE seq > ? ORDER BY seq LIMIT ?"

_Q_COLS = "received_at, source, reason_code, field, detail, fix, raw"


class DuckDBEventLog:
    """``EventLog`` on a DuckDB file. Thread-safe: writes are serialised, reads use cursors."""

    def __init__(
        self,
        path: Path,
        *,
        memory_limit: str | None = None,
        checkpoint_threshold: str | None = None,
    ) -> None:
        """``memory_limit``: DuckDB's ``memory_limit`` (e.g. ``"4GB"``, validated by the
        settings); unset, DuckDB's default. ``checkpoint_threshold``: the size of write-ahead
        log at which a commit also writes the file through (DuckDB's ``checkpoint_threshold``,
        16 MiB unless set); the settings make it 256MB, see ``docs/operations.md``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        self._con = duckdb.connect(str(path), config=config)
        if checkpoint_threshold is not None:
            # a setting of the database, not of the connection: set, not passed to ``connect``,
            # so that a log opened without it on the same file does not conflict
            self._con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
        self._con.execute(_DDL)
        self._file = _shared_file(path)
        self._write_lock = self._file.lock
        self._local = threading.local()
        self._seen: SeenKeys | None = None
        self._head = 0
        with self._write_lock:
            self._head = self._scan_head(0)
            self._file.head = max(self._file.head, self._head)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

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
        """Append a table in ``LOG_SCHEMA`` (the bulk import's fast path)."""
        if incoming.schema != LOG_SCHEMA:
            incoming = incoming.select(list(LOG_COLUMNS)).cast(LOG_SCHEMA)
        with self._write_lock:
            accepted, stored = self._append(incoming, quarantine, report_stored)
            head = self._head
        return AppendResult(
            accepted=accepted,
            duplicates=incoming.num_rows - accepted,
            quarantined=len(quarantine),
            last_seq=head,
            stored=stored,
        )

    def _append(
        self,
        incoming: pa.Table,
        quarantine: Sequence[QuarantineEntry],
        report_stored: bool,
    ) -> tuple[int, tuple[bool, ...] | None]:
        """One transaction (the caller holds the file's lock): bring the set up to date, insert
        the rows it finds new, then the quarantine entries. Returns the count stored and, if
        asked, which rows were. The set learns the batch's keys once the commit succeeded."""
        cur = self._cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            seen = self._current_seen(cur)
            accepted = 0
            stored: tuple[bool, ...] | None = () if report_stored else None
            keys: tuple[Halves, Halves] | None = None
            if incoming.num_rows:
                with _registered(cur, "incoming", incoming):
                    keys = _pair(cur.execute(_KEYS).fetchnumpy())
                new = seen.new(*keys)
                if new.any():
                    fresh = incoming if new.all() else incoming.filter(pa.array(new))
                    with _registered(cur, "fresh", _numbered(fresh, self._head)):
                        accepted = _insert(cur, _PLAIN.format(table="fresh"))
                if report_stored:
                    stored = tuple(new.tolist())
            if quarantine:
                # as one table: DuckDB runs ``executemany`` as a statement per row (3.3 s for
                # the 10,000 entries of a 2M-row import)
                with _registered(cur, "refused", _quarantine_table(quarantine)):
                    cur.execute(
                        f"INSERT INTO quarantine ({_Q_COLS}, status) "
                        f"SELECT {_Q_COLS}, 'open' FROM refused"
                    )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if keys is not None:
            seen.add(*keys)  # every id of the batch is stored now, new or not
        self._head += accepted
        self._file.head = self._head
        return accepted, stored

    def _current_seen(self, cur: duckdb.DuckDBPyConnection) -> SeenKeys:
        """The set of stored ids' keys as of this transaction: read from the file on first use;
        afterwards, the keys of rows another log on this file appended since are added. Also
        brings ``_head`` up to the file's highest sequence number."""
        if self._seen is None:
            # sorted by DuckDB (in parallel), a run's own sort is then a linear pass
            sql = _HALVES.format(mid="mid", table="event_log") + "ORDER BY hi"
            self._seen = SeenKeys(*_pair(cur.execute(sql).fetchnumpy()))
            self._head = self._scan_head(0, cur)
            self._file.head = max(self._file.head, self._head)
            return self._seen
        if self._file.head == self._head:
            return self._seen  # no other log on the file appended since
        newer = cur.execute(_NEWER, [self._head]).fetchnumpy()
        if len(newer["seq"]):
            self._seen.add(*_pair(newer))
            self._head = int(np.max(newer["seq"]))
        return self._seen

    def _scan_head(self, known: int, cur: duckdb.DuckDBPyConnection | None = None) -> int:
        """The highest seq; only rows past ``known`` are looked at (min/max zone maps)."""
        rows = (
            (cur or self._cursor())
            .execute("SELECT coalesce(max(seq), ?) FROM event_log WHERE seq > ?", [known, known])
            .fetchall()
        )
        return int(rows[0][0])

    def head(self) -> int:
        with self._write_lock:
            return self._head

    def count(self) -> int:
        rows = self._cursor().execute("SELECT count(*) FROM event_log").fetchall()
        return int(rows[0][0])

    def read_after(self, position: int, limit: int) -> pa.Table:
        """The next ``limit`` events, as a range of sequence numbers: ``ORDER BY seq LIMIT``
        alone makes DuckDB read every later row to pick the first ones (0.33 s instead of
        0.035 s for 50,000 of 2M). Sequence numbers are dense but for appends rolled back; a
        range that such a gap leaves short, before the head, is read the exact way."""
        cur = self._cursor()
        upper = position + limit
        table = cur.sql(_RANGE, params=[position, upper]).to_arrow_table()
        if table.num_rows < limit and upper < self._head:
            table = cur.sql(_NEXT, params=[position, limit]).to_arrow_table()
        return table

    def timeline(self, query: TimelineQuery) -> list[StoredEvent]:
        if not query.subjects:
            return []
        marks = ", ".join("hash(?)" for _ in query.subjects)
        where = [
            f"subject_hash IN ({marks})",
            f"subject IN ({', '.join('?' for _ in query.subjects)})",
        ]
        params: list[Any] = [*query.subjects, *query.subjects]
        for column in ("channel", "brand", "function"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.exclude_function is not None:
            where.append("function IS DISTINCT FROM ?")
            params.append(query.exclude_function)
        if query.before is not None:
            where.append("(occurred_at < ? OR (occurred_at = ? AND seq < ?))")
            params += [query.before[0], query.before[0], query.before[1]]
        if query.since is not None:
            where.append("occurred_at > ?")
            params.append(query.since)
        sql = (
            f"SELECT seq, {_COLS} FROM event_log WHERE {' AND '.join(where)} "
            "ORDER BY occurred_at DESC, seq DESC LIMIT ?"
        )
        rows = self._cursor().sql(sql, params=[*params, query.limit]).to_arrow_table().to_pylist()
        return [StoredEvent(seq=r["seq"], event=event_from_row(r)) for r in rows]

    def count_by_subject(self, filters: Sequence[EventFilter], now: dt.datetime) -> pa.Table:
        sql, params = count_by_subject_sql(filters, now)
        return self._cursor().sql(sql, params=params).to_arrow_table()

    def quarantined(
        self, status: QuarantineStatus | None, after_id: int, limit: int
    ) -> list[QuarantinedEvent]:
        sql = (
            "SELECT id, timezone('UTC', received_at), source, reason_code, field, detail, fix, "
            "raw, status, timezone('UTC', resolved_at), note FROM quarantine WHERE id > ?"
        )
        params: list[Any] = [after_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        rows = self._cursor().execute(sql + " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
        return [_quarantined(r) for r in rows]

    def resolve_quarantined(
        self, ids: Sequence[int], status: QuarantineStatus, note: str, at: dt.datetime
    ) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        with self._write_lock:
            rows = (
                self._cursor()
                .execute(
                    f"UPDATE quarantine SET status = ?, resolved_at = ?, note = ? "
                    f"WHERE status = 'open' AND id IN ({marks}) RETURNING id",
                    [status.value, at, note, *ids],
                )
                .fetchall()
            )
        return len(rows)

    def redact(self, subjects: Sequence[str], pseudonym: str) -> int:
        if not subjects:
            return 0
        marks = ", ".join("?" for _ in subjects)
        anons = [s.partition(":")[2] for s in subjects if s.startswith("anon:")]
        with self._write_lock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                rows = cur.execute(
                    "UPDATE event_log SET subject = ?, subject_hash = hash(?), payload = '{}', "
                    "anonymous_id = NULL, event_name = NULL, actor_id = NULL "
                    f"WHERE subject_hash IN ({', '.join('hash(?)' for _ in subjects)}) "
                    f"AND subject IN ({marks}) RETURNING seq",
                    [pseudonym, pseudonym, *subjects, *subjects],
                ).fetchall()
                if anons:
                    cur.execute(
                        "UPDATE event_log SET anonymous_id = NULL "
                        f"WHERE anonymous_id IN ({', '.join('?' for _ in anons)})",
                        anons,
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            _checkpoint(cur)
        return len(rows)

    def purge_quarantined(self, mentions: Sequence[str]) -> int:
        needles = sorted({m.lower() for m in mentions if m})
        if not needles:
            return 0
        where = " OR ".join(
            "contains(lower(raw), ?) OR contains(lower(detail), ?)" for _ in needles
        )
        with self._write_lock:
            cur = self._cursor()
            rows = cur.execute(
                f"DELETE FROM quarantine WHERE {where} RETURNING id",
                [n for n in needles for _ in (0, 1)],
            ).fetchall()
            _checkpoint(cur)
        return len(rows)

    def close(self) -> None:
        self._con.close()


@contextlib.contextmanager
def _registered(cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """``table`` visible to ``cur``'s statements as ``name`` for the block."""
    cur.register(name, table)
    try:
        yield
    except BaseException:
        # A failed statement aborts the transaction, which then refuses even this; the
        # caller's rollback removes the registration with the rest.
        with contextlib.suppress(duckdb.Error):
            cur.unregister(name)
        raise
    cur.unregister(name)


def _checkpoint(cur: duckdb.DuckDBPyConnection) -> None:
    """Write the file through, so that values just overwritten (an erasure, a purge) leave the
    write-ahead log. A read still open elsewhere (the projector mid-read) keeps a plain
    ``CHECKPOINT`` from running, since the old row versions are still visible to it; the forced
    one waits for such reads to finish (it does not abort them) and keeps new ones from
    starting meanwhile. Every read here is short: each fetches its whole result at once."""
    try:
        cur.execute("CHECKPOINT")
    except duckdb.TransactionException:
        cur.execute("FORCE CHECKPOINT")


def _numbered(table: pa.Table, head: int) -> pa.Table:
    """``table`` with a ``seq`` column: head + 1, head + 2, … in row order."""
    numbers = np.arange(head + 1, head + 1 + table.num_rows, dtype=np.int64)
    return table.append_column("seq", pa.array(numbers))


def _insert(cur: duckdb.DuckDBPyConnection, sql: str) -> int:
    """Run an INSERT; the count of rows it stored."""
    rows = cur.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


_Q_SCHEMA = pa.schema(
    [
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("source", pa.string()),
        ("reason_code", pa.string()),
        ("field", pa.string()),
        ("detail", pa.string()),
        ("fix", pa.string()),
        ("raw", pa.string()),
    ]
)


def _quarantine_table(entries: Sequence[QuarantineEntry]) -> pa.Table:
    return pa.Table.from_pydict(
        {name: [getattr(q, name) for q in entries] for name in _Q_SCHEMA.names},
        schema=_Q_SCHEMA,
    )


def _pair(columns: dict[str, Any]) -> tuple[Halves, Halves]:
    return (
        np.asarray(columns["hi"], dtype=np.uint64),
        np.asarray(columns["lo"], dtype=np.uint64),
    )


def _filter_sql(f: EventFilter, now: dt.datetime) -> tuple[str, list[Any]]:
    """One filter as a boolean over an event row (the global WHERE already demands a channel
    and an action, and ``occurred_at <= now``)."""
    parts = ["occurred_at > ?"]
    params: list[Any] = [window_start(now, f.within_days)]
    for column in ("channel", "action", "brand", "content_id"):
        values = getattr(f, column)
        if values is not None:
            parts.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params += [str(v) for v in values]
    if f.function is not None:
        parts.append("function = ?")
        params.append(f.function.value)
    return " AND ".join(parts), params


def count_by_subject_sql(filters: Sequence[EventFilter], now: dt.datetime) -> tuple[str, list[Any]]:
    """``count_by_subject`` as one scan: a ``count(*) FILTER (WHERE …)`` per filter, over the
    events of the longest window, grouped by subject. Values are bound (``?``), never
    formatted into the text."""
    columns: list[str] = []
    params: list[Any] = []
    for i, f in enumerate(filters):
        condition, values = _filter_sql(f, now)
        columns.append(f"count(*) FILTER (WHERE {condition}) AS c{i}")
        params += values
    longest = max((f.within_days for f in filters), default=1)
    sql = (
        f"SELECT subject{''.join(', ' + c for c in columns)} FROM event_log "
        "WHERE occurred_at > ? AND occurred_at <= ? "
        "AND channel IS NOT NULL AND action IS NOT NULL GROUP BY subject"
    )
    return sql, [*params, window_start(now, longest), now]


def _quarantined(row: tuple[Any, ...]) -> QuarantinedEvent:
    return QuarantinedEvent(
        id=int(row[0]),
        entry=QuarantineEntry(
            received_at=utc(row[1]),
            source=row[2],
            reason_code=row[3],
            field=row[4],
            detail=row[5],
            fix=row[6],
            raw=row[7],
        ),
        status=QuarantineStatus(row[8]),
        resolved_at=utc(row[9]) if row[9] is not None else None,
        note=row[10],
    )
