"""The journey dry run (``journey.simulate``): synthetic HCPs through a journey over simulated
weeks, in memory, with the engine's rule, the guard and the contact policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.test_advance import TYPES, build

from counterpoint.consent.ledger import ConsentChannel
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Action, Channel
from counterpoint.journey.definition import JourneyDocument
from counterpoint.journey.loader import load_document
from counterpoint.journey.simulate import (
    DEFAULT_RATES,
    Response,
    Simulation,
    SimulationRates,
    SimulationReport,
    by_persona,
    simulate,
)
from counterpoint.policy.contact import Cap, CapScope, ContactPolicy, QuietHours, default_policy
from counterpoint.segment.conditions import parse_condition

START = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)  # Monday 09:00 in Berlin
EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "journeys").glob("*.yaml"))
OWNER = {"responsible": "marketing_ops", "accountable": "brand_manager"}
ALL = by_persona(1, 1, 1, 1, 1)
NONE = by_persona(0, 0, 0, 0, 0)
# every consent granted, no other activity, no responses: what a test sees is the journey's
QUIET = dataclasses.replace(
    DEFAULT_RATES,
    background=(),
    responses={},
    consent=dict.fromkeys(ConsentChannel, 1.0),
    purpose_shift={},
    double_opt_in_shift=0.0,
)
OPEN_POLICY = ContactPolicy(market="DE", time_zone="Europe/Berlin")
"""No caps, gaps or quiet hours."""


def open_policy(market: str) -> ContactPolicy:
    return dataclasses.replace(OPEN_POLICY, market=market)


def doc(
    nodes: list[dict[str, Any]], markets: list[str] | None = None, **extra: Any
) -> JourneyDocument:
    """A one-touchpoint journey around ``nodes`` (synthetic)."""
    return JourneyDocument.model_validate(
        {
            "journey": "dry",
            "title": "Dry run test (synthetic)",
            "brand": "Cardiomax",
            "markets": markets or ["DE"],
            "map": {
                "stages": ["awareness", "trial"],
                "touchpoints": [
                    {"id": "tp", "stage": "awareness", "name": "tp", "customer_goal": "g",
                     "business_reason": "r", "owner": OWNER},
                    {"id": "visit", "stage": "trial", "name": "visit", "customer_goal": "g",
                     "business_reason": "r", "owner": OWNER},
                ],
            },
            "flow": {"nodes": nodes},
            **extra,
        }
    )  # fmt: skip


EVERYONE = {"condition": {"attribute": {"name": "market", "op": "exists"}}}


def entry(next_: str, trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "in", "type": "entry", "touchpoint": "tp", "next": next_,
            "trigger": trigger or EVERYONE}  # fmt: skip


def send(node_id: str, next_: str, channel: str = "campaign_email") -> dict[str, Any]:
    return {"id": node_id, "type": "send", "touchpoint": "tp", "channel": channel,
            "content": "CMX-1", "next": next_}  # fmt: skip


def wait(node_id: str, next_: str, **how: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "wait", "touchpoint": "tp", "next": next_, **how}


OUT = {"id": "out", "type": "exit", "reason": "done"}
TWO_MAILS = doc([entry("m1"), send("m1", "w"), wait("w", "m2", duration={"days": 1}),
                 send("m2", "out"), OUT])  # fmt: skip


def run(document: JourneyDocument, **kwargs: Any) -> tuple[Simulation, SimulationReport]:
    options: dict[str, Any] = {"hcps": 200, "weeks": 4, "seed": 3, "start": START,
                               "rates": QUIET, "policy_for": open_policy}  # fmt: skip
    options.update(kwargs)
    sim = Simulation(document, **options)
    return sim, sim.run()


def consistent(report: SimulationReport) -> None:
    """Every HCP that entered is completed, exited or waiting; every contact attempted was
    sent, tasked or refused; the totals add up from the nodes."""
    t = report.totals
    first = report.nodes[0]["figures"]
    assert first["entered"] == t["enrollments"] == t["completed"] + t["exited"] + t["waiting"]
    assert t["entered"] <= t["enrollments"]
    for node in report.nodes:
        f = node["figures"]
        if node["type"] in ("send", "rep_task"):
            assert f["sent"] + f["tasks"] + f["refused"] == f["visits"], node["id"]
        else:
            assert f["sent"] == f["tasks"] == f["refused"] == 0, node["id"]
        assert sum(f["sent_by_channel"].values()) == f["sent"]
        assert sum(f["refusals"].values()) >= f["refused"]
    for key in ("sent", "tasks", "refused", "goals"):
        assert sum(n["figures"][key] for n in report.nodes) == t[key], key
    assert sum(n["figures"]["active"] for n in report.nodes) == t["waiting"]
    assert sum(n["figures"]["exited"] for n in report.nodes) == t["exited"]
    assert sum(t["sent_by_channel"].values()) == t["sent"]
    assert t["reached"] <= t["entered"] <= t["population"] == report.hcps
    for arm in report.arms:
        assert arm.entered <= t["enrollments"]


# --- determinism and consistency ---------------------------------------------------------------
def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    a = simulate(TWO_MAILS, hcps=150, weeks=3, seed=5, start=START)
    b = simulate(TWO_MAILS, hcps=150, weeks=3, seed=5, start=START)
    c = simulate(TWO_MAILS, hcps=150, weeks=3, seed=6, start=START)
    assert a.as_dict() == b.as_dict()
    assert a.as_dict() != c.as_dict()
    assert a.synthetic
    assert a.as_dict()["synthetic"] is True
    assert a.as_dict()["dry_run"] is True


def test_more_hcps_keep_the_first_ones_the_same() -> None:
    """Each HCP draws from its own stream: a larger run starts with the same people."""
    (small, _), (large, _) = run(TWO_MAILS, hcps=20), run(TWO_MAILS, hcps=40)
    assert [h.attributes for h in small.hcps] == [h.attributes for h in large.hcps[:20]]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_example_journeys_run_and_their_figures_add_up(path: Path) -> None:
    document = load_document(path.read_text(encoding="utf-8"), source=str(path)).require()
    report = simulate(document, hcps=1000, weeks=8, seed=1, start=START)
    consistent(report)
    t = report.totals
    assert t["enrollments"] > 0
    assert t["sent"] + t["tasks"] > 0
    assert t["refused"] > 0
    assert report.as_dict()["period"] == {
        "start": START.isoformat(),
        "end": (START + dt.timedelta(weeks=8)).isoformat(),
    }
    assert set(report.population["markets"]) <= set(document.markets)


def test_two_examples_are_there() -> None:
    assert len(EXAMPLES) >= 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(TYPES), min_size=1, max_size=8),
    choices=st.lists(st.integers(0, 50), min_size=1, max_size=8),
    seed=st.integers(0, 10_000),
)
def test_any_flow_adds_up(kinds: list[str], choices: list[int], seed: int) -> None:
    report = simulate(build(kinds, choices), hcps=25, weeks=3, seed=seed, start=START)
    consistent(report)


def test_a_thousand_hcps_over_eight_weeks_take_seconds() -> None:
    document = load_document(EXAMPLES[0].read_text(encoding="utf-8")).require()
    began = time.perf_counter()
    simulate(document, hcps=1000, weeks=8, seed=1, start=START)
    assert time.perf_counter() - began < 10


# --- the guard decides as it would ---------------------------------------------------------------
def test_a_cap_refuses_the_second_send_within_its_window() -> None:
    capped = ContactPolicy(
        market="DE", time_zone="Europe/Berlin",
        caps=(Cap(CapScope.CHANNEL, 7, key=Channel.CAMPAIGN_EMAIL.value, max_touches=1),),
    )  # fmt: skip
    _, report = run(TWO_MAILS, policy_for=lambda m: capped)
    first, second = report.node("m1"), report.node("m2")
    assert first["sent"] == first["entered"] == 200
    assert first["refused"] == 0
    assert second["sent"] == 0
    assert second["refused"] == 200
    assert second["refusals"] == {"over_cap": 200}
    assert report.totals["reached"] == 200
    consistent(report)


def test_without_the_cap_both_sends_go_out() -> None:
    _, report = run(TWO_MAILS)
    assert report.node("m2")["sent"] == 200
    assert report.totals["sent_by_channel"] == {"campaign_email": 400}


def test_quiet_hours_refuse_in_the_hcps_own_zone() -> None:
    night = dataclasses.replace(OPEN_POLICY, quiet_hours=QuietHours(dt.time(20), dt.time(8)))
    at_three = dt.datetime(2026, 11, 3, 5, 0, tzinfo=dt.UTC)  # 06:00 Berlin, 21:00 Los Angeles
    document = doc([entry("m1"), send("m1", "out"), OUT], markets=["DE", "US"])
    _, report = run(
        document, start=at_three, policy_for=lambda m: dataclasses.replace(night, market=m)
    )
    assert report.node("m1")["refusals"] == {"quiet_hours": 200}
    late = dt.datetime(2026, 11, 3, 16, 0, tzinfo=dt.UTC)  # 17:00 Berlin, 08:00 Los Angeles
    _, report = run(document, start=late, policy_for=lambda m: dataclasses.replace(night, market=m))
    assert report.node("m1")["sent"] == 200


def test_missing_consent_refuses_and_takes_the_refusal_branch() -> None:
    rates = dataclasses.replace(
        QUIET,
        consent={ConsentChannel.EMAIL: 0.0},
        pending_share=0.0,
        pending_share_double_opt_in=0.0,
    )
    nodes = [entry("m1"), {**send("m1", "out"), "refused_next": "no"}, OUT,
             {"id": "no", "type": "exit", "reason": "no_consent"}]  # fmt: skip
    _, report = run(doc(nodes), rates=rates)
    assert report.node("m1")["refusals"] == {"consent_denied": 200}
    assert report.totals["exits"] == {"no_consent": 200}
    assert report.totals["reached"] == 0


def test_background_touches_spend_the_same_budget() -> None:
    """Other brands' e-mails (drawn as background) count against the e-mail cap."""
    busy = dataclasses.replace(
        QUIET,
        background=(dataclasses.replace(DEFAULT_RATES.background[0], per_week=ALL, responses=()),),
    )
    capped = dataclasses.replace(
        OPEN_POLICY, caps=(Cap(CapScope.CHANNEL, 7, key="campaign_email", max_touches=1),)
    )
    document = doc([entry("w"), wait("w", "m1", duration={"days": 7}), send("m1", "out"), OUT])
    sim, report = run(document, rates=busy, policy_for=lambda m: capped)
    assert report.totals["background_interactions"] > 0
    assert report.node("m1")["refusals"].get("over_cap", 0) > 0
    for hcp in sim.hcps:  # an HCP refused had another e-mail in the week before
        refused = [
            t
            for t in sim.transitions
            if t.kind == "refused" and t.enrollment_id.startswith(f"dry-{hcp.id}-")
        ]
        for t in refused:
            window = [x for x in hcp.touches if t.at - dt.timedelta(days=7) < x[0] <= t.at]
            assert window, hcp.id


