"""The rep inbox: an internal channel whose messages are rows a field user reads in the app.

``RepInboxAdapter`` stores one ``RepInboxItem`` per message, addressed to the user named in
``metadata["rep"]``, all of a batch in one transaction; the row id is the idempotency key, so
a retry adds nothing. ``RepInbox`` is what the API serves: a user's own items, newest first,
and marking one done (audited). A user never sees or changes another user's items.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.channel.exports import REP_CHANNELS, rep_of
from counterpoint.channel.models import RepInboxItem
from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import transaction, upsert
from counterpoint.policy.audit import Actor, AuditTrail

__all__ = ["InboxPage", "RepInbox", "RepInboxAdapter", "RepInboxConfig"]

_LIMITS = {
    "idempotency_key": 200,
    "rep": 200,
    "hcp_id": 40,
    "subject": 500,
    "content_id": 40,
    "approval_code": 100,
    "brand": 100,
}
_IN_CHUNK = 500


class RepInboxConfig(AdapterConfig):
    """Nothing to configure: the inbox lives in the operational database."""


def _too_long(field: str, value: str | None) -> None:
    if value is not None and len(value) > _LIMITS[field]:
        raise PermanentDeliveryError(
            f"{field} is longer than {_LIMITS[field]} characters", code="bad_message"
        )


def inbox_row(message: OutboundMessage, now: dt.datetime) -> dict[str, Any]:
    """The ``rep_inbox_item`` row of ``message``; PermanentDeliveryError when it cannot be."""
    if message.channel not in REP_CHANNELS:
        raise PermanentDeliveryError(
            f"the rep_inbox adapter does not carry {message.channel}", code="channel"
        )
    rep = rep_of(message)
    _too_long("rep", rep)
    for field in ("idempotency_key", "hcp_id", "subject", "content_id", "approval_code", "brand"):
        _too_long(field, getattr(message, field))
    details = {k: v for k, v in message.metadata.items() if k != "rep"}
    try:
        details = json.loads(json.dumps(details, default=_iso)) if details else {}
    except (TypeError, ValueError) as exc:
        raise PermanentDeliveryError(
            f"metadata cannot be stored as JSON ({str(exc)[:120]})", code="bad_message"
        ) from None
    return {
        "id": message.idempotency_key,
        "recipient": rep,
        "hcp_id": message.hcp_id,
        "channel": message.channel.value,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "content_id": message.content_id,
        "approval_code": message.approval_code,
        "brand": message.brand,
        "details": details or None,
        "created_at": now,
        "read_at": None,
        "done_at": None,
    }


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not JSON")


class RepInboxAdapter:
    """Puts messages in field users' inboxes (one transaction per batch)."""

    name: ClassVar[str] = "rep_inbox"
    channels: ClassVar[frozenset[Channel]] = REP_CHANNELS
    idempotent: ClassVar[bool] = True
    Config: ClassVar[type[AdapterConfig]] = RepInboxConfig

    def __init__(self, config: RepInboxConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context

    def __repr__(self) -> str:
        return "RepInboxAdapter()"

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        now = self._context.clock.now()
        results: list[Receipt | DeliveryError | None] = [None] * len(messages)
        rows: dict[str, dict[str, Any]] = {}
        placed: list[tuple[int, str]] = []
        for i, message in enumerate(messages):
            try:
                row = inbox_row(message, now)
            except DeliveryError as exc:
                results[i] = exc
                continue
            rows.setdefault(row["id"], row)
            placed.append((i, row["id"]))
        try:
            existing = self._insert(rows)
        except SQLAlchemyError as exc:
            cause = type(getattr(exc, "orig", None) or exc).__name__
            for i, _ in placed:
                results[i] = TransientDeliveryError(
                    f"the rep inbox could not be written ({cause})", code="database"
                )
        else:
            first: set[str] = set()
            for i, key in placed:
                new = key not in existing and key not in first
                first.add(key)
                detail = None if new else "already in the inbox"
                results[i] = Receipt(provider_id=key, delivered=True, detail=detail)
        return [r for r in results if r is not None]

    def _insert(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """Insert the rows not there yet, in one transaction; returns the ids already there."""
        if not rows:
            return set()
        keys = list(rows)
        with transaction(self._context.sessions) as session:
            existing: set[str] = set()
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                existing.update(
                    session.scalars(select(RepInboxItem.id).where(RepInboxItem.id.in_(chunk)))
                )
            fresh = [row for key, row in rows.items() if key not in existing]
            upsert(session, RepInboxItem.__table__, fresh, keys=["id"])
        return existing

    def close(self) -> None:
        return None


# --- reading and working the inbox ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


Status = Literal["open", "done", "all"]


def item_dict(item: RepInboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "hcp_id": item.hcp_id,
        "channel": item.channel,
        "subject": item.subject,
        "text": item.text,
        "html": item.html,
        "content_id": item.content_id,
        "approval_code": item.approval_code,
        "brand": item.brand,
        "details": item.details or {},
        "created_at": item.created_at.isoformat(),
        "read_at": item.read_at.isoformat() if item.read_at else None,
        "done_at": item.done_at.isoformat() if item.done_at else None,
    }


def encode_cursor(item: RepInboxItem) -> str:
    raw = json.dumps([item.created_at.isoformat(), item.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The (created_at, id) a page continues after; ValidationFailedError naming ``cursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, item_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = dt.datetime.fromisoformat(at_text)
        if at.tzinfo is None or not isinstance(item_id, str) or len(item_id) > 200:
            raise ValueError("cursor out of range")
        return at.astimezone(dt.UTC), item_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValidationFailedError(
            "the cursor is not one this API returned",
            field="cursor",
            fix="pass next_cursor from the previous page unchanged",
        ) from None


class RepInbox:
    """A field user's own inbox: list newest first, mark an item done."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, audit: AuditTrail) -> None:
        self._sessions = sessions
        self._clock = clock
        self._audit = audit

    def items(
        self, user: str, *, status: Status = "all", cursor: str | None = None, limit: int = 50
    ) -> InboxPage:
        query = select(RepInboxItem).where(RepInboxItem.recipient == user)
        if status == "open":
            query = query.where(RepInboxItem.done_at.is_(None))
        elif status == "done":
            query = query.where(RepInboxItem.done_at.is_not(None))
        if cursor:
            at, item_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    RepInboxItem.created_at < at,
                    and_(RepInboxItem.created_at == at, RepInboxItem.id < item_id),
                )
            )
        query = query.order_by(RepInboxItem.created_at.desc(), RepInboxItem.id.desc())
        with self._sessions() as session:
            found = list(session.scalars(query.limit(limit + 1)))
        page = found[:limit]
        more = len(found) > limit
        return InboxPage([item_dict(i) for i in page], encode_cursor(page[-1]) if more else None)

    def mark_done(self, user: str, item_id: str, actor: Actor) -> dict[str, Any]:
        """Mark the user's item done (again: unchanged, no second audit record)."""
        with transaction(self._sessions) as session:
            item = session.get(RepInboxItem, item_id) if len(item_id) <= 200 else None
            if item is None or item.recipient != user:
                raise NotFoundError(
                    "there is no such item in your inbox",
                    field="item_id",
                    fix="take the id from your inbox (GET /api/v1/rep-inbox)",
                )
            now = self._clock.now()
            changed = session.execute(
                update(RepInboxItem)
                .where(RepInboxItem.id == item_id, RepInboxItem.done_at.is_(None))
                .values(done_at=now)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount == 1:  # type: ignore[attr-defined]
                self._audit.record(
                    session,
                    actor,
                    "rep_inbox.done",
                    "rep_inbox_item",
                    item_id,
                    before={"done_at": None},
                    after={"done_at": now.isoformat()},
                )
                session.refresh(item)
            return item_dict(item)
