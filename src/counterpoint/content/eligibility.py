"""Which piece of content may go to this HCP, on this channel, now? Pure, no I/O.

``content_refusals`` is the guard's content check for one candidate: the item must be
approved, inside its validity window, approved for the HCP's market and the candidate's
channel, in a language the HCP reads, for the candidate's purpose and brand. Every reason that
applies is returned. Expiry needs no sweeper: an item whose ``valid_until`` has passed is
refused even while its state still says approved.

``eligible`` is the same rule set as a filter over many items for one HCP and channel (plus
the acting role's purposes and the caller's brands), in a stable order. A property test
proves the two agree. See docs/guard.md.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from counterpoint.consent.ledger import Purpose
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.guard import Candidate, HcpFacts, Refusal, role_allows

__all__ = [
    "APPROVED",
    "PURPOSE_OF_FUNCTION",
    "ContentReason",
    "ContentRef",
    "content_refusals",
    "eligible",
    "language_of",
    "purpose_of",
    "sort_key",
]

APPROVED = "approved"
"""The workflow state in which an item may be sent (an edit always leaves it)."""

PURPOSE_OF_FUNCTION: Mapping[str, Purpose] = {
    "promotional": Purpose.PROMOTIONAL,
    "medical": Purpose.MEDICAL,
    "educational": Purpose.EDUCATIONAL,
}
"""The contact purpose a piece of content serves, by its function."""


class ContentReason(enum.StrEnum):
    """Refusal codes of the content checks (beside the guard's own ``Reason``)."""

    UNKNOWN = "content_unknown"
    NOT_APPROVED = "content_not_approved"
    NOT_YET_VALID = "content_not_yet_valid"
    EXPIRED = "content_expired"
    MARKET = "content_market"
    CHANNEL = "content_channel"
    LANGUAGE = "content_language"
    PURPOSE = "content_purpose"
    BRAND = "content_brand"


@dataclass(frozen=True, slots=True)
class ContentRef:
    """The light metadata of one asset (or local variant): what the checks read, and what a
    list of eligible content shows. Never the body."""

    id: str
    code: str
    kind: str  # asset | fragment
    asset_type: str | None
    title: str
    brand: str | None
    function: str  # promotional | medical | educational
    languages: frozenset[str]  # ISO 639-1, lower case; empty: language-neutral
    channels: frozenset[str]  # approval channels
    markets: frozenset[str]  # approval markets
    persona: str | None
    parent_id: str | None
    state: str
    job_code: str | None
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    minutes: float
    journey_stage: str | None
    approved_at: dt.datetime | None = None


def language_of(code: str | None) -> str | None:
    """The primary language subtag, lower case: ``de-AT`` and ``DE`` are both ``de``."""
    if not code:
        return None
    return code.replace("_", "-").split("-", 1)[0].strip().lower() or None


def purpose_of(ref: ContentRef) -> Purpose | None:
    return PURPOSE_OF_FUNCTION.get(ref.function)


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _state_refusals(ref: ContentRef, at: dt.datetime) -> list[Refusal]:
    out: list[Refusal] = []
    if ref.state != APPROVED:
        out.append(Refusal(ContentReason.NOT_APPROVED, f"content {ref.code} is {ref.state}"))
    if ref.valid_from is not None and ref.valid_from > at:
        out.append(
            Refusal(
                ContentReason.NOT_YET_VALID,
                f"content {ref.code} is valid from {_when(ref.valid_from)}",
            )
        )
    if ref.valid_until is not None and ref.valid_until <= at:
        out.append(
            Refusal(
                ContentReason.EXPIRED,
                f"content {ref.code} expired at {_when(ref.valid_until)}",
            )
        )
    return out


def _scope_refusals(
    ref: ContentRef, market: str | None, channel: Channel, language: str | None
) -> list[Refusal]:
    out: list[Refusal] = []
    if market is None or market not in ref.markets:
        approved = ", ".join(sorted(ref.markets)) or "no market"
        out.append(
            Refusal(
                ContentReason.MARKET,
                f"content {ref.code} is approved for {approved}, not {market or 'no market'}",
            )
        )
    if channel.value not in ref.channels:
        approved = ", ".join(sorted(ref.channels)) or "no channel"
        out.append(
            Refusal(
                ContentReason.CHANNEL,
                f"content {ref.code} is approved for {approved}, not {channel.value}",
            )
        )
    if language is not None and ref.languages and language not in ref.languages:
        out.append(
            Refusal(
                ContentReason.LANGUAGE,
                f"content {ref.code} is in {', '.join(sorted(ref.languages))};"
                f" the HCP reads {language}",
            )
        )
    return out


def content_refusals(
    ref: ContentRef | None, candidate: Candidate, facts: HcpFacts
) -> list[Refusal]:
    """Every content reason refusing ``candidate`` (carrying ``ref``) for this HCP; none if
    the content may go. ``ref`` None: no such asset. An HCP whose language is unknown may be
    sent content in any language; an item without languages is language-neutral."""
    if ref is None or ref.kind != "asset":
        what = candidate.content_id or "?"
        return [Refusal(ContentReason.UNKNOWN, f"no asset {what} in the content library")]
    out = _state_refusals(ref, candidate.at)
    out += _scope_refusals(ref, facts.market, candidate.channel, language_of(facts.language))
    purpose = purpose_of(ref)
    if purpose is not candidate.purpose:
        out.append(
            Refusal(
                ContentReason.PURPOSE,
                f"content {ref.code} is {ref.function}, not for {candidate.purpose.value} purposes",
            )
        )
    if candidate.brand is not None and candidate.brand != ref.brand:
        out.append(
            Refusal(
                ContentReason.BRAND,
                f"content {ref.code} is for {ref.brand or 'no brand'}, not {candidate.brand}",
            )
        )
    return out


def sort_key(ref: ContentRef) -> tuple[float, str, str]:
    """Newest approval first, then code (then id: a total order)."""
    approved = ref.approved_at.timestamp() if ref.approved_at is not None else float("-inf")
    return (-approved, ref.code, ref.id)


def eligible(
    refs: Iterable[ContentRef],
    *,
    market: str | None,
    language: str | None,
    channel: Channel,
    at: dt.datetime,
    brands: Collection[str] = (),
    role: Role | None = None,
) -> list[ContentRef]:
    """The items that may go to an HCP of ``market`` reading ``language`` on ``channel`` at
    ``at``: exactly those ``content_refusals`` accepts for a candidate of the item's own
    purpose and brand, whose purpose ``role`` may initiate on ``channel`` (None: automated
    orchestration), within ``brands`` (empty: every brand; an unbranded item always)."""
    lang = language_of(language)
    wanted = channel.value
    functions = {f for f, p in PURPOSE_OF_FUNCTION.items() if role_allows(role, channel, p)}
    out: list[ContentRef] = []
    for ref in refs:
        if ref.kind != "asset" or ref.state != APPROVED or ref.function not in functions:
            continue
        if ref.valid_from is not None and ref.valid_from > at:
            continue
        if ref.valid_until is not None and ref.valid_until <= at:
            continue
        if market not in ref.markets or wanted not in ref.channels:
            continue
        if lang is not None and ref.languages and lang not in ref.languages:
            continue
        if brands and ref.brand is not None and ref.brand not in brands:
            continue
        out.append(ref)
    out.sort(key=sort_key)
    return out
