"""Tables of the content library: items (assets, variants, fragments), MLR reviews with their
electronic signatures, and the library's generation counter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["ContentGeneration", "ContentItem", "ContentReview"]


class ContentItem(Base):
    """One piece of content: an asset (or a local variant of one, ``parent_id`` naming its
    global parent) or a reusable fragment (header, safety information, footer).

    ``content_hash`` covers everything a reviewer approves: the body, the metadata, the
    hashes of the fragments it includes and of its global parent. Signatures bind to it (with
    the approval terms), so any edit, to the item or to what it is built from, invalidates
    them. ``state`` follows ``content.workflow``.
    """

    __tablename__ = "content_item"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # asset | fragment
    asset_type: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    brand: Mapped[str | None] = mapped_column(String(100), index=True)
    therapeutic_area: Mapped[str | None] = mapped_column(String(100))
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    journey_stage: Mapped[str | None] = mapped_column(String(32))
    function: Mapped[str] = mapped_column(String(16))  # promotional | medical | educational
    markets: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    claims: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    minutes: Mapped[float] = mapped_column(Float)
    persona: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("content_item.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fragment_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(24), index=True)
    review_note: Mapped[str | None] = mapped_column(Text)  # why it went back to review
    author_id: Mapped[str] = mapped_column(String(40))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # approval terms, proposed at submission and signed with the content
    job_code: Mapped[str | None] = mapped_column(String(100), index=True)
    approval_markets: Mapped[list[str]] = mapped_column(JSON, default=list)
    approval_channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    valid_from: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    approved_hash: Mapped[str | None] = mapped_column(String(64))  # the signed manifest
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)


class ContentReview(Base):
    """One reviewer's decision on one version. An approval is an electronic signature: the
    reviewer re-authenticated, stated its ``meaning``, and ``manifest_hash`` binds it to the
    exact content and approval terms signed."""

    __tablename__ = "content_review"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("content_item.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    manifest_hash: Mapped[str] = mapped_column(String(64))
    discipline: Mapped[str] = mapped_column(String(16))  # medical | legal | regulatory
    decision: Mapped[str] = mapped_column(String(24))  # approved | changes_requested | rejected
    comments: Mapped[str | None] = mapped_column(Text)
    meaning: Mapped[str | None] = mapped_column(String(200))
    signed: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewer_id: Mapped[str] = mapped_column(String(40))
    reviewer: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)


class ContentGeneration(Base):
    """A counter bumped in every transaction that changes what may be sent (approval,
    withdrawal, expiry, edits). Readers keep an in-memory index of approved content and
    reload it when the counter moves: one tiny query keeps them exact."""

    __tablename__ = "content_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)
