"""Tables of erasure: one row per erased person, and the fingerprints that keep them erased."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["ErasedIdentifier", "Erasure"]


class Erasure(Base):
    """One erased person: the pseudonym that replaced them, when, by whom, and the audit
    record that tells why (the reason is kept only in the audit trail)."""

    __tablename__ = "erasure"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True)
    erased_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    erased_by: Mapped[str] = mapped_column(String(200))
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    events_redacted: Mapped[int] = mapped_column(BigInteger, default=0)


class ErasedIdentifier(Base):
    """HMAC-SHA256 (under the deployment's secret key) of one identifier key or profile id of
    an erased person. The identifier itself is not stored."""

    __tablename__ = "erased_identifier"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    erasure_id: Mapped[int] = mapped_column(ForeignKey("erasure.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
