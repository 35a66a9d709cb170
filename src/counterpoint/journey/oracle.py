"""The engine's questions answered from the running system, for many HCPs at once.

``engine.advance`` asks an ``Oracle`` three things about one HCP: does a condition hold now,
would the guard allow this send or rep task now, what is the HCP's time zone. Asking the
database once per question would cost a few queries per HCP and step; the runtime moves
hundreds of enrollments per pass. So the answers are gathered in rounds:

1. every enrollment of a batch is advanced with an ``AskingOracle`` that answers from what
   is already known (``Answers``) and, for anything unknown, records the question and gives
   a provisional answer (a condition is false, a contact is allowed);
2. ``World.answer`` settles all recorded questions in bulk: one ``resolve_many`` for the
   HCPs, one ``check_many`` of the guard per acting role, one address check per channel,
   the segment facts for conditions;
3. the enrollments that asked something are advanced again, now with the real answers
   (a refusal may take a branch that asks a new question: another round).

``advance`` is pure, so the last round's result is exactly what advancing with a
synchronous oracle would have produced, and its idempotency keys are the same.

What the answers are:

* ``holds``: the segment facts of the HCP (``SegmentFacts.facts_for``) and
  ``conditions.evaluate``;
* ``permits`` for a ``Send``: the content code resolved to the item approved for the HCP's
  market, channel and language (a local variant when there is one, else the item itself),
  the guard as the system (``role=None``: automated orchestration) for the journey's
  purpose and brand, and the address check (no e-mail address: ``no_address``);
* ``permits`` for a ``RepTask``: the rep is the active field user (sales rep or KAM) whose
  territories hold the HCP's territory (markets and brands in scope), preferring the
  touchpoint's responsible role, then by name; none: ``no_rep_for_territory``. The guard
  is asked as that rep's role, within the rep's scope: the rep makes the contact (the
  system's role may not initiate field channels);
* ``time_zone``: the HCP's, else the market's (the contact policy's zone).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from counterpoint.content.catalog import ContentCatalog
from counterpoint.content.eligibility import ContentRef, eligible, sort_key
from counterpoint.delivery.compose import Composer
from counterpoint.event.canonical import Channel
from counterpoint.journey.context import ContentIndex
from counterpoint.journey.definition import JourneyDocument, RepTaskNode
from counterpoint.journey.engine import Permission, RepTask, Send
from counterpoint.policy.access import Principal, Role
from counterpoint.policy.contact_service import ContactService
from counterpoint.policy.guard_service import CheckRequest, GuardService
from counterpoint.policy.tokens import Users
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.segment.conditions import Condition, dump_condition, evaluate
from counterpoint.segment.facts import SegmentFacts

__all__ = [
    "FIELD_ROLES",
    "Answers",
    "AskingOracle",
    "Contact",
    "Question",
    "StepFailedError",
    "World",
    "condition_key",
]

FIELD_ROLES: tuple[Role, ...] = (Role.SALES_REP, Role.KAM)
"""Roles that carry out rep tasks."""

NO_REP = "no_rep_for_territory"
NO_CONTENT = "content_unknown"
NO_HCP = "unknown_hcp"

_CONDITION_KEYS: dict[int, tuple[Condition, str]] = {}
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def condition_key(condition: Condition) -> str:
    """A stable text for a condition (its JSON), cached per condition object."""
    cached = _CONDITION_KEYS.get(id(condition))
    if cached is not None and cached[0] is condition:
        return cached[1]
    text = json.dumps(dump_condition(condition), sort_keys=True)
    if len(_CONDITION_KEYS) > 10_000:
        _CONDITION_KEYS.clear()
    _CONDITION_KEYS[id(condition)] = (condition, text)
    return text


class StepFailedError(Exception):
    """A step that cannot be taken (a condition cannot be evaluated); the enrollment exits
    with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Contact:
    """The guard's answer for one send or rep task, and what enqueueing it needs."""

    permission: Permission
    content_id: str | None = None
    rep: str | None = None
    rep_role: Role | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """One thing an enrollment asked that was not known yet."""

    hcp_id: str
    document: JourneyDocument
    now: dt.datetime
    condition: Condition | None = None
    effect: Send | RepTask | None = None
    """Neither a condition nor an effect: the HCP's time zone is asked."""


@dataclass
class Answers:
    """What is known during one batch: HCPs, condition results and contact decisions."""

    refs: dict[str, HcpRef] = field(default_factory=dict)
    holds: dict[tuple[str, str, dt.datetime], bool] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    """By the effect's idempotency key (unique per HCP, node and visit)."""
    zones: dict[str, str] = field(default_factory=dict)
    failed: dict[tuple[str, str, dt.datetime], str] = field(default_factory=dict)
    """Conditions that could not be evaluated for an HCP, with why."""


