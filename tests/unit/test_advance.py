"""The journey engine's rule (``journey.engine.advance``): properties over random flows,
random stimuli and random answers of the world, and the timing rules."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.journey.definition import JourneyDocument, RandomNode, WaitUntil, Weekday
from counterpoint.journey.engine import (
    Effect,
    Enrollment,
    EnrollmentStatus,
    Entered,
    Exited,
    Interaction,
    Permission,
    Refused,
    RepTask,
    Send,
    Start,
    Stimulus,
    Timer,
    advance,
    arm_of,
    next_wake,
    start,
)
from counterpoint.segment.conditions import Condition

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
OWNER = {"responsible": "marketing_ops", "accountable": "brand_manager"}
TYPES = (
    "wait",
    "wait_for_event",
    "condition",
    "random",
    "send",
    "rep_task",
    "update_attribute",
    "goal",
    "exit",
)
TRUE = {"attribute": {"name": "market", "op": "eq", "value": "DE"}}


class ScriptedOracle:
    """Answers from a script (a list of booleans, cycled), so a run is reproducible."""

    def __init__(self, answers: list[bool], zone: str = "Europe/Berlin") -> None:
        self.answers = answers or [True]
        self.asked = 0
        self.zone = zone

    def _next(self) -> bool:
        answer = self.answers[self.asked % len(self.answers)]
        self.asked += 1
        return answer

    def holds(self, condition: Condition, now: dt.datetime) -> bool:
        return self._next()

    def permits(self, effect: Send | RepTask, now: dt.datetime) -> Permission:
        return Permission(True) if self._next() else Permission(False, ("contact_cap",))

    def time_zone(self) -> str:
        return self.zone


def _node(
    i: int, kind: str, forward: list[str], waits_before: list[str], choice: list[int]
) -> dict[str, Any]:
    """Node ``n<i>`` of ``kind``; targets from ``forward`` (later nodes) or back to an
    earlier wait (so every loop has a wait in it), chosen by ``choice``."""
    base: dict[str, Any] = {"id": f"n{i}", "type": kind, "touchpoint": "tp"}

    def pick(k: int) -> str:
        pool = forward + waits_before
        return pool[choice[k % len(choice)] % len(pool)]

    if kind == "wait":
        base |= {"duration": {"days": 1 + i % 3}, "next": pick(0)}
    elif kind == "wait_for_event":
        base |= {
            "event": {"channel": "campaign_email", "action": "opened"},
            "timeout": {"days": 2},
            "next": pick(1),
            "timeout_next": pick(2),
        }
    elif kind == "condition":
        base |= {"condition": TRUE, "then": pick(0), "else": pick(2)}
    elif kind == "random":
        base |= {
            "arms": [
                {"name": "a", "weight": 1, "next": pick(0)},
                {"name": "b", "weight": 1, "next": pick(1), "holdout": True},
            ]
        }
    elif kind == "send":
        base |= {
            "channel": "campaign_email",
            "content": "CMX-1",
            "next": pick(0),
            "refused_next": pick(2),
        }
    elif kind == "rep_task":
        base |= {"reason": "follow up", "due": {"days": 3}, "next": pick(1)}
    elif kind == "update_attribute":
        base |= {"attribute": "adoption_stage", "value": "trial", "next": pick(0)}
    elif kind == "goal":
        base |= {"goal": "engaged", "next": pick(0)} if i % 2 else {"goal": "engaged"}
    else:
        base = {"id": f"n{i}", "type": "exit"}
    return base


def build(kinds: list[str], choices: list[int] | None = None) -> JourneyDocument:
    """A valid document: entry, then ``kinds`` in order, then an exit; edges go forward or
    back to an earlier wait node, as ``choices`` say."""
    choices = choices or [0]
    n = len(kinds) + 1  # n0 entry, n1..n<len> kinds, n<n> exit
    nodes: list[dict[str, Any]] = [
        {
            "id": "n0",
            "type": "entry",
            "touchpoint": "tp",
            "trigger": {"condition": TRUE},
            "next": "n1" if kinds else f"n{n}",
        }
    ]
    waits: list[str] = []
    for i, kind in enumerate(kinds, start=1):
        forward = [f"n{j}" for j in range(i + 1, n + 1)]
        mine = [choices[(i * 3 + k) % len(choices)] for k in range(3)]
        nodes.append(_node(i, kind, forward, list(waits), mine))
        if kind in ("wait", "wait_for_event"):
            waits.append(f"n{i}")
    nodes.append({"id": f"n{n}", "type": "exit", "reason": "end"})
    return JourneyDocument.model_validate(
        {
            "journey": "j",
            "title": "Generated",
            "brand": "Cardiomax",
            "markets": ["DE"],
            "map": {
                "touchpoints": [
                    {
                        "id": "tp",
                        "stage": "awareness",
                        "name": "t",
                        "customer_goal": "g",
                        "business_reason": "r",
                        "owner": OWNER,
                    }
                ]
            },
            "flow": {"nodes": nodes},
        }
    )


stimuli = st.lists(
    st.one_of(
        st.builds(lambda h: ("timer", h), st.integers(0, 24 * 10)),
        st.builds(
            lambda h, a: ("event", h, a),
            st.integers(0, 24 * 10),
            st.sampled_from(["opened", "clicked"]),
        ),
    ),
    max_size=25,
)


def run(
    doc: JourneyDocument, script: list[tuple[Any, ...]], answers: list[bool]
) -> tuple[Enrollment, list[Effect], list[Enrollment]]:
    oracle = ScriptedOracle(answers)
    state = start(doc, "j:h1:1", 1, "h1", NOW)
    step = advance(doc, state, Start(NOW), oracle)
    states = [step.enrollment]
    effects = list(step.effects)
    state = step.enrollment
    elapsed = 0
    for item in script:
        elapsed += item[1]
        at = NOW + dt.timedelta(hours=elapsed)
        stimulus: Stimulus = (
            Timer(at) if item[0] == "timer" else Interaction(at, "campaign_email", item[2])
        )
        step = advance(doc, state, stimulus, oracle)
        state = step.enrollment
        states.append(state)
        effects.extend(step.effects)
    return state, effects, states


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    kinds=st.lists(st.sampled_from(TYPES), min_size=0, max_size=10),
    choices=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    script=stimuli,
    answers=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_every_run_is_well_formed(
    kinds: list[str], choices: list[int], script: list[tuple[Any, ...]], answers: list[bool]
) -> None:
    doc = build(kinds, choices)
    nodes = doc.flow.by_id
    final, effects, states = run(doc, script, answers)

    # the same inputs give the same result (a replay after a crash makes the same keys)
    again, effects_again, _ = run(doc, script, answers)
    assert (again, effects_again) == (final, effects)

    # between stimuli an enrollment is waiting at a wait node with a timer, or it has ended
    for s in states:
        if s.final:
            assert s.exit_reason
        else:
            assert s.status is EnrollmentStatus.WAITING
            assert nodes[s.node].type in ("wait", "wait_for_event")
            assert s.wake_at is not None
            assert s.wake_at > s.node_entered_at

    # one ``Entered`` per visit, keys never repeat, every contact is at a contact node
    assert sum(isinstance(e, Entered) for e in effects) == final.visits
    keys = [e.key for e in effects if isinstance(e, Send | RepTask)]
    assert len(keys) == len(set(keys))
    for e in effects:
        if isinstance(e, Send):
            assert nodes[e.node].type == "send"
        if isinstance(e, RepTask):
            assert nodes[e.node].type == "rep_task"
        if isinstance(e, Refused):
            node = nodes[e.node]
            assert e.branch == (getattr(node, "refused_next", None) or node.next)  # type: ignore[union-attr]

    # an ended enrollment says so exactly once, and nothing moves it afterwards
    exits = [e for e in effects if isinstance(e, Exited)]
    assert len(exits) == (1 if final.final else 0)
    if final.final:
        later = advance(doc, final, Timer(NOW + dt.timedelta(days=400)), ScriptedOracle([True]))
        assert later.enrollment == final
        assert not later.effects


@given(kinds=st.lists(st.sampled_from(TYPES), min_size=1, max_size=8), hours=st.integers(0, 500))
@settings(max_examples=150, deadline=None)
def test_a_timer_twice_at_the_same_moment_moves_once(kinds: list[str], hours: int) -> None:
    doc = build(kinds)
    oracle = ScriptedOracle([True, False, True])
    state = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), oracle).enrollment
    at = NOW + dt.timedelta(hours=hours)
    first = advance(doc, state, Timer(at), oracle)
    second = advance(doc, first.enrollment, Timer(at), oracle)
    assert not second.effects
    assert second.enrollment == first.enrollment


def test_start_is_accepted_once() -> None:
    doc = build(["wait"])
    oracle = ScriptedOracle([True])
    state = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), oracle).enrollment
    again = advance(doc, state, Start(NOW), oracle)
    assert again.enrollment == state
    assert not again.effects


def test_an_event_moves_only_the_enrollment_waiting_for_it() -> None:
    doc = build(["wait_for_event", "goal"])
    oracle = ScriptedOracle([True])
    waiting = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), oracle).enrollment
    assert waiting.node == "n1"
    other = advance(doc, waiting, Interaction(NOW, "campaign_email", "clicked"), oracle)
    assert other.enrollment == waiting  # clicked is not what it waits for
    wrong_channel = advance(doc, waiting, Interaction(NOW, "sms", "opened"), oracle)
    assert wrong_channel.enrollment == waiting
    moved = advance(doc, waiting, Interaction(NOW, "campaign_email", "opened"), oracle)
    assert moved.enrollment.node != "n1"


def test_a_refused_send_takes_the_refusal_branch_and_says_why() -> None:
    doc = build(["send", "wait", "exit"])
    node = doc.flow.node("n1")
    step = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), ScriptedOracle([False]))
    refused = [e for e in step.effects if isinstance(e, Refused)]
    assert refused == [Refused("n1", ("contact_cap",), node.refused_next)]  # type: ignore[union-attr]
    assert not [e for e in step.effects if isinstance(e, Send)]


def test_a_loop_without_a_wait_ends_at_the_step_limit() -> None:
    doc = JourneyDocument.model_validate(
        {
            "journey": "spin",
            "title": "A loop without a wait (refused by validation; the engine still ends it)",
            "brand": "Cardiomax",
            "markets": ["DE"],
            "map": {
                "touchpoints": [
                    {
                        "id": "tp",
                        "stage": "awareness",
                        "name": "t",
                        "customer_goal": "g",
                        "business_reason": "r",
                        "owner": OWNER,
                    }
                ]
            },
            "flow": {
                "nodes": [
                    {
                        "id": "in",
                        "type": "entry",
                        "touchpoint": "tp",
                        "trigger": {"condition": TRUE},
                        "next": "a",
                    },
                    {"id": "a", "type": "condition", "touchpoint": "tp", "condition": TRUE,
                     "then": "b", "else": "out"},
                    {"id": "b", "type": "goal", "touchpoint": "tp", "goal": "x", "next": "a"},
                    {"id": "out", "type": "exit"},
                ]
            },
        }
    )  # fmt: skip
    step = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), ScriptedOracle([True]))
    assert step.enrollment.status is EnrollmentStatus.EXITED
    assert step.enrollment.exit_reason == "step_limit"


def test_random_arms_follow_their_weights_and_are_stable() -> None:
    node = RandomNode.model_validate(
        {
            "id": "split",
            "type": "random",
            "touchpoint": "tp",
            "arms": [
                {"name": "a", "weight": 45, "next": "x"},
                {"name": "b", "weight": 45, "next": "y"},
                {"name": "holdout", "weight": 10, "next": "z", "holdout": True},
            ],
        }
    )
    draws = Counter(arm_of(node, "launch", f"hcp-{i}") for i in range(20_000))
    assert abs(draws["holdout"] / 20_000 - 0.10) < 0.01
    assert abs(draws["a"] / 20_000 - 0.45) < 0.015
    assert all(arm_of(node, "launch", f"hcp-{i}") == arm_of(node, "launch", f"hcp-{i}")
               for i in range(100))  # fmt: skip


@given(
    minutes=st.integers(0, 60 * 24 * 400),
    days=st.sets(st.sampled_from(list(Weekday)), min_size=1),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]),
)
@settings(max_examples=300, deadline=None)
def test_wait_until_is_the_next_local_weekday_and_time(
    minutes: int, days: set[Weekday], hour: int, minute: int, zone: str
) -> None:
    now = NOW + dt.timedelta(minutes=minutes)
    until = WaitUntil(weekdays=sorted(days), time=dt.time(hour, minute))
    wake = next_wake(until, now, zone)
    assert wake > now
    local = wake.astimezone(ZoneInfo(zone))
    assert local.time() == until.time
    assert local.weekday() in {d.number for d in days}
    assert wake - now <= dt.timedelta(days=8)


def test_wait_until_skips_a_wall_time_that_does_not_exist() -> None:
    # 2027-03-28 02:30 does not exist in Berlin (clocks go from 02:00 to 03:00)
    before = dt.datetime(2027, 3, 27, 12, 0, tzinfo=dt.UTC)
    until = WaitUntil(weekdays=[Weekday.SUN, Weekday.MON], time=dt.time(2, 30))
    wake = next_wake(until, before, "Europe/Berlin")
    assert wake.astimezone(ZoneInfo("Europe/Berlin")).date() == dt.date(2027, 3, 29)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Chicago"])
def test_a_wait_until_node_uses_the_hcps_zone(zone: str) -> None:
    doc = build(["wait"])
    raw = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["flow"]["nodes"][1] = {
        "id": "n1",
        "type": "wait",
        "touchpoint": "tp",
        "until": {"weekdays": ["tue"], "time": "09:00"},
        "next": "n2",
    }
    doc = JourneyDocument.model_validate(raw)
    step = advance(doc, start(doc, "e", 1, "h", NOW), Start(NOW), ScriptedOracle([True], zone))
    assert step.enrollment.wake_at is not None
    local = step.enrollment.wake_at.astimezone(ZoneInfo(zone))
    assert (local.weekday(), local.hour, local.minute) == (1, 9, 0)
