"""The guard: may this contact reach this HCP now? One decision for every path. Pure.

``decide`` takes what is known of the HCP (consent records, touches, do-not-contact entries,
suppressions, its own limit on promotional contacts), the market's contact policy and the
candidate contact, and returns *allowed* or *refused* with every reason that applies.
``encode`` + ``kernel`` are the batch form: the same rules as NumPy comparisons over one row
per candidate; a property test proves both forms agree. Content checks (approval, validity,
market, channel, language, purpose of the piece of content) plug in through ``ContentCheck``.
See docs/guard.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    Purpose,
    consent_channel,
)
from counterpoint.consent.ledger import decide as consent_decide
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.contact import WEEKDAYS, Cap, ContactPolicy

__all__ = [
    "AUTOMATED_CHANNELS",
    "HCP_FREQUENCY_DAYS",
    "REASON_BITS",
    "ROLE_RULES",
    "Candidate",
    "ContentCheck",
    "Decision",
    "DncEntry",
    "GuardArrays",
    "HcpFacts",
    "Reason",
    "Refusal",
    "RoleRule",
    "TouchDay",
    "decide",
    "encode",
    "kernel",
    "local_time",
    "promotional_usage",
    "reasons_of",
    "role_allows",
    "window_usage",
]


class Reason(enum.StrEnum):
    NO_CONSENT = "no_consent"
    CONSENT_PENDING = "consent_pending"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_DENIED = "consent_denied"
    CONSENT_REVOKED = "consent_revoked"
    OVER_CAP = "over_cap"
    OVER_MINUTES = "over_minutes"
    MIN_GAP = "min_gap"
    QUIET_HOURS = "quiet_hours"
    DO_NOT_CONTACT = "do_not_contact"
    SUPPRESSED = "suppressed"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    UNKNOWN_HCP = "unknown_hcp"
    HCP_FREQUENCY_CAP = "hcp_frequency_cap"


REASON_BITS: Mapping[Reason, int] = {r: 1 << i for i, r in enumerate(Reason)}
"""The bit of each reason in the batch kernel's reason mask."""
_REASON_VALUES = frozenset(r.value for r in Reason)

HCP_FREQUENCY_DAYS = 30
"""The HCP's "per month" limit counts promotional touches over the last 30 UTC days (today
and the 29 before), like a 30-day cap."""

# consent codes of the batch form: 0 = allowed or not needed; then the ledger's reasons
_CONSENT_CODES: tuple[Reason | None, ...] = (
    None,
    Reason.NO_CONSENT,
    Reason.CONSENT_PENDING,
    Reason.CONSENT_EXPIRED,
    Reason.CONSENT_DENIED,
    Reason.CONSENT_REVOKED,
)
_CONSENT_BITS = np.array([0 if r is None else REASON_BITS[r] for r in _CONSENT_CODES], np.uint32)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # a ``Reason`` value, or a content check's own code
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    refusals: tuple[Refusal, ...] = ()

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.refusals]

    @property
    def mask(self) -> int:
        """The built-in reasons as the batch kernel's bit mask."""
        out = 0
        for r in self.refusals:
            if r.code in _REASON_VALUES:
                out |= REASON_BITS[Reason(r.code)]
        return out


@dataclass(frozen=True, slots=True)
class TouchDay:
    """Touches of one identifier on one UTC day, channel and brand (from the event log)."""

    day: dt.date
    channel: str
    brand: str | None
    touches: int
    reported_touches: int = 0  # touches whose event said how long they took
    reported_minutes: float = 0.0
    promotional: int = 0  # of ``touches``: function commercial (see policy.touches)


@dataclass(frozen=True, slots=True)
class DncEntry:
    channel: Channel | None  # None: every channel
    reason: str


@dataclass(frozen=True, slots=True)
class HcpFacts:
    hcp_id: str
    market: str | None
    time_zone: str | None
    consents: Sequence[ConsentRecord] = ()
    touches: Sequence[TouchDay] = ()
    last_touch: Mapping[str, dt.datetime] = field(default_factory=dict)  # channel -> time
    dnc: Sequence[DncEntry] = ()
    suppressed: frozenset[ConsentChannel] = frozenset()  # hard bounces not lifted
    max_promotional_per_month: int | None = None  # the HCP's own limit in its market
    language: str | None = None  # preferred language (content checks read it)


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: Channel
    purpose: Purpose
    at: dt.datetime
    brand: str | None = None
    content_id: str | None = None
    role: Role | None = None  # None: automated journeys and orchestration (the system)
    content_type: str | None = None


