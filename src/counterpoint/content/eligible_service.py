"""Which approved variants may this user send to this HCP on this channel now? One query,
used by reps (over the API) and by orchestration (in Python) alike.

The catalog gives the content side (approved, in date, for the HCP's market, channel and
language, the caller's brands, the acting role's purposes). The HCP side (consent, caps,
minimum gaps, quiet hours, do-not-contact, suppression) is the guard's, asked once per
distinct (purpose, brand) group of items, without a content id: those rules judge the
contact, not the piece of content, so one answer holds for the whole group. An item is
eligible when its group is allowed and its content checks pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from counterpoint.consent.ledger import Purpose
from counterpoint.content.catalog import ContentCatalog, acting_role
from counterpoint.content.eligibility import ContentRef, content_refusals, purpose_of
from counterpoint.errors import NotFoundError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock
from counterpoint.policy.access import Principal, Resource, Role, Verb, is_allowed, within_brands
from counterpoint.policy.guard import Candidate, Decision, HcpFacts, Refusal
from counterpoint.policy.guard_service import CheckRequest, GuardService
from counterpoint.profile.service import HcpRef, ProfileService, no_such_hcp

__all__ = [
    "EligibleContent",
    "EligibleResult",
    "GroupDecision",
    "RefusedItem",
]

Group = tuple[Purpose, str | None]  # (purpose, brand)


@dataclass(frozen=True, slots=True)
class RefusedItem:
    item: ContentRef
    refusals: tuple[Refusal, ...]  # the item's content reasons, then its group's


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """The guard's answer for contacts of one purpose and brand (content aside)."""

    purpose: Purpose
    brand: str | None
    allowed: bool
    refusals: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True)
class EligibleResult:
    hcp_id: str
    channel: Channel
    at: dt.datetime
    items: tuple[ContentRef, ...]  # the light metadata of each item, never bodies
    refused: tuple[RefusedItem, ...] | None = None  # only when asked for
    groups: tuple[GroupDecision, ...] | None = None  # only when asked for


def _group_of(ref: ContentRef) -> Group | None:
    purpose = purpose_of(ref)
    return None if purpose is None else (purpose, ref.brand)


def _group_order(group: Group) -> tuple[str, str]:
    return (group[0].value, group[1] or "")


class EligibleContent:
    def __init__(
        self,
        profiles: ProfileService,
        catalog: ContentCatalog,
        guard: GuardService,
        clock: Clock,
    ) -> None:
        self._profiles = profiles
        self._catalog = catalog
        self._guard = guard
        self._clock = clock

    def query(
        self,
        hcp_id: str,
        channel: Channel,
        principal: Principal | None,
        at: dt.datetime | None = None,
        include_refused: bool = False,
        *,
        automated: bool = False,
    ) -> EligibleResult:
        """The approved assets (and local variants) ``principal`` may send to the HCP on
        ``channel`` at ``at`` (default now), best first: newest approval, then code.

        ``principal`` None is automated orchestration (no scope); ``automated`` makes a caller
        act as the system while keeping its scope. The HCP must be in the caller's scope (404
        otherwise, as if absent). ``include_refused`` adds the items approved or proposed for
        the HCP's market and channel that may not go, each with every reason, and the guard's
        answer for each (purpose, brand) group."""
        at = at or self._clock.now()
        hcp = self._resolve(hcp_id, principal)
        role = acting_role(principal, automated=automated)
        if not include_refused:
            refs = self._catalog.eligible_for(hcp, channel, principal, at, automated=automated)
            groups = [_group_of(r) for r in refs]
            decisions = self._decide(hcp, channel, at, role, principal, groups)
            allowed = {g for g, d in decisions.items() if d.allowed}
            items = tuple(r for r, g in zip(refs, groups, strict=True) if g in allowed)
            return EligibleResult(hcp.id, channel, at, items)
        return self._with_refused(hcp, channel, at, role, principal)

    def _resolve(self, hcp_id: str, principal: Principal | None) -> HcpRef:
        """The HCP in the caller's scope; absent and out of scope read alike (no existence
        leak). Roles that may not read HCPs (MLR reviewers) see none: eligibility would reveal
        that the HCP exists and what it consented to."""
        absent = no_such_hcp(hcp_id)
        if principal is not None and not is_allowed(principal.role, Resource.HCP, Verb.READ):
            raise absent
        try:
            return self._profiles.resolve(hcp_id, viewer=principal)
        except NotFoundError:
            raise absent from None

    def _decide(
        self,
        hcp: HcpRef,
        channel: Channel,
        at: dt.datetime,
        role: Role | None,
        principal: Principal | None,
        groups: Iterable[Group | None],
    ) -> Mapping[Group, Decision]:
        """The guard's decision for each group: one bulk call, no content id."""
        wanted = sorted({g for g in groups if g is not None}, key=_group_order)
        if not wanted:
            return {}
        requests = [
            CheckRequest(hcp.id, channel, purpose, brand, at=at) for purpose, brand in wanted
        ]
        decisions = self._guard.check_many(requests, role=role, viewer=principal)
        return dict(zip(wanted, decisions, strict=True))

    def _with_refused(
        self,
        hcp: HcpRef,
        channel: Channel,
        at: dt.datetime,
        role: Role | None,
        principal: Principal | None,
    ) -> EligibleResult:
        offered: Sequence[ContentRef] = [
            r
            for r in self._catalog.offered(hcp.market, channel)
            if principal is None or within_brands(principal, r.brand)
        ]
        facts = HcpFacts(hcp.id, hcp.market, hcp.time_zone, language=hcp.language)
        decisions = self._decide(hcp, channel, at, role, principal, map(_group_of, offered))
        items: list[ContentRef] = []
        refused: list[RefusedItem] = []
        for ref in offered:
            group = _group_of(ref)
            own = self._content_reasons(ref, group, channel, at, role, facts)
            decision = decisions.get(group) if group is not None else None
            reasons = own + (list(decision.refusals) if decision is not None else [])
            if reasons:
                refused.append(RefusedItem(ref, tuple(reasons)))
            else:
                items.append(ref)
        groups = tuple(
            GroupDecision(purpose, brand, d.allowed, d.refusals)
            for (purpose, brand), d in decisions.items()
        )
        return EligibleResult(hcp.id, channel, at, tuple(items), tuple(refused), groups)

    @staticmethod
    def _content_reasons(
        ref: ContentRef,
        group: Group | None,
        channel: Channel,
        at: dt.datetime,
        role: Role | None,
        facts: HcpFacts,
    ) -> list[Refusal]:
        """The content checks for a candidate of the item's own purpose and brand (an item
        whose function has no purpose is refused for that)."""
        purpose = group[0] if group is not None else Purpose.MARKET_RESEARCH
        candidate = Candidate(channel, purpose, at, brand=ref.brand, content_id=ref.id, role=role)
        return content_refusals(ref, candidate, facts)
