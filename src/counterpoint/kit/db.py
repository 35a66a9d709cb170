"""Database engine and sessions for the operational store (SQLite embedded, PostgreSQL server).

The request or task boundary commits; repositories never do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Reader",
    "UtcDateTime",
    "connection_of",
    "fast_update",
    "fast_upsert",
    "make_engine",
    "make_sessionmaker",
    "transaction",
]

Reader = Session | Connection
"""What a hot-path read runs on: an ORM session, or a bare Core connection (cheaper)."""


def connection_of(reader: Reader) -> Connection:
    return reader.connection() if isinstance(reader, Session) else reader


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def upsert(
    session: Session,
    table: Any,
    rows: list[dict[str, Any]],
    *,
    keys: list[str],
    update: dict[str, Any] | None = None,
    where: Any = None,
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE/NOTHING, on SQLite and PostgreSQL alike.

    ``update`` maps a column to a value or to a callable taking the insert statement (for
    ``stmt.excluded``), or is None for DO NOTHING; ``where`` (a callable likewise) limits the
    update to rows for which it holds.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    if update is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    else:
        values = {k: (v(stmt) if callable(v) else v) for k, v in update.items()}
        condition = where(stmt) if where is not None else None
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=values, where=condition)
    session.execute(stmt, rows)


def fast_upsert(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    keys: Sequence[str],
    set_sql: str | None,
    where_sql: str | None = None,
) -> None:
    """A bulk upsert through the driver's ``executemany``, without per-row compilation.

    ``set_sql`` and ``where_sql`` are SQL fragments over ``excluded`` and ``table`` written
    once by the caller (the same text is valid on SQLite and PostgreSQL); ``set_sql=None``
    keeps the stored row (``DO NOTHING``). Values are bound, never interpolated.
    """
    if not rows:
        return
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) "
    )
    if set_sql is None:
        if where_sql:
            raise ValueError("where_sql limits an update; DO NOTHING has none")
        sql += "DO NOTHING"
    else:
        sql += f"DO UPDATE SET {set_sql}"
    if where_sql:
        sql += f" WHERE {where_sql}"
    _executemany(conn, sql, rows)


def fast_update(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    key: str,
) -> None:
    """``UPDATE table SET columns... WHERE key = ?`` for many rows through the driver's
    ``executemany``. Each row holds the new values in ``columns`` order, then the key."""
    if not rows:
        return
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    assignments = ", ".join(f"{c} = {mark}" for c in columns)
    _executemany(conn, f"UPDATE {table} SET {assignments} WHERE {key} = {mark}", rows)


def _executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if conn.dialect.name == "sqlite" and (temporal := _temporal_columns(rows)):
        # column by column: one converter per column, not per cell
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for i in temporal:
            columns[i] = [None if v is None else _sqlite_value(v) for v in columns[i]]
        rows = list(zip(*columns, strict=True))
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


def _temporal_columns(rows: Sequence[Sequence[Any]]) -> list[int]:
    """The columns holding dates or times, by their first value that is not None (a column's
    values share one type); only the columns whose first row is None are searched further."""
    if not rows:
        return []
    found = []
    for i, value in enumerate(rows[0]):
        if value is None:
            value = next((row[i] for row in rows if row[i] is not None), None)
        if isinstance(value, dt.date):
            found.append(i)
    return found


def _sqlite_value(value: Any) -> Any:
    """Datetimes as SQLAlchemy stores them on SQLite (naive UTC text), so both paths agree."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(" ", "microseconds")  # "%Y-%m-%d %H:%M:%S.%f", faster
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