# --- responses and waits -------------------------------------------------------------------
def _opens(p: float) -> SimulationRates:
    opened = Response(Action.OPENED, by_persona(*[p] * 5), (1, 2))
    return dataclasses.replace(QUIET, responses={Channel.CAMPAIGN_EMAIL: (opened,)})


WAIT_OPEN = doc([
    entry("m1"), send("m1", "opened"),
    {"id": "opened", "type": "wait_for_event", "touchpoint": "tp",
     "event": {"channel": "campaign_email", "action": "opened"}, "timeout": {"days": 3},
     "next": "goal", "timeout_next": "out"},
    {"id": "goal", "type": "goal", "touchpoint": "tp", "goal": "opened"}, OUT,
])  # fmt: skip


def test_an_open_resumes_the_wait_and_no_open_times_out() -> None:
    _, everyone = run(WAIT_OPEN, rates=_opens(1.0))
    assert everyone.totals["goals"] == 200
    assert everyone.totals["exits"] == {}
    assert everyone.totals["responses"] == {"opened": 200}
    kpi = everyone.touchpoints[0]
    assert kpi["figures"]["goals"] == 200
    _, nobody = run(WAIT_OPEN, rates=_opens(0.0))
    assert nobody.totals["goals"] == 0
    assert nobody.totals["exits"] == {"done": 200}


