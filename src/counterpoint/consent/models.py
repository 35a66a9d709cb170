"""The consent ledger table: append-only, one row per record, never updated."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Identity, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["ConsentRow"]


class ConsentRow(Base):
    __tablename__ = "consent_record"
    __table_args__ = (
        Index("ix_consent_record_hcp", "hcp_id", "seq"),
        Index("ix_consent_record_subject", "subject", "seq"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    # The HCP the record is about: a profile id, and/or the identifier it arrived with
    # (``email:…`` from an event or a link), so that merges keep the record with the person.
    hcp_id: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(32))
    market: Mapped[str] = mapped_column(String(2))
    brand: Mapped[str | None] = mapped_column(String(100))
    content_type: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    effective_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(32))
    captured_by: Mapped[str] = mapped_column(String(200))
    wording_version: Mapped[str | None] = mapped_column(String(64))
    wording_hash: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    evidence: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    # Synthetic (generated) data, never a real HCP's consent: see docs/consent.md.
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    # Idempotency: a message id, a link's nonce, an import row; a second record with the same
    # key is the same record (retries and replays change nothing).
    dedupe_key: Mapped[str | None] = mapped_column(String(300), unique=True)
