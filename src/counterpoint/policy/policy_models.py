"""Tables of contact policy: policy versions, do-not-contact entries, touches, suppressions,
and the HCP's own contact preferences."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = [
    "ContactPolicyVersion",
    "ContactPreference",
    "DoNotContact",
    "Suppression",
    "TouchDayRow",
    "TouchLast",
]


class ContactPolicyVersion(Base):
    """Every version of a market's contact policy document; the newest one applies."""

    __tablename__ = "contact_policy_version"
    __table_args__ = (UniqueConstraint("market", "version"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    market: Mapped[str] = mapped_column(String(2), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)


class DoNotContact(Base):
    """An HCP not to be contacted on one channel, or on any (``channel`` = "all")."""

    __tablename__ = "do_not_contact"

    hcp_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(200))


class TouchDayRow(Base):
    """Touches per identifier, UTC day, channel and brand ("" for none), from the log."""

    __tablename__ = "touch_day"

    subject: Mapped[str] = mapped_column(String(300), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, index=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand: Mapped[str] = mapped_column(String(100), primary_key=True)
    touches: Mapped[int] = mapped_column(Integer)
    reported_touches: Mapped[int] = mapped_column(Integer)
    reported_minutes: Mapped[float] = mapped_column(Float)
    promotional: Mapped[int] = mapped_column(Integer)  # of ``touches``: function commercial


class TouchLast(Base):
    """The last touch per identifier and channel (minimum gaps)."""

    __tablename__ = "touch_last"

    subject: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Suppression(Base):
    """A consent channel suppressed for an identifier after a hard bounce, until lifted."""

    __tablename__ = "contact_suppression"

    subject: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)  # a consent channel
    since: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str] = mapped_column(String(200))
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    lift_reason: Mapped[str | None] = mapped_column(Text)


class ContactPreference(Base):
    """The HCP's own limit on promotional contacts in one market (current value; every
    change is in the audit trail). ``max_promotional_per_month`` None: no limit of its own."""

    __tablename__ = "contact_preference"

    hcp_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    market: Mapped[str] = mapped_column(String(2), primary_key=True)
    max_promotional_per_month: Mapped[int | None] = mapped_column(Integer)
    set_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(32))
    set_by: Mapped[str] = mapped_column(String(200))
