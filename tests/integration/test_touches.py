"""The ``touches`` consumer against the real stores (both deployments), and the ``policy`` and
``dnc`` commands on the embedded deployment."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tests.conftest import NOW, TEST_ACTOR
from typer.testing import CliRunner

from counterpoint.cli.app import app
from counterpoint.consent.ledger import Purpose
from counterpoint.container import Container
from counterpoint.event.arrow import events_to_arrow
from counterpoint.event.canonical import (
    TOUCH_ACTIONS,
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.policy.access import Role
from counterpoint.policy.contact_service import PreferenceSource
from counterpoint.policy.guard_service import CheckRequest
from counterpoint.policy.policy_models import TouchDayRow, TouchLast
from counterpoint.policy.touches import TouchCounter, is_promotional, reported_minutes

NPI = "npi:1234567893"
COUNTERPOINT = str(Path(sys.executable).with_name("counterpoint"))
EMAIL = "email:jane@clinic.example"
_n = [0]


def _ev(subject: str, hours_ago: float, channel: Channel, action: Action, **props: Any) -> LogEvent:
    _n[0] += 1
    function, actor_type = props.pop("function", None), props.pop("actor_type", None)
    return LogEvent(
        f"t-{_n[0]}-{hours_ago}",
        EventKind.TRACK,
        subject,
        NOW - dt.timedelta(hours=hours_ago),
        NOW,
        "tests",
        channel=channel,
        action=action,
        brand=props.pop("brand", None),
        function=function,
        actor_type=actor_type,
        payload={"properties": props},
    )


def _identify(container: Container) -> str:
    traits = {"market": "DE", "email": "jane@clinic.example", "time_zone": "Europe/Berlin"}
    container.log.append(
        [LogEvent("id-1", EventKind.IDENTIFY, NPI, NOW, NOW, "tests", payload={"traits": traits})]
    )
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(NPI)
    assert hcp_id is not None
    return hcp_id


def _days(container: Container) -> list[tuple[Any, ...]]:
    with container.sessions() as session:
        rows = session.scalars(select(TouchDayRow).order_by(TouchDayRow.subject, TouchDayRow.day,
                                                            TouchDayRow.channel))  # fmt: skip
        return [(r.subject, r.day, r.channel, r.brand, r.touches, r.reported_touches,
                 r.reported_minutes) for r in rows]  # fmt: skip


def test_touches_are_counted_per_identifier_day_channel_and_brand(container: Container) -> None:
    hcp_id = _identify(container)
    container.log.append(
        [
            _ev(NPI, 2, Channel.F2F_CALL, Action.CALL_COMPLETED, duration_min=25, brand="ZEN"),
            _ev(NPI, 3, Channel.F2F_CALL, Action.CALL_COMPLETED, brand="ZEN"),
            _ev(NPI, 3, Channel.F2F_CALL, Action.SAMPLE_DROPPED, brand="ZEN"),
            _ev(EMAIL, 30, Channel.CAMPAIGN_EMAIL, Action.SENT),
            _ev(EMAIL, 29, Channel.CAMPAIGN_EMAIL, Action.OPENED),  # not a touch
            _ev(EMAIL, 28, Channel.CAMPAIGN_EMAIL, Action.BOUNCED, bounce_type="soft"),
            _ev(NPI, 48, Channel.WEBINAR, Action.ATTENDED, duration_min="long"),
            _ev(NPI, 24 * 200, Channel.PHONE, Action.CALL_COMPLETED),  # older than kept
            _ev(NPI, 1, Channel.SMS, Action.REFUSED),  # a refusal spends nothing
        ]
    )
    container.catch_up()
    today, yesterday, before = (
        NOW.date(),
        NOW.date() - dt.timedelta(1),
        NOW.date() - dt.timedelta(2),
    )
    assert _days(container) == [
        (EMAIL, yesterday, "campaign_email", "", 1, 0, 0.0),
        (NPI, before, "webinar", "", 1, 0, 0.0),
        (NPI, today, "f2f_call", "ZEN", 3, 1, 25.0),
    ]
    with container.sessions() as session:
        last = {(r.subject, r.channel): r.last_at for r in session.scalars(select(TouchLast))}
    assert last[(NPI, "f2f_call")] == NOW - dt.timedelta(hours=2)
    assert (NPI, "sms") not in last
    ref = container.profiles.resolve(hcp_id)
    assert container.contact.suppressions(ref) == []
    # the guard reads the budget through every identifier of the HCP
    container.contact.set_policy(
        "DE", {"caps": [{"scope": "all", "period_days": 3, "max_touches": 5}]}, TEST_ACTOR, "cap"
    )
    visit = CheckRequest(hcp_id, Channel.F2F_CALL, Purpose.PROMOTIONAL)
    assert container.guard.check(visit, role=Role.SALES_REP).codes == ["no_consent", "over_cap"]


def test_hard_bounces_suppress_until_lifted_and_replays_change_nothing(
    container: Container,
) -> None:
    hcp_id = _identify(container)
    container.log.append([_ev(EMAIL, 10, Channel.REP_EMAIL, Action.BOUNCED, bounce_type="hard")])
    container.catch_up()
    ref = container.profiles.resolve(hcp_id)
    [item] = container.contact.suppressions(ref)
    assert (item["identifier"], item["channel"]) == (EMAIL, "email")
    mail = CheckRequest(hcp_id, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL)
    assert "suppressed" in container.guard.check(mail, role=None).codes
    container.contact.lift(ref, item_channel(item), "address corrected", TEST_ACTOR)
    assert "suppressed" not in container.guard.check(mail, role=None).codes
    counts = _days(container)
    touches = next(c for c in container.consumers if c.name == "touches")
    touches.rebuild()
    assert _days(container) == counts
    assert container.contact.suppressions(ref) == []  # the lift survives a rebuild
    container.log.append(
        [_ev(EMAIL, 1, Channel.CAMPAIGN_EMAIL, Action.BOUNCED, bounce_type="hard")]
    )
    container.catch_up()
    assert len(container.contact.suppressions(ref)) == 1  # a newer hard bounce suppresses again
    actions = [r.action for r in container.audit.iter_records()]
    assert actions.count("suppression.lift") == 1


def test_promotional_touches_are_counted_by_function(container: Container) -> None:
    hcp_id = _identify(container)
    events = [
        _ev(NPI, 2, Channel.F2F_CALL, Action.CALL_COMPLETED, function=Function.COMMERCIAL),
        _ev(NPI, 3, Channel.F2F_CALL, Action.CALL_COMPLETED, function=Function.MEDICAL),
        _ev(NPI, 4, Channel.F2F_CALL, Action.CALL_COMPLETED, actor_type=ActorType.MSL),
        _ev(NPI, 5, Channel.MEDICAL_INQUIRY, Action.CALL_COMPLETED),
        _ev(EMAIL, 6, Channel.CAMPAIGN_EMAIL, Action.SENT),  # no function: commercial
        _ev(EMAIL, 24 * 29, Channel.WEBINAR, Action.ATTENDED, function=Function.COMMERCIAL),
        _ev(EMAIL, 24 * 31, Channel.SMS, Action.SENT, function=Function.COMMERCIAL),  # too old
        _ev(NPI, 1, Channel.SMS, Action.REFUSED, function=Function.COMMERCIAL),  # not a touch
    ]
    container.log.append(events)
    container.catch_up()
    with container.sessions() as session:
        rows = {
            (r.subject, r.channel): (r.touches, r.promotional)
            for r in session.scalars(select(TouchDayRow))
        }
    assert rows[(NPI, "f2f_call")] == (3, 1)
    assert rows[(NPI, "medical_inquiry")] == (1, 0)
    assert rows[(EMAIL, "campaign_email")] == (1, 1)
    ref = container.profiles.resolve(hcp_id)
    with container.sessions() as session:
        count = container.contact.promotional_count(session, ref, NOW)
    assert count == 3  # every identifier, channel and brand of the last 30 days
    assert container.contact.preference(ref)["promotional_last_30_days"] == 3
    # a rebuild from the log gives the same counts; a replay adds nothing
    touches = next(c for c in container.consumers if c.name == "touches")
    touches.rebuild()
    assert container.contact.preference(ref)["promotional_last_30_days"] == 3
    container.log.append(events[:1])
    container.catch_up()
    assert container.contact.preference(ref)["promotional_last_30_days"] == 3

    # the guard enforces the HCP's own limit with these counts
    container.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "no company caps")
    container.contact.set_preference(
        ref, "DE", 3, source=PreferenceSource.API, actor=TEST_ACTOR, reason="asked by letter"
    )
    visit = CheckRequest(hcp_id, Channel.F2F_CALL, Purpose.PROMOTIONAL)
    assert container.guard.check(visit, role=Role.SALES_REP).codes == [
        "no_consent", "hcp_frequency_cap",
    ]  # fmt: skip
    [many] = container.guard.check_many([visit], role=Role.SALES_REP)
    assert many.codes == ["no_consent", "hcp_frequency_cap"]
    container.contact.set_preference(
        ref, "DE", 4, source=PreferenceSource.API, actor=TEST_ACTOR, reason="asked by letter"
    )
    assert container.guard.check(visit, role=Role.SALES_REP).codes == ["no_consent"]


def test_preferences_of_merged_records_follow_the_survivor(container: Container) -> None:
    hcp_id = _identify(container)
    ref = container.profiles.resolve(hcp_id)
    alias = replace(ref, id="hcp_merged_away", aliases=("hcp_merged_away",))
    container.contact.set_preference(
        alias, "DE", 1, source=PreferenceSource.API, actor=TEST_ACTOR, reason="older record"
    )
    merged = replace(ref, aliases=(*ref.aliases, "hcp_merged_away"))
    with container.sessions() as session:
        assert container.contact.preference_in(session, merged, "DE") == 1
        facts = container.contact.facts_of(session, [merged], NOW.date())
    assert facts[hcp_id].max_promotional_per_month == 1
    stored = container.contact.set_preference(
        merged, "DE", 8, source=PreferenceSource.API, actor=TEST_ACTOR, reason="newer"
    )
    assert stored["hcp_id"] == hcp_id
    with container.sessions() as session:
        assert container.contact.preference_in(session, merged, "DE") == 8
        assert container.contact.preference_in(session, alias, "DE") is None  # moved over
        assert (
            container.contact.facts_of(session, [merged], NOW.date())[
                hcp_id
            ].max_promotional_per_month
            == 8
        )


def item_channel(item: dict[str, Any]) -> Any:
    from counterpoint.consent.ledger import ConsentChannel

    return ConsentChannel(item["channel"])


def test_retention_follows_the_longest_cap(container: Container) -> None:
    _identify(container)
    container.contact.set_policy(
        "DE",
        {"caps": [{"scope": "all", "period_days": 300, "max_touches": 50}]},
        TEST_ACTOR,
        "year",
    )
    container.log.append(
        [
            _ev(NPI, 24 * 200, Channel.PHONE, Action.CALL_COMPLETED),
            _ev(NPI, 24 * 320, Channel.PHONE, Action.CALL_COMPLETED),
        ]
    )
    container.catch_up()
    assert [d[1] for d in _days(container)] == [(NOW - dt.timedelta(days=200)).date()]


# --- the commands --------------------------------------------------------------------------
def _run(data_dir: Path, *args: str) -> Any:
    env = {"COUNTERPOINT_DATA_DIR": str(data_dir), "COUNTERPOINT_DATABASE_URL": None,
           "COLUMNS": "250"}  # fmt: skip
    return CliRunner().invoke(app, list(args), env=env)


def test_policy_and_dnc_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    examples = Path(__file__).resolve().parents[2] / "examples" / "policies"
    stored = _run(data, "policy", "set", str(examples / "de.yaml"), "--reason", "first policy")
    assert stored.exit_code == 0, stored.output
    assert "DE: stored as version 1" in stored.output
    again = _run(data, "policy", "set", str(examples / "de.yaml"), "--reason", "again")
    assert "unchanged, still version 1" in again.output
    shown = _run(data, "policy", "show", "de", "--history")
    assert shown.exit_code == 0, shown.output
    assert "version 1" in shown.output
    assert "Europe/Berlin" in shown.output
    builtin = _run(data, "policy", "show", "FR")
    assert "built-in default" in builtin.output


def test_commands_name_the_field_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("market: DE\nmin_gap_hours: {sms: -4}\n")
    env = {**os.environ, "COUNTERPOINT_DATA_DIR": str(tmp_path / "data")}
    env.pop("COUNTERPOINT_DATABASE_URL", None)
    command = [COUNTERPOINT, "policy", "set", str(bad), "--reason", "try"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "field: min_gap_hours.sms" in result.stderr
    assert "fix:" in result.stderr
    dnc = [COUNTERPOINT, "dnc", "add", "npi:1234567893", "--reason", "x"]
    result = subprocess.run(dnc, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "field: HCP" in result.stderr


_SUBJECTS = st.sampled_from([NPI, EMAIL, "crm:C-1"])
_TOUCHY = st.sampled_from([*sorted(TOUCH_ACTIONS), Action.OPENED, Action.REFUSED])


@st.composite
def _touch_events(draw: st.DrawFn) -> LogEvent:
    props: dict[str, Any] = {}
    duration = draw(st.one_of(st.none(), st.integers(-5, 2000), st.floats(0, 90), st.just("x")))
    if duration is not None:
        props[draw(st.sampled_from(["duration_min", "duration_minutes"]))] = duration
    return replace(
        _ev(
            draw(_SUBJECTS),
            draw(st.floats(0, 24 * 10)),
            draw(st.sampled_from(list(Channel))),
            draw(_TOUCHY),
            brand=draw(st.sampled_from([None, "ZEN", "CMX"])),
            **props,
        ),
        function=draw(st.sampled_from([None, *Function])),
        actor_type=draw(st.sampled_from([None, *ActorType])),
    )


def _expected(events: list[LogEvent]) -> tuple[dict[Any, list[float]], dict[Any, dt.datetime]]:
    """The touch counter's definition, one event at a time."""
    days: dict[Any, list[float]] = {}
    last: dict[Any, dt.datetime] = {}
    for e in events:
        if e.action not in TOUCH_ACTIONS or e.channel is None:
            continue
        at = e.occurred_at.astimezone(dt.UTC)
        cell = days.setdefault((e.subject, at.date(), e.channel.value, e.brand or ""), [0, 0, 0, 0])
        cell[0] += 1
        minutes = reported_minutes(e.payload["properties"])
        if minutes is not None:
            cell[1] += 1
            cell[2] += minutes
        cell[3] += is_promotional(
            e.function.value if e.function else None,
            e.channel,
            e.actor_type.value if e.actor_type else None,
        )
        key = (e.subject, e.channel.value)
        last[key] = max(last.get(key, at), at)
    return days, last


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_touch_events(), max_size=40), cut=st.integers(0, 40))
def test_counting_in_arrow_matches_the_per_event_definition(
    container: Container, events: list[LogEvent], cut: int
) -> None:
    """Touches aggregated column-wise equal the definition applied event by event, however the
    events are split into chunks (each example rolls back)."""
    counter = TouchCounter(container.sessions, container.log, container.clock)
    with container.sessions() as session:
        for part in (events[:cut], events[cut:]):
            counter.apply(session, events_to_arrow(part))
        got_days = {
            (r.subject, r.day, r.channel, r.brand): [
                r.touches, r.reported_touches, r.reported_minutes, r.promotional
            ]
            for r in session.scalars(select(TouchDayRow))
        }  # fmt: skip
        got_last = {(r.subject, r.channel): r.last_at for r in session.scalars(select(TouchLast))}
        session.rollback()
    days, last = _expected(events)
    assert got_days.keys() == days.keys()
    for key, cell in days.items():
        assert got_days[key][:2] == cell[:2], key
        assert got_days[key][3] == cell[3], key
        assert got_days[key][2] == pytest.approx(cell[2]), key
    assert {
        k: v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v for k, v in got_last.items()
    } == last
