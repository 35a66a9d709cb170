"""Contact policy documents: parsing, the errors that name their path, and round trips."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.event.canonical import Channel
from counterpoint.policy.contact import (
    DEFAULT_MINUTES,
    CapScope,
    PolicyDocumentError,
    QuietHours,
    default_policy,
    parse_policies,
    parse_policy,
    policy_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "market": "DE",
        "time_zone": "Europe/Berlin",
        "caps": [{"scope": "all", "period_days": 7, "max_touches": 3}],
        "min_gap_hours": {"campaign_email": 72},
        "quiet_hours": {"start": "19:00", "end": "08:00"},
        "quiet_weekdays": ["saturday", "sunday"],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize("name", ["de.yaml", "us.yaml"])
def test_examples_parse(name: str) -> None:
    policy = parse_policy(yaml.safe_load((EXAMPLES / name).read_text()))
    assert policy.market == name[:2].upper()
    assert policy.caps
    assert policy.quiet_hours is not None


def test_a_document_reads_as_written() -> None:
    policy = parse_policy(_doc(minutes={"f2f_call": 20}, no_consent_channels=["f2f_call"]))
    assert policy.caps[0].scope is CapScope.ALL
    assert policy.caps[0].max_touches == 3
    assert policy.min_gap_hours == {Channel.CAMPAIGN_EMAIL: 72}
    assert policy.quiet_hours == QuietHours(dt.time(19), dt.time(8))
    assert policy.quiet_weekdays == {5, 6}
    assert policy.minutes_of(Channel.F2F_CALL) == 20
    assert policy.minutes_of(Channel.SMS) == DEFAULT_MINUTES[Channel.SMS]
    assert policy.no_consent_channels == {Channel.F2F_CALL}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"market": "Germany"}, "market"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"min_gap_hours": {"pigeon": 3}}, "min_gap_hours.pigeon"),
        ({"min_gap_hours": {"sms": -1}}, "min_gap_hours.sms"),
        ({"minutes": {"sms": "lots"}}, "minutes.sms"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "8pm", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "08:00", "end": "08:00"}}, "quiet_hours.end"),
        ({"quiet_weekdays": ["caturday"]}, "quiet_weekdays[0]"),
        ({"no_consent_channels": ["fax"]}, "no_consent_channels[0]"),
        ({"caps": [{"scope": "all", "period_days": -7, "max_touches": 3}]}, "caps[0].period_days"),
        ({"caps": [{"scope": "all", "period_days": 7, "max_touches": -1}]}, "caps[0].max_touches"),
        ({"caps": [{"scope": "all", "period_days": 7, "max_touches": 1.5}]}, "caps[0].max_touches"),
        ({"caps": [{"scope": "all", "period_days": 7}]}, "caps[0]"),
        ({"caps": [{"scope": "channel", "key": "fax", "period_days": 7, "max_touches": 1}]},
         "caps[0].key"),
        ({"caps": [{"scope": "brand", "key": "a b';--", "period_days": 7, "max_touches": 1}]},
         "caps[0].key"),
        ({"caps": [{"scope": "every", "period_days": 7, "max_touches": 1}]}, "caps[0].scope"),
        ({"caps": [{"scope": "all", "key": "x", "period_days": 7, "max_touches": 1}]},
         "caps[0].key"),
        ({"caps": [{"scope": "all", "period_days": 7, "max_touches": 1},
                   {"scope": "all", "period_days": 7, "max_minutes": 60}]}, "caps[1]"),
        ({"caps": [{"scope": "channel", "key": "sms", "period_days": 30, "max_touches": 1},
                   {"scope": "channel", "key": "sms", "period_days": 30, "max_touches": 2}]},
         "caps[1]"),
        ({"colour": "blue"}, "colour"),
    ],
)  # fmt: skip
def test_bad_documents_are_refused_naming_the_path(change: dict[str, Any], path: str) -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy(_doc(**change))
    assert caught.value.field == path
    assert caught.value.fix
    assert caught.value.status == 400


def test_same_cap_with_other_period_or_key_is_not_an_overlap() -> None:
    policy = parse_policy(
        _doc(
            caps=[
                {"scope": "channel", "key": "sms", "period_days": 7, "max_touches": 1},
                {"scope": "channel", "key": "sms", "period_days": 30, "max_touches": 2},
                {"scope": "channel", "key": "phone", "period_days": 7, "max_touches": 1},
            ]
        )
    )
    assert len(policy.caps) == 3


def test_a_market_defined_twice_is_refused() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policies({"policies": [_doc(), _doc(market="US"), _doc(market="de")]})
    assert caught.value.field == "policies[2].market"
    assert "twice" in caught.value.detail


def test_several_markets_in_one_document() -> None:
    policies = parse_policies({"policies": [_doc(), _doc(market="US", time_zone="UTC")]})
    assert [p.market for p in policies] == ["DE", "US"]


@pytest.mark.parametrize("raw", [None, [], "market: DE", {"policies": []}, {"policies": 3}])
def test_documents_of_the_wrong_shape(raw: Any) -> None:
    with pytest.raises(PolicyDocumentError):
        parse_policies(raw)


def test_default_policy_has_the_market_zone_and_documented_limits() -> None:
    de, xx = default_policy("DE"), default_policy("ZZ")
    assert de.time_zone == "Europe/Berlin"
    assert xx.time_zone == "UTC"
    assert de.builtin
    assert de.caps
    assert de.quiet_hours is not None
    assert parse_policy(policy_document(de)).caps == de.caps


def test_quiet_hours_wrap_midnight() -> None:
    night = QuietHours(dt.time(20), dt.time(8))
    assert night.contains(dt.time(23, 59))
    assert night.contains(dt.time(0))
    assert night.contains(dt.time(7, 59))
    assert not night.contains(dt.time(8))
    assert not night.contains(dt.time(19, 59))
    lunch = QuietHours(dt.time(12), dt.time(14))
    assert lunch.contains(dt.time(12))
    assert not lunch.contains(dt.time(14))


_caps = st.lists(
    st.fixed_dictionaries(
        {
            "scope": st.just("channel"),
            "key": st.sampled_from([c.value for c in Channel]),
            "period_days": st.integers(1, 366),
            "max_touches": st.integers(0, 50),
        },
        optional={"max_minutes": st.floats(0, 10_000, allow_nan=False)},
    ),
    max_size=6,
    unique_by=lambda c: (c["key"], c["period_days"]),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caps=_caps,
    gaps=st.dictionaries(st.sampled_from([c.value for c in Channel]), st.floats(0, 1000)),
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    days=st.sets(st.sampled_from(["monday", "friday", "saturday", "sunday"])),
)
def test_document_round_trip(
    caps: list[dict[str, Any]], gaps: dict[str, float], start: dt.time, end: dt.time, days: set[str]
) -> None:
    doc = _doc(caps=caps, min_gap_hours=gaps, quiet_weekdays=sorted(days))
    doc["quiet_hours"] = (
        {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")} if start != end else None
    )
    policy = parse_policy(doc)
    assert parse_policy(policy_document(policy)) == policy
