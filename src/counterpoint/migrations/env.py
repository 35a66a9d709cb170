"""Alembic environment: runs against the connection handed over by ``counterpoint.kit.migrate``."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

import counterpoint.models  # noqa: F401 - registers every table on Base.metadata
from counterpoint.kit.db import Base


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """The event-log tables exist only on PostgreSQL (DuckDB holds them when embedded)."""
    if type_ == "table" and getattr(obj, "info", {}).get("store") == "event_log":
        return bool(context.get_context().dialect.name == "postgresql")
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `counterpoint db upgrade`")
_run(connection)
