"""SQL over the journey tables (the caller's session and transaction; nothing commits here).

Enrollments are read and written with Core statements in batches: the scheduler moves
thousands per second and audience entry inserts hundreds of thousands at once. Steps are
stored with a conditional update on the state they were computed from (``visits`` and
``status``): a row changed meanwhile is not overwritten (``store`` says how many were).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, and_, delete, func, select, update
from sqlalchemy.orm import Session

from counterpoint.journey.engine import Enrollment, EnrollmentStatus
from counterpoint.journey.models import (
    Journey,
    JourneyEnrollment,
    JourneyPendingEvent,
    JourneyTransition,
    JourneyVersion,
)
from counterpoint.kit.db import upsert

__all__ = ["JourneyRepository", "LastEntry", "enrollment_of"]

_ENROLLMENT: Table = JourneyEnrollment.__table__  # type: ignore[assignment]
_TRANSITION: Table = JourneyTransition.__table__  # type: ignore[assignment]
_PENDING: Table = JourneyPendingEvent.__table__  # type: ignore[assignment]
_IN_BATCH = 500
_WRITE_BATCH = 20_000
_WAITING = EnrollmentStatus.WAITING.value

_COLUMNS = (
    _ENROLLMENT.c.id,
    _ENROLLMENT.c.journey_id,
    _ENROLLMENT.c.version,
    _ENROLLMENT.c.hcp_id,
    _ENROLLMENT.c.node,
    _ENROLLMENT.c.status,
    _ENROLLMENT.c.entered_at,
    _ENROLLMENT.c.node_entered_at,
    _ENROLLMENT.c.wake_at,
    _ENROLLMENT.c.arm,
    _ENROLLMENT.c.visits,
    _ENROLLMENT.c.exit_reason,
)


class _Driver:
    """The DBAPI connection of the session's transaction, for the hot statements: plain
    ``executemany`` without per-row SQLAlchemy processing (values converted here as the
    column types would: UTC times, JSON text)."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.sqlite = connection.dialect.name == "sqlite"
        self.mark = "?" if self.sqlite else "%s"
        raw = connection.connection.driver_connection
        assert raw is not None
        self._raw = raw
        self._times: dict[dt.datetime, str] = {}

    def time(self, value: dt.datetime | None) -> Any:
        """As SQLAlchemy stores it: naive UTC text on SQLite (the times of one batch repeat:
        each is converted once)."""
        if value is None or not self.sqlite:
            return value
        text = self._times.get(value)
        if text is None:
            text = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            self._times[value] = text
        return text

    @staticmethod
    def json(value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def json_mark(self) -> str:
        return self.mark if self.sqlite else f"CAST({self.mark} AS JSON)"

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        cursor = self._raw.cursor()
        try:
            cursor.executemany(sql, rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute(self, sql: str, params: Sequence[Any]) -> int:
        cursor = self._raw.cursor()
        try:
            cursor.execute(sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self._raw.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _utc(value: Any) -> dt.datetime | None:
    """A time read through the driver: text on SQLite (naive UTC), aware on PostgreSQL."""
    if value is None:
        return None
    if isinstance(value, str):
        return _parsed(value)
    when: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


_STATUS = {s.value: s for s in EnrollmentStatus}
_DUE_COLUMNS = (
    "id, journey_id, version, hcp_id, node, status, entered_at, node_entered_at, wake_at, "
    "arm, visits, exit_reason"
)
_WAKE_AT = 8  # its place in _DUE_COLUMNS
_INSERT_COLUMNS = (
    "id", "journey_id", "version", "hcp_id", "entry_number", "node", "status", "entered_at",
    "node_entered_at", "wake_at", "arm", "visits", "exit_reason", "updated_at",
)  # fmt: skip


class TransitionRow(NamedTuple):
    """A row of ``journey_transition`` as the runtime writes it (columns in table order)."""

    enrollment_id: str
    visit: int
    kind: str
    journey_id: str
    version: int
    hcp_id: str
    node: str
    touchpoint: str | None
    stage: str | None
    at: dt.datetime
    detail: dict[str, Any] | None


_TRANSITION_COLUMNS = TransitionRow._fields


def _enrollment(row: Sequence[Any]) -> Enrollment:
    """A row of ``_DUE_COLUMNS`` (positional: the scheduler builds one per step)."""
    return Enrollment(
        row[0], row[1], row[2], row[3], row[4], _STATUS[row[5]], _time(row[6]), _time(row[7]),
        _utc(row[8]), row[9], row[10], row[11],
    )  # fmt: skip


def _time(value: Any) -> dt.datetime:
    found = _utc(value)
    assert found is not None, "a NOT NULL time column"
    return found


def enrollment_of(row: Any) -> Enrollment:
    return Enrollment(
        id=row.id,
        journey=row.journey_id,
        version=row.version,
        hcp_id=row.hcp_id,
        node=row.node,
        status=EnrollmentStatus(row.status),
        entered_at=row.entered_at,
        node_entered_at=row.node_entered_at,
        wake_at=row.wake_at,
        arm=row.arm,
        visits=row.visits,
        exit_reason=row.exit_reason,
    )


@dataclass(frozen=True, slots=True)
class LastEntry:
    """An HCP's latest enrollment in a journey (for the re-entry rule)."""

    number: int
    status: str
    entered_at: dt.datetime


def _batches(values: Iterable[str], size: int = _IN_BATCH) -> Iterator[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), size):
        yield items[start : start + size]


class JourneyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # --- journeys and versions --------------------------------------------------------------
    def find(self, journey_id: str, *, lock: bool = False) -> Journey | None:
        query = select(Journey).where(Journey.id == journey_id)
        if lock:
            query = query.with_for_update()
        return self.session.scalars(query).one_or_none()

    def journeys(self) -> list[Journey]:
        return list(self.session.scalars(select(Journey).order_by(Journey.id)))

    def add(self, row: Journey | JourneyVersion) -> None:
        self.session.add(row)
        self.session.flush()

    def version(self, journey_id: str, version: int) -> JourneyVersion | None:
        return self.session.get(JourneyVersion, (journey_id, version))

    def versions(self, journey_id: str) -> list[JourneyVersion]:
        return list(
            self.session.scalars(
                select(JourneyVersion)
                .where(JourneyVersion.journey_id == journey_id)
                .order_by(JourneyVersion.version)
            )
        )

    def touch(self, journey_id: str, now: dt.datetime) -> None:
        """Take the journey's row lock (PostgreSQL) or the write lock (SQLite) first."""
        self.session.execute(update(Journey).where(Journey.id == journey_id).values(updated_at=now))

    # --- reading enrollments ----------------------------------------------------------------
    def due(
        self,
        now: dt.datetime,
        limit: int,
        *,
        journeys: Sequence[str],
        skip_locked: bool = False,
        least: int = 1,
    ) -> list[Enrollment]:
        """Waiting enrollments of ``journeys`` whose timer is due, at most ``limit``, each
        journey's earliest first. Read per journey (index ``journey_id, status, wake_at``),
        so the due rows of a paused journey, which is left out, are never scanned.

        The journeys share ``limit`` in the order given: each is asked for an equal part but
        at least ``least`` rows while the budget lasts, and those with more due for what the
        others left. A journey with a backlog of timers so neither starves the others nor
        makes every pass read ``limit`` rows of every journey; ``least`` keeps a pass's rows
        in a few journeys (a few places in the table and its indexes) when many have a
        backlog, and the caller rotates the order between passes.
        ``skip_locked``: lock the chosen rows, passing over rows another worker holds
        (PostgreSQL)."""
        driver = _Driver(self.session)
        m = driver.mark
        sql = (
            f"SELECT {_DUE_COLUMNS} FROM journey_enrollment "
            f"WHERE journey_id = {m} AND status = {m} AND wake_at <= {m} "
            "ORDER BY wake_at LIMIT {limit}"
        )
        at = driver.time(now)
        found: dict[str, list[tuple[Any, ...]]] = {}
        have = 0
        more = list(dict.fromkeys(journeys))  # may have more due than read so far
        while more and have < limit:
            share = max(least, -(-(limit - have) // len(more)))  # ceiling
            still: list[str] = []
            for journey_id in more:
                if have >= limit:
                    break
                before = found.get(journey_id, [])
                asked = len(before) + min(share, limit - have)
                rows = driver.fetch(sql.format(limit=asked), [journey_id, _WAITING, at])
                found[journey_id] = rows
                have += len(rows) - len(before)
                if len(rows) == asked:
                    still.append(journey_id)
            more = still
        rows = [r for part in found.values() for r in part]
        rows.sort(key=lambda r: (r[_WAKE_AT], r[0]))  # one type per database: text or datetime
        if skip_locked and rows:
            ids = [r[0] for r in rows]
            locked = driver.fetch(
                f"SELECT {_DUE_COLUMNS} FROM journey_enrollment WHERE id = ANY({m}) "
                f"AND status = {m} AND wake_at <= {m} ORDER BY wake_at FOR UPDATE SKIP LOCKED",
                [ids, _WAITING, at],
            )
            rows = list(locked)
        return [_enrollment(r) for r in rows]

    def waiting_of(
        self, hcp_ids: Iterable[str], journeys: Collection[str], *, lock: bool = False
    ) -> list[Enrollment]:
        """Waiting enrollments of these HCPs in these journeys, by id (index ``journey_id,
        hcp_id``); ``lock``: wait for and hold their row locks (PostgreSQL). The status is
        checked here, not in SQL: with it there, SQLite picks the ``journey_id, status``
        prefix of the timer index and scans every waiting HCP of the journey."""
        if not journeys:
            return []
        driver = _Driver(self.session)
        m = driver.mark
        in_journeys = ", ".join(m for _ in journeys)
        out: list[Enrollment] = []
        for part in _batches(hcp_ids):
            sql = (
                f"SELECT {_DUE_COLUMNS} FROM journey_enrollment "
                f"WHERE journey_id IN ({in_journeys}) "
                f"AND hcp_id IN ({', '.join(m for _ in part)}) ORDER BY id"
            )
            if lock:
                sql += " FOR UPDATE"
            rows = driver.fetch(sql, [*sorted(journeys), *part])
            out.extend(_enrollment(r) for r in rows if r[5] == _WAITING)
        return out

    def waiting_in(
        self, journey_id: str, *, version: int | None = None, nodes: Collection[str] | None = None
    ) -> list[Enrollment]:
        query = (
            select(*_COLUMNS)
            .where(_ENROLLMENT.c.journey_id == journey_id, _ENROLLMENT.c.status == _WAITING)
            .order_by(_ENROLLMENT.c.id)
        )
        if version is not None:
            query = query.where(_ENROLLMENT.c.version == version)
        if nodes is not None:
            query = query.where(_ENROLLMENT.c.node.in_(sorted(nodes)))
        return [enrollment_of(r) for r in self.session.execute(query)]

    def get(self, ids: Iterable[str], *, lock: bool = False) -> dict[str, Enrollment]:
        out: dict[str, Enrollment] = {}
        for part in _batches(ids):
            query = select(*_COLUMNS).where(_ENROLLMENT.c.id.in_(part)).order_by(_ENROLLMENT.c.id)
            if lock:
                query = query.with_for_update()
            out.update((r.id, enrollment_of(r)) for r in self.session.execute(query))
        return out

    def entries(
        self, journey_id: str, hcp_ids: Iterable[str] | None = None
    ) -> dict[str, LastEntry]:
        """Each HCP's latest enrollment in the journey (every version): all HCPs, or those
        given."""
        columns = (
            _ENROLLMENT.c.hcp_id,
            _ENROLLMENT.c.entry_number,
            _ENROLLMENT.c.status,
            _ENROLLMENT.c.entered_at,
        )
        out: dict[str, LastEntry] = {}

        def keep(rows: Iterable[Any]) -> None:
            for hcp_id, number, status, entered_at in rows:
                known = out.get(hcp_id)
                if known is None or number > known.number:
                    out[hcp_id] = LastEntry(number, status, entered_at)

        if hcp_ids is None:
            keep(
                self.session.execute(select(*columns).where(_ENROLLMENT.c.journey_id == journey_id))
            )
            return out
        for part in _batches(hcp_ids):
            keep(
                self.session.execute(
                    select(*columns).where(
                        _ENROLLMENT.c.hcp_id.in_(part), _ENROLLMENT.c.journey_id == journey_id
                    )
                )
            )
        return out

    # --- writing enrollments ----------------------------------------------------------------
    def insert_enrollments(self, rows: Sequence[dict[str, Any]]) -> int:
        """New enrollments; an id already stored is left alone (the same entry again).
        Returns how many were inserted."""
        driver = _Driver(self.session)
        times = {"entered_at", "node_entered_at", "wake_at", "updated_at"}
        values = [
            tuple(driver.time(r[c]) if c in times else r[c] for c in _INSERT_COLUMNS) for r in rows
        ]
        sql = (
            f"INSERT INTO journey_enrollment ({', '.join(_INSERT_COLUMNS)}) "
            f"VALUES ({', '.join(driver.mark for _ in _INSERT_COLUMNS)}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        inserted = 0
        for start in range(0, len(values), _WRITE_BATCH):
            inserted += driver.executemany(sql, values[start : start + _WRITE_BATCH])
        return inserted

    def enter_many(
        self,
        journey_id: str,
        version: int,
        entry: str,
        now: dt.datetime,
        entering: Sequence[tuple[str, int]],
    ) -> int:
        """HCPs entering (hcp id, entry number): waiting at the entry node, due ``now``; an
        id already stored is left alone. Returns how many were inserted.

        One ``INSERT … SELECT`` per entry number over the HCP ids passed as one array
        (``json_each`` on SQLite, ``unnest`` on PostgreSQL): the rows are built by the
        database, not bound one by one (about twice as fast as ``executemany``)."""
        driver = _Driver(self.session)
        m = driver.mark
        at = driver.time(now)
        by_number: dict[int, list[str]] = {}
        for hcp_id, number in entering:
            by_number.setdefault(number, []).append(hcp_id)
        ids = "json_each(?) AS h" if driver.sqlite else "unnest(%s::text[]) AS h (value)"
        hcp = "h.value"
        # the id is enrollment_id(journey, hcp, number): "<journey>:<hcp>:<number>"
        sql = (
            f"INSERT INTO journey_enrollment ({', '.join(_INSERT_COLUMNS)}) "
            f"SELECT {m} || ':' || {hcp} || ':' || {m}, {m}, {m}, {hcp}, {m}, {m}, {m}, "
            f"{m}, {m}, {m}, NULL, 0, NULL, {m} FROM {ids} WHERE true "
            "ON CONFLICT (id) DO NOTHING"
        )
        waiting = EnrollmentStatus.WAITING.value
        inserted = 0
        for number, hcp_ids in sorted(by_number.items()):
            for start in range(0, len(hcp_ids), _WRITE_BATCH):
                part = hcp_ids[start : start + _WRITE_BATCH]
                array: Any = json.dumps(part) if driver.sqlite else part
                inserted += driver.execute(
                    sql,
                    (journey_id, str(number), journey_id, version, number, entry, waiting,
                     at, at, at, at, array),
                )  # fmt: skip
        return inserted

    def store(self, steps: Sequence[tuple[Enrollment, Enrollment]], now: dt.datetime) -> int:
        """Write each (before, after) pair's new state where the row still is ``before``;
        returns how many rows were written."""
        if not steps:
            return 0
        driver = _Driver(self.session)
        m = driver.mark
        sql = (
            f"UPDATE journey_enrollment SET node = {m}, status = {m}, node_entered_at = {m}, "
            f"wake_at = {m}, arm = {m}, visits = {m}, exit_reason = {m}, version = {m}, "
            f"updated_at = {m} WHERE id = {m} AND visits = {m} AND status = {m}"
        )
        stamp = driver.time(now)
        rows = [
            (
                after.node,
                after.status.value,
                driver.time(after.node_entered_at),
                driver.time(after.wake_at),
                after.arm,
                after.visits,
                after.exit_reason,
                after.version,
                stamp,
                before.id,
                before.visits,
                before.status.value,
            )
            for before, after in steps
        ]
        written = 0
        for start in range(0, len(rows), _WRITE_BATCH):
            written += driver.executemany(sql, rows[start : start + _WRITE_BATCH])
        return written

    def exit_waiting(self, ids: Sequence[str], reason: str, now: dt.datetime) -> int:
        written = 0
        for part in _batches(ids):
            result = self.session.connection().execute(
                update(_ENROLLMENT)
                .where(_ENROLLMENT.c.id.in_(part), _ENROLLMENT.c.status == _WAITING)
                .values(
                    status=EnrollmentStatus.EXITED.value,
                    wake_at=None,
                    exit_reason=reason,
                    updated_at=now,
                )
            )
            written += result.rowcount
        return written

    def move(self, ids: Sequence[str], to_version: int, now: dt.datetime) -> int:
        """Waiting enrollments onto another version (same node, same timer)."""
        written = 0
        for part in _batches(ids):
            result = self.session.connection().execute(
                update(_ENROLLMENT)
                .where(_ENROLLMENT.c.id.in_(part), _ENROLLMENT.c.status == _WAITING)
                .values(version=to_version, updated_at=now)
            )
            written += result.rowcount
        return written

    # --- transitions and pending log events -------------------------------------------------
    def add_transitions(self, rows: Sequence[TransitionRow]) -> None:
        """Transitions, appended (the caller's transaction moved their enrollments)."""
        if not rows:
            return
        driver = _Driver(self.session)
        marks = [driver.mark] * (len(_TRANSITION_COLUMNS) - 1) + [driver.json_mark()]
        sql = (
            f"INSERT INTO journey_transition ({', '.join(_TRANSITION_COLUMNS)}) "
            f"VALUES ({', '.join(marks)})"
        )
        time, json_text = driver.time, driver.json
        values = [
            (*r[:9], time(r.at), None if r.detail is None else json_text(r.detail)) for r in rows
        ]
        for start in range(0, len(values), _WRITE_BATCH):
            driver.executemany(sql, values[start : start + _WRITE_BATCH])

    def add_pending(self, rows: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _WRITE_BATCH):
            upsert(
                self.session,
                _PENDING,
                list(rows[start : start + _WRITE_BATCH]),
                keys=["message_id"],
            )

    def pending(self, limit: int) -> list[JourneyPendingEvent]:
        return list(
            self.session.scalars(
                select(JourneyPendingEvent)
                .order_by(JourneyPendingEvent.created_at, JourneyPendingEvent.message_id)
                .limit(limit)
            )
        )

    def drop_pending(self, message_ids: Iterable[str]) -> None:
        for part in _batches(message_ids):
            self.session.execute(
                delete(JourneyPendingEvent).where(JourneyPendingEvent.message_id.in_(part))
            )

    # --- figures ------------------------------------------------------------------------------
    def enrollment_counts(self, journey_id: str) -> list[tuple[int, str, str, int]]:
        """(version, node, status, enrollments) of the journey."""
        rows = self.session.execute(
            select(_ENROLLMENT.c.version, _ENROLLMENT.c.node, _ENROLLMENT.c.status, func.count())
            .where(_ENROLLMENT.c.journey_id == journey_id)
            .group_by(_ENROLLMENT.c.version, _ENROLLMENT.c.node, _ENROLLMENT.c.status)
        )
        return [(int(v), str(n), str(s), int(c)) for v, n, s, c in rows]

    def transition_counts(self, journey_id: str) -> list[tuple[int, str, str, int]]:
        """(version, node, kind, transitions) of the journey."""
        rows = self.session.execute(
            select(_TRANSITION.c.version, _TRANSITION.c.node, _TRANSITION.c.kind, func.count())
            .where(_TRANSITION.c.journey_id == journey_id)
            .group_by(_TRANSITION.c.version, _TRANSITION.c.node, _TRANSITION.c.kind)
        )
        return [(int(v), str(n), str(k), int(c)) for v, n, k, c in rows]

    def transitions_of(
        self, journey_id: str, kinds: Collection[str] | None = None, version: int | None = None
    ) -> list[Row[Any]]:
        query = select(_TRANSITION).where(_TRANSITION.c.journey_id == journey_id)
        if kinds is not None:
            query = query.where(_TRANSITION.c.kind.in_(sorted(kinds)))
        if version is not None:
            query = query.where(_TRANSITION.c.version == version)
        return list(self.session.execute(query))

    def enrollments_of(self, journey_id: str, version: int | None = None) -> list[Row[Any]]:
        query = select(
            _ENROLLMENT.c.id, _ENROLLMENT.c.status, _ENROLLMENT.c.node, _ENROLLMENT.c.version
        ).where(_ENROLLMENT.c.journey_id == journey_id)
        if version is not None:
            query = query.where(_ENROLLMENT.c.version == version)
        return list(self.session.execute(query))

    def waiting_counts(self, journey_id: str, version: int) -> dict[str, int]:
        rows = self.session.execute(
            select(_ENROLLMENT.c.node, func.count())
            .where(
                and_(
                    _ENROLLMENT.c.journey_id == journey_id,
                    _ENROLLMENT.c.version == version,
                    _ENROLLMENT.c.status == _WAITING,
                )
            )
            .group_by(_ENROLLMENT.c.node)
        )
        return {str(node): int(n) for node, n in rows}
