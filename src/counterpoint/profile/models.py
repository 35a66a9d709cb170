"""Tables of the customer record: profiles, identities, identity evidence, engagement.

Everything that describes a person attaches to an *identifier* (``npi:…``, ``anon:…``), and
``identity.hcp_id`` says which profile an identifier belongs to now. Merging and unmerging
move identifiers, and with them events, attributes, affiliations and engagement.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = [
    "Affiliation",
    "AttributeObservation",
    "EngagementContent",
    "EngagementDay",
    "EngagementLast",
    "Hco",
    "Hcp",
    "Identity",
    "IdentityObservation",
    "IdentityObservationMember",
    "IdentitySeparation",
    "MergeRecord",
    "ProfileOrigin",
]


class Hcp(Base):
    """One profile: a known HCP, or an anonymous visitor not yet identified."""

    __tablename__ = "hcp"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="hcp")  # hcp | anonymous
    master_data: Mapped[bool] = mapped_column(Boolean, default=False)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(50))
    specialty: Mapped[str | None] = mapped_column(String(64))
    market: Mapped[str | None] = mapped_column(String(2), index=True)
    territory: Mapped[str | None] = mapped_column(String(64), index=True)
    potential_decile: Mapped[int | None] = mapped_column(Integer)
    segments: Mapped[list[str]] = mapped_column(JSON, default=list)
    persona: Mapped[str | None] = mapped_column(String(64))
    adoption_stage: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    preferred_language: Mapped[str | None] = mapped_column(String(8))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ProfileOrigin(Base):
    """Every profile id ever issued, with the identifier it was made for. Kept by a rebuild,
    so an id a user or system holds keeps leading to that person's current profile."""

    __tablename__ = "profile_origin"

    hcp_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(300), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Identity(Base):
    """Which profile an identifier belongs to now."""

    __tablename__ = "identity"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    hcp_id: Mapped[str] = mapped_column(ForeignKey("hcp.id"), index=True)
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class IdentityObservation(Base):
    """Evidence that identifiers belong together (an identify, alias or master-data row)."""

    __tablename__ = "identity_observation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    identifiers: Mapped[list[str]] = mapped_column(JSON)
    observed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    seq: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(32))


class IdentityObservationMember(Base):
    __tablename__ = "identity_observation_member"

    observation_id: Mapped[int] = mapped_column(
        ForeignKey("identity_observation.id"), primary_key=True
    )
    identifier: Mapped[str] = mapped_column(String(300), primary_key=True, index=True)


class IdentitySeparation(Base):
    """A manual unmerge: these two groups of identifiers must never share a profile."""

    __tablename__ = "identity_separation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    left: Mapped[list[str]] = mapped_column(JSON)
    right: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(200))


class IdentitySeparationMember(Base):
    __tablename__ = "identity_separation_member"

    separation_id: Mapped[int] = mapped_column(
        ForeignKey("identity_separation.id"), primary_key=True
    )
    identifier: Mapped[str] = mapped_column(String(300), primary_key=True, index=True)


class MergeRecord(Base):
    """Every merge and split of profiles, with what moved, so it can be explained and undone."""

    __tablename__ = "merge_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # merge | split
    survivor: Mapped[str] = mapped_column(String(40), index=True)
    other: Mapped[str] = mapped_column(String(40), index=True)
    identifiers: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    by: Mapped[str] = mapped_column(String(200))


class AttributeObservation(Base):
    """The latest value of one attribute as one source stated it for one identifier."""

    __tablename__ = "attribute_observation"

    identifier: Mapped[str] = mapped_column(String(300), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    observed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    seq: Mapped[int] = mapped_column(BigInteger)


class Hco(Base):
    __tablename__ = "hco"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))
    market: Mapped[str] = mapped_column(String(2))
    city: Mapped[str | None] = mapped_column(String(200))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Affiliation(Base):
    __tablename__ = "affiliation"

    identifier: Mapped[str] = mapped_column(String(300), primary_key=True)
    hco_id: Mapped[str] = mapped_column(ForeignKey("hco.id"), primary_key=True)
    role: Mapped[str | None] = mapped_column(String(64))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)


class EngagementDay(Base):
    """Daily counts of events per identifier, channel and action (kept 400 days)."""

    __tablename__ = "engagement_day"

    identifier: Mapped[str] = mapped_column(String(300), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    function: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class EngagementLast(Base):
    """The latest event per identifier and channel."""

    __tablename__ = "engagement_last"

    identifier: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_action: Mapped[str] = mapped_column(String(32))


class EngagementContent(Base):
    """Content and topics an identifier engaged with (engagement actions only)."""

    __tablename__ = "engagement_content"

    identifier: Mapped[str] = mapped_column(String(300), primary_key=True)
    content_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    brand: Mapped[str | None] = mapped_column(String(100))
    count: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


Index("ix_engagement_day_day", EngagementDay.day)