class ContentCheck(Protocol):
    """Checks of the piece of content a candidate carries (approved and in date for the
    market, channel, language and purpose). Returns a refusal per problem, none if fine."""

    def __call__(self, candidate: Candidate, facts: HcpFacts) -> Sequence[Refusal]: ...


# --- role rules ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RoleRule:
    channels: frozenset[Channel]
    purposes: frozenset[Purpose]


C, P = Channel, Purpose
AUTOMATED_CHANNELS: frozenset[Channel] = frozenset(
    {C.CAMPAIGN_EMAIL, C.SMS, C.MESSAGING, C.DIRECT_MAIL, C.SOCIAL_MEDIA, C.HCP_PORTAL}
    | {C.WEBINAR, C.EVENT, C.EVENT_APP, C.SURVEY}
)
_FIELD_CHANNELS = frozenset({C.F2F_CALL, C.REMOTE_CALL, C.PHONE, C.REP_EMAIL, C.MESSAGING})
_EVENTS = frozenset({C.WEBINAR, C.EVENT, C.CONGRESS, C.ADVISORY_BOARD})
_COMMERCIAL_FIELD = RoleRule(
    _FIELD_CHANNELS | _EVENTS | {C.SAMPLES}, frozenset({P.PROMOTIONAL, P.EDUCATIONAL})
)
_MEDICAL = RoleRule(
    _FIELD_CHANNELS | _EVENTS | {C.MEDICAL_INQUIRY}, frozenset({P.MEDICAL, P.EDUCATIONAL})
)
_AUTOMATED = RoleRule(
    AUTOMATED_CHANNELS, frozenset({P.PROMOTIONAL, P.EDUCATIONAL, P.MARKET_RESEARCH})
)
_NOTHING = RoleRule(frozenset(), frozenset())

ROLE_RULES: Mapping[Role | None, RoleRule] = {
    Role.SALES_REP: _COMMERCIAL_FIELD,
    Role.KAM: _COMMERCIAL_FIELD,
    Role.MSL: _MEDICAL,
    Role.MEDICAL_AFFAIRS: _MEDICAL,
    Role.MARKETING_OPS: _AUTOMATED,
    Role.BRAND_MANAGER: _AUTOMATED,
    None: _AUTOMATED,  # automated journeys and orchestration act as the system
    Role.DATA_ANALYST: _NOTHING,
    Role.COMPLIANCE_AUDITOR: _NOTHING,
    Role.MLR_REVIEWER: _NOTHING,
    Role.ADMIN: _NOTHING,
}
"""Which channels and purposes each role may initiate (deny by default)."""


def role_allows(role: Role | None, channel: Channel, purpose: Purpose) -> bool:
    rule = ROLE_RULES.get(role, _NOTHING)
    return channel in rule.channels and purpose in rule.purposes


# --- facts the rules read --------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


def local_time(at: dt.datetime, hcp_zone: str | None, policy: ContactPolicy) -> dt.datetime:
    """``at`` in the HCP's zone; the market's zone when the HCP has none (or an unknown one)."""
    zone = (_zone(hcp_zone) if hcp_zone else None) or _zone(policy.time_zone) or dt.UTC
    return at.astimezone(zone)


def window_usage(
    touches: Sequence[TouchDay], cap: Cap, policy: ContactPolicy, at: dt.datetime
) -> tuple[int, float]:
    """Touches and estimated minutes spent on ``cap`` in its period up to ``at`` (UTC days)."""
    today = at.astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=cap.period_days - 1)
    count, minutes = 0, 0.0
    for t in touches:
        if first <= t.day <= today and cap.counts(t.channel, t.brand):
            count += t.touches
            unreported = t.touches - t.reported_touches
            minutes += t.reported_minutes + unreported * policy.minutes_of(t.channel)
    return count, minutes


