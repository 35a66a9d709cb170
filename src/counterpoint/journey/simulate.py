"""Dry run of a journey: synthetic HCPs moved through it over simulated weeks, in memory.

``simulate(document, hcps=1000, weeks=8, …)`` draws a synthetic population for the journey's
markets, lets it enter as the entry says, and moves every HCP with the engine's own rule
(``journey.engine.advance``) through a priority queue of timers and interactions. Time is
injected: nothing sleeps, eight weeks take seconds. Nothing is stored and nothing is sent:
the guard's pure ``decide`` answers each contact with the HCP's simulated consent, the
market's contact policy and the touches the simulation made so far, so caps, gaps and quiet
hours refuse as they would in the running journey. The result is a ``SimulationReport`` with
the same figures the live map shows (``journey.figures.map_figures``) plus sends by channel,
random arms, HCPs reached and totals, labelled synthetic.

Entry: a condition (or a segment's condition, which the caller passes) is evaluated for every
synthetic HCP at the start and then once a simulated week; an event entry enters an HCP when
one of its interactions matches the trigger; ``all_enter`` lets every HCP enter at the start.
Re-entry follows the entry's ``re_entry`` rule.

Everything drawn here is synthetic and documented in this module:

* **population** — market (the journey's markets, weighted by the synthetic market's shares),
  specialty, potential decile (1-10, uniform), persona (``PERSONA_SHARES``), time zone and
  preferred language (the market's, from ``simulate.reference``), adoption stage for the
  journey's brand (``STAGE_SHARES``), segments (as the synthetic market draws them), and
  consent per channel and purpose (``SimulationRates.consent``: granted with that probability,
  shifted per purpose; otherwise pending or denied; e-mail in double opt-in markets is granted
  less often and pending more often);
* **background** — other activity of every HCP (other brands' e-mail, rep calls, web visits,
  webinars, medical inquiries), Poisson per week by persona (``SimulationRates.background``),
  from ``history_weeks`` before the start, so conditions over recent events have a history.
  Background touches spend the same contact budget as the journey's own;
* **responses** — after a send the HCP may open and click (e-mail), register and attend
  (webinar, event), visit, answer, reply or unsubscribe (which revokes the consent), with
  probabilities by persona and delays in hours (``SimulationRates.responses``). An HCP who
  engaged may then do what the wait right after the send waits for when the channel never
  produces it (register for the webinar an e-mail invites to; ``awaited``); what follows such
  an action (attending) happens while the journey waits for it, since the journey, not the
  model, knows the webinar's date. A rep task may be carried out (a completed call, in working
  hours before it is due; ``task_done``). After a completed call or an attended event the HCP
  may move one adoption stage on for the brand (``adoption_step``).

Rep tasks are checked as the rep who carries them out: the touchpoint's responsible role when
it is a field role, otherwise a sales rep; sends are checked as automated orchestration
(role None). Content approval is not checked here (``journey validate`` does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
    consent_channel,
)
from counterpoint.consent.ledger import decide as consent_decide
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import (
    ENGAGEMENT_ACTIONS,
    TOUCH_ACTIONS,
    Action,
    Channel,
    Function,
)
from counterpoint.journey.definition import (
    EventTrigger,
    JourneyDocument,
    RandomNode,
    SendNode,
    WaitForEventNode,
)
from counterpoint.journey.engine import (
    Effect,
    Enrollment,
    EnrollmentStatus,
    Entered,
    Exited,
    GoalReached,
    Interaction,
    Permission,
    Refused,
    RepTask,
    Send,
    Start,
    Stimulus,
    Timer,
    UpdateAttribute,
    advance,
    arm_of,
    start,
)
from counterpoint.journey.figures import EnrollmentRow, MapFigures, TransitionRow, map_figures
from counterpoint.policy.access import Role
from counterpoint.policy.contact import ContactPolicy, default_policy
from counterpoint.policy.guard import Candidate, TouchDay
from counterpoint.policy.guard import HcpFacts as GuardFacts
from counterpoint.policy.guard import decide as guard_decide
from counterpoint.segment.conditions import (
    Condition,
    ConsentKey,
    EventFact,
    HcpFacts,
    consent_keys,
    evaluate,
)
from counterpoint.simulate.reference import (
    BRANDS,
    MARKETS,
    PERSONAS,
    SPECIALTY_WEIGHTS,
    STAGES,
    US_FAMILY_MEDICINE,
)

__all__ = [
    "DEFAULT_RATES",
    "DOUBLE_OPT_IN_MARKETS",
    "MAX_HCPS",
    "MAX_WEEKS",
    "PERSONA_SHARES",
    "STAGE_SHARES",
    "ArmFigures",
    "Background",
    "Response",
    "Simulation",
    "SimulationRates",
    "SimulationReport",
    "SyntheticHcp",
    "simulate",
]

MAX_HCPS = 1_000_000
MAX_WEEKS = 104

PERSONA_SHARES: Mapping[str, float] = {
    "digital_first": 0.22,
    "f2f_loyalist": 0.24,
    "hybrid": 0.30,
    "low_engager": 0.16,
    "scientific_seeker": 0.08,
}
"""Persona shares, as in the synthetic market (``simulate.population``)."""

STAGE_SHARES: Mapping[str, float] = dict(
    zip(STAGES, (0.25, 0.30, 0.20, 0.12, 0.10, 0.03), strict=True)
)
"""Adoption stage for the journey's brand at the start."""

