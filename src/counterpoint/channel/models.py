"""Tables of internal channels: the rep inbox."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["RepInboxItem"]


class RepInboxItem(Base):
    """A task or message for a field user (a rep-triggered e-mail to review, a suggested
    call). Its id is the outbox entry's idempotency key, so a retry never adds a second."""

    __tablename__ = "rep_inbox_item"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(200), index=True)  # user name
    hcp_id: Mapped[str] = mapped_column(String(40), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    content_id: Mapped[str | None] = mapped_column(String(40))
    approval_code: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