def test_responses_arrive_hours_after_the_send() -> None:
    sim, _ = run(WAIT_OPEN, rates=_opens(1.0))
    sent = {t.enrollment_id: t.at for t in sim.transitions if t.kind == "sent"}
    goals = {t.enrollment_id: t.at for t in sim.transitions if t.kind == "goal"}
    for eid, at in goals.items():
        assert dt.timedelta(hours=1) <= at - sent[eid] <= dt.timedelta(hours=2)


def test_an_unsubscribe_revokes_the_consent_for_the_next_send() -> None:
    unsub = Response(
        Action.UNSUBSCRIBED,
        ALL, (1, 2),
    )  # fmt: skip
    rates = dataclasses.replace(QUIET, responses={Channel.CAMPAIGN_EMAIL: (unsub,)})
    _, report = run(TWO_MAILS, rates=rates)
    assert report.node("m2")["refusals"] == {"consent_revoked": 200}


def test_an_email_invitation_leads_to_registration_then_attendance_during_the_wait() -> None:
    clicked = Response(
        Action.CLICKED,
        ALL, (1, 2),
    )  # fmt: skip
    rates = dataclasses.replace(
        QUIET, responses={Channel.CAMPAIGN_EMAIL: (clicked,)}, awaited=ALL,
        follow_ups={
            (Channel.WEBINAR, Action.REGISTERED): (
                Response(Action.ATTENDED, ALL, (1, 2)),
            )
        },
    )  # fmt: skip
    nodes = [
        entry("inv"), send("inv", "reg"),
        {"id": "reg", "type": "wait_for_event", "touchpoint": "tp",
         "event": {"channel": "webinar", "action": "registered"}, "timeout": {"days": 5},
         "next": "day", "timeout_next": "out"},
        wait("day", "att", duration={"days": 6}),
        {"id": "att", "type": "wait_for_event", "touchpoint": "tp",
         "event": {"channel": "webinar", "action": "attended"}, "timeout": {"days": 2},
         "next": "goal", "timeout_next": "out"},
        {"id": "goal", "type": "goal", "touchpoint": "tp", "goal": "attended"}, OUT,
    ]  # fmt: skip
    sim, report = run(doc(nodes), rates=rates)
    assert report.node("reg")["completed"] == 200
    assert report.totals["goals"] == 200
    assert report.totals["responses"] == {"attended": 200, "clicked": 200, "registered": 200}
    waits = {
        t.enrollment_id: t.at for t in sim.transitions if t.kind == "entered" and t.node == "att"
    }
    goals = {t.enrollment_id: t.at for t in sim.transitions if t.kind == "goal"}
    for eid, at in goals.items():  # attended while waiting for it, not before
        assert waits[eid] < at <= waits[eid] + dt.timedelta(days=2)