DOUBLE_OPT_IN_MARKETS = frozenset(
    {"AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "NL", "NO", "PL", "PT", "SE"}
)
"""Markets where e-mail consent commonly needs double opt-in (more of it is pending)."""

_FIELD_ROLES = frozenset({Role.SALES_REP, Role.KAM, Role.MSL, Role.MEDICAL_AFFAIRS})
_CALLS = frozenset({Channel.F2F_CALL, Channel.REMOTE_CALL, Channel.PHONE})
_OTHER_BRANDS = tuple(b.code for b in BRANDS)


def by_persona(*values: float) -> Mapping[str, float]:
    """Values in the order of ``simulate.reference.PERSONAS``."""
    return dict(zip(PERSONAS, values, strict=True))


# --- the rates -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Response:
    """An action of the HCP that may follow a contact (or an earlier response): with
    ``probability`` (by persona), ``hours`` later (drawn uniformly), on ``channel`` (the
    contact's when None). An action in ``TOUCH_ACTIONS`` (attended, call completed) spends
    the HCP's contact budget; ``unsubscribed`` revokes the e-mail consent for the purpose."""

    action: Action
    probability: Mapping[str, float]
    hours: tuple[float, float]
    then: tuple[Response, ...] = ()
    channel: Channel | None = None


@dataclass(frozen=True, slots=True)
class Background:
    """Other activity of an HCP: ``per_week`` occurrences on average (Poisson, by persona),
    a share ``own_brand`` of them for the journey's brand (the rest for another brand).
    ``digital`` activity happens any day 07-22 local time, the rest on weekdays 08-18.
    ``needs_consent``: only HCPs with promotional consent on the channel get it (other
    brands' sends passed their guard too)."""

    channel: Channel
    action: Action
    per_week: Mapping[str, float]
    own_brand: float = 0.0
    digital: bool = False
    needs_consent: bool = False
    function: Function = Function.COMMERCIAL
    responses: tuple[Response, ...] = ()


@dataclass(frozen=True, slots=True)
class SimulationRates:
    """Every probability and rate of the dry run (all synthetic; ``DEFAULT_RATES``)."""

    responses: Mapping[Channel, tuple[Response, ...]]
    """What may follow a send on the channel."""
    task_done: Mapping[str, float]
    """Probability that a rep carries out a task (by persona)."""
    task_hours: tuple[float, float]
    """When a task is carried out, after it was created (at most its due time); moved into
    the rep's working hours (weekdays 08-18 in the HCP's zone)."""
    background: tuple[Background, ...]
    consent: Mapping[ConsentChannel, float]
    """Probability that promotional consent on the channel is granted."""
    purpose_shift: Mapping[Purpose, float] = field(
        default_factory=lambda: {
            Purpose.PROMOTIONAL: 0.0,
            Purpose.MEDICAL: 0.08,
            Purpose.EDUCATIONAL: 0.04,
            Purpose.MARKET_RESEARCH: -0.10,
        }
    )
    """Added to the grant probability for other purposes."""
    double_opt_in_shift: float = -0.14
    """Added to the e-mail grant probability in ``DOUBLE_OPT_IN_MARKETS``."""
    pending_share: float = 0.25
    """Of the HCPs without a grant, the share whose consent is pending (the rest denied)."""
    pending_share_double_opt_in: float = 0.5
    history_weeks: int = 4
    """Background history drawn before the start (conditions look back at it)."""
    awaited: Mapping[str, float] = field(
        default_factory=lambda: by_persona(0.35, 0.25, 0.30, 0.15, 0.45)
    )
    """Of HCPs who engaged with a send (opened, clicked, …), the share who then do what the
    wait right after the send waits for, when the channel's responses never produce it
    (register for the webinar an e-mail invites to); by persona."""
    awaited_hours: tuple[float, float] = (0.1, 72.0)
    follow_ups: Mapping[tuple[Channel, Action], tuple[Response, ...]] = field(default_factory=dict)
    """What may follow an awaited action (attending after registering)."""
    adoption_step: Mapping[str, float] = field(
        default_factory=lambda: by_persona(0.15, 0.25, 0.20, 0.08, 0.20)
    )
    """After a completed call or an attended event of the journey: the probability that the
    HCP moves one adoption stage on for the brand, ``adoption_days`` later."""
    adoption_days: tuple[float, float] = (14.0, 56.0)


_HOURS_OPEN = (0.5, 48.0)
_CLICK = Response(Action.CLICKED, by_persona(0.45, 0.35, 0.4, 0.3, 0.5), (0.02, 0.5))


def _email(open_p: Mapping[str, float]) -> tuple[Response, ...]:
    opened = Response(Action.OPENED, open_p, _HOURS_OPEN, (_CLICK,))
    unsubscribed = Response(Action.UNSUBSCRIBED, by_persona(0.01, 0.01, 0.01, 0.02, 0.01), (1, 72))
    return (
        Response(Action.DELIVERED, by_persona(*[0.98] * 5), (0.0, 0.05), (opened, unsubscribed)),
    )


def _invitation(register: Mapping[str, float], attend: Mapping[str, float]) -> tuple[Response, ...]:
    attended = Response(Action.ATTENDED, attend, (72, 240))
    return (Response(Action.REGISTERED, register, (2, 96), (attended,)),)


_RESPONSES: Mapping[Channel, tuple[Response, ...]] = {
    Channel.CAMPAIGN_EMAIL: _email(by_persona(0.38, 0.20, 0.30, 0.12, 0.33)),
    Channel.REP_EMAIL: _email(by_persona(0.61, 0.32, 0.48, 0.19, 0.53)),
    Channel.SMS: (
        Response(
            Action.DELIVERED,
            by_persona(*[0.98] * 5),
            (0.0, 0.01),
            (Response(Action.CLICKED, by_persona(0.12, 0.06, 0.09, 0.06, 0.10), (0.1, 48)),),
        ),
    ),
    Channel.MESSAGING: (
        Response(Action.REPLIED, by_persona(0.10, 0.15, 0.12, 0.03, 0.10), (0.2, 48)),
    ),
    Channel.WEBINAR: _invitation(
        by_persona(0.25, 0.06, 0.15, 0.03, 0.35), by_persona(0.60, 0.50, 0.55, 0.40, 0.70)
    ),
    Channel.EVENT: _invitation(
        by_persona(0.10, 0.25, 0.15, 0.03, 0.20), by_persona(0.70, 0.80, 0.70, 0.50, 0.75)
    ),
    Channel.CONGRESS: _invitation(
        by_persona(0.05, 0.12, 0.08, 0.01, 0.20), by_persona(0.70, 0.80, 0.70, 0.50, 0.80)
    ),
    Channel.HCP_PORTAL: (
        Response(Action.VISITED, by_persona(0.30, 0.05, 0.15, 0.03, 0.25), (1, 72)),
    ),
    Channel.DIRECT_MAIL: (
        Response(
            Action.VISITED,
            by_persona(0.06, 0.02, 0.04, 0.01, 0.05),
            (24, 168),
            channel=Channel.WEBSITE,
        ),
    ),
    Channel.SURVEY: (
        Response(Action.SURVEY_ANSWERED, by_persona(0.15, 0.08, 0.12, 0.03, 0.25), (2, 120)),
    ),
    Channel.SOCIAL_MEDIA: (
        Response(Action.CLICKED, by_persona(0.04, 0.01, 0.02, 0.005, 0.03), (0.1, 24)),
    ),
}

_BACKGROUND: tuple[Background, ...] = (
    Background(
        Channel.CAMPAIGN_EMAIL,
        Action.SENT,
        by_persona(0.5, 0.3, 0.4, 0.35, 0.4),
        own_brand=0.1,
        needs_consent=True,
        responses=_RESPONSES[Channel.CAMPAIGN_EMAIL],
    ),
    Background(Channel.F2F_CALL, Action.CALL_COMPLETED, by_persona(0.05, 0.35, 0.2, 0.05, 0.12)),
    Background(
        Channel.REMOTE_CALL, Action.CALL_COMPLETED, by_persona(0.08, 0.01, 0.05, 0.02, 0.04)
    ),
    Background(
        Channel.WEBSITE, Action.VISITED, by_persona(0.6, 0.1, 0.3, 0.08, 0.45), 0.3, digital=True
    ),
    Background(
        Channel.HCP_PORTAL, Action.VISITED, by_persona(0.2, 0.02, 0.1, 0.02, 0.15), 0.3, True
    ),
    Background(
        Channel.WEBINAR,
        Action.REGISTERED,
        by_persona(0.05, 0.01, 0.03, 0.005, 0.08),
        own_brand=0.2,
        responses=(Response(Action.ATTENDED, by_persona(0.6, 0.5, 0.55, 0.4, 0.7), (24, 240)),),
    ),
    Background(
        Channel.MEDICAL_INQUIRY,
        Action.INQUIRY_RECEIVED,
        by_persona(0.01, 0.01, 0.01, 0.003, 0.04),
        own_brand=0.2,
        function=Function.MEDICAL,
    ),
)

DEFAULT_RATES = SimulationRates(
    responses=_RESPONSES,
    follow_ups={
        (channel, Action.REGISTERED): _RESPONSES[channel][0].then
        for channel in (Channel.WEBINAR, Channel.EVENT, Channel.CONGRESS)
    },
    task_done=by_persona(0.55, 0.85, 0.75, 0.40, 0.70),
    task_hours=(4.0, 120.0),
    background=_BACKGROUND,
    consent={
        ConsentChannel.EMAIL: 0.72,
        ConsentChannel.SMS: 0.35,
        ConsentChannel.PHONE: 0.60,
        ConsentChannel.MESSAGING: 0.30,
        ConsentChannel.F2F_CALL: 0.90,
        ConsentChannel.REMOTE_CALL: 0.80,
        ConsentChannel.DIRECT_MAIL: 0.80,
        ConsentChannel.WEBINAR: 0.65,
        ConsentChannel.EVENT: 0.65,
        ConsentChannel.SURVEY: 0.50,
        ConsentChannel.SOCIAL_MEDIA: 0.30,
        ConsentChannel.HCP_PORTAL: 0.70,
    },
)
"""The documented synthetic rates (open rates as the synthetic market's behaviour model)."""


# --- the synthetic population ----------------------------------------------------------------
@dataclass(slots=True)
class SyntheticHcp:
    """One synthetic HCP and what the dry run knows of it (its history grows as it runs)."""

    index: int
    id: str
    market: str
    time_zone: str
    persona: str
    attributes: dict[str, Any]
    events: list[EventFact] = field(default_factory=list)
    touches: list[tuple[dt.datetime, str, str | None, bool]] = field(default_factory=list)
    """(at, channel, brand, promotional) of every touch, past and scheduled."""
    consents: dict[tuple[ConsentChannel, Purpose], list[ConsentRecord]] = field(
        default_factory=dict
    )
    pending: list[tuple[_Origin, Channel, Response]] = field(default_factory=list)
    """Follow-ups the HCP committed to (attend after registering), waiting for the journey
    to wait for them."""
    enrollment: Enrollment | None = None
    entries: int = 0
    reached: bool = False


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (stable across runs and platforms)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


_REFERENCE = {m.code: m for m in MARKETS}
_MEAN_SHARE = sum(m.share for m in MARKETS) / len(MARKETS)


def _draw_hcp(
    rng: random.Random, index: int, seed: int, markets: Sequence[str], brand: str,
    hcps: int, policy_for: Callable[[str], ContactPolicy],
) -> SyntheticHcp:  # fmt: skip
    market = _pick(
        rng, {m: _REFERENCE[m].share if m in _REFERENCE else _MEAN_SHARE for m in markets}
    )
    reference = _REFERENCE.get(market)
    if reference is not None:
        zone = _pick(rng, {z: w for z, w, _ in reference.time_zones})
        language = _pick(rng, dict(reference.languages))
    else:  # a market the synthetic market does not know: its policy's zone, English
        zone, language = policy_for(market).time_zone, "en"
    specialty = _pick(rng, {s: w for s, w in SPECIALTY_WEIGHTS if w > 0})
    if specialty == "general_practice" and market == "US" and rng.random() < US_FAMILY_MEDICINE:
        specialty = "family_medicine"
    decile = rng.randint(1, 10)
    persona = _pick(rng, PERSONA_SHARES)
    digital = rng.random() < by_persona(0.85, 0.2, 0.55, 0.15, 0.7)[persona]
    segments = [
        "high_potential" if decile >= 8 else "growth" if decile >= 5 else "core",
        *(["kol"] if decile == 10 and rng.random() < 0.3 else []),
        *(["digital_engaged"] if digital else []),
        "hospital_based" if rng.random() < 0.27 else "office_based",
    ]
    territories = max(1, math.ceil(hcps / len(markets) / 450))
    hcp_id = f"syn-{seed}-{index + 1:07d}"
    return SyntheticHcp(
        index=index,
        id=hcp_id,
        market=market,
        time_zone=zone,
        persona=persona,
        attributes={
            "market": market,
            "territory": f"{market}-T{rng.randint(1, territories):03d}",
            "specialty": specialty,
            "persona": persona,
            "preferred_language": language,
            "time_zone": zone,
            "potential_decile": decile,
            "segments": segments,
            "adoption_stage": {brand: _pick(rng, STAGE_SHARES)},
            "synthetic": True,
        },
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _working_hours(at: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """``at``, or the next weekday 09:00 in the zone when ``at`` is outside 08-18 on a weekday."""
    local = at.astimezone(zone)
    day = local.date()
    if local.weekday() < 5 and 8 <= local.hour < 18:
        return at
    if local.weekday() < 5 and local.hour < 8:
        return dt.datetime.combine(day, dt.time(9), tzinfo=zone).astimezone(dt.UTC)
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(9), tzinfo=zone).astimezone(dt.UTC)


# --- the report ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ArmFigures:
    """One arm of a random split: HCPs drawn into it and what happened to them after."""

    node: str
    arm: str
    holdout: bool
    weight: float
    entered: int = 0
    sent: int = 0
    tasks: int = 0
    refused: int = 0
    goals: int = 0
    completed: int = 0
    exited: int = 0
    waiting: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What a dry run would have done. ``stages``, ``touchpoints``, ``nodes`` and ``leaks``
    are the live map's figures (``journey.figures``; ``active`` is waiting at the end), each
    with ``sent_by_channel``; nodes also count ``visits`` (contacts attempted at a send or
    rep-task node: sent + tasks + refused)."""

    journey: str
    title: str
    brand: str
    markets: tuple[str, ...]
    purpose: str
    example: bool
    seed: int
    hcps: int
    weeks: int
    start: dt.datetime
    end: dt.datetime
    entry: str
    population: Mapping[str, Mapping[str, int]]
    totals: Mapping[str, Any]
    stages: Sequence[Mapping[str, Any]]
    touchpoints: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]
    leaks: Sequence[Mapping[str, Any]]
    arms: Sequence[ArmFigures]
    synthetic: bool = True
    dry_run: bool = True

    def node(self, node_id: str) -> Mapping[str, Any]:
        """The figures of one node (KeyError when the journey has no such node)."""
        for row in self.nodes:
            if row["id"] == node_id:
                return dict(row["figures"])
        raise KeyError(node_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "synthetic": self.synthetic,
            "dry_run": self.dry_run,
            "journey": self.journey,
            "title": self.title,
            "brand": self.brand,
            "markets": list(self.markets),
            "purpose": self.purpose,
            "example": self.example,
            "seed": self.seed,
            "hcps": self.hcps,
            "weeks": self.weeks,
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "entry": self.entry,
            "population": {k: dict(v) for k, v in self.population.items()},
            "totals": dict(self.totals),
            "stages": [dict(r) for r in self.stages],
            "touchpoints": [dict(r) for r in self.touchpoints],
            "nodes": [dict(r) for r in self.nodes],
            "leaks": [dict(r) for r in self.leaks],
            "arms": [a.as_dict() for a in self.arms],
        }


# --- the run ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Origin:
    """What a chain of interactions answers: its brand, content and function, and the
    journey's send (enrollment, visit) when it is one (its responses count for the KPI)."""

    brand: str | None
    content: str | None
    function: Function
    send: tuple[str, int] | None = None


def _produced(responses: Sequence[Response], channel: Channel) -> list[tuple[Channel, Action]]:
    """Every (channel, action) a response tree can produce."""
    out: list[tuple[Channel, Action]] = []
    for r in responses:
        on = r.channel or channel
        out.append((on, r.action))
        out.extend(_produced(r.then, on))
    return out


_SWEEP, _TIMER, _EVENT, _ADOPT = 0, 1, 2, 3
_Item = tuple[dt.datetime, int, int, int, Any]
"""(at, sequence, kind, HCP index, payload): the queue's entries, in time order."""


class _Oracle:
    """The engine's questions, answered from one synthetic HCP's simulated state."""

    __slots__ = ("hcp", "sim")

    def __init__(self, sim: Simulation, hcp: SyntheticHcp) -> None:
        self.sim, self.hcp = sim, hcp

    def holds(self, condition: Condition, now: dt.datetime) -> bool:
        return self.sim.holds(self.hcp, condition, now)

    def permits(self, effect: Send | RepTask, now: dt.datetime) -> Permission:
        return self.sim.permits(self.hcp, effect, now)

    def time_zone(self) -> str:
        return self.hcp.time_zone


class Simulation:
    """One dry run (``simulate`` runs it); after ``run`` its ``hcps``, ``transitions`` and
    ``enrollments`` show every synthetic HCP's path."""

    def __init__(
        self,
        document: JourneyDocument,
        *,
        hcps: int,
        weeks: int,
        seed: int,
        start: dt.datetime,
        policy_for: Callable[[str], ContactPolicy] = default_policy,
        segment_conditions: Mapping[str, Condition] | None = None,
        rates: SimulationRates = DEFAULT_RATES,
        all_enter: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        _check(hcps, weeks, start)
        self.document, self.seed, self.rates = document, seed, rates
        self.weeks, self.size = weeks, hcps
        self.start = start.astimezone(dt.UTC)
        self.end = self.start + dt.timedelta(weeks=weeks)
        self.policy_for, self.progress = policy_for, progress
        self.purpose = document.purpose
        self.function = Function.MEDICAL if self.purpose is Purpose.MEDICAL else Function.COMMERCIAL
        entry = document.flow.entry
        self.re_entry = entry.re_entry
        self.entry_condition: Condition | None = None
        self.entry_event: EventTrigger | None = None
        self.all_enter = all_enter
        if all_enter:
            self.entry = "all (every synthetic HCP enters)"
        elif entry.trigger.condition is not None:
            self.entry, self.entry_condition = "condition", entry.trigger.condition
        elif entry.trigger.segment is not None:
            self.entry = f"segment {entry.trigger.segment}"
            self.entry_condition = _segment(document, entry.trigger.segment, segment_conditions)
        else:
            self.entry, self.entry_event = "event", entry.trigger.event
        self.triggers = [self.entry_event] if self.entry_event is not None else []
        self.triggers += [n.event for n in document.flow.nodes if isinstance(n, WaitForEventNode)]
        self.nodes = document.flow.by_id
        self.where = {n.id: (n.touchpoint, document.stage_of(n)) for n in document.flow.nodes}
        self.task_role = {
            n.id: _task_role(document, n.touchpoint)
            for n in document.flow.nodes
            if n.type == "rep_task"
        }
        self.hcps: list[SyntheticHcp] = []
        self.transitions: list[TransitionRow] = []
        self.enrollments: dict[str, Enrollment] = {}
        self.responses: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.visits: Counter[str] = Counter()
        self.by_channel: dict[str, Counter[str]] = defaultdict(Counter)
        self.arm_tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.arm_entered: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.arms_of: dict[str, dict[str, str]] = defaultdict(dict)
        self.background = 0
        self._queue: list[_Item] = []
        self._seq = 0
        self._policies: dict[str, ContactPolicy] = {}
        self._keys: dict[int, list[ConsentKey]] = {}
        self._awaits: dict[str, tuple[Channel, Action, str | None, str | None] | None] = {}

    # --- driving ---------------------------------------------------------------------------
    def run(self) -> SimulationReport:
        for i in range(self.size):
            rng = random.Random(f"{self.seed}:hcp:{i}")  # noqa: S311 - synthetic data
            hcp = _draw_hcp(
                rng, i, self.seed, self.document.markets, self.document.brand, self.size,
                self.policy,
            )  # fmt: skip
            self.hcps.append(hcp)
            self._draw_background(hcp, rng)
        for week in range(self.weeks):
            self._push(self.start + dt.timedelta(weeks=week), _SWEEP, -1, week)
        while self._queue and self._queue[0][0] < self.end:
            at, _, kind, index, payload = heapq.heappop(self._queue)
            if kind == _SWEEP:
                if payload and self.progress is not None:
                    self.progress(payload)
                self._sweep(at)
            elif kind == _TIMER:
                self._timer(self.hcps[index], at)
            elif kind == _ADOPT:
                self._adopted(self.hcps[index])
            else:
                self._interaction(self.hcps[index], payload)
        if self.progress is not None:
            self.progress(self.weeks)
        return self._report()

    def _push(self, at: dt.datetime, kind: int, index: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, index, payload))

    def _sweep(self, now: dt.datetime) -> None:
        if self.entry_event is not None:
            return
        condition = self.entry_condition
        for hcp in self.hcps:
            if self._may_enter(hcp, now) and (condition is None or self.holds(hcp, condition, now)):
                self._enter(hcp, now)

    def _timer(self, hcp: SyntheticHcp, now: dt.datetime) -> None:
        state = hcp.enrollment
        if state is not None and state.status is EnrollmentStatus.WAITING and state.wake_at == now:
            self._step(hcp, state, Timer(now))

    def _interaction(self, hcp: SyntheticHcp, stimulus: Interaction) -> None:
        state = hcp.enrollment
        if state is not None and not state.final:
            if state.status is EnrollmentStatus.WAITING:
                self._step(hcp, state, stimulus)
            return
        trigger = self.entry_event
        if (
            trigger is not None
            and trigger.matches(
                stimulus.channel, stimulus.action, stimulus.brand, stimulus.content_id
            )
            and self._may_enter(hcp, stimulus.now)
        ):
            self._enter(hcp, stimulus.now)

    def _adopted(self, hcp: SyntheticHcp) -> None:
        stages = hcp.attributes["adoption_stage"]
        now = stages.get(self.document.brand)
        at = STAGES.index(now) if now in STAGES else -1
        if at + 1 < len(STAGES):
            stages[self.document.brand] = STAGES[at + 1]

    def _may_enter(self, hcp: SyntheticHcp, now: dt.datetime) -> bool:
        state = hcp.enrollment
        if state is None:
            return True
        if not state.final or self.re_entry.policy == "never":
            return False
        return now - state.entered_at >= dt.timedelta(days=self.re_entry.min_days)

    def _enter(self, hcp: SyntheticHcp, now: dt.datetime) -> None:
        hcp.entries += 1
        hcp.pending.clear()
        state = start(self.document, f"dry-{hcp.id}-{hcp.entries}", 1, hcp.id, now)
        self._step(hcp, state, Start(now))

    def _step(self, hcp: SyntheticHcp, state: Enrollment, stimulus: Stimulus) -> None:
        step = advance(self.document, state, stimulus, _Oracle(self, hcp))
        if not step.effects:
            return
        self._record(hcp, state, step.effects, stimulus.now)
        after = step.enrollment
        hcp.enrollment = self.enrollments[after.id] = after
        waiting = after.status is EnrollmentStatus.WAITING and after.wake_at is not None
        if waiting and after.wake_at is not None and after.wake_at < self.end:
            self._push(after.wake_at, _TIMER, hcp.index, None)

    # --- what a step did -------------------------------------------------------------------
    def _record(
        self, hcp: SyntheticHcp, before: Enrollment, effects: Sequence[Effect], now: dt.datetime
    ) -> None:
        visit, eid = before.visits, before.id
        arms = self.arms_of[eid]
        for effect in effects:
            node = effect.node
            touchpoint, stage = self.where[node]
            kind, detail = _kind(effect)
            if isinstance(effect, Entered):
                visit += 1
                self.visits[node] += 1
                target = self.nodes[node]
                if isinstance(target, RandomNode):
                    arms[node] = arm_of(target, self.document.journey, hcp.id)
                    self.arm_entered[(node, arms[node])].add(eid)
                elif isinstance(target, WaitForEventNode) and hcp.pending:
                    self._keep(hcp, target, now, f"{eid}:{node}:{visit}")
            elif isinstance(effect, Send):
                hcp.reached = True
                for key in (f"node:{node}", f"tp:{touchpoint}", f"stage:{stage}", "total"):
                    self.by_channel[key][effect.channel.value] += 1
                self._sent(hcp, effect, now, (eid, visit))
            elif isinstance(effect, RepTask):
                hcp.reached = True
                self._task(hcp, effect, now)
            elif isinstance(effect, UpdateAttribute):
                hcp.attributes["adoption_stage"][effect.brand] = effect.value
            for pair in arms.items():
                if kind != "entered":
                    self.arm_tally[pair][kind] += 1
            self.transitions.append(
                TransitionRow(eid, visit, kind, node, touchpoint, stage, now, detail)
            )

    def _sent(
        self, hcp: SyntheticHcp, effect: Send, now: dt.datetime, key: tuple[str, int]
    ) -> None:
        """What the HCP does about a send (in its history since ``permits`` allowed it): the
        channel's responses and, when it engaged, what the journey's next step waits for."""
        origin = _Origin(self.document.brand, effect.content, self.function, key)
        rng = random.Random(f"{self.seed}:{effect.key}")  # noqa: S311 - synthetic data
        responses = self.rates.responses.get(effect.channel, ())
        engaged = self._follow(hcp, rng, responses, now, effect.channel, origin)
        awaited = self._awaited(effect.node)
        if engaged is None or awaited is None:
            return
        if rng.random() >= self.rates.awaited.get(hcp.persona, 0.0):
            return
        at = engaged + dt.timedelta(hours=rng.uniform(*self.rates.awaited_hours))
        if at >= self.end:
            return
        channel, action, brand, content = awaited
        origin = dataclasses.replace(origin, brand=brand, content=content)
        self._happen(hcp, at, channel, action, origin)
        self.responses[key].add(action.value)
        self._commit(hcp, rng, at, channel, action, origin)

    def _awaited(self, node_id: str) -> tuple[Channel, Action, str | None, str | None] | None:
        """What the wait right after a send waits for, when the channel's own responses never
        produce it (a webinar registration after an e-mail invitation); else None."""
        if node_id not in self._awaits:
            found: tuple[Channel, Action, str | None, str | None] | None = None
            send = self.nodes[node_id]
            after = self.nodes.get(getattr(send, "next", ""))
            if isinstance(send, SendNode) and isinstance(after, WaitForEventNode):
                t = after.event
                brand = t.brand[0] if t.brand else self.document.brand
                content = t.content_id[0] if t.content_id else send.content
                produced = _produced(self.rates.responses.get(send.channel, ()), send.channel)
                if not any(t.matches(c.value, a.value, brand, content) for c, a in produced):
                    channel = t.channel[0] if t.channel else send.channel
                    found = (Channel(channel), Action(t.action[0]), brand, content)
            self._awaits[node_id] = found
        return self._awaits[node_id]

    def _task(self, hcp: SyntheticHcp, effect: RepTask, now: dt.datetime) -> None:
        """The rep may carry the task out, in working hours before it is due."""
        rng = random.Random(f"{self.seed}:{effect.key}")  # noqa: S311 - synthetic data
        if rng.random() >= self.rates.task_done.get(hcp.persona, 0.0):
            return
        due = (effect.due_at - now).total_seconds() / 3600
        high = min(self.rates.task_hours[1], due)
        low = min(self.rates.task_hours[0], high)
        for _ in range(8):  # a moment in working hours before the task is due
            at = _working_hours(now + dt.timedelta(hours=rng.uniform(low, high)), self._zone(hcp))
            if at <= effect.due_at:
                break
        else:
            return
        if at >= self.end:
            return
        origin = _Origin(self.document.brand, effect.content, self.function)
        if effect.channel in _CALLS:
            self._happen(hcp, at, effect.channel, Action.CALL_COMPLETED, origin)
            self._adopt(hcp, rng, at)
            return
        self._happen(hcp, at, effect.channel, Action.SENT, origin)
        responses = self.rates.responses.get(effect.channel, ())
        self._follow(hcp, rng, responses, at, effect.channel, origin)

    def _follow(
        self, hcp: SyntheticHcp, rng: random.Random, responses: Sequence[Response],
        after: dt.datetime, channel: Channel, origin: _Origin,
    ) -> dt.datetime | None:  # fmt: skip
        """Draw the responses to a contact (and to those responses) at their times; the
        time of the HCP's last engagement action among them, if any."""
        engaged: dt.datetime | None = None
        for r in responses:
            if rng.random() >= r.probability.get(hcp.persona, 0.0):
                continue
            at = after + dt.timedelta(hours=rng.uniform(*r.hours))
            deeper = self._occur(hcp, rng, r, at, r.channel or channel, origin)
            if deeper is not None:
                engaged = deeper if engaged is None else max(engaged, deeper)
        return engaged

    def _occur(
        self, hcp: SyntheticHcp, rng: random.Random, r: Response, at: dt.datetime,
        channel: Channel, origin: _Origin,
    ) -> dt.datetime | None:  # fmt: skip
        """One response happens at ``at`` (within the period), then what follows it."""
        if at >= self.end:
            return None
        self._happen(hcp, at, channel, r.action, origin)
        if origin.send is not None:
            self.responses[origin.send].add(r.action.value)
            if r.action in TOUCH_ACTIONS:
                self._adopt(hcp, rng, at)
        engaged = at if r.action in ENGAGEMENT_ACTIONS else None
        deeper = self._follow(hcp, rng, r.then, at, channel, origin)
        return engaged if deeper is None else max(deeper, engaged or deeper)

    def _commit(
        self, hcp: SyntheticHcp, rng: random.Random, after: dt.datetime, channel: Channel,
        action: Action, origin: _Origin,
    ) -> None:  # fmt: skip
        """What may follow an awaited action (attending after registering). When the flow
        waits for it, it happens while the HCP waits there (the journey knows the date of
        the webinar, the model does not); otherwise at its drawn time."""
        for r in self.rates.follow_ups.get((channel, action), ()):
            if rng.random() >= r.probability.get(hcp.persona, 0.0):
                continue
            on = r.channel or channel
            if any(
                isinstance(n, WaitForEventNode)
                and n.event.matches(on.value, r.action.value, origin.brand, origin.content)
                for n in self.document.flow.nodes
            ):
                hcp.pending.append((origin, on, r))
                continue
            at = after + dt.timedelta(hours=rng.uniform(*r.hours))
            self._occur(hcp, rng, r, at, on, origin)

    def _keep(self, hcp: SyntheticHcp, node: WaitForEventNode, now: dt.datetime, tag: str) -> None:
        """The HCP waits at ``node``: a commitment it waits for happens during the wait."""
        for item in list(hcp.pending):
            origin, channel, r = item
            if not node.event.matches(channel.value, r.action.value, origin.brand, origin.content):
                continue
            hcp.pending.remove(item)
            rng = random.Random(f"{self.seed}:{tag}")  # noqa: S311 - synthetic data
            hours = node.timeout.delta.total_seconds() / 3600 * rng.uniform(0.05, 0.6)
            self._occur(hcp, rng, r, now + dt.timedelta(hours=hours), channel, origin)

    def _adopt(self, hcp: SyntheticHcp, rng: random.Random, at: dt.datetime) -> None:
        """After a completed call or an attended event of the journey, the HCP may move one
        adoption stage on for the brand, days later."""
        if rng.random() >= self.rates.adoption_step.get(hcp.persona, 0.0):
            return
        when = at + dt.timedelta(days=rng.uniform(*self.rates.adoption_days))
        if when < self.end:
            self._push(when, _ADOPT, hcp.index, None)

    def _happen(
        self, hcp: SyntheticHcp, at: dt.datetime, channel: Channel, action: Action,
        origin: _Origin,
    ) -> None:  # fmt: skip
        """An interaction of the HCP: into its history (conditions read it), its touches
        (the guard reads them), its consent (an unsubscribe) and, when the journey could react
        to it, the queue."""
        brand, content, function = origin.brand, origin.content, origin.function
        hcp.events.append(
            EventFact(at, channel.value, action.value, brand, content, function.value)
        )
        if action in TOUCH_ACTIONS:
            hcp.touches.append((at, channel.value, brand, function is Function.COMMERCIAL))
        if action is Action.UNSUBSCRIBED:
            purpose = Purpose.MEDICAL if function is Function.MEDICAL else self.purpose
            records = self.consent_records(hcp, ConsentChannel.EMAIL, purpose)
            revoked = ConsentState.REVOKED
            records.append(
                _consent_record(
                    hcp, ConsentChannel.EMAIL, purpose, revoked, at, 1000 + len(records)
                )
            )
        if at >= self.start and any(
            t.matches(channel.value, action.value, brand, content) for t in self.triggers
        ):
            stimulus = Interaction(at, channel.value, action.value, brand, content)
            self._push(at, _EVENT, hcp.index, stimulus)

    def _draw_background(self, hcp: SyntheticHcp, rng: random.Random) -> None:
        first = self.start - dt.timedelta(weeks=self.rates.history_weeks)
        days = (self.end - first).days
        zone = self._zone(hcp)
        for b in self.rates.background:
            needed = consent_channel(b.channel)
            if b.needs_consent and needed is not None:
                key = ConsentKey(needed, Purpose.PROMOTIONAL)
                if not self.consented(hcp, key, self.start):
                    continue
            for _ in range(_poisson(rng, b.per_week.get(hcp.persona, 0.0) * days / 7)):
                day = first.astimezone(zone).date() + dt.timedelta(days=rng.randrange(days))
                if not b.digital:
                    while day.weekday() >= 5:
                        day += dt.timedelta(days=1)
                hours = rng.uniform(7, 22) if b.digital else rng.uniform(8, 18)
                local = dt.datetime.combine(day, dt.time(), tzinfo=zone) + dt.timedelta(hours=hours)
                at = local.astimezone(dt.UTC)
                if not first <= at < self.end:
                    continue
                brand = self.document.brand if rng.random() < b.own_brand else self._other(rng)
                self.background += 1
                origin = _Origin(brand, None, b.function)
                self._happen(hcp, at, b.channel, b.action, origin)
                self._follow(hcp, rng, b.responses, at, b.channel, origin)

    def _other(self, rng: random.Random) -> str:
        others = [b for b in _OTHER_BRANDS if b != self.document.brand]
        return rng.choice(others)

    # --- the oracle's answers --------------------------------------------------------------
    def holds(self, hcp: SyntheticHcp, condition: Condition, now: dt.datetime) -> bool:
        """Does the condition hold for the synthetic HCP at ``now`` (its attributes, consent
        and interactions so far)?"""
        keys = self._keys.get(id(condition))
        if keys is None:
            keys = self._keys[id(condition)] = consent_keys(condition)
        consent = frozenset(k for k in keys if self.consented(hcp, k, now))
        facts = HcpFacts(hcp.id, hcp.attributes, consent, hcp.events)
        return evaluate(condition, facts, now)

    def permits(self, hcp: SyntheticHcp, effect: Send | RepTask, now: dt.datetime) -> Permission:
        """The guard's decision, with the HCP's simulated consent and touches so far."""
        needed = consent_channel(effect.channel)
        consents = self.consent_records(hcp, needed, self.purpose) if needed else []
        done = [t for t in hcp.touches if t[0] <= now]
        days: Counter[tuple[dt.date, str, str | None]] = Counter()
        promotional: Counter[tuple[dt.date, str, str | None]] = Counter()
        last: dict[str, dt.datetime] = {}
        for at, channel, brand, promo in done:
            key = (at.date(), channel, brand)
            days[key] += 1
            promotional[key] += promo
            if channel not in last or at > last[channel]:
                last[channel] = at
        touches = [
            TouchDay(d, c, b, n, promotional=promotional[(d, c, b)])
            for (d, c, b), n in days.items()
        ]
        facts = GuardFacts(
            hcp.id, hcp.market, hcp.time_zone, consents=consents, touches=touches, last_touch=last
        )
        candidate = Candidate(
            channel=effect.channel,
            purpose=self.purpose,
            at=now,
            brand=self.document.brand,
            content_id=effect.content,
            role=None if isinstance(effect, Send) else self.task_role[effect.node],
        )
        decision = guard_decide(facts, self.policy(hcp.market), candidate)
        if decision.allowed and isinstance(effect, Send):  # a later send in this step sees it
            origin = _Origin(self.document.brand, effect.content, self.function)
            self._happen(hcp, now, effect.channel, Action.SENT, origin)
        return Permission(decision.allowed, tuple(decision.codes))

    def policy(self, market: str) -> ContactPolicy:
        if market not in self._policies:
            self._policies[market] = self.policy_for(market)
        return self._policies[market]

    def _zone(self, hcp: SyntheticHcp) -> ZoneInfo:
        return ZoneInfo(hcp.time_zone)

    def consented(self, hcp: SyntheticHcp, key: ConsentKey, now: dt.datetime) -> bool:
        records = self.consent_records(hcp, key.channel, key.purpose)
        return consent_decide(
            records, channel=key.channel, purpose=key.purpose, market=hcp.market,
            brand=key.brand, content_type=None, at=now,
        ).allowed  # fmt: skip

    def consent_records(
        self, hcp: SyntheticHcp, channel: ConsentChannel, purpose: Purpose
    ) -> list[ConsentRecord]:
        """The HCP's consent on one channel and purpose, drawn the first time it is asked
        (the same for a seed whatever the order of questions)."""
        records = hcp.consents.get((channel, purpose))
        if records is not None:
            return records
        r = self.rates
        p = r.consent.get(channel, 0.5) + r.purpose_shift.get(purpose, 0.0)
        double_opt_in = hcp.market in DOUBLE_OPT_IN_MARKETS and channel is ConsentChannel.EMAIL
        if double_opt_in:
            p += r.double_opt_in_shift
        p = min(1.0, max(0.0, p))
        pending = r.pending_share_double_opt_in if double_opt_in else r.pending_share
        u = _unit(self.seed, hcp.id, channel.value, purpose.value)
        state = (
            ConsentState.GRANTED if u < p
            else ConsentState.PENDING if u < p + (1 - p) * pending
            else ConsentState.DENIED
        )  # fmt: skip
        days = 14 + int(_unit(self.seed, hcp.id, channel.value, purpose.value, "at") * 1086)
        at = self.start - dt.timedelta(days=days)
        records = [_consent_record(hcp, channel, purpose, state, at, 1)]
        hcp.consents[(channel, purpose)] = records
        return records

    # --- the report ------------------------------------------------------------------------
    def _report(self) -> SimulationReport:
        rows = [
            EnrollmentRow(e.id, e.status.value, e.node, *self.where[e.node])
            for e in self.enrollments.values()
        ]
        responses = {k: frozenset(v) for k, v in self.responses.items()}
        figures = map_figures(self.document, self.transitions, rows, responses, self.end)
        status = Counter(e.status.value for e in self.enrollments.values())
        return SimulationReport(
            journey=self.document.journey,
            title=self.document.title,
            brand=self.document.brand,
            markets=tuple(self.document.markets),
            purpose=self.purpose.value,
            example=self.document.example,
            seed=self.seed,
            hcps=self.size,
            weeks=self.weeks,
            start=self.start,
            end=self.end,
            entry=self.entry,
            population={
                "markets": dict(sorted(Counter(h.market for h in self.hcps).items())),
                "personas": dict(sorted(Counter(h.persona for h in self.hcps).items())),
            },
            totals=self._totals(figures, status),
            stages=[self._with_channels(r, f"stage:{r['stage']}") for r in figures.stages],
            touchpoints=[self._with_channels(r, f"tp:{r['id']}") for r in figures.touchpoints],
            nodes=[
                self._with_channels(r, f"node:{r['id']}", self.visits[r["id"]])
                for r in figures.nodes
            ],
            leaks=figures.leaks,
            arms=self._arms(),
        )

    def _with_channels(
        self, row: Mapping[str, Any], key: str, visits: int | None = None
    ) -> dict[str, Any]:
        """The row with sends by channel (and visits) beside its figures (stage rows carry
        their figures flat, touchpoint and node rows under ``figures``)."""
        extra: dict[str, Any] = {"sent_by_channel": dict(sorted(self.by_channel[key].items()))}
        if visits is not None:
            extra["visits"] = visits
        if "figures" not in row:
            return {**row, **extra}
        return {**row, "figures": {**row["figures"], **extra}}

    def _totals(self, figures: MapFigures, status: Counter[str]) -> dict[str, Any]:
        refusals: Counter[str] = Counter()
        exits: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        goals: Counter[str] = Counter()
        for t in self.transitions:
            kinds[t.kind] += 1
            if t.kind == "refused":
                refusals.update((t.detail or {}).get("codes", []))
            elif t.kind == "exited":
                exits[str((t.detail or {}).get("reason"))] += 1
            elif t.kind == "goal":
                goals[str((t.detail or {}).get("goal"))] += 1
        responded: Counter[str] = Counter(a for actions in self.responses.values() for a in actions)
        reached = sum(h.reached for h in self.hcps)
        return {
            "population": self.size,
            "entered": sum(1 for h in self.hcps if h.entries),
            "enrollments": len(self.enrollments),
            "reached": reached,
            "reach": round(reached / self.size, 4),
            "waiting": status.get(EnrollmentStatus.WAITING.value, 0),
            "completed": status.get(EnrollmentStatus.COMPLETED.value, 0),
            "exited": status.get(EnrollmentStatus.EXITED.value, 0),
            "sent": kinds["sent"],
            "sent_by_channel": dict(sorted(self.by_channel["total"].items())),
            "tasks": kinds["task"],
            "refused": kinds["refused"],
            "refusals": dict(sorted(refusals.items())),
            "exits": dict(sorted(exits.items())),
            "goals": kinds["goal"],
            "goals_by_name": dict(sorted(goals.items())),
            "responses": dict(sorted(responded.items())),
            "background_interactions": self.background,
        }

    def _arms(self) -> list[ArmFigures]:
        waiting: Counter[tuple[str, str]] = Counter()
        for eid, arms in self.arms_of.items():
            if self.enrollments[eid].status is EnrollmentStatus.WAITING:
                waiting.update(arms.items())
        out: list[ArmFigures] = []
        for node in self.document.flow.nodes:
            if not isinstance(node, RandomNode):
                continue
            for arm in node.arms:
                key = (node.id, arm.name)
                tally = self.arm_tally.get(key, Counter())
                out.append(
                    ArmFigures(
                        node=node.id,
                        arm=arm.name,
                        holdout=arm.holdout,
                        weight=arm.weight,
                        entered=len(self.arm_entered.get(key, ())),
                        sent=tally["sent"],
                        tasks=tally["task"],
                        refused=tally["refused"],
                        goals=tally["goal"],
                        completed=tally["completed"],
                        exited=tally["exited"],
                        waiting=waiting[key],
                    )
                )
        return out


def _kind(effect: Effect) -> tuple[str, dict[str, Any] | None]:
    """The transition an effect is recorded as (the kinds ``journey.figures`` reads)."""
    if isinstance(effect, Entered):
        return "entered", None
    if isinstance(effect, Send):
        return "sent", {"channel": effect.channel.value, "content": effect.content}
    if isinstance(effect, RepTask):
        return "task", {"channel": effect.channel.value, "content": effect.content}
    if isinstance(effect, Refused):
        return "refused", {"codes": list(effect.codes), "branch": effect.branch}
    if isinstance(effect, UpdateAttribute):
        return "updated", {"attribute": effect.attribute, "value": effect.value}
    if isinstance(effect, GoalReached):
        return "goal", {"goal": effect.goal}
    assert isinstance(effect, Exited)
    if effect.completed:
        return "completed", {"reason": effect.reason}
    return "exited", {"reason": effect.reason}


def _consent_record(
    hcp: SyntheticHcp, channel: ConsentChannel, purpose: Purpose, state: ConsentState,
    at: dt.datetime, seq: int,
) -> ConsentRecord:  # fmt: skip
    return ConsentRecord(
        seq=seq,
        hcp_id=hcp.id,
        scope=ConsentScope(channel, purpose, hcp.market),
        state=state,
        effective_at=at,
        recorded_at=at,
        proof=Proof(ConsentSource.IMPORT, "synthetic dry run"),
        reason="synthetic dry run",
        synthetic=True,
    )


def _check(hcps: int, weeks: int, start: dt.datetime) -> None:
    if not 1 <= hcps <= MAX_HCPS:
        raise ValidationFailedError(
            f"{hcps} synthetic HCPs is out of range", field="hcps", fix=f"give 1 to {MAX_HCPS:,}"
        )
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValidationFailedError(
            f"{weeks} weeks is out of range", field="weeks", fix=f"give 1 to {MAX_WEEKS}"
        )
    if start.tzinfo is None:
        raise ValidationFailedError(
            "the start has no time zone", field="start", fix="give an aware datetime (UTC)"
        )


def _segment(
    document: JourneyDocument, segment: str, conditions: Mapping[str, Condition] | None
) -> Condition:
    if conditions and segment in conditions:
        return conditions[segment]
    entry = document.flow.entry
    index = document.flow.nodes.index(entry)
    raise ValidationFailedError(
        f"the entry ({entry.id}) reads segment {segment!r}, whose condition the dry run was "
        "not given",
        field=f"flow.nodes.{index}.trigger.segment",
        fix="give the segment's condition (segment_conditions), write the condition in the "
        "entry (trigger: condition: …), or let every synthetic HCP enter (all_enter)",
    )


def _task_role(document: JourneyDocument, touchpoint: str | None) -> Role:
    """Who carries out a rep task: the touchpoint's responsible field role, else a rep."""
    if touchpoint is not None:
        responsible = document.map.touchpoint(touchpoint).owner.responsible
        if responsible in _FIELD_ROLES:
            return responsible
    return Role.SALES_REP


def simulate(
    document: JourneyDocument,
    *,
    hcps: int = 1000,
    weeks: int = 8,
    seed: int = 1,
    start: dt.datetime,
    policy_for: Callable[[str], ContactPolicy] = default_policy,
    segment_conditions: Mapping[str, Condition] | None = None,
    rates: SimulationRates = DEFAULT_RATES,
    all_enter: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Move ``hcps`` synthetic HCPs through the journey for ``weeks`` simulated weeks from
    ``start`` (see the module doc). The same arguments give the same report. ``progress``
    is told the simulated weeks done so far."""
    return Simulation(
        document, hcps=hcps, weeks=weeks, seed=seed, start=start, policy_for=policy_for,
        segment_conditions=segment_conditions, rates=rates, all_enter=all_enter,
        progress=progress,
    ).run()  # fmt: skip