class AskingOracle:
    """``engine.Oracle`` for one HCP: answers from ``Answers``, records what it cannot."""

    def __init__(self, answers: Answers, hcp_id: str, document: JourneyDocument) -> None:
        self._answers = answers
        self._hcp_id = hcp_id
        self._document = document
        self.questions: list[Question] = []

    def holds(self, condition: Condition, now: dt.datetime) -> bool:
        key = (self._hcp_id, condition_key(condition), now)
        if key in self._answers.failed:
            raise StepFailedError("condition_error")
        found = self._answers.holds.get(key)
        if found is None:
            self.questions.append(Question(self._hcp_id, self._document, now, condition=condition))
            return False
        return found

    def permits(self, effect: Send | RepTask, now: dt.datetime) -> Permission:
        found = self._answers.contacts.get(effect.key)
        if found is None:
            self.questions.append(Question(self._hcp_id, self._document, now, effect=effect))
            return Permission(True)
        return found.permission

    def time_zone(self) -> str:
        zone = self._answers.zones.get(self._hcp_id)
        if zone is None:
            self.questions.append(Question(self._hcp_id, self._document, _NEVER))
            return "UTC"
        return zone


def _zone_ok(name: str | None) -> bool:
    if not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Rep:
    principal: Principal

    def covers(self, ref: HcpRef, brand: str) -> bool:
        p = self.principal
        return (
            ref.territory is not None
            and ref.territory in p.territories
            and (not p.markets or ref.market in p.markets)
            and (not p.brands or brand in p.brands)
        )