def test_a_rep_task_becomes_a_completed_call_in_working_hours() -> None:
    rates = dataclasses.replace(QUIET, task_done=ALL, adoption_step=NONE)
    nodes = [
        entry("task"),
        {"id": "task", "type": "rep_task", "touchpoint": "visit", "reason": "r",
         "due": {"days": 5}, "next": "call"},
        {"id": "call", "type": "wait_for_event", "touchpoint": "visit",
         "event": {"channel": "f2f_call", "action": "call_completed"}, "timeout": {"days": 6},
         "next": "goal", "timeout_next": "out"},
        {"id": "goal", "type": "goal", "touchpoint": "visit", "goal": "visited"}, OUT,
    ]  # fmt: skip
    sim, report = run(doc(nodes), rates=rates)
    # the touchpoint's responsible is marketing_ops: the task is checked as a rep's
    assert report.node("task")["tasks"] == 200
    assert report.node("task")["refused"] == 0
    assert report.totals["goals"] == 200
    for t in sim.transitions:
        if t.kind == "goal":
            local = t.at.astimezone(ZoneInfo("Europe/Berlin"))
            assert local.weekday() < 5
            assert 8 <= local.hour < 18


def test_a_completed_call_may_move_the_adoption_stage_on() -> None:
    rates = dataclasses.replace(QUIET, task_done=ALL, adoption_step=ALL, adoption_days=(1, 2))
    nodes = [
        entry("task"),
        {"id": "task", "type": "rep_task", "touchpoint": "visit", "reason": "r",
         "due": {"days": 2}, "next": "w"},
        wait("w", "check", duration={"days": 10}),
        {"id": "check", "type": "condition", "touchpoint": "visit",
         "condition": {"attribute": {"name": "adoption_stage", "brand": "Cardiomax",
                                     "op": "ne", "value": "unaware"}},
         "then": "goal", "else": "out"},
        {"id": "goal", "type": "goal", "touchpoint": "visit", "goal": "moved"}, OUT,
    ]  # fmt: skip
    sim, report = run(doc(nodes), rates=rates)
    assert report.totals["goals"] == 200
    assert all(h.attributes["adoption_stage"]["Cardiomax"] != "unaware" for h in sim.hcps)


