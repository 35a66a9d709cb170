"""The two evaluators of segment conditions agree: the bulk one (SQL over every HCP) selects
exactly the HCPs for which the one-HCP ``evaluate`` holds over facts loaded through the
services.

Random conditions (every kind of leaf, nested with all / any / not, values drawn from small
domains so they hit) over random synthetic populations stored through the real services on
the embedded deployment (SQLite + DuckDB): HCPs with random and missing attributes, several
identifiers each (some made of two profiles merged), events on random channels, actions,
brands, content and functions at times around ``now`` (exactly on window edges too), and
consent records granted, denied, revoked, pending or expiring, held by profile id (also the
id of a profile merged away since) or by identifier.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container, open_container
from counterpoint.event.canonical import Action, Channel, EventKind, Function, LogEvent
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.audit import Actor
from counterpoint.segment.conditions import evaluate, parse_condition
from counterpoint.segment.facts import SegmentFacts
from counterpoint.settings import Settings

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
ACTOR = Actor("tests", "admin", "tests")
PROOF = Proof(ConsentSource.IMPORT, "tests", wording_version="v1")
WINDOWS = [1, 7, 30]
US = dt.timedelta(microseconds=1)

# --- small domains, so that conditions hit ------------------------------------------------------
TEXT = {
    "market": ["DE", "FR"],
    "territory": ["T1", "T2"],
    "specialty": ["cardiology", "oncology"],
    "persona": ["digital", "f2f"],
    "preferred_language": ["de", "en"],
    "time_zone": ["Europe/Berlin", "Europe/Paris"],
}
DECILES = [1, 5, 8, 10]
SEGMENT_TAGS = ["kol", "digital", "rural"]
BRANDS = ["Cardiomax", "Zentrova"]
STAGES = ["aware", "trial", "adopter"]
CHANNELS = [Channel.CAMPAIGN_EMAIL, Channel.WEBINAR, Channel.F2F_CALL]
ACTIONS = [Action.OPENED, Action.CLICKED, Action.SENT, Action.ATTENDED, Action.SEGMENT_ENTERED]
CONTENT = ["C1", "C2"]
CONSENT_CHANNELS = [ConsentChannel.EMAIL, ConsentChannel.F2F_CALL]
PURPOSES = [Purpose.PROMOTIONAL, Purpose.MEDICAL]


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


# --- conditions ---------------------------------------------------------------------------------
def text_attribute(name: str) -> st.SearchStrategy[dict[str, Any]]:
    domain = [*TEXT[name], "other"]
    return st.one_of(
        st.builds(
            lambda op, v: {"name": name, "op": op, "value": v},
            st.sampled_from(["eq", "ne"]),
            st.sampled_from(domain),
        ),
        st.builds(
            lambda op, v: {"name": name, "op": op, "value": v},
            st.sampled_from(["in", "not_in"]),
            st.lists(st.sampled_from(domain), min_size=1, max_size=2, unique=True),
        ),
        st.builds(lambda op: {"name": name, "op": op}, st.sampled_from(["exists", "missing"])),
    )


def decile_attribute() -> st.SearchStrategy[dict[str, Any]]:
    values = st.sampled_from([0, *DECILES, 11])
    return st.one_of(
        st.builds(
            lambda op, v: {"name": "potential_decile", "op": op, "value": v},
            st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            values,
        ),
        st.builds(
            lambda op, v: {"name": "potential_decile", "op": op, "value": v},
            st.sampled_from(["in", "not_in"]),
            st.lists(values, min_size=1, max_size=2, unique=True),
        ),
        st.builds(
            lambda op: {"name": "potential_decile", "op": op},
            st.sampled_from(["exists", "missing"]),
        ),
    )


def set_attribute(name: str, domain: list[str], **extra: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda op, v: {"name": name, "op": op, "value": v, **extra},
            st.sampled_from(["eq", "ne"]),
            st.sampled_from(domain),
        ),
        st.builds(
            lambda op, v: {"name": name, "op": op, "value": v, **extra},
            st.sampled_from(["in", "not_in"]),
            st.lists(st.sampled_from(domain), min_size=1, max_size=2, unique=True),
        ),
        st.builds(
            lambda op: {"name": name, "op": op, **extra}, st.sampled_from(["exists", "missing"])
        ),
    )


attribute_leaf = st.one_of(
    *(text_attribute(name) for name in TEXT),
    decile_attribute(),
    set_attribute("segments", [*SEGMENT_TAGS, "none"]),
    st.sampled_from([*BRANDS, "Other"]).flatmap(
        lambda brand: set_attribute("adoption_stage", [*STAGES, "advocate"], brand=brand)
    ),
).map(lambda body: {"attribute": body})


def _some(values: list[Any]) -> st.SearchStrategy[list[Any] | None]:
    return st.one_of(st.none(), st.lists(st.sampled_from(values), min_size=1, max_size=2))


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


events_leaf = st.builds(
    lambda channel, action, brand, content, function, days, op, count: {
        "events": _drop_none(
            {
                "channel": channel,
                "action": action,
                "brand": brand,
                "content_id": content,
                "function": function,
                "within_days": days,
                "op": op,
                "count": count,
            }
        )
    },
    _some([c.value for c in CHANNELS]),
    _some([a.value for a in ACTIONS]),
    _some(BRANDS),
    _some(CONTENT),
    maybe(["commercial", "medical"]),
    st.sampled_from(WINDOWS),
    st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
    st.sampled_from([0, 1, 2]),
)

feature_leaf = st.builds(
    lambda name, channel, brand, function, days, op, value: {
        "feature": _drop_none(
            {
                "name": name,
                "channel": channel,
                "brand": brand,
                "function": function,
                "window_days": days,
                "op": op,
                "value": value,
            }
        )
    },
    st.sampled_from(["events", "touches", "responses", "response_rate"]),
    _some([c.value for c in CHANNELS]),
    _some(BRANDS),
    maybe(["commercial", "medical"]),
    st.sampled_from(WINDOWS),
    st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
    st.sampled_from([0, 0.5, 1, 2]),
)

consent_leaf = st.builds(
    lambda channel, purpose, brand: {
        "consent": _drop_none({"channel": channel, "purpose": purpose, "brand": brand})
    },
    st.sampled_from([c.value for c in CONSENT_CHANNELS]),
    st.sampled_from([p.value for p in PURPOSES]),
    maybe(BRANDS),
)

conditions = st.recursive(
    st.one_of(attribute_leaf, events_leaf, feature_leaf, consent_leaf),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


# --- populations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventSpec:
    identifier: int  # index into the HCP's identifiers
    channel: Channel | None
    action: Action | None
    brand: str | None
    content_id: str | None
    function: Function | None
    ago: dt.timedelta


@dataclass(frozen=True)
class ConsentSpec:
    holder: str  # "profile", "merged" (the profile merged away) or "identifier"
    channel: ConsentChannel
    purpose: Purpose
    market: str
    brand: str | None
    state: ConsentState
    days_ago: int
    expires_in_days: int | None


@dataclass(frozen=True)
class HcpSpec:
    traits: dict[str, Any]
    merged: bool  # made of two profiles merged by a later identify
    events: list[EventSpec] = field(default_factory=list)
    consents: list[ConsentSpec] = field(default_factory=list)


edge_offsets = st.sampled_from(WINDOWS).flatmap(
    lambda d: st.sampled_from(
        [dt.timedelta(days=d) + delta for delta in (-US, dt.timedelta(0), US)]
    )
)
offsets = st.one_of(
    edge_offsets,
    st.sampled_from([dt.timedelta(0), -US, -dt.timedelta(days=1), dt.timedelta(hours=5)]),
    st.integers(min_value=0, max_value=40).map(lambda d: dt.timedelta(days=d, hours=3)),
)

event_spec = st.builds(
    EventSpec,
    st.integers(min_value=0, max_value=2),
    maybe(CHANNELS),
    maybe(ACTIONS),
    maybe(BRANDS),
    maybe(CONTENT),
    maybe(list(Function)),
    offsets,
)

consent_spec = st.builds(
    ConsentSpec,
    st.sampled_from(["profile", "merged", "identifier"]),
    st.sampled_from(CONSENT_CHANNELS),
    st.sampled_from(PURPOSES),
    st.sampled_from(TEXT["market"]),
    maybe(BRANDS),
    st.sampled_from(
        [ConsentState.GRANTED, ConsentState.DENIED, ConsentState.REVOKED, ConsentState.PENDING]
    ),
    st.integers(min_value=0, max_value=60),
    st.one_of(st.none(), st.integers(min_value=-20, max_value=20)),
)


def _traits() -> st.SearchStrategy[dict[str, Any]]:
    parts: dict[str, st.SearchStrategy[Any]] = {name: maybe(vs) for name, vs in TEXT.items()}
    parts["potential_decile"] = maybe(DECILES)
    parts["segments"] = st.lists(st.sampled_from(SEGMENT_TAGS), max_size=2, unique=True)
    parts["adoption_stage"] = st.dictionaries(
        st.sampled_from(BRANDS), st.sampled_from(STAGES), max_size=2
    )
    return st.fixed_dictionaries(parts).map(lambda t: {k: v for k, v in t.items() if v is not None})


hcp_spec = st.builds(
    HcpSpec,
    _traits(),
    st.booleans(),
    st.lists(event_spec, max_size=6),
    st.lists(consent_spec, max_size=3),
)
populations = st.lists(hcp_spec, min_size=1, max_size=5)


# --- building a population through the services -----------------------------------------------
_example = itertools.count()


@dataclass
class Built:
    hcps: list[str]
    identifiers: list[list[str]]


def _identify(mid: str, subject: str, traits: dict[str, Any]) -> LogEvent:
    at = NOW - dt.timedelta(days=400)
    return LogEvent(mid, EventKind.IDENTIFY, subject, at, at, "tests", payload={"traits": traits},
                    synthetic=True)  # fmt: skip


def build(container: Container, population: list[HcpSpec]) -> Built:
    """Synthetic HCPs, their events and consent records, stored through the services."""
    n = next(_example)
    keys = [[f"crm:X{n}-{i}", f"email:x{n}-{i}@x.example"] for i in range(len(population))]
    first: list[LogEvent] = []
    for i, spec in enumerate(population):
        crm, email = keys[i][0].partition(":")[2], keys[i][1].partition(":")[2]
        if spec.merged:  # two profiles now, one identify linking them later
            first.append(_identify(f"a{n}-{i}", keys[i][0], spec.traits))
            first.append(_identify(f"b{n}-{i}", keys[i][1], {"persona": "f2f"}))
        else:
            first.append(_identify(f"a{n}-{i}", keys[i][0], {**spec.traits, "email": email}))
        assert crm
    container.log.append(first)
    container.projector.catch_up()
    early = [container.profiles.find_by_identifier(k[1]) for k in keys]
    links = [
        _identify(f"c{n}-{i}", keys[i][0], {"email": keys[i][1].partition(":")[2]})
        for i, spec in enumerate(population)
        if spec.merged
    ]
    container.log.append(links)
    events = [
        LogEvent(
            f"e{n}-{i}-{j}",
            EventKind.TRACK,
            keys[i][e.identifier % 2],
            NOW - e.ago,
            NOW,
            "tests",
            channel=e.channel,
            action=e.action,
            brand=e.brand,
            content_id=e.content_id,
            function=e.function,
            synthetic=True,
        )
        for i, spec in enumerate(population)
        for j, e in enumerate(spec.events)
    ]
    container.log.append(events)
    container.projector.catch_up()
    hcps = [container.profiles.find_by_identifier(k[0]) for k in keys]
    assert all(hcps)
    for i, spec in enumerate(population):
        for c in spec.consents:
            holder = {"profile": hcps[i], "merged": early[i], "identifier": None}[c.holder]
            effective = NOW - dt.timedelta(days=c.days_ago)
            expires = None
            if c.expires_in_days is not None and c.state is ConsentState.GRANTED:
                expires = NOW + dt.timedelta(days=c.expires_in_days)
                if expires <= effective:
                    expires = effective + dt.timedelta(days=1)
            container.consents.record(
                hcp_id=holder,
                subject=keys[i][1] if holder is None else None,
                scope=ConsentScope(c.channel, c.purpose, c.market, c.brand),
                state=c.state,
                proof=PROOF,
                actor=ACTOR,
                reason="synthetic test data",
                effective_at=effective,
                expires_at=expires,
                synthetic=True,
            )
    return Built([h for h in hcps if h is not None], keys)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """One embedded store for every example: each example adds its own HCPs (their own
    identifiers), and is checked on those (evaluation is per HCP)."""
    data = tmp_path_factory.mktemp("segments") / "data"
    built = open_container(
        Settings(data_dir=Path(data), environment="test", run_delivery=False),
        clock=FixedClock(NOW),
    )
    yield built
    built.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(population=populations, drawn=st.lists(conditions, min_size=1, max_size=4))
def test_bulk_and_one_hcp_evaluation_agree(
    store: Container, population: list[HcpSpec], drawn: list[dict[str, Any]]
) -> None:
    built = build(store, population)
    facts = SegmentFacts(store.profiles, store.consents, store.log)
    mine = set(built.hcps)
    for data in drawn:
        condition = parse_condition(data)
        table = store.segments.bulk.evaluate(condition, NOW)
        bulk = set(table.column("hcp_id").to_pylist()) & mine
        one = {h for h in mine if evaluate(condition, facts.facts_for(h, condition, NOW), NOW)}
        assert bulk == one, data


def test_the_populations_exercise_every_feature(store: Container) -> None:
    """A fixed population where each kind of leaf holds for some HCPs and not for others
    (the control: the property above is not vacuously true)."""
    population = [
        HcpSpec(
            {"market": "DE", "specialty": "cardiology", "segments": ["kol"],
             "adoption_stage": {"Cardiomax": "trial"}, "potential_decile": 8},
            merged=True,
            events=[EventSpec(0, Channel.CAMPAIGN_EMAIL, Action.SENT, "Cardiomax", None, None,
                              dt.timedelta(days=1)),
                    EventSpec(1, Channel.CAMPAIGN_EMAIL, Action.OPENED, "Cardiomax", "C1", None,
                              dt.timedelta(days=7) - US),
                    EventSpec(1, Channel.CAMPAIGN_EMAIL, Action.OPENED, None, None, None,
                              dt.timedelta(days=7))],
            consents=[ConsentSpec("merged", ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE",
                                  None, ConsentState.GRANTED, 3, None)],
        ),
        HcpSpec({"market": "FR"}, merged=False,
                consents=[ConsentSpec("identifier", ConsentChannel.EMAIL, Purpose.PROMOTIONAL,
                                      "DE", None, ConsentState.GRANTED, 3, None)]),
    ]  # fmt: skip
    built = build(store, population)
    de, fr = built.hcps
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"attribute": {"name": "segments", "op": "eq", "value": "kol"}}, {de}),
        ({"attribute": {"name": "specialty", "op": "missing"}}, {fr}),
        (
            {
                "attribute": {
                    "name": "adoption_stage",
                    "brand": "Cardiomax",
                    "op": "eq",
                    "value": "trial",
                }
            },
            {de},
        ),
        ({"events": {"action": "opened", "within_days": 7, "op": "eq", "count": 1}}, {de}),
        ({"events": {"channel": "webinar", "within_days": 7, "op": "eq", "count": 0}}, {de, fr}),
        ({"feature": {"name": "response_rate", "window_days": 7, "op": "gte", "value": 1}}, {de}),
        ({"consent": {"channel": "email", "purpose": "promotional"}}, {de}),  # FR: wrong market
        ({"not": {"consent": {"channel": "email", "purpose": "promotional"}}}, {fr}),
    ]
    facts = SegmentFacts(store.profiles, store.consents, store.log)
    for data, expected in cases:
        condition = parse_condition(data)
        bulk = set(store.segments.bulk.evaluate(condition, NOW).column("hcp_id").to_pylist())
        assert bulk & {de, fr} == expected, data
        one = {h for h in (de, fr) if evaluate(condition, facts.facts_for(h, condition, NOW), NOW)}
        assert one == expected, data