class World:
    """Answers the engine's questions from the services (see the module doc)."""

    def __init__(
        self,
        profiles: ProfileService,
        facts: SegmentFacts,
        guard: GuardService,
        contact: ContactService,
        catalog: ContentCatalog,
        composer: Composer,
        users: Users,
    ) -> None:
        self._profiles = profiles
        self._facts = facts
        self._guard = guard
        self._contact = contact
        self._catalog = catalog
        self._composer = composer
        self._users = users
        self._index: ContentIndex | None = None

    # --- HCPs ---------------------------------------------------------------------------
    def know(self, answers: Answers, hcp_ids: Iterable[str]) -> None:
        """Load the HCPs not known yet (one bulk resolve) and their time zones."""
        missing = {h for h in hcp_ids if h not in answers.refs}
        if not missing:
            return
        found = self._profiles.resolve_many(missing)
        answers.refs.update(found)
        for hcp_id in missing:
            ref = found.get(hcp_id)
            own = ref.time_zone if ref is not None else None
            market = ref.market if ref is not None else None
            zone = own if own and _zone_ok(own) else self._contact.policy(market).time_zone
            answers.zones[hcp_id] = zone if _zone_ok(zone) else "UTC"

    # --- settling questions -----------------------------------------------------------------
    def answer(self, answers: Answers, questions: Sequence[Question]) -> None:
        """Settle every question in bulk; afterwards each is known in ``answers``."""
        self.know(answers, (q.hcp_id for q in questions))
        sends = [q for q in questions if isinstance(q.effect, Send)]
        tasks = [q for q in questions if isinstance(q.effect, RepTask)]
        conditions = [q for q in questions if q.condition is not None]
        errors: list[Exception] = []
        for q in conditions:
            try:
                self._hold(answers, q)
            except Exception as exc:  # this HCP's condition: recorded, the step exits
                assert q.condition is not None
                key = (q.hcp_id, condition_key(q.condition), q.now)
                answers.failed[key] = f"{type(exc).__name__}: {exc}"[:300]
                errors.append(exc)
        if errors and len(errors) == len(conditions) > 1:
            raise errors[0]  # every one failed: the store, not the HCPs (the pass retries)
        if sends:
            self._sends(answers, sends)
        if tasks:
            self._tasks(answers, tasks)

    def _hold(self, answers: Answers, q: Question) -> None:
        assert q.condition is not None
        key = (q.hcp_id, condition_key(q.condition), q.now)
        if key in answers.holds:
            return
        if q.hcp_id not in answers.refs:
            answers.holds[key] = False  # an HCP no longer known meets no condition
            return
        facts = self._facts.facts_for(q.hcp_id, q.condition, q.now)
        answers.holds[key] = evaluate(q.condition, facts, q.now)

    # --- sends ------------------------------------------------------------------------------
    def _content(self) -> ContentIndex:
        snapshot = self._catalog.refresh_if_stale()
        if self._index is None or self._index.generation != snapshot.generation:
            self._index = ContentIndex(snapshot)
        return self._index

    def resolve_content(
        self, code: str, ref: HcpRef, channel: Channel, document: JourneyDocument, at: dt.datetime
    ) -> ContentRef | None:
        """The item of the family ``code`` to send to this HCP: an eligible local variant,
        else the eligible item itself, else (for the guard to name why) the variant for
        the HCP's market or the item. None: no such content."""
        family = self._content().family(code)
        if not family:
            return None
        usable = eligible(
            family,
            market=ref.market,
            language=ref.language,
            channel=channel,
            at=at,
            brands=(document.brand,),
            role=None,
        )
        usable = [r for r in usable if r.brand == document.brand]
        variants = [r for r in usable if r.parent_id is not None]
        if variants or usable:
            return sorted(variants or usable, key=sort_key)[0]
        local = [r for r in family[1:] if ref.market in r.markets]
        return local[0] if local else family[0]

    def _sends(self, answers: Answers, questions: Sequence[Question]) -> None:
        checks: list[tuple[Question, CheckRequest, str]] = []
        for q in questions:
            assert isinstance(q.effect, Send)
            if q.effect.key in answers.contacts:
                continue
            ref = answers.refs.get(q.hcp_id)
            if ref is None:
                answers.contacts[q.effect.key] = Contact(Permission(False, (NO_HCP,)))
                continue
            item = self.resolve_content(q.effect.content, ref, q.effect.channel, q.document, q.now)
            if item is None:
                answers.contacts[q.effect.key] = Contact(Permission(False, (NO_CONTENT,)))
                continue
            request = CheckRequest(
                hcp_id=ref.id,
                channel=q.effect.channel,
                purpose=q.document.purpose,
                brand=q.document.brand,
                content_id=item.id,
                at=q.now,
            )
            checks.append((q, request, item.id))
        if not checks:
            return
        decisions = self._guard.check_many([c[1] for c in checks], role=None)
        allowed: dict[Channel, list[str]] = defaultdict(list)
        for (_, request, _), decision in zip(checks, decisions, strict=True):
            if decision.allowed:
                allowed[request.channel].append(request.hcp_id)
        unreachable: dict[tuple[Channel, str], str] = {}
        for channel, hcp_ids in allowed.items():
            for hcp_id, problem in self._composer.address_problems(hcp_ids, channel).items():
                unreachable[(channel, hcp_id)] = problem.code or "no_address"
        for (q, request, content_id), decision in zip(checks, decisions, strict=True):
            assert q.effect is not None
            codes: tuple[str, ...] = tuple(decision.codes)
            unreached = unreachable.get((request.channel, request.hcp_id))
            if decision.allowed and unreached is not None:
                codes = (unreached,)
            permission = Permission(decision.allowed and unreached is None, codes)
            answers.contacts[q.effect.key] = Contact(permission, content_id=content_id)

    # --- rep tasks --------------------------------------------------------------------------
    def reps(self) -> list[_Rep]:
        """Active field users who can carry out rep tasks, by name."""
        out: list[_Rep] = []
        for user in self._users.list():
            if user["disabled_at"] is not None or user["role"] not in FIELD_ROLES:
                continue
            out.append(_Rep(_principal_of(user)))
        return sorted(out, key=lambda r: r.principal.name)

    @staticmethod
    def rep_for(
        reps: Sequence[_Rep], ref: HcpRef, document: JourneyDocument, node_id: str
    ) -> _Rep | None:
        """The rep for this HCP: the touchpoint's responsible field role first, then by name."""
        covering = [r for r in reps if r.covers(ref, document.brand)]
        if not covering:
            return None
        node = document.flow.by_id.get(node_id)
        preferred: Role | None = None
        if isinstance(node, RepTaskNode) and node.touchpoint is not None:
            preferred = document.map.touchpoint(node.touchpoint).owner.responsible
        return sorted(covering, key=lambda r: (r.principal.role != preferred, r.principal.name))[0]

    def _tasks(self, answers: Answers, questions: Sequence[Question]) -> None:
        reps = self.reps()
        groups: dict[str, list[tuple[Question, CheckRequest, _Rep]]] = defaultdict(list)
        for q in questions:
            effect = q.effect
            assert isinstance(effect, RepTask)
            if effect.key in answers.contacts:
                continue
            ref = answers.refs.get(q.hcp_id)
            if ref is None:
                answers.contacts[effect.key] = Contact(Permission(False, (NO_HCP,)))
                continue
            rep = self.rep_for(reps, ref, q.document, effect.node)
            if rep is None:
                answers.contacts[effect.key] = Contact(Permission(False, (NO_REP,)))
                continue
            content_id: str | None = None
            if effect.content is not None:
                item = self.resolve_content(effect.content, ref, effect.channel, q.document, q.now)
                if item is None:
                    answers.contacts[effect.key] = Contact(Permission(False, (NO_CONTENT,)))
                    continue
                content_id = item.id
            request = CheckRequest(
                hcp_id=ref.id,
                channel=effect.channel,
                purpose=q.document.purpose,
                brand=q.document.brand,
                content_id=content_id,
                at=q.now,
            )
            groups[rep.principal.name].append((q, request, rep))
        for group in groups.values():
            rep = group[0][2]
            decisions = self._guard.check_many(
                [g[1] for g in group], role=rep.principal.role, viewer=rep.principal
            )
            for (q, request, _), decision in zip(group, decisions, strict=True):
                assert q.effect is not None
                answers.contacts[q.effect.key] = Contact(
                    Permission(decision.allowed, tuple(decision.codes)),
                    content_id=request.content_id,
                    rep=rep.principal.name,
                    rep_role=rep.principal.role,
                )


def _principal_of(user: Mapping[str, Any]) -> Principal:
    return Principal(
        user_id=str(user["id"]),
        name=str(user["name"]),
        role=Role(str(user["role"])),
        markets=frozenset(user["markets"]),
        brands=frozenset(user["brands"]),
        territories=frozenset(user["territories"]),
    )