def promotional_usage(touches: Sequence[TouchDay], at: dt.datetime) -> int:
    """Promotional touches in the ``HCP_FREQUENCY_DAYS`` UTC days up to ``at``, every
    channel and brand."""
    today = at.astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=HCP_FREQUENCY_DAYS - 1)
    return sum(t.promotional for t in touches if first <= t.day <= today)


def _own_limit(facts: HcpFacts, c: Candidate) -> int | None:
    """The HCP's own limit if it applies to the candidate (promotional purposes only)."""
    return facts.max_promotional_per_month if c.purpose is Purpose.PROMOTIONAL else None


def _consent_reason(facts: HcpFacts, policy: ContactPolicy, c: Candidate) -> Reason | None:
    needed = consent_channel(c.channel)
    if needed is None or c.channel in policy.no_consent_channels:
        return None
    if facts.market is None:
        return Reason.NO_CONSENT
    verdict = consent_decide(
        facts.consents,
        channel=needed,
        purpose=c.purpose,
        market=facts.market,
        brand=c.brand,
        content_type=c.content_type,
        at=c.at,
    )
    return None if verdict.allowed else Reason(verdict.reason or Reason.NO_CONSENT)


_CONSENT_DETAIL: Mapping[Reason, str] = {
    Reason.NO_CONSENT: "no consent on record",
    Reason.CONSENT_PENDING: "consent awaits the HCP's confirmation (double opt-in)",
    Reason.CONSENT_EXPIRED: "consent has expired",
    Reason.CONSENT_DENIED: "the HCP denied consent",
    Reason.CONSENT_REVOKED: "the HCP withdrew consent",
}


def _hours(value: float) -> str:
    return f"{value:g} h"


def decide(
    facts: HcpFacts | None,
    policy: ContactPolicy,
    candidate: Candidate,
    content_checks: Sequence[ContentCheck] = (),
) -> Decision:
    """Allowed, or refused with every reason (see module doc and docs/guard.md)."""
    c = candidate
    if facts is None:
        return Decision(False, (Refusal(Reason.UNKNOWN_HCP, "no such HCP in your scope"),))
    out: list[Refusal] = []
    if not role_allows(c.role, c.channel, c.purpose):
        who = c.role.value if c.role else "automated orchestration"
        out.append(
            Refusal(
                Reason.ROLE_NOT_ALLOWED,
                f"{who} may not initiate {c.channel.value} for {c.purpose.value} purposes",
            )
        )
    consent = _consent_reason(facts, policy, c)
    if consent is not None:
        out.append(
            Refusal(
                consent,
                f"{_CONSENT_DETAIL[consent]} for {c.channel.value}, {c.purpose.value}"
                f" in {facts.market or 'no market'}",
            )
        )
    for entry in facts.dnc:
        if entry.channel is None or entry.channel == c.channel:
            what = "every channel" if entry.channel is None else entry.channel.value
            out.append(Refusal(Reason.DO_NOT_CONTACT, f"do not contact on {what}: {entry.reason}"))
            break
    needed = consent_channel(c.channel)
    if needed is not None and needed in facts.suppressed:
        out.append(Refusal(Reason.SUPPRESSED, f"{needed.value} is suppressed after a hard bounce"))
    minutes = policy.minutes_of(c.channel)
    for cap in policy.caps:
        if not cap.applies_to(c.channel, c.brand):
            continue
        used, spent = window_usage(facts.touches, cap, policy, c.at)
        if cap.max_touches is not None and used >= cap.max_touches:
            out.append(
                Refusal(
                    Reason.OVER_CAP,
                    f"{used} of {cap.max_touches} touches used on {cap.label()}",
                )
            )
        if cap.max_minutes is not None and spent + minutes > cap.max_minutes:
            out.append(
                Refusal(
                    Reason.OVER_MINUTES,
                    f"{spent:g} + {minutes:g} min would pass {cap.max_minutes:g} min"
                    f" on {cap.label()}",
                )
            )
    limit = _own_limit(facts, c)
    if limit is not None:
        sent = promotional_usage(facts.touches, c.at)
        if sent >= limit:
            out.append(
                Refusal(
                    Reason.HCP_FREQUENCY_CAP,
                    f"the HCP asked for at most {limit} promotional messages per month;"
                    f" {sent} in the last {HCP_FREQUENCY_DAYS} days",
                )
            )
    gap = policy.min_gap_hours.get(c.channel)
    last = facts.last_touch.get(c.channel.value)
    if gap and last is not None:
        since = (c.at - last).total_seconds() / 3600
        if since < gap:
            out.append(
                Refusal(
                    Reason.MIN_GAP,
                    f"last {c.channel.value} touch {since:.1f} h ago; the gap is {_hours(gap)}",
                )
            )
    local = local_time(c.at, facts.time_zone, policy)
    quiet = policy.quiet_hours
    if quiet is not None and quiet.contains(local.time()):
        out.append(
            Refusal(
                Reason.QUIET_HOURS,
                f"{local:%H:%M} local ({local.tzinfo}) is within quiet hours"
                f" {quiet.start:%H:%M}-{quiet.end:%H:%M}",
            )
        )
    elif local.weekday() in policy.quiet_weekdays:
        out.append(
            Refusal(Reason.QUIET_HOURS, f"{WEEKDAYS[local.weekday()]} is a quiet day locally")
        )
    for check in content_checks:
        out.extend(check(c, facts))
    return Decision(not out, tuple(out))


