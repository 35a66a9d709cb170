"""Delivery receipts from external media: what happened after the medium accepted a message.

An SMS gateway (or any adapter's provider) reports, later, that a message it accepted was
delivered to the handset, or failed. The receipt names the provider's message id (the
``provider_id`` the adapter returned); the outbox entry with that id gets its delivery event:
``delivered``, or ``bounced`` (``hard`` when the number or address itself is bad, which
suppresses it for the HCP; ``soft`` otherwise). A repeated receipt is a no-op (the event id is
derived from the entry and the status).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import Purpose
from counterpoint.delivery.models import OutboxEntry
from counterpoint.errors import NotFoundError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.profile.service import ProfileService

__all__ = ["HARD_FAILURES", "DeliveryReceipts", "ReceiptStatus"]


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # not delivered; the number may work later (handset off, network)
    UNDELIVERABLE = "undeliverable"  # the number or address itself is bad


HARD_FAILURES = frozenset({"invalid_number", "unknown_subscriber", "unallocated_number"})
"""Error codes of a ``failed`` receipt that mean the number is bad (a hard bounce)."""


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    outbox_id: str
    event: str  # delivered | bounced
    bounce_type: str | None
    recorded: bool  # False: the same receipt came before


class DeliveryReceipts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        log: EventLog,
        clock: Clock,
        *,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._log = log
        self._clock = clock
        self._wake = wake

    def record(
        self,
        provider_id: str,
        status: ReceiptStatus,
        *,
        channel: Channel,
        error: str | None = None,
        at: dt.datetime | None = None,
    ) -> ReceiptOutcome:
        with self._sessions() as session:
            entry = session.scalar(
                select(OutboxEntry).where(
                    OutboxEntry.provider_id == provider_id, OutboxEntry.channel == channel.value
                )
            )
        if entry is None:
            raise NotFoundError(
                f"no {channel.value} message with the provider id {provider_id[:100]!r}",
                field="id",
                fix="send the id the gateway answered when it accepted the message",
            )
        hard = status is ReceiptStatus.UNDELIVERABLE or (error or "") in HARD_FAILURES
        delivered = status is ReceiptStatus.DELIVERED
        name = "delivered" if delivered else "bounced"
        bounce_type = None if delivered else ("hard" if hard else "soft")
        recipients = self._profiles.recipients([entry.hcp_id])
        recipient = recipients.get(entry.hcp_id)
        subject = recipient.ref.subject if recipient else None
        if recipient is None or subject is None:  # erased since: nothing to record about them
            return ReceiptOutcome(entry.id, name, bounce_type, False)
        now = self._clock.now()
        properties: dict[str, object] = {
            "outbox_id": entry.id,
            "hcp_id": recipient.ref.id,
            "provider_id": provider_id,
            "purpose": entry.purpose,
        }
        if not delivered:
            properties.update(bounce_type=bounce_type, code=error, reason=f"receipt: {status}")
        event = LogEvent(
            message_id=f"delivery:{entry.id}:receipt:{name}",
            kind=EventKind.TRACK,
            subject=subject,
            occurred_at=at or now,
            received_at=now,
            source="delivery",
            channel=channel,
            action=Action.DELIVERED if delivered else Action.BOUNCED,
            event_name=f"{channel.value} {name}",
            brand=entry.brand,
            content_id=entry.content_id,
            actor_type=ActorType.SYSTEM,
            actor_id="system:delivery-receipts",
            function=Function.MEDICAL
            if entry.purpose == Purpose.MEDICAL.value
            else Function.COMMERCIAL,
            market=recipient.ref.market,
            synthetic=recipient.synthetic,
            payload={"properties": properties},
        )
        result = self._log.append([event])
        if self._wake is not None:
            self._wake()
        return ReceiptOutcome(entry.id, name, bounce_type, result.accepted > 0)
