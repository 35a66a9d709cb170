"""Sending approved content: to one HCP or a segment, through the guard and the outbox.

``send`` asks the guard first (as the caller's role, within the caller's scope): refused
HCPs are reported with every reason (and the refusal recorded as an event); allowed ones are
enqueued in one transaction with an audit record of the request. HCPs refused only for
reasons time will lift (quiet hours, a minimum gap, a cap whose window rolls on) are enqueued
too and reported as ``deferred``: the delivery worker asks the guard again at delivery time
and holds them until it allows them (or refuses them after ``RetryPolicy.max_defer``).
``outbox``, ``replay`` and ``cancel`` are the operations view: what is waiting, what failed
and why, and putting a dead letter back in line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.channel.base import PermanentDeliveryError
from counterpoint.consent.ledger import Purpose
from counterpoint.content.models import ContentItem
from counterpoint.delivery.compose import Composer
from counterpoint.delivery.models import Outbound, OutboxEntry
from counterpoint.delivery.outbox import OutboundAction, enqueue, entry_dict
from counterpoint.delivery.retry import DEFERRABLE, Status
from counterpoint.errors import ConflictError, NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import TERRITORY_ROLES, Principal
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.policy.guard_service import CheckRequest, GuardService
from counterpoint.profile.service import ProfileService, SegmentFilter

__all__ = ["DeliveryService", "SendReport", "SendRequest"]

MAX_RECIPIENTS = 100_000
_PURPOSE = {
    "promotional": Purpose.PROMOTIONAL,
    "medical": Purpose.MEDICAL,
    "educational": Purpose.EDUCATIONAL,
}


@dataclass(frozen=True, slots=True)
class SendRequest:
    content: str  # id or code of an approved asset
    channel: Channel
    hcp_ids: Sequence[str] = ()
    segment: SegmentFilter | None = None
    request_key: str | None = None  # the client's idempotency key for this request
    not_before: dt.datetime | None = None
    context: Mapping[str, Any] = field(default_factory=dict)  # event details, journey …


@dataclass
class SendReport:
    content_id: str
    channel: str
    queued: list[dict[str, str]] = field(default_factory=list)
    already_queued: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[dict[str, Any]] = field(default_factory=list)
    """Queued HCPs the guard refuses now only for timing: their reasons, until delivery."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "content_id": self.content_id,
            "channel": self.channel,
            "queued": self.queued,
            "already_queued": self.already_queued,
            "refused": self.refused,
            "deferred": self.deferred,
            "counts": {
                "queued": len(self.queued),
                "already_queued": len(self.already_queued),
                "refused": len(self.refused),
                "deferred": len(self.deferred),
            },
        }