# --- the batch form --------------------------------------------------------------------------
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class GuardArrays:
    """One row per candidate: the facts the rules compare, as plain numbers."""

    known: BoolArray
    consent: npt.NDArray[np.int8]  # index into _CONSENT_CODES
    role_ok: BoolArray
    dnc: BoolArray
    suppressed: BoolArray
    cap_used: FloatArray  # (n, k): touches in each cap's window (k = most caps of any row)
    cap_max: FloatArray  # (n, k): inf where the cap does not apply or has no touch limit
    minutes_used: FloatArray  # (n, k)
    minutes_max: FloatArray  # (n, k): inf where no minute limit applies
    minutes: FloatArray  # the candidate's own estimated minutes
    hours_since: FloatArray  # since the last touch on the channel; inf if none
    gap_hours: FloatArray  # the channel's minimum gap; 0 if none
    local_minute: npt.NDArray[np.int16]  # minute of the local day
    quiet_start: npt.NDArray[np.int16]  # minute of the day; -1: no quiet hours
    quiet_end: npt.NDArray[np.int16]
    weekday: npt.NDArray[np.int8]  # local weekday, Monday 0
    quiet_days: npt.NDArray[np.uint8]  # bit d set: weekday d is quiet
    promo_used: FloatArray  # promotional touches in the HCP's 30-day window
    promo_max: FloatArray  # the HCP's own limit; inf where none applies

    def __len__(self) -> int:
        return len(self.known)


def _consent_code(facts: HcpFacts, policy: ContactPolicy, c: Candidate) -> int:
    return _CONSENT_CODES.index(_consent_reason(facts, policy, c))