# --- arms and timing ---------------------------------------------------------------------------
def test_a_holdout_arm_receives_no_sends() -> None:
    nodes = [
        entry("split"),
        {"id": "split", "type": "random", "touchpoint": "tp", "arms": [
            {"name": "mail", "weight": 70, "next": "m1"},
            {"name": "hold", "weight": 30, "next": "h", "holdout": True}]},
        send("m1", "out"), wait("h", "out", duration={"days": 7}), OUT,
    ]  # fmt: skip
    sim, report = run(doc(nodes), hcps=400)
    arms = {a.arm: a for a in report.arms}
    assert arms["hold"].holdout
    assert arms["hold"].sent == 0
    assert arms["hold"].entered > 50
    assert arms["mail"].sent == arms["mail"].entered > 200
    assert arms["mail"].entered + arms["hold"].entered == 400
    held = {eid for eid, drawn in sim.arms_of.items() if drawn.get("split") == "hold"}
    assert not [t for t in sim.transitions if t.kind == "sent" and t.enrollment_id in held]
    consistent(report)


def test_a_wait_until_fires_at_the_local_time_in_the_hcps_zone() -> None:
    nodes = [entry("w"), wait("w", "m1", until={"weekdays": ["tue"], "time": "10:00"}),
             send("m1", "out"), OUT]  # fmt: skip
    sim, _ = run(doc(nodes, markets=["DE", "US", "JP"]), hcps=300)
    zones = {h.id: ZoneInfo(h.time_zone) for h in sim.hcps}
    assert len(set(zones.values())) >= 4  # Berlin, Tokyo and several US zones
    fired = [t for t in sim.transitions if t.kind == "entered" and t.node == "m1"]
    assert len(fired) == 300
    for t in fired:
        local = t.at.astimezone(zones[sim.enrollments[t.enrollment_id].hcp_id])
        assert (local.weekday(), local.hour, local.minute) == (1, 10, 0)


def test_a_condition_entry_is_evaluated_each_week_and_re_entry_follows_the_rule() -> None:
    nodes = [entry("w"), wait("w", "out", duration={"days": 2}), OUT]
    _, once = run(doc(nodes), weeks=3)
    assert once.totals["enrollments"] == once.totals["entered"] == 200
    again = doc([{**entry("w"), "re_entry": {"policy": "after_exit", "min_days": 7}},
                 wait("w", "out", duration={"days": 2}), OUT])  # fmt: skip
    _, weekly = run(again, weeks=3)
    assert weekly.totals["entered"] == 200
    assert weekly.totals["enrollments"] == 600


def test_an_event_entry_enters_on_a_matching_interaction() -> None:
    visits = dataclasses.replace(
        DEFAULT_RATES.background[3], per_week=by_persona(2, 2, 2, 2, 2), own_brand=0.5
    )
    rates = dataclasses.replace(QUIET, background=(visits,))
    trigger = {"event": {"channel": "website", "action": "visited", "brand": "Cardiomax"}}
    sim, report = run(
        doc([entry("w", trigger), wait("w", "out", duration={"days": 1}), OUT]), rates=rates
    )
    assert 0 < report.totals["entered"] < 200
    for e in sim.enrollments.values():
        hcp = next(h for h in sim.hcps if h.id == e.hcp_id)
        assert any(
            x.occurred_at == e.entered_at and x.channel == "website" and x.brand == "Cardiomax"
            for x in hcp.events
        )


