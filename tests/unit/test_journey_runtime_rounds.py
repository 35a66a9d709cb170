"""The runtime's rounds of questions give exactly what ``advance`` with a synchronous oracle
gives (same state, same effects, same keys), whatever the answers; the re-entry rule; the
responses a send is credited with (Hypothesis where the answers vary)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.log import StoredEvent
from counterpoint.journey.analytics import SendRow, responses_of
from counterpoint.journey.definition import JourneyDocument
from counterpoint.journey.engine import Permission, RepTask, Send, Start, advance, start
from counterpoint.journey.loader import load_document
from counterpoint.journey.oracle import Answers, Contact, Question, condition_key
from counterpoint.journey.repository import LastEntry
from counterpoint.journey.runtime import JourneyInfo, JourneyRuntime, _Work, may_enter
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.db import make_sessionmaker
from counterpoint.segment.conditions import Condition

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

FLOW = """\
journey: rounds
title: Rounds (synthetic)
brand: ZENTROVA
markets: [DE]
map:
  stages: [awareness]
  touchpoints:
    - id: tp
      stage: awareness
      name: All kinds
      customer_goal: A test
      business_reason: A test
      owner: {responsible: sales_rep, accountable: brand_manager}
flow:
  nodes:
    - {id: entry, type: entry, touchpoint: tp, next: split,
       trigger: {condition: {attribute: {name: market, op: eq, value: DE}}}}
    - {id: split, type: condition, touchpoint: tp, then: mail, else: visit,
       condition: {attribute: {name: specialty, op: eq, value: cardiology}}}
    - {id: mail, type: send, touchpoint: tp, channel: campaign_email, content: A,
       next: again, refused_next: visit}
    - {id: again, type: condition, touchpoint: tp, then: mail-2, else: slot,
       condition: {consent: {channel: sms, purpose: promotional}}}
    - {id: mail-2, type: send, touchpoint: tp, channel: sms, content: B, next: slot}
    - {id: visit, type: rep_task, touchpoint: tp, channel: f2f_call, reason: Visit,
       due: {days: 2}, next: slot, refused_next: out}
    - {id: slot, type: wait, touchpoint: tp, until: {weekdays: [tue], time: "09:30"},
       next: out}
    - {id: out, type: exit}