def encode(rows: Sequence[tuple[HcpFacts | None, ContactPolicy, Candidate]]) -> GuardArrays:
    """The kernel's arrays for (facts, policy, candidate) rows."""
    n = len(rows)
    k = max((len(p.caps) for _, p, _ in rows), default=0)
    known = np.zeros(n, np.bool_)
    consent = np.zeros(n, np.int8)
    role_ok = np.zeros(n, np.bool_)
    dnc = np.zeros(n, np.bool_)
    suppressed = np.zeros(n, np.bool_)
    cap_used = np.zeros((n, k))
    cap_max = np.full((n, k), np.inf)
    minutes_used = np.zeros((n, k))
    minutes_max = np.full((n, k), np.inf)
    minutes = np.zeros(n)
    hours_since = np.full(n, np.inf)
    gap_hours = np.zeros(n)
    local_minute = np.zeros(n, np.int16)
    quiet_start = np.full(n, -1, np.int16)
    quiet_end = np.full(n, -1, np.int16)
    weekday = np.zeros(n, np.int8)
    quiet_days = np.zeros(n, np.uint8)
    promo_used = np.zeros(n)
    promo_max = np.full(n, np.inf)
    for i, (facts, policy, c) in enumerate(rows):
        if facts is None:
            continue
        known[i] = True
        consent[i] = _consent_code(facts, policy, c)
        role_ok[i] = role_allows(c.role, c.channel, c.purpose)
        dnc[i] = any(e.channel is None or e.channel == c.channel for e in facts.dnc)
        needed = consent_channel(c.channel)
        suppressed[i] = needed is not None and needed in facts.suppressed
        minutes[i] = policy.minutes_of(c.channel)
        for j, cap in enumerate(policy.caps):
            if not cap.applies_to(c.channel, c.brand):
                continue
            cap_used[i, j], minutes_used[i, j] = window_usage(facts.touches, cap, policy, c.at)
            if cap.max_touches is not None:
                cap_max[i, j] = cap.max_touches
            if cap.max_minutes is not None:
                minutes_max[i, j] = cap.max_minutes
        last = facts.last_touch.get(c.channel.value)
        if last is not None:
            hours_since[i] = (c.at - last).total_seconds() / 3600
        gap_hours[i] = policy.min_gap_hours.get(c.channel, 0.0)
        local = local_time(c.at, facts.time_zone, policy)
        local_minute[i] = local.hour * 60 + local.minute
        weekday[i] = local.weekday()
        if policy.quiet_hours is not None:
            quiet_start[i] = policy.quiet_hours.start.hour * 60 + policy.quiet_hours.start.minute
            quiet_end[i] = policy.quiet_hours.end.hour * 60 + policy.quiet_hours.end.minute
        quiet_days[i] = sum(1 << d for d in policy.quiet_weekdays)
        limit = _own_limit(facts, c)
        if limit is not None:
            promo_used[i] = promotional_usage(facts.touches, c.at)
            promo_max[i] = limit
    return GuardArrays(
        known, consent, role_ok, dnc, suppressed, cap_used, cap_max, minutes_used, minutes_max,
        minutes, hours_since, gap_hours, local_minute, quiet_start, quiet_end, weekday, quiet_days,
        promo_used, promo_max,
    )  # fmt: skip


def kernel(a: GuardArrays) -> tuple[BoolArray, npt.NDArray[np.uint32]]:
    """The allowed mask and the reason bit mask (``REASON_BITS``) of every row, vectorised."""
    b = REASON_BITS
    reasons = _CONSENT_BITS[a.consent]
    reasons |= np.where(a.role_ok, 0, b[Reason.ROLE_NOT_ALLOWED]).astype(np.uint32)
    reasons |= np.where(a.dnc, b[Reason.DO_NOT_CONTACT], 0).astype(np.uint32)
    reasons |= np.where(a.suppressed, b[Reason.SUPPRESSED], 0).astype(np.uint32)
    if a.cap_used.shape[1]:
        over = (a.cap_used >= a.cap_max).any(axis=1)
        reasons |= np.where(over, b[Reason.OVER_CAP], 0).astype(np.uint32)
        over_min = (a.minutes_used + a.minutes[:, None] > a.minutes_max).any(axis=1)
        reasons |= np.where(over_min, b[Reason.OVER_MINUTES], 0).astype(np.uint32)
    own = a.promo_used >= a.promo_max
    reasons |= np.where(own, b[Reason.HCP_FREQUENCY_CAP], 0).astype(np.uint32)
    gap = (a.gap_hours > 0) & (a.hours_since < a.gap_hours)
    reasons |= np.where(gap, b[Reason.MIN_GAP], 0).astype(np.uint32)
    m, s, e = a.local_minute, a.quiet_start, a.quiet_end
    within = np.where(s < e, (m >= s) & (m < e), (m >= s) | (m < e)) & (s >= 0)
    quiet_day = ((a.quiet_days >> a.weekday.astype(np.uint8)) & 1).astype(np.bool_)
    reasons |= np.where(within | quiet_day, b[Reason.QUIET_HOURS], 0).astype(np.uint32)
    reasons = np.where(a.known, reasons, b[Reason.UNKNOWN_HCP]).astype(np.uint32)
    return reasons == 0, reasons


def reasons_of(mask: int) -> list[Reason]:
    return [r for r, bit in REASON_BITS.items() if mask & bit]
