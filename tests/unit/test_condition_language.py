"""The condition language of segments and journeys (``segment.conditions``): parsing with
errors that name the path, and the one-HCP evaluation's semantics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.errors import ValidationFailedError
from counterpoint.segment.conditions import (
    ConsentKey,
    EventFact,
    HcpFacts,
    consent_keys,
    dump_condition,
    evaluate,
    event_filters,
    max_window_days,
    parse_condition,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
ATTRS: dict[str, Any] = {
    "market": "DE",
    "specialty": "cardiology",
    "potential_decile": 8,
    "segments": ["kol", "digital"],
    "adoption_stage": {"Cardiomax": "trial"},
    "persona": None,
}


def facts(
    events: list[EventFact] | None = None, consent: set[ConsentKey] | None = None
) -> HcpFacts:
    return HcpFacts("h1", ATTRS, frozenset(consent or set()), tuple(events or ()))


def holds(condition: Any, f: HcpFacts | None = None) -> bool:
    return evaluate(parse_condition(condition), f or facts(), NOW)


def attr(name: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "op": op, **extra}
    if value is not None:
        body["value"] = value
    return {"attribute": body}


def email(action: str, days_ago: float, **extra: Any) -> EventFact:
    return EventFact(NOW - dt.timedelta(days=days_ago), "campaign_email", action, **extra)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (attr("specialty", "eq", "cardiology"), True),
        (attr("specialty", "in", ["oncology", "cardiology"]), True),
        (attr("specialty", "not_in", ["cardiology"]), False),
        (attr("potential_decile", "gte", 8), True),
        (attr("potential_decile", "gt", 8), False),
        (attr("segments", "eq", "kol"), True),  # contains
        (attr("segments", "in", ["x", "digital"]), True),  # shares any
        (attr("segments", "not_in", ["x", "y"]), True),
        (attr("segments", "ne", "kol"), False),
        (attr("adoption_stage", "eq", "trial", brand="Cardiomax"), True),
        (attr("adoption_stage", "missing", brand="Otherbrand"), True),
        # a missing value makes every operator false but ``missing``
        (attr("persona", "eq", "x"), False),
        (attr("persona", "ne", "x"), False),
        (attr("persona", "not_in", ["x"]), False),
        (attr("persona", "missing"), True),
        (attr("territory", "exists"), False),
        ({"not": attr("persona", "eq", "x")}, True),
        ({"all": [attr("market", "eq", "DE"), attr("potential_decile", "lt", 5)]}, False),
        ({"any": [attr("market", "eq", "FR"), attr("potential_decile", "lte", 8)]}, True),
    ],
)
def test_attributes(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


def test_event_windows_are_open_at_the_start_and_closed_at_now() -> None:
    cond = {"events": {"channel": "campaign_email", "action": "opened", "within_days": 30}}
    assert holds(cond, facts([email("opened", 0)]))  # exactly now: inside
    assert not holds(cond, facts([email("opened", 30)]))  # exactly 30 days ago: outside
    assert holds(cond, facts([email("opened", 29.999)]))
    assert not holds(cond, facts([email("opened", -0.01)]))  # the future does not count
    assert not holds(cond, facts([email("clicked", 1)]))


def test_counts_filters_and_did_not() -> None:
    events = [email("opened", 1, brand="Cardiomax"), email("opened", 2), email("clicked", 3)]
    f = facts(events)
    two = {"events": {"action": ["opened", "clicked"], "within_days": 7, "op": "gte", "count": 3}}
    assert holds(two, f)
    branded = {"events": {"action": "opened", "brand": "Cardiomax", "within_days": 7,
                          "op": "eq", "count": 1}}  # fmt: skip
    assert holds(branded, f)
    did_not = {"events": {"channel": "webinar", "within_days": 90, "op": "eq", "count": 0}}
    assert holds(did_not, f)


def test_only_interactions_count() -> None:
    """Events without a channel (segment entries, identify) are never counted."""
    membership = EventFact(NOW - dt.timedelta(days=1), None, "segment_entered")
    cond = {"feature": {"name": "events", "window_days": 30, "op": "gte", "value": 1}}
    assert not holds(cond, facts([membership]))
    assert holds(cond, facts([membership, email("opened", 1)]))


def test_response_rate_needs_a_touch() -> None:
    rate = {"feature": {"name": "response_rate", "channel": "campaign_email",
                        "window_days": 90, "op": "gte", "value": 0.5}}  # fmt: skip
    assert not holds(rate, facts([email("opened", 1)]))  # a response but no touch
    assert holds({"not": rate}, facts([email("opened", 1)])) is not False
    assert holds(rate, facts([email("sent", 2), email("opened", 1)]))
    assert not holds(rate, facts([email("sent", 2), email("sent", 3), email("sent", 4),
                                  email("opened", 1)]))  # fmt: skip


def test_consent_reads_the_allowed_keys() -> None:
    key = ConsentKey(ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    cond = {"consent": {"channel": "email", "purpose": "promotional"}}
    assert holds(cond, facts(consent={key}))
    assert not holds(cond, facts())
    branded = {"consent": {"channel": "email", "purpose": "promotional", "brand": "Cardiomax"}}
    assert not holds(branded, facts(consent={key}))  # a different key


def test_what_a_condition_reads() -> None:
    cond = parse_condition(
        {"all": [
            {"events": {"channel": "campaign_email", "action": "opened", "within_days": 30}},
            {"events": {"action": "opened", "channel": ["campaign_email"], "within_days": 30,
                        "count": 2}},
            {"feature": {"name": "response_rate", "window_days": 90, "op": "gt", "value": 0}},
            {"consent": {"channel": "sms", "purpose": "medical"}},
        ]}
    )  # fmt: skip
    # the same filter twice is counted once; a rate needs two counts
    assert len(event_filters(cond)) == 3
    assert max_window_days(cond) == 90
    assert consent_keys(cond) == [ConsentKey(ConsentChannel.SMS, Purpose.MEDICAL)]


@pytest.mark.parametrize(
    ("condition", "path", "words"),
    [
        ({"all": [attr("specialty", "gt", "x")]}, "condition.all.0.attribute", "numbers"),
        ({"all": [{"foo": 1}]}, "condition.all.0", "exactly one of the keys"),
        (
            {"any": [{"events": {"within_days": 0}}]},
            "condition.any.0.events.within_days",
            "greater than",
        ),
        ({"not": attr("adoption_stage", "eq", "trial")}, "condition.not.attribute", "brand"),
        ({"all": []}, "condition.all", "at least 1"),
        (attr("specialty", "in", "cardiology"), "condition.attribute", "list"),
        (attr("potential_decile", "eq", "8"), "condition.attribute", "whole numbers"),
        (attr("specialty", "exists", "x"), "condition.attribute", "no value"),
        ({"events": {"action": "teleported", "within_days": 1}}, "condition.events.action.0", ""),
        ({"events": {"within_days": 3, "op": "in"}}, "condition.events.op", "count"),
        (
            {"attribute": {"name": "shoe_size", "op": "eq", "value": 1}},
            "condition.attribute.name",
            "",
        ),
        ({"all": [attr("market", "eq", "DE")], "any": []}, "condition", "exactly one"),
    ],
)
def test_bad_conditions_name_the_path(condition: Any, path: str, words: str) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        parse_condition(condition)
    assert caught.value.field == path
    assert words in str(caught.value)
    assert caught.value.fix


leaf = st.one_of(
    st.builds(lambda v: attr("specialty", "in", v),
              st.lists(st.sampled_from(["cardiology", "oncology"]), min_size=1)),
    st.builds(lambda n: attr("potential_decile", "gte", n), st.integers(1, 10)),
    st.builds(lambda d, c: {"events": {"action": "opened", "within_days": d, "count": c}},
              st.integers(1, 90), st.integers(0, 3)),
    st.just({"consent": {"channel": "email", "purpose": "promotional"}}),
)  # fmt: skip
conditions = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)


@given(conditions)
@settings(max_examples=200, deadline=None)
def test_stored_form_round_trips(raw: Any) -> None:
    parsed = parse_condition(raw)
    assert parse_condition(dump_condition(parsed)) == parsed


@given(conditions)
@settings(max_examples=200, deadline=None)
def test_not_is_the_exact_complement(raw: Any) -> None:
    f = facts([email("opened", 1), email("opened", 40)])
    assert holds({"not": raw}, f) is not holds(raw, f)