def test_a_segment_entry_needs_the_segments_condition() -> None:
    nodes = [entry("w", {"segment": "hf-targets"}), wait("w", "out", duration={"days": 1}), OUT]
    document = doc(nodes)
    with pytest.raises(ValidationFailedError) as caught:
        simulate(document, hcps=10, weeks=1, start=START)
    assert "hf-targets" in caught.value.detail
    assert caught.value.field == "flow.nodes.0.trigger.segment"
    assert caught.value.fix
    assert "all_enter" in caught.value.fix
    high = parse_condition({"attribute": {"name": "potential_decile", "op": "gte", "value": 8}})
    sim, report = run(document, segment_conditions={"hf-targets": high})
    assert report.entry == "segment hf-targets"
    assert all(sim.hcps[int(e.hcp_id.rsplit("-", 1)[1]) - 1].attributes["potential_decile"] >= 8
               for e in sim.enrollments.values())  # fmt: skip
    _, everyone = run(document, all_enter=True)
    assert everyone.totals["entered"] == 200


# --- the synthetic population --------------------------------------------------------------
def test_the_population_is_synthetic_and_drawn_from_the_journeys_markets() -> None:
    sim, _ = run(
        doc([entry("out"), OUT], markets=["DE", "FR", "AT"]), hcps=300, policy_for=default_policy
    )
    assert {h.market for h in sim.hcps} == {"DE", "FR", "AT"}
    for h in sim.hcps:
        a = h.attributes
        assert a["synthetic"] is True
        assert h.id.startswith("syn-")
        assert 1 <= a["potential_decile"] <= 10
        assert a["persona"] == h.persona
        assert a["adoption_stage"]["Cardiomax"] in ("unaware", "aware", "interested", "trial",
                                                    "adopter", "advocate")  # fmt: skip
        ZoneInfo(h.time_zone)
    fr = [h for h in sim.hcps if h.market == "FR"]
    assert {h.time_zone for h in fr} == {"Europe/Paris"}
    assert {h.attributes["preferred_language"] for h in fr} == {"fr"}
    assert {h.time_zone for h in sim.hcps if h.market == "AT"} == {"Europe/Vienna"}


def test_consent_is_drawn_with_the_documented_probabilities() -> None:
    sim = Simulation(doc([entry("out"), OUT], markets=["US"]), hcps=2000, weeks=1, seed=1,
                     start=START)  # fmt: skip
    sim.run()
    from counterpoint.consent.ledger import Purpose
    from counterpoint.segment.conditions import ConsentKey

    key = ConsentKey(ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    granted = sum(sim.consented(h, key, START) for h in sim.hcps) / 2000
    assert abs(granted - 0.72) < 0.04
    records = [
        r
        for h in sim.hcps
        for r in sim.consent_records(h, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    ]
    assert all(r.synthetic for r in records)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hcps": 0}, "hcps"),
        ({"weeks": 0}, "weeks"),
        ({"weeks": 105}, "weeks"),
        ({"start": dt.datetime(2026, 11, 2, 9)}, "start"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"hcps": 10, "weeks": 1, "start": START, **kwargs}
    with pytest.raises(ValidationFailedError) as caught:
        simulate(TWO_MAILS, **options)
    assert caught.value.field == field
    assert caught.value.fix


def test_a_send_counts_for_the_next_send_in_the_same_step() -> None:
    capped = dataclasses.replace(OPEN_POLICY, caps=(Cap(CapScope.ALL, 1, max_touches=1),))
    document = doc([entry("m1"), send("m1", "m2"), send("m2", "out", "sms"), OUT])
    _, report = run(document, policy_for=lambda m: capped)
    assert report.node("m1")["sent"] == 200
    assert report.node("m2")["refusals"] == {"over_cap": 200}
