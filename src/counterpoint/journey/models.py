"""Tables of journeys: definitions and their published versions, each HCP's enrollment, the
transitions analytics counts, and the events a step writes to the log.

One transaction carries a step: the enrollment's new state, its transitions, its outbox
entries (``delivery.outbox.enqueue``) and its pending log events. Replaying a step after a
crash rebuilds the same ids and keys, so nothing is lost or done twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Identity, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = [
    "Journey",
    "JourneyEnrollment",
    "JourneyPendingEvent",
    "JourneyTransition",
    "JourneyVersion",
]


class Journey(Base):
    """A journey and its life cycle: ``active`` (running its current version), ``paused``
    (timers and events wait; nothing is lost), ``stopped`` (final: every enrollment exits)."""

    __tablename__ = "journey"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    brand: Mapped[str] = mapped_column(String(100), index=True)
    markets: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    current_version: Mapped[int] = mapped_column(Integer)
    example: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class JourneyVersion(Base):
    """One published version: the document exactly as published, never changed."""

    __tablename__ = "journey_version"

    journey_id: Mapped[str] = mapped_column(ForeignKey("journey.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    """The YAML as written (line numbers of problems refer to it)."""
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    published_by: Mapped[str] = mapped_column(String(200))


class JourneyEnrollment(Base):
    """One HCP's pass through one journey version (``engine.Enrollment`` stored).

    ``id`` is ``<journey>:<hcp>:<n>`` with n the HCP's n-th entry into the journey, so
    entering twice by replay or by two workers is refused by the primary key.

    A step claims its enrollment and stores its result in one transaction (a row lock with
    ``SKIP LOCKED`` on PostgreSQL, a conditional update on the unchanged ``visits`` on
    SQLite), so there is no lease to expire: a crash rolls the claim back with the step.

    Two indexes, no more: every step rewrites the row, and each index on a column a step
    changes costs a delete and an insert per step. ``(journey_id, status, wake_at)`` serves
    the timers of one journey (read per running journey), its waiting HCPs and the counts
    per node; ``(journey_id, hcp_id)`` serves re-entry and the events of HCPs, looked up in
    the journeys that listen. Journey first in both: a journey's audience entering is
    appended to each index, not scattered across the HCPs of every other journey.
    """

    __tablename__ = "journey_enrollment"
    __table_args__ = (
        Index("ix_journey_enrollment_due", "journey_id", "status", "wake_at"),
        Index("ix_journey_enrollment_hcp", "journey_id", "hcp_id"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journey.id"))
    version: Mapped[int] = mapped_column(Integer)
    hcp_id: Mapped[str] = mapped_column(String(40))
    entry_number: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    node_entered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    wake_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    arm: Mapped[str | None] = mapped_column(String(100))
    visits: Mapped[int] = mapped_column(Integer, default=0)
    exit_reason: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class JourneyTransition(Base):
    """What happened to an enrollment at one node visit: ``entered``, ``sent``,
    ``task``, ``refused`` (with the guard's codes), ``goal``, ``updated``, ``exited`` /
    ``completed``, ``moved``. The read model of journey analytics (per stage and touchpoint).

    An append-only log keyed by its sequence (on SQLite the row id itself): one index to
    write per row besides the table, as a step writes a row per effect. A step's rows are
    written only by the transaction that moved the enrollment from the state it read, so a
    replayed step cannot add them twice; the crash test counts them."""

    __tablename__ = "journey_transition"
    __table_args__ = (Index("ix_journey_transition_journey", "journey_id", "version", "kind"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    enrollment_id: Mapped[str] = mapped_column(String(200))
    visit: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    journey_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    hcp_id: Mapped[str] = mapped_column(String(40))
    node: Mapped[str] = mapped_column(String(100))
    touchpoint: Mapped[str | None] = mapped_column(String(100))
    stage: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class JourneyPendingEvent(Base):
    """A log event a step produced (an attribute update, a goal), stored in the step's
    transaction and appended to the event log afterwards with its deterministic message id
    (a repeat is a duplicate the log drops), then deleted."""

    __tablename__ = "journey_pending_event"

    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
