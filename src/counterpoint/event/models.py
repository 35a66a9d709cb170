"""Operational tables of ingestion: write keys and consumer checkpoints."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Identity, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["ConsumerCheckpoint", "EventLogRow", "QuarantineRow", "WriteKey"]


class WriteKey(Base):
    """A source allowed to send events. Only a hash of the key is stored."""

    __tablename__ = "write_key"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ConsumerCheckpoint(Base):
    """How far a consumer of the event log has applied it (committed with its effects)."""

    __tablename__ = "consumer_checkpoint"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)


# The event log and its quarantine, as tables of the server deployment (PostgreSQL). The
# embedded deployment keeps them in DuckDB instead (see duckdb_log.py); migrations create
# these two only on PostgreSQL (``info["store"]``).
_LOG_STORE = {"store": "event_log"}


class EventLogRow(Base):
    __tablename__ = "event_log"
    __table_args__ = (
        Index("ix_event_log_subject", "subject", "occurred_at"),
        {"info": _LOG_STORE},
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(32))
    event_name: Mapped[str | None] = mapped_column(String(200))
    anonymous_id: Mapped[str | None] = mapped_column(String(300))
    brand: Mapped[str | None] = mapped_column(String(100))
    content_id: Mapped[str | None] = mapped_column(String(200))
    slide: Mapped[str | None] = mapped_column(String(100))
    actor_type: Mapped[str | None] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(200))
    function: Mapped[str | None] = mapped_column(String(16))
    market: Mapped[str | None] = mapped_column(String(2))
    payload: Mapped[str] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean)


class QuarantineRow(Base):
    __tablename__ = "quarantine"
    __table_args__ = ({"info": _LOG_STORE},)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(200))
    reason_code: Mapped[str] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(Text)
