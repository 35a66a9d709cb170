"""More rules of the runtime on both deployments: waits in the HCP's time zone (the market's
when the HCP has none), a journey's own events neither enter nor move it, re-entry of a
condition audience after exit, local content variants, a condition that cannot be evaluated
(the HCP exits, the others go on)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from tests.conftest import NOW, TEST_ACTOR
from tests.integration.test_journey_runtime import (
    ORIGIN,
    add_content,
    add_hcps,
    enrollments,
    manager,
    outbox,
    transitions,
)

from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.journey.models import JourneyEnrollment
from counterpoint.kit.clock import FixedClock
from counterpoint.profile.models import Hcp

HEAD = """\
journey: {id}
title: Rules (synthetic test journey)
brand: ZENTROVA
markets: [DE]
map:
  stages: [awareness]
  touchpoints:
    - id: tp
      stage: awareness
      name: Rules
      customer_goal: A test
      business_reason: A test
      owner: {{responsible: marketing_ops, accountable: brand_manager}}
      channels: [campaign_email]
      content: [ZEN-EM-1]
flow:
  nodes:
"""


def journey(journey_id: str, nodes: str) -> str:
    return HEAD.format(id=journey_id) + nodes


def publish(container: Container, text: str) -> None:
    container.journeys.publish(text, manager(container), ORIGIN)


def test_wait_until_is_in_the_hcps_zone_else_the_markets(
    container: Container, clock: FixedClock
) -> None:
    add_content(container)
    berlin, new_york = add_hcps(container, 2)
    with container.sessions.begin() as session:  # one HCP has no zone of its own
        session.get(Hcp, berlin).time_zone = None  # type: ignore[union-attr]
        session.get(Hcp, new_york).time_zone = "America/New_York"  # type: ignore[union-attr]
    publish(
        container,
        journey(
            "zen-slot",
            """\
    - {id: entry, type: entry, touchpoint: tp, next: slot,
       trigger: {condition: {attribute: {name: territory, op: eq, value: T1}}}}
    - {id: slot, type: wait, touchpoint: tp, until: {weekdays: [tue], time: "09:30"}, next: out}
    - {id: out, type: exit}
""",
        ),
    )
    container.journey_runtime.drain()
    states = enrollments(container)
    # NOW is Monday 2026-11-23 12:00 UTC: Tuesday 09:30 in Berlin (UTC+1) and New York (UTC-5)
    assert states[berlin].wake_at == dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)
    assert states[new_york].wake_at == dt.datetime(2026, 11, 24, 14, 30, tzinfo=dt.UTC)


OWN = """\
    - id: entry
      type: entry
      touchpoint: tp
      trigger: {event: {channel: campaign_email, action: sent}}
      re_entry: {policy: after_exit}
      next: mail
    - {id: mail, type: send, touchpoint: tp, channel: campaign_email, content: ZEN-EM-1,
       next: out}
    - {id: out, type: exit}
"""


def test_a_journeys_own_events_neither_enter_nor_move_it(
    container: Container, clock: FixedClock
) -> None:
    """Entry on ``campaign_email sent``: the journey's own send is such an event; it must
    not enter the HCP again (a loop through the outbox), while another sender's does."""
    add_content(container)
    container.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "no caps in this test")
    [hcp] = add_hcps(container, 1)
    publish(container, journey("zen-own", OWN))
    subject = container.profiles.resolve(hcp).subject
    assert subject is not None
    other = LogEvent(
        "crm-send-1",
        EventKind.TRACK,
        subject,
        NOW,
        NOW,
        "crm",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.SENT,
    )
    container.log.append([other])
    container.journey_runtime.drain()
    assert len(outbox(container)) == 1
    for _ in range(3):  # delivered: a `sent` event of the journey itself, then more passes
        container.delivery_worker.drain()
        clock.advance(dt.timedelta(hours=1))
        container.journey_runtime.drain()
    with container.sessions() as session:
        ids = list(session.scalars(select(JourneyEnrollment.id)))
    assert ids == [f"zen-own:{hcp}:1"]
    assert len(outbox(container)) == 1


def test_a_condition_audience_re_enters_after_exit(container: Container, clock: FixedClock) -> None:
    add_content(container)
    [hcp] = add_hcps(container, 1)
    publish(
        container,
        journey(
            "zen-again",
            """\
    - {id: entry, type: entry, touchpoint: tp, next: nap,
       re_entry: {policy: after_exit, min_days: 2},
       trigger: {condition: {attribute: {name: territory, op: eq, value: T1}}}}
    - {id: nap, type: wait, touchpoint: tp, duration: {hours: 1}, next: out}
    - {id: out, type: exit, reason: done}
""",
        ),
    )
    container.journey_runtime.drain()
    clock.advance(dt.timedelta(hours=2))
    container.journey_runtime.drain()  # exited; too soon to enter again
    assert [s.exit_reason for s in enrollments(container).values()] == ["done"]
    clock.advance(dt.timedelta(days=2))
    container.journey_runtime.drain()
    with container.sessions() as session:
        ids = sorted(session.scalars(select(JourneyEnrollment.id)))
    assert ids == [f"zen-again:{hcp}:1", f"zen-again:{hcp}:2"]


def test_the_local_variant_for_the_hcps_market_is_sent(container: Container) -> None:
    """The journey names the global asset; an approved local variant for the HCP's market is
    what goes out."""
    parent = add_content(container, markets=["DE"], approval_markets=["DE"])
    variant = add_content(container, "ZEN-EM-1-DE", parent_id=parent)
    add_hcps(container, 1)
    publish(
        container,
        journey(
            "zen-local",
            """\
    - {id: entry, type: entry, touchpoint: tp, next: mail,
       trigger: {condition: {attribute: {name: territory, op: eq, value: T1}}}}
    - {id: mail, type: send, touchpoint: tp, channel: campaign_email, content: ZEN-EM-1,
       next: out}
    - {id: out, type: exit}
""",
        ),
    )
    container.journey_runtime.drain()
    [entry] = outbox(container)
    assert entry.content_id == variant
    [sent] = transitions(container, "sent")
    assert sent.detail["content_id"] == variant


def test_a_condition_that_cannot_be_evaluated_exits_that_hcp_only(
    container: Container, monkeypatch: Any
) -> None:
    add_content(container)
    broken, fine = add_hcps(container, 2)
    publish(
        container,
        journey(
            "zen-cond",
            """\
    - {id: entry, type: entry, touchpoint: tp, next: check,
       trigger: {condition: {attribute: {name: territory, op: eq, value: T1}}}}
    - {id: check, type: condition, touchpoint: tp, then: nap, else: nap,
       condition: {events: {channel: campaign_email, action: opened, within_days: 30}}}
    - {id: nap, type: wait, touchpoint: tp, duration: {hours: 1}, next: out}
    - {id: out, type: exit}
""",
        ),
    )
    facts = container.journey_runtime.world._facts
    real = facts.facts_for

    def failing(hcp_id: str, condition: Any, now: dt.datetime) -> Any:
        if hcp_id == broken:
            raise RuntimeError("the log cannot be read for this HCP")
        return real(hcp_id, condition, now)

    monkeypatch.setattr(facts, "facts_for", failing)
    container.journey_runtime.drain()
    states = enrollments(container)
    assert (states[broken].status, states[broken].exit_reason) == ("exited", "condition_error")
    assert (states[fine].status, states[fine].node) == ("waiting", "nap")