"""
DOCUMENT = load_document(FLOW).require()
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")


class Table:
    """Answers for one HCP, known in advance (what the world would say)."""

    def __init__(self, holds: Mapping[str, bool], allowed: Mapping[str, bool], zone: str) -> None:
        self.holds_by_node = holds
        self.allowed = allowed
        self.zone = zone

    def condition_node(self, condition: Condition) -> str:
        for node in DOCUMENT.flow.nodes:
            if getattr(node, "condition", None) is condition:
                return node.id
        raise KeyError(condition)

    def holds(self, condition: Condition, now: dt.datetime) -> bool:
        return self.holds_by_node[self.condition_node(condition)]

    def permits(self, effect: Send | RepTask, now: dt.datetime) -> Permission:
        if self.allowed[effect.node]:
            return Permission(True)
        return Permission(False, ("no_consent",))

    def time_zone(self) -> str:
        return self.zone


class TableWorld:
    """``oracle.World`` answering from the tables (and counting the rounds)."""

    def __init__(self, tables: Mapping[str, Table]) -> None:
        self.tables = tables
        self.rounds = 0

    def know(self, answers: Answers, hcp_ids: Any) -> None:
        for hcp_id in hcp_ids:
            answers.zones[hcp_id] = self.tables[hcp_id].zone

    def answer(self, answers: Answers, questions: Sequence[Question]) -> None:
        self.rounds += 1
        self.know(answers, {q.hcp_id for q in questions})
        for q in questions:
            table = self.tables[q.hcp_id]
            if q.condition is not None:
                key = (q.hcp_id, condition_key(q.condition), q.now)
                answers.holds[key] = table.holds(q.condition, q.now)
            elif q.effect is not None:
                answers.contacts[q.effect.key] = Contact(table.permits(q.effect, q.now))


class Runtime(JourneyRuntime):
    def document(self, journey_id: str, version: int) -> JourneyDocument | None:
        return DOCUMENT


def _runtime(world: TableWorld) -> Runtime:
    sessions = make_sessionmaker(create_engine("sqlite://"))
    return Runtime(
        sessions,
        None,
        world,
        None,
        FixedClock(NOW),
        projected=lambda: 0,  # type: ignore[arg-type]
    )


tables = st.builds(
    Table,
    st.fixed_dictionaries({"split": st.booleans(), "again": st.booleans()}),
    st.fixed_dictionaries({"mail": st.booleans(), "mail-2": st.booleans(), "visit": st.booleans()}),
    st.sampled_from(ZONES),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(tables, min_size=1, max_size=12), st.integers(0, 6 * 24 * 60))
def test_rounds_give_what_a_synchronous_oracle_gives(hcps: list[Table], minutes: int) -> None:
    now = NOW + dt.timedelta(minutes=minutes)
    by_hcp = {f"hcp_{i}": t for i, t in enumerate(hcps)}
    world = TableWorld(by_hcp)
    runtime = _runtime(world)
    states = [start(DOCUMENT, f"rounds:{h}:1", 1, h, now) for h in by_hcp]
    journeys = {"rounds": JourneyInfo("rounds", "active", 1, NOW)}
    batch = runtime._compute([_Work(s, Start(now)) for s in states], journeys)
    for state, outcome in zip(states, batch.outcomes, strict=True):
        expected = advance(DOCUMENT, state, Start(now), by_hcp[state.hcp_id])
        assert outcome.step == expected
    assert world.rounds <= 4  # questions are asked in bulk, not one HCP at a time


def test_one_batch_asks_each_question_once_for_all_hcps() -> None:
    everyone = {
        f"hcp_{i}": Table(
            {"split": True, "again": False},
            dict.fromkeys(("mail", "mail-2", "visit"), True),
            "Europe/Berlin",
        )
        for i in range(50)
    }
    world = TableWorld(everyone)
    runtime = _runtime(world)
    states = [start(DOCUMENT, f"rounds:{h}:1", 1, h, NOW) for h in everyone]
    journeys = {"rounds": JourneyInfo("rounds", "active", 1, NOW)}
    runtime._compute([_Work(s, Start(NOW)) for s in states], journeys)
    # round 1: what the provisional path asks (the split, the visit, the zone); round 2:
    # what the real path adds (the send, the second condition); for all 50 HCPs at once
    assert world.rounds == 2


# --- re-entry -------------------------------------------------------------------------------------
def _rule(policy: str, min_days: int) -> JourneyDocument:
    text = FLOW.replace(
        "next: split,", f"next: split, re_entry: {{policy: {policy}, min_days: {min_days}}},"
    )
    return load_document(text).require()


@given(
    st.sampled_from(["never", "after_exit"]),
    st.integers(0, 30),
    st.sampled_from(["waiting", "completed", "exited"]),
    st.integers(0, 60),
    st.integers(1, 5),
)
def test_the_re_entry_rule(policy: str, min_days: int, status: str, ago: int, number: int) -> None:
    document = _rule(policy, min_days)
    last = LastEntry(number, status, NOW - dt.timedelta(days=ago))
    got = may_enter(last, document, NOW)
    allowed = policy == "after_exit" and status != "waiting" and ago >= min_days
    assert got == (number + 1 if allowed else None)
    assert may_enter(None, document, NOW) == 1


# --- responses credited to a send ----------------------------------------------------------------
def _event(seq: int, at: dt.datetime, action: Action, content: str | None = "cnt_a") -> StoredEvent:
    return StoredEvent(
        seq,
        LogEvent(
            f"e{seq}",
            EventKind.TRACK,
            "npi:1",
            at,
            at,
            "tests",
            channel=Channel.CAMPAIGN_EMAIL,
            action=action,
            content_id=content,
        ),
    )


def test_a_response_belongs_to_the_send_before_it_on_its_channel() -> None:
    first = SendRow(("e", 2), "h", NOW, "campaign_email", "cnt_a")
    second = SendRow(("e", 6), "h", NOW + dt.timedelta(days=3), "campaign_email", "cnt_a")
    events = [
        _event(1, NOW - dt.timedelta(hours=1), Action.OPENED),  # before any send
        _event(2, NOW + dt.timedelta(hours=1), Action.OPENED),
        _event(3, NOW + dt.timedelta(hours=2), Action.CLICKED, "cnt_other"),  # other content
        _event(4, NOW + dt.timedelta(days=4), Action.CLICKED),
        _event(5, NOW + dt.timedelta(days=4), Action.DELIVERED, None),
    ]
    found = responses_of([second, first], events)
    assert found == {
        ("e", 2): frozenset({"opened"}),
        ("e", 6): frozenset({"clicked", "delivered"}),
    }