class DeliveryService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        guard: GuardService,
        audit: AuditTrail,
        clock: Clock,
        composer: Composer,
        *,
        wake: Any = None,
    ) -> None:
        self._composer = composer
        self._sessions = sessions
        self._profiles = profiles
        self._guard = guard
        self._audit = audit
        self._clock = clock
        self._wake = wake

    # --- sending --------------------------------------------------------------------------
    def _content(self, session: Session, key: str) -> ContentItem:
        item = session.scalar(
            select(ContentItem).where(or_(ContentItem.id == key, ContentItem.code == key))
        )
        if item is None or item.kind != "asset":
            raise NotFoundError(
                f"no asset {key!r} in the content library",
                field="content",
                fix="name an asset by id or code: counterpoint content list",
            )
        return item

    def send(
        self, request: SendRequest, *, principal: Principal | None, actor: Actor
    ) -> SendReport:
        """Guard, then enqueue: see the module doc. ``principal`` None: the system sends
        (automated orchestration rules apply)."""
        now = self._clock.now()
        with self._sessions() as session:
            item = self._content(session, request.content)
            content_id, function, brand = item.id, item.function, item.brand
        purpose = _PURPOSE.get(function)
        if purpose is None:
            raise ValidationFailedError(
                f"the asset's function {function!r} has no purpose",
                field="content",
                fix="fix the asset's function",
            )
        hcp_ids = self._recipients(request, principal)
        role = principal.role if principal else None
        context = dict(request.context)
        if principal is not None and principal.role in TERRITORY_ROLES:
            context.setdefault("rep", principal.name)
        requested_by = principal.name if principal else actor.name
        report = SendReport(content_id, request.channel.value)
        checks = [
            CheckRequest(
                hcp_id=h,
                channel=request.channel,
                purpose=purpose,
                brand=brand,
                content_id=content_id,
                at=request.not_before,
            )
            for h in hcp_ids
        ]
        decisions = self._guard.check_many(checks, role=role, viewer=principal)
        allowed: list[str] = []
        waiting: dict[str, dict[str, Any]] = {}
        final: list[CheckRequest] = []
        for check, decision in zip(checks, decisions, strict=True):
            if decision.allowed:
                allowed.append(check.hcp_id)
                continue
            why = {
                "hcp_id": check.hcp_id,
                "reasons": decision.codes,
                "details": [r.detail for r in decision.refusals],
            }
            if all(code in DEFERRABLE for code in decision.codes):  # time will lift these
                allowed.append(check.hcp_id)
                waiting[check.hcp_id] = why
            else:
                report.refused.append(why)
                final.append(check)
        if final:  # the same decisions again, this time recorded as refusal events
            self._guard.check_many(
                final, role=role, viewer=principal, actor=requested_by, record_refusal=True
            )
        unreachable = self._composer.address_problems(allowed, request.channel)
        for hcp_id, problem in unreachable.items():
            report.refused.append(
                {"hcp_id": hcp_id, "reasons": [problem.code or "no_address"],
                 "details": [problem.reason]}
            )  # fmt: skip
        allowed = [h for h in allowed if h not in unreachable]
        request_key = request.request_key or new_id("req")  # no key: a request of its own
        with self._sessions.begin() as session:
            for hcp_id in allowed:
                key = f"send:{request_key}:{content_id}:{request.channel.value}:{hcp_id}"
                entry, new = enqueue(
                    session,
                    OutboundAction(
                        idempotency_key=key[:200],
                        hcp_id=hcp_id,
                        channel=request.channel,
                        purpose=purpose,
                        requested_by=requested_by,
                        content_id=content_id,
                        brand=brand,
                        role=role,
                        not_before=request.not_before,
                        context=context,
                    ),
                    now,
                )
                row = {"hcp_id": hcp_id, "outbox_id": entry.id}
                (report.queued if new else report.already_queued).append(row)
                if new and hcp_id in waiting:
                    report.deferred.append({**waiting[hcp_id], "outbox_id": entry.id})
            self._audit.record(
                session,
                actor,
                "send.requested",
                "content",
                content_id,
                after={
                    "channel": request.channel.value,
                    "queued": len(report.queued),
                    "already_queued": len(report.already_queued),
                    "refused": len(report.refused),
                    "segment": request.segment.as_dict() if request.segment else None,
                },
            )
        if report.queued and self._wake is not None:
            self._wake()
        return report

    def _recipients(self, request: SendRequest, principal: Principal | None) -> list[str]:
        if bool(request.hcp_ids) == (request.segment is not None):
            raise ValidationFailedError(
                "name the HCPs or a segment, not both and not neither",
                field="hcp_ids",
                fix="give hcp_ids: [...] or segment: {market: …, specialty: …}",
            )
        if request.segment is not None:
            ids = self._profiles.segment(request.segment, viewer=principal)
        else:
            ids = list(dict.fromkeys(request.hcp_ids))
        if len(ids) > MAX_RECIPIENTS:
            raise ValidationFailedError(
                f"{len(ids)} recipients; at most {MAX_RECIPIENTS} per request",
                field="segment",
                fix="narrow the segment or split the send",
            )
        return ids

    # --- preview ----------------------------------------------------------------------------
    def preview(
        self, content: str, hcp_id: str, channel: Channel, *, principal: Principal | None
    ) -> dict[str, Any]:
        """The asset rendered for one HCP as it would be sent now (no tracking links), and
        whether the guard would allow sending it."""
        ref = self._profiles.resolve(hcp_id, viewer=principal)  # absent, out of scope: alike
        now = self._clock.now()
        with self._sessions() as session:
            item = self._content(session, content)
            content_id, function, brand = item.id, item.function, item.brand
        purpose = _PURPOSE.get(function, Purpose.PROMOTIONAL)
        context: dict[str, Any] = {}
        if principal is not None and principal.role in TERRITORY_ROLES:
            context["rep"] = principal.name
        entry = Outbound(
            id="preview",
            idempotency_key="preview",
            channel=channel.value,
            hcp_id=ref.id,
            content_id=content_id,
            purpose=purpose.value,
            brand=brand,
            role=principal.role.value if principal else None,
            requested_by=principal.name if principal else "preview",
            context=context,
            created_at=now,
        )
        recipients = self._profiles.recipients([ref.id])
        items, fragments = self._composer.content([content_id])
        try:
            message = self._composer.compose(entry, recipients, items, fragments, track=False)
        except PermanentDeliveryError as exc:
            raise ValidationFailedError(
                f"this asset cannot be sent to this HCP on {channel.value}: {exc.reason}",
                field="hcp_id",
                fix="choose another HCP or channel, or correct the asset",
            ) from None
        decision = self._guard.check(
            CheckRequest(ref.id, channel, purpose, brand=brand, content_id=content_id),
            role=principal.role if principal else None,
            viewer=principal,
        )
        return {
            "content_id": content_id,
            "hcp_id": ref.id,
            "channel": channel.value,
            "address": message.address,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "headers": dict(message.headers),
            "approval_code": message.approval_code,
            "guard": {
                "allowed": decision.allowed,
                "refusals": [{"code": r.code, "detail": r.detail} for r in decision.refusals],
            },
        }

    # --- the operations view --------------------------------------------------------------
    def outbox(
        self,
        *,
        status: str | None = None,
        hcp_id: str | None = None,
        channel: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in {s.value for s in Status}:
            raise ValidationFailedError(
                f"unknown status {status!r}",
                field="status",
                fix="one of " + ", ".join(s.value for s in Status),
            )
        query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(max(1, min(limit, 500)))
        if status:
            query = query.where(OutboxEntry.status == status)
        if hcp_id:
            query = query.where(OutboxEntry.hcp_id == hcp_id)
        if channel:
            query = query.where(OutboxEntry.channel == channel)
        if before:
            query = query.where(OutboxEntry.id < before)
        with self._sessions() as session:
            return [entry_dict(e) for e in session.scalars(query)]

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self._sessions() as session:
            rows = session.execute(
                select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
            ).all()
        return {str(status): int(n) for status, n in rows}

    def _entry(self, session: Session, entry_id: str) -> OutboxEntry:
        entry = session.get(OutboxEntry, entry_id, with_for_update=True)
        if entry is None:
            raise NotFoundError(
                f"no outbox entry {entry_id!r}",
                field="entry_id",
                fix="list them: counterpoint outbox list",
            )
        return entry

    def replay(self, entry_id: str, actor: Actor, reason: str | None) -> dict[str, Any]:
        """Put a dead letter back in line (attempts reset). The guard decides again."""
        why = require_reason(reason, "replaying a dead letter")
        now = self._clock.now()
        with self._sessions.begin() as session:
            entry = self._entry(session, entry_id)
            if entry.status != Status.DEAD.value:
                raise ConflictError(
                    f"the entry is {entry.status}; only dead letters are replayed",
                    field="entry_id",
                    fix="list dead letters: counterpoint outbox list --status dead",
                )
            before = entry_dict(entry)
            entry.status = Status.PENDING.value
            entry.attempts = 0
            entry.next_attempt_at = now
            entry.error_code = None
            entry.last_error = None
            entry.updated_at = now
            after = entry_dict(entry)
            self._audit.record(
                session, actor, "outbox.replay", "outbox_entry", entry.id,
                before=before, after=after, reason=why,
            )  # fmt: skip
        if self._wake is not None:
            self._wake()
        return after

    def cancel(self, entry_id: str, actor: Actor, reason: str | None) -> dict[str, Any]:
        """Withdraw an entry not yet sent (pending or dead)."""
        why = require_reason(reason, "cancelling a send")
        now = self._clock.now()
        with self._sessions.begin() as session:
            entry = self._entry(session, entry_id)
            if entry.status not in {Status.PENDING.value, Status.DEAD.value}:
                raise ConflictError(
                    f"the entry is {entry.status} and cannot be cancelled",
                    field="entry_id",
                    fix="only pending entries and dead letters can be cancelled",
                )
            before = entry_dict(entry)
            entry.status = Status.CANCELLED.value
            entry.updated_at = now
            after = entry_dict(entry)
            self._audit.record(
                session, actor, "outbox.cancel", "outbox_entry", entry.id,
                before=before, after=after, reason=why,
            )  # fmt: skip
        return after
