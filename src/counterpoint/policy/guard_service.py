"""The guard's I/O: load what is known of the HCP, call the pure decision, record refusals.

Consent and the HCP's own contact preference are read fresh on every check (never cached: a
withdrawal or a new limit takes effect at once); the market's policy is cached for a few
seconds (``ContactService.policy``). ``check_many`` loads everything for many candidates in
bulk (a few queries per 500 HCPs) and decides them with the vectorised kernel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import ConsentRecord, Purpose
from counterpoint.consent.service import ConsentService
from counterpoint.errors import NotFoundError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Principal, Role
from counterpoint.policy.contact import ContactPolicy
from counterpoint.policy.contact_service import ContactFacts, ContactService
from counterpoint.policy.guard import (
    HCP_FREQUENCY_DAYS,
    BoolArray,
    Candidate,
    ContentCheck,
    Decision,
    HcpFacts,
    Refusal,
    decide,
    encode,
    kernel,
)
from counterpoint.profile.service import ErasedError, HcpRef, ProfileService

__all__ = ["CheckRequest", "GuardService"]

_IN_BATCH = 500
_ACTOR_TYPES = {
    Role.SALES_REP: ActorType.REP,
    Role.KAM: ActorType.KAM,
    Role.MSL: ActorType.MSL,
    Role.MEDICAL_AFFAIRS: ActorType.MEDICAL_AFFAIRS,
    Role.BRAND_MANAGER: ActorType.MARKETING,
    Role.MARKETING_OPS: ActorType.MARKETING,
}


@dataclass(frozen=True, slots=True)
class CheckRequest:
    hcp_id: str
    channel: Channel
    purpose: Purpose
    brand: str | None = None
    content_id: str | None = None
    content_type: str | None = None
    at: dt.datetime | None = None


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


def _facts(ref: HcpRef, consents: Sequence[ConsentRecord], known: ContactFacts) -> HcpFacts:
    return HcpFacts(
        hcp_id=ref.id,
        market=ref.market,
        time_zone=ref.time_zone,
        consents=tuple(consents),
        touches=tuple(known.touches),
        last_touch=dict(known.last_touch),
        dnc=tuple(known.dnc),
        suppressed=frozenset(known.suppressed),
        max_promotional_per_month=known.max_promotional_per_month,
        language=ref.language,
    )


def _since(policy: ContactPolicy, at: dt.datetime) -> dt.date:
    """The first day of touches to load: the longest cap's window, and at least the HCP's
    own 30-day window."""
    days = max(policy.longest_period_days, HCP_FREQUENCY_DAYS, 1)
    return at.astimezone(dt.UTC).date() - dt.timedelta(days=days)


def _content_refusals(
    checks: Sequence[ContentCheck], candidate: Candidate, facts: HcpFacts | None
) -> tuple[Refusal, ...]:
    if not checks or candidate.content_id is None or facts is None:
        return ()
    return tuple(r for check in checks for r in check(candidate, facts))


class GuardService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        consents: ConsentService,
        contact: ContactService,
        log: EventLog,
        clock: Clock,
        *,
        content_checks: Sequence[ContentCheck] = (),
    ) -> None:
        self._sessions = sessions
        engine = sessions.kw["bind"]
        self._engine: Engine = engine
        self._profiles = profiles
        self._consents = consents
        self._contact = contact
        self._log = log
        self._clock = clock
        self.content_checks: list[ContentCheck] = list(content_checks)
        """Checks of the content a candidate carries; the content domain registers here."""
        self.batch_scopes: list[Callable[[], AbstractContextManager[object]]] = []
        """Entered around the decisions of one ``check_many`` (e.g. the content catalog pins
        one fresh snapshot for the batch instead of one look per candidate)."""

    # --- one candidate ------------------------------------------------------------------
    def check(
        self,
        request: CheckRequest,
        *,
        role: Role | None,
        viewer: Principal | None = None,
        actor: str | None = None,
        record_refusal: bool = False,
    ) -> Decision:
        """The guard's decision for one contact. ``role`` acts (None: automated
        orchestration); ``viewer`` limits which HCPs exist (outside: ``unknown_hcp``);
        ``record_refusal`` (real send paths) appends a ``refused`` event."""
        at = request.at or self._clock.now()
        candidate = self._candidate(request, role, at)
        # one Core connection and prebuilt statements: the hot path
        with self._engine.connect() as session:
            try:
                ref = self._profiles.resolve_in(session, request.hcp_id, viewer=viewer)
            except (NotFoundError, ErasedError):
                return decide(None, self._contact.policy(None), candidate)
            policy = self._contact.policy(ref.market)
            consents = self._consents.records_in(session, ref)  # fresh, every time
            known = self._contact.facts_of(session, [ref], _since(policy, at))[ref.id]
        decision = decide(_facts(ref, consents, known), policy, candidate, self.content_checks)
        if record_refusal and not decision.allowed:
            self._record([(ref, candidate, decision)], role, actor)
        return decision

    @staticmethod
    def _candidate(request: CheckRequest, role: Role | None, at: dt.datetime) -> Candidate:
        return Candidate(
            channel=request.channel,
            purpose=request.purpose,
            at=at,
            brand=request.brand,
            content_id=request.content_id,
            role=role,
            content_type=request.content_type,
        )

    # --- many candidates ----------------------------------------------------------------
    def check_many(
        self,
        requests: Sequence[CheckRequest],
        *,
        role: Role | None,
        viewer: Principal | None = None,
        actor: str | None = None,
        record_refusal: bool = False,
        refs: Mapping[str, HcpRef] | None = None,
    ) -> list[Decision]:
        """Decisions for many candidates: bulk loads, then the vectorised kernel.

        ``refs``: the requests' HCPs as ``ProfileService.resolve_many`` answered for the same
        ``viewer``, when the caller resolved them already (for the guard and a composer alike).
        """
        now = self._clock.now()
        if refs is None:
            refs = self._profiles.resolve_many((r.hcp_id for r in requests), viewer)
        unique = {ref.id: ref for r in requests if (ref := refs.get(r.hcp_id)) is not None}
        consents = self._consents.records_of_many(unique.values())
        policies = {ref.id: self._contact.policy(ref.market) for ref in unique.values()}
        since = min(
            (
                _since(policies[refs[r.hcp_id].id], r.at or now)
                for r in requests
                if r.hcp_id in refs
            ),
            default=now.date(),
        )
        with self._sessions() as session:
            known = self._contact.facts_of(session, list(unique.values()), since)
        facts = {i: _facts(ref, consents[i], known[i]) for i, ref in unique.items()}
        fallback = self._contact.policy(None)
        rows: list[tuple[HcpFacts | None, ContactPolicy, Candidate]] = []
        for r in requests:
            ref = refs.get(r.hcp_id)
            candidate = self._candidate(r, role, r.at or now)
            if ref is None:
                rows.append((None, fallback, candidate))
            else:
                rows.append((facts[ref.id], policies[ref.id], candidate))
        allowed, _ = kernel(encode(rows))
        decisions: list[Decision] = []
        refused: list[tuple[HcpRef, Candidate, Decision]] = []
        with ExitStack() as scopes:
            for scope in self.batch_scopes:
                scopes.enter_context(scope())
            self._decide_rows(rows, allowed, requests, refs, decisions, refused)
        if record_refusal and refused:
            self._record(refused, role, actor)
        return decisions

    def _decide_rows(
        self,
        rows: Sequence[tuple[HcpFacts | None, ContactPolicy, Candidate]],
        allowed: BoolArray,
        requests: Sequence[CheckRequest],
        refs: Mapping[str, HcpRef],
        decisions: list[Decision],
        refused: list[tuple[HcpRef, Candidate, Decision]],
    ) -> None:
        for i, (row_facts, policy, candidate) in enumerate(rows):
            if allowed[i]:
                # the kernel allowed it: only the content checks remain (if it carries content)
                content = _content_refusals(self.content_checks, candidate, row_facts)
                decisions.append(Decision(not content, content))
                if not content:
                    continue
            else:  # refused rows get every reason in words
                decisions.append(decide(row_facts, policy, candidate, self.content_checks))
            decision = decisions[-1]
            ref = refs.get(requests[i].hcp_id)
            if ref is not None and not decision.allowed:
                refused.append((ref, candidate, decision))

    # --- refusal events -----------------------------------------------------------------
    def _record(
        self,
        refused: Sequence[tuple[HcpRef, Candidate, Decision]],
        role: Role | None,
        actor: str | None,
    ) -> None:
        now = self._clock.now()
        events: list[LogEvent] = []
        for ref, c, decision in refused:
            subject = ref.subject
            if subject is None:
                continue
            events.append(
                LogEvent(
                    message_id=new_id("refusal"),
                    kind=EventKind.TRACK,
                    subject=subject,
                    occurred_at=c.at,
                    received_at=now,
                    source="guard",
                    channel=c.channel,
                    action=Action.REFUSED,
                    event_name=f"{c.channel.value} refused",
                    brand=c.brand,
                    content_id=c.content_id,
                    actor_type=_ACTOR_TYPES.get(role, ActorType.SYSTEM)
                    if role
                    else ActorType.SYSTEM,
                    actor_id=(actor or ("system:orchestration" if role is None else role.value))[
                        :200
                    ],
                    function=Function.MEDICAL
                    if c.purpose is Purpose.MEDICAL
                    else Function.COMMERCIAL,
                    market=ref.market,
                    payload={
                        "properties": {
                            "hcp_id": ref.id,
                            "purpose": c.purpose.value,
                            "reasons": decision.codes,
                            "details": [r.detail for r in decision.refusals],
                        }
                    },
                )
            )
        if events:
            self._log.append(events)
