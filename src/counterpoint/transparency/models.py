"""The transfer-of-value ledger: one row per payment or benefit given to an HCP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Date, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["TransferRow"]


class TransferRow(Base):
    __tablename__ = "transfer_of_value"
    __table_args__ = (Index("ix_transfer_of_value_year", "market", "paid_on"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hcp_id: Mapped[str] = mapped_column(String(40), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    """The source system's id of the payment: recording it again changes nothing."""
    message_id: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    nature: Mapped[str] = mapped_column(String(40))
    form: Mapped[str] = mapped_column(String(32))
    paid_on: Mapped[dt.date] = mapped_column(Date)
    brand: Mapped[str | None] = mapped_column(String(100))
    product: Mapped[str | None] = mapped_column(String(200))
    market: Mapped[str] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(Text)
    disclosure_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    """The HCP agreed to individual (named) disclosure of this transfer (EFPIA)."""
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    recorded_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    audit_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    """The audit record of the recording."""
