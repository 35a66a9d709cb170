"""Consent through ingestion: consent events and unsubscribes in the log become ledger records.

A checkpointed consumer of the event log (``name = "consent"``). Track events named
"Consent Granted", "Consent Pending", "Consent Denied" or "Consent Revoked" become one record
each (``dedupe_key = "event:<message_id>"``); events with the action ``unsubscribed`` on a
channel that needs consent become revocations (one per market and purpose). Records and
their audit records are written in the transaction that advances the checkpoint, and every
record has a dedupe key, so a crash or a replay (``rebuild``) records nothing twice.

Ingestion already refused invalid consent events and grants from untrusted write keys; an
event that still cannot be recorded (e.g. an unsubscribe of an unknown person with no market)
is put in the quarantine with the reason, never dropped in silence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import (
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
    consent_channel,
)
from counterpoint.consent.models import ConsentRow
from counterpoint.consent.schemas import (
    CONSENT_EVENTS,
    UNSUBSCRIBE_SOURCE,
    ConsentEventProblem,
    consent_state_of,
    read_consent_event,
    read_purpose,
)
from counterpoint.consent.service import ConsentService
from counterpoint.errors import CounterpointError
from counterpoint.event.arrow import event_from_row
from counterpoint.event.canonical import Action, LogEvent
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.log import EventLog, QuarantineEntry
from counterpoint.kit.clock import Clock
from counterpoint.policy.audit import Actor
from counterpoint.profile.service import HcpRef, ProfileService

__all__ = ["ConsentConsumer"]

_log = logging.getLogger(__name__)
_ACTOR = Actor.system("consent-consumer")
_NAMES = pa.array(sorted(CONSENT_EVENTS), pa.string())


def _consent_rows(table: pa.Table) -> pa.Table:
    """The rows that are consent events or unsubscribes (a columnar filter: most are not)."""
    names = pc.utf8_lower(pc.utf8_trim_whitespace(table.column("event_name")))
    named = pc.fill_null(pc.is_in(names, value_set=_NAMES), False)
    unsubscribed = pc.fill_null(pc.equal(table.column("action"), Action.UNSUBSCRIBED.value), False)
    return table.filter(pc.or_(named, unsubscribed))


def _context_text(context: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = context.get(key)
    return value[:limit] if isinstance(value, str) and value else None


class ConsentConsumer(LogConsumer):
    name = "consent"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        consents: ConsentService,
        profiles: ProfileService,
        clock: Clock,
    ) -> None:
        super().__init__(sessions, log)
        self._consents = consents
        self._profiles = profiles
        self._clock = clock
        self._replaying = False

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Replay the log: records already made are recognised by their dedupe keys, and
        events quarantined on the first pass are not quarantined again."""
        self._replaying = True
        try:
            return super().rebuild(progress)
        finally:
            self._replaying = False

    def apply(self, session: Session, table: pa.Table) -> None:
        for row in _consent_rows(table).to_pylist():
            event = event_from_row(row)
            try:
                problem = self._apply_event(session, event)
            except CounterpointError as exc:
                problem = ConsentEventProblem(
                    "invalid_consent", exc.field or "event", exc.detail, exc.fix or ""
                )
            if problem is not None:
                self._quarantine(event, problem)

    # --- one event ----------------------------------------------------------------------
    def _apply_event(self, session: Session, event: LogEvent) -> ConsentEventProblem | None:
        state = consent_state_of(event.event_name)
        if state is not None:
            return self._record(session, event, state)
        return self._unsubscribe(session, event)

    def _ref(self, subject: str) -> HcpRef | None:
        """The HCP holding the event's subject, if one does yet."""
        if subject.startswith("anon:"):
            return None
        try:
            hcp_id = self._profiles.find_by_identifier(subject)
            return self._profiles.resolve(hcp_id) if hcp_id else None
        except CounterpointError:
            return None

    def _proof(self, event: LogEvent, source: ConsentSource, **kw: str | None) -> Proof:
        context = event.payload.get("context") or {}
        context = context if isinstance(context, dict) else {}
        return Proof(
            source=source,
            captured_by=kw.get("captured_by") or f"source:{event.source}",
            wording_version=kw.get("wording_version"),
            wording_hash=kw.get("wording_hash"),
            ip=_context_text(context, "ip", 64),
            user_agent=_context_text(context, "userAgent", 300),
            evidence=kw.get("evidence") or f"event {event.message_id} ({event.event_name})",
        )

    def _effective(self, event: LogEvent) -> dt.datetime:
        return min(event.occurred_at, self._clock.now())

    def _record(
        self, session: Session, event: LogEvent, state: ConsentState
    ) -> ConsentEventProblem | None:
        properties = event.payload.get("properties") or {}
        spec = read_consent_event(
            state,
            properties if isinstance(properties, dict) else {},
            market=event.market,
            brand=event.brand,
            occurred_at=event.occurred_at,
            channel=event.channel,
        )
        if isinstance(spec, ConsentEventProblem):
            return spec
        ref = self._ref(event.subject)
        self._consents.record_in(
            session,
            hcp_id=ref.id if ref else None,
            subject=event.subject,
            scope=spec.scope,
            state=spec.state,
            proof=self._proof(
                event,
                ConsentSource.EVENT,
                captured_by=spec.captured_by,
                wording_version=spec.wording_version,
                wording_hash=spec.wording_hash,
                evidence=spec.evidence,
            ),
            actor=_ACTOR,
            reason=f"consent event {event.message_id} from {event.source}",
            effective_at=self._effective(event),
            expires_at=spec.expires_at,
            dedupe_key=f"event:{event.message_id}",
            synthetic=event.synthetic,
        )
        return None

    def _unsubscribe(self, session: Session, event: LogEvent) -> ConsentEventProblem | None:
        if event.source == UNSUBSCRIBE_SOURCE:
            return None  # the HCP's own page or keyword: recorded in the ledger already
        channel = consent_channel(event.channel) if event.channel is not None else None
        if channel is None:
            return None  # a channel that needs no consent (the HCP came to us): nothing to revoke
        properties = event.payload.get("properties") or {}
        purpose = read_purpose(
            properties.get("purpose") if isinstance(properties, dict) else None, required=False
        )
        if isinstance(purpose, ConsentEventProblem):
            return purpose
        ref = self._ref(event.subject)
        markets = self._markets(session, event, ref, channel.value)
        if not markets:
            return ConsentEventProblem(
                "consent_market_unknown",
                "properties.market",
                "an unsubscribe for a person with no known market and no consent records: "
                "there is no market to revoke consent in",
                "send properties.market with the unsubscribe, or import the HCP first and "
                "replay this event",
            )
        for market in markets:
            for each in [purpose] if purpose is not None else list(Purpose):
                self._consents.record_in(
                    session,
                    hcp_id=ref.id if ref else None,
                    subject=event.subject,
                    scope=ConsentScope(channel, each, market),
                    state=ConsentState.REVOKED,
                    proof=self._proof(event, ConsentSource.DELIVERY),
                    actor=_ACTOR,
                    reason=f"unsubscribe event {event.message_id} from {event.source}",
                    effective_at=self._effective(event),
                    dedupe_key=f"event:{event.message_id}:{market}:{each.value}",
                    synthetic=event.synthetic,
                )
        return None

    @staticmethod
    def _markets(session: Session, event: LogEvent, ref: HcpRef | None, channel: str) -> list[str]:
        """The event's market; else the HCP's market and every market it holds records for."""
        if event.market:
            return [event.market]
        owners = [ConsentRow.subject == event.subject]
        if ref is not None:
            owners += [ConsentRow.hcp_id.in_(ref.aliases), ConsentRow.subject.in_(ref.identifiers)]
        held = set(
            session.scalars(
                select(ConsentRow.market).where(ConsentRow.channel == channel, or_(*owners))
            )
        )
        if ref is not None and ref.market:
            held.add(ref.market)
        return sorted(held)

    def _quarantine(self, event: LogEvent, problem: ConsentEventProblem) -> None:
        _log.warning(
            "consent event %s not recorded: %s: %s",
            event.message_id,
            problem.code,
            problem.detail,
        )
        if self._replaying:
            return
        raw = {
            "messageId": event.message_id,
            "type": event.kind.value,
            "userId": event.subject,
            "event": event.event_name,
            "timestamp": event.occurred_at.isoformat(),
            "properties": {
                **(event.payload.get("properties") or {}),
                **{
                    k: v
                    for k, v in (
                        ("channel", event.channel.value if event.channel else None),
                        ("action", event.action.value if event.action else None),
                        ("market", event.market),
                        ("brand", event.brand),
                    )
                    if v is not None
                },
            },
        }
        self._log.append(
            [],
            [
                QuarantineEntry(
                    received_at=self._clock.now(),
                    source=event.source,
                    reason_code=problem.code,
                    field=problem.field,
                    detail=problem.detail,
                    fix=problem.fix,
                    raw=json.dumps(raw, default=str, ensure_ascii=False),
                )
            ],
        )
