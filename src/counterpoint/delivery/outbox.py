"""The transactional outbox: store an outbound action with the change that caused it.

``enqueue(session, action)`` adds the entry inside the caller's transaction (a journey step,
a rep's send, a consent confirmation…): if the transaction rolls back, nothing is sent; if
it commits, the delivery worker will deliver it. The idempotency key is unique, so the same
action enqueued twice (a retried request, a replayed journey step) is stored once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from counterpoint.consent.ledger import Purpose
from counterpoint.delivery.models import OutboxEntry
from counterpoint.delivery.retry import Status
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Role

__all__ = ["OutboundAction", "enqueue", "entry_dict"]

MAX_KEY = 200


@dataclass(frozen=True, slots=True)
class OutboundAction:
    """What to send: approved content (``content_id``) to one HCP on one channel.

    ``role`` is the role that initiated it (None: automated orchestration, acting as the
    system); the guard judges the send as that role, now and again at delivery time.
    ``context`` carries what rendering needs beyond the HCP (``rep``: the sending user's
    name; ``event``: event details) and whatever the cause wants to find again (journey,
    step, campaign).
    """

    idempotency_key: str
    hcp_id: str
    channel: Channel
    purpose: Purpose
    requested_by: str
    content_id: str | None = None
    brand: str | None = None
    role: Role | None = None
    not_before: dt.datetime | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


def enqueue(session: Session, action: OutboundAction, now: dt.datetime) -> tuple[OutboxEntry, bool]:
    """Add ``action`` to the outbox in ``session``'s transaction. Returns the entry and
    whether it is new (False: an entry with this idempotency key already exists)."""
    key = action.idempotency_key.strip()
    if not key or len(key) > MAX_KEY:
        raise ValidationFailedError(
            "the idempotency key must have 1 to 200 characters",
            field="idempotency_key",
            fix="use a stable key naming the cause, e.g. journey:step:hcp",
        )
    existing = session.scalar(select(OutboxEntry).where(OutboxEntry.idempotency_key == key))
    if existing is not None:
        return existing, False
    entry = OutboxEntry(
        id=new_id("out"),
        idempotency_key=key,
        channel=action.channel.value,
        adapter=None,
        hcp_id=action.hcp_id,
        content_id=action.content_id,
        purpose=action.purpose.value,
        brand=action.brand,
        role=action.role.value if action.role else None,
        requested_by=action.requested_by[:200],
        context=dict(action.context),
        status=Status.PENDING.value,
        attempts=0,
        next_attempt_at=max(action.not_before or now, now),
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    session.flush()
    return entry, True


def entry_dict(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "idempotency_key": entry.idempotency_key,
        "hcp_id": entry.hcp_id,
        "channel": entry.channel,
        "adapter": entry.adapter,
        "content_id": entry.content_id,
        "purpose": entry.purpose,
        "brand": entry.brand,
        "role": entry.role,
        "requested_by": entry.requested_by,
        "status": entry.status,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at.isoformat(),
        "error_code": entry.error_code,
        "last_error": entry.last_error,
        "provider_id": entry.provider_id,
        "created_at": entry.created_at.isoformat(),
        "sent_at": entry.sent_at.isoformat() if entry.sent_at else None,
    }
