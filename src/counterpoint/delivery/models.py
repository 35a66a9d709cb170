"""Tables of delivery: the transactional outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["Outbound", "OutboxEntry"]


class OutboxEntry(Base):
    """One outbound action, written in the transaction of the change that caused it and
    delivered by a worker. ``idempotency_key`` is unique: enqueueing the same action twice
    stores it once, and adapters hand the key on to the medium.

    Status: ``pending`` (due at ``next_attempt_at``) → ``sending`` (claimed under a lease)
    → ``sent`` | ``refused`` (the guard said no at delivery time) | ``dead`` (permanent
    failure, retries exhausted, or an outcome unknown after a crash on a channel that cannot
    de-duplicate; replayable) | ``cancelled``.
    """

    __tablename__ = "outbox_entry"
    __table_args__ = (Index("ix_outbox_entry_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(32))
    adapter: Mapped[str | None] = mapped_column(String(64))
    hcp_id: Mapped[str] = mapped_column(String(40), index=True)
    content_id: Mapped[str | None] = mapped_column(String(40), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    brand: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(32))  # who initiated; None: the system
    requested_by: Mapped[str] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(300), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


@dataclass(frozen=True, slots=True)
class Outbound:
    """An outbox entry as the worker and the composer read it: a plain value (a claimed
    pass of entries carries no ORM state), or the action a preview would send."""

    id: str
    idempotency_key: str
    channel: str
    hcp_id: str
    content_id: str | None
    purpose: str
    brand: str | None
    role: str | None
    requested_by: str
    context: dict[str, Any]
    created_at: dt.datetime
    adapter: str | None = None
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
