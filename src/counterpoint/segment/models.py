"""Tables of segments: the definitions, their current members, and the membership events
waiting to reach the event log.

A membership change and its events are written in one transaction (``segment_member`` and
``segment_pending_event``); the events are appended to the log afterwards under their
deterministic message ids (a repeat is a duplicate the log drops), then deleted. So a crash
at any point loses no entry or exit and writes none twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["Segment", "SegmentMember", "SegmentPendingEvent"]


class Segment(Base):
    """A named condition over HCPs (``counterpoint.segment.conditions``), versioned.

    A deleted segment stays as a tombstone (``deleted_at``): creating one of the same name
    again continues its version and generation, so message ids of membership events are
    never reused.
    """

    __tablename__ = "segment"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    """How many membership changes were committed (the ``n`` of membership message ids)."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    refreshed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SegmentMember(Base):
    """An HCP in a segment now, since the evaluation that let it in."""

    __tablename__ = "segment_member"

    segment_id: Mapped[str] = mapped_column(ForeignKey("segment.id"), primary_key=True)
    hcp_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    since: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SegmentPendingEvent(Base):
    """A ``segment_entered`` / ``segment_left`` event committed with the membership change
    it describes, waiting to be appended to the event log."""

    __tablename__ = "segment_pending_event"

    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    market: Mapped[str | None] = mapped_column(String(2))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
