"""Tables of internal channels: the rep inbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from counterpoint.kit.db import Base, UtcDateTime

__all__ = ["RepInboxItem"]


class RepInboxItem(Base):
    """A task or message for a field user (a rep-triggered e-mail to review, a suggested
    call). Its id is the outbox entry's idempotency key, so a retry never adds a second.

    ``recipient`` is the user's name; a user reads only their own items, newest first
    (the index ``ix_rep_inbox_item_inbox`` serves that page). ``details`` holds the
    message's metadata (journey, reason, due date …) without the ``rep`` key.
    """

    __tablename__ = "rep_inbox_item"
    __table_args__ = (Index("ix_rep_inbox_item_inbox", "recipient", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(200))  # user name
    hcp_id: Mapped[str] = mapped_column(String(40), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    content_id: Mapped[str | None] = mapped_column(String(40))
    approval_code: Mapped[str | None] = mapped_column(String(100))
    brand: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
