"""The journey runtime on both deployments: publish → audience entry → timers and events →
guard and outbox → status, with the log events a step writes; every "never" has a test
(no duplicate step, no stuck HCP, no crash on a stopped journey or a bad version)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, update
from tests.conftest import NOW, TEST_ACTOR
from tests.content_rows import PROOF, add_items, content_row

from counterpoint.channel.models import RepInboxItem
from counterpoint.consent.ledger import ConsentChannel, ConsentScope, ConsentState, Purpose
from counterpoint.container import Container
from counterpoint.delivery.models import OutboxEntry
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.journey.loader import JourneyInvalidError
from counterpoint.journey.models import (
    Journey,
    JourneyEnrollment,
    JourneyPendingEvent,
    JourneyTransition,
)
from counterpoint.journey.repository import JourneyRepository
from counterpoint.journey.runtime import (
    JourneyEventConsumer,
    enrollment_id,
    logged_event,
    new_enrollment,
)
from counterpoint.journey.service import JourneyForbiddenError
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.access import Principal, Role
from counterpoint.profile.identifiers import npi_is_valid
from counterpoint.settings import Deployment

BRAND = "ZENTROVA"
ORIGIN = "tests"

JOURNEY = """\
journey: zen-intro
title: Zentrova introduction (synthetic test journey)
brand: ZENTROVA
markets: [DE]
purpose: promotional
map:
  stages: [awareness, consideration]
  touchpoints:
    - id: tp-email
      stage: awareness
      name: Intro e-mail
      customer_goal: Learn what Zentrova does in two minutes
      business_reason: Awareness among cardiologists
      owner: {responsible: marketing_ops, accountable: brand_manager}
      channels: [campaign_email]
      content: [ZEN-EM-1]
    - id: tp-follow
      stage: consideration
      name: Follow-up
      customer_goal: Get my questions answered
      business_reason: Turn awareness into interest
      owner: {responsible: sales_rep, accountable: brand_manager}
      channels: [f2f_call]
flow:
  nodes:
    - id: entry
      type: entry
      touchpoint: tp-email
      trigger:
        condition: {attribute: {name: territory, op: eq, value: T1}}
      next: send-intro
    - id: send-intro
      type: send
      touchpoint: tp-email
      channel: campaign_email
      content: ZEN-EM-1
      next: wait-open
      refused_next: exit-refused
    - id: wait-open
      type: wait_for_event
      touchpoint: tp-email
      event: {channel: campaign_email, action: opened}
      timeout: {days: 3}
      next: mark-aware
      timeout_next: rep-visit
    - id: mark-aware
      type: update_attribute
      touchpoint: tp-follow
      attribute: adoption_stage
      value: aware
      next: opened
    - id: opened
      type: goal
      touchpoint: tp-follow
      goal: Opened the introduction
    - id: rep-visit
      type: rep_task
      touchpoint: tp-follow
      channel: f2f_call
      reason: Did not open the introduction; offer a short visit
      due: {days: 5}
      next: done
      refused_next: done
    - {id: done, type: exit, reason: followed_up}
    - {id: exit-refused, type: exit, reason: contact_refused}
"""


# --- synthetic world ----------------------------------------------------------------------------
def npi(n: int) -> str:
    base = f"{912340000 + n:09d}"
    return next(base + d for d in "0123456789" if npi_is_valid(base + d))


def add_hcps(
    container: Container,
    count: int,
    *,
    start: int = 0,
    territory: str = "T1",
    email: bool = True,
    grants: tuple[ConsentChannel, ...] = (ConsentChannel.EMAIL, ConsentChannel.F2F_CALL),
) -> list[str]:
    """Synthetic HCPs in DE (one identify event each), with promotional consents."""
    events = []
    for i in range(start, start + count):
        traits: dict[str, Any] = {
            "market": "DE",
            "territory": territory,
            "time_zone": "Europe/Berlin",
            "last_name": f"Muster{i}",
            "preferred_language": "de",
        }
        if email:
            traits["email"] = f"dr.muster{i}@praxis.example"
        events.append(
            LogEvent(
                f"id-{npi(i)}",
                EventKind.IDENTIFY,
                f"npi:{npi(i)}",
                NOW - dt.timedelta(days=60),
                NOW - dt.timedelta(days=60),
                "tests",
                payload={"traits": traits},
                synthetic=True,
            )
        )
    container.log.append(events)
    container.catch_up()
    ids = []
    for i in range(start, start + count):
        hcp_id = container.profiles.find_by_identifier(f"npi:{npi(i)}")
        assert hcp_id is not None
        ids.append(hcp_id)
        for channel in grants:
            container.consents.record(
                hcp_id=hcp_id,
                subject=None,
                scope=ConsentScope(channel, Purpose.PROMOTIONAL, "DE"),
                state=ConsentState.GRANTED,
                proof=PROOF,
                actor=TEST_ACTOR,
                reason="signed form (synthetic)",
                effective_at=NOW - dt.timedelta(days=30),
            )
    return ids


def add_content(container: Container, code: str = "ZEN-EM-1", **changes: Any) -> str:
    values: dict[str, Any] = {"valid_until": NOW + dt.timedelta(days=400), **changes}
    [item] = add_items(container, content_row(code, **values))
    return item


def manager(container: Container, name: str = "bm-zen", role: str = "brand_manager") -> Principal:
    container.users.create(name, role, TEST_ACTOR, brands=[BRAND], markets=["DE"])
    return container.users.principal(name)


def rep(container: Container, name: str = "rep-t1", territories: tuple[str, ...] = ("T1",)) -> str:
    container.users.create(name, "sales_rep", TEST_ACTOR, territories=list(territories))
    return name


def publish(
    container: Container, text: str = JOURNEY, who: Principal | None = None
) -> dict[str, Any]:
    return container.journeys.publish(text, who or manager(container), ORIGIN, source="j.yaml")


def opened(container: Container, i: int, at: dt.datetime, key: str = "") -> None:
    """The HCP opened the campaign e-mail (an interaction in the log)."""
    event = LogEvent(
        f"open-{npi(i)}-{key or at.isoformat()}",
        EventKind.TRACK,
        f"npi:{npi(i)}",
        at,
        at,
        "tests",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        brand=BRAND,
    )
    container.log.append([event])


def outbox(container: Container) -> list[OutboxEntry]:
    with container.sessions() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.idempotency_key)))


def enrollments(container: Container) -> dict[str, JourneyEnrollment]:
    with container.sessions() as session:
        rows = session.scalars(select(JourneyEnrollment)).all()
        return {r.hcp_id: r for r in rows}


def transitions(container: Container, kind: str | None = None) -> list[JourneyTransition]:
    with container.sessions() as session:
        query = select(JourneyTransition).order_by(
            JourneyTransition.enrollment_id, JourneyTransition.visit, JourneyTransition.kind
        )
        if kind is not None:
            query = query.where(JourneyTransition.kind == kind)
        return list(session.scalars(query))


@pytest.fixture
def world(container: Container) -> Container:
    add_content(container)
    rep(container)
    return container


# --- the core path ------------------------------------------------------------------------------
def test_publish_enter_send_wait_and_event_complete_the_journey(
    world: Container, clock: FixedClock
) -> None:
    hcps = add_hcps(world, 3)
    result = publish(world)
    assert (result["current_version"], result["status"], result["changed"]) == (1, "active", True)
    report = world.journey_runtime.drain()
    assert report.entered == 3

    # entered, sent through the guard into the outbox, waiting for the open
    states = enrollments(world)
    assert {s.node for s in states.values()} == {"wait-open"}
    assert {s.status for s in states.values()} == {"waiting"}
    assert all(s.wake_at == NOW + dt.timedelta(days=3) for s in states.values())
    entries = outbox(world)
    assert len(entries) == 3
    for entry in entries:
        enrollment = states[entry.hcp_id]
        assert enrollment.id == f"zen-intro:{entry.hcp_id}:1"
        assert entry.idempotency_key == f"journey:{enrollment.id}:send-intro:2"
        assert (entry.role, entry.requested_by, entry.purpose) == (
            None,
            "journey:zen-intro",
            "promotional",
        )
        assert (entry.brand, entry.channel) == (BRAND, "campaign_email")
        assert (entry.context["journey"], entry.context["node"]) == ("zen-intro", "send-intro")

    # the first HCP opens: it is marked aware, reaches the goal and completes
    opened(world, 0, NOW + dt.timedelta(hours=2))
    clock.advance(dt.timedelta(hours=3))
    world.journey_runtime.drain()
    first = enrollments(world)[hcps[0]]
    assert (first.status, first.node, first.exit_reason) == ("completed", "opened", "completed")
    world.catch_up()
    assert world.profiles.get_hcp(hcps[0])["adoption_stage"] == {BRAND: "aware"}

    # the others time out: a task for the territory's rep, then they leave
    clock.advance(dt.timedelta(days=3))
    world.journey_runtime.drain()
    states = enrollments(world)
    assert [states[h].status for h in hcps[1:]] == ["exited", "exited"]
    assert {states[h].exit_reason for h in hcps[1:]} == {"followed_up"}
    tasks = [e for e in outbox(world) if e.channel == "f2f_call"]
    assert len(tasks) == 2
    assert {t.context["rep"] for t in tasks} == {"rep-t1"}
    assert {t.role for t in tasks} == {"sales_rep"}
    assert all(t.context["reason"].startswith("Did not open") for t in tasks)

    status = world.journeys.status("zen-intro")
    assert status["totals"]["sent"] == 3
    assert status["totals"]["tasks"] == 2
    assert status["totals"]["goals"] == 1
    assert status["totals"]["completed"] == 1
    assert status["totals"]["exited"] == 2
    by_stage = {s["stage"]: s for s in status["stages"]}
    assert by_stage["awareness"]["sent"] == 3
    assert by_stage["consideration"]["tasks"] == 2

    # delivered: the e-mails to the console, the tasks to the rep's inbox with why and when
    world.delivery_worker.drain()
    assert {e.status for e in outbox(world)} == {"sent"}
    with world.sessions() as session:
        inbox = session.scalars(select(RepInboxItem)).all()
    assert len(inbox) == 2
    for item in inbox:
        assert item.recipient == "rep-t1"
        assert item.details is not None
        assert item.details["reason"].startswith("Did not open")
        due = dt.datetime.fromisoformat(item.details["due_at"])
        assert due in {t.created_at + dt.timedelta(days=5) for t in tasks}  # due: {days: 5}


def test_draining_again_changes_nothing(world: Container, clock: FixedClock) -> None:
    add_hcps(world, 4)
    publish(world)
    world.journey_runtime.drain()
    before = (len(outbox(world)), len(transitions(world)))
    for _ in range(3):
        report = world.journey_runtime.drain()
        assert (report.entered, report.steps, report.events) == (0, 0, 0)
    assert (len(outbox(world)), len(transitions(world))) == before


def test_a_goal_and_an_attribute_update_are_written_to_the_log_once(
    world: Container, clock: FixedClock
) -> None:
    [hcp] = add_hcps(world, 1)
    publish(world)
    world.journey_runtime.drain()
    opened(world, 0, NOW + dt.timedelta(minutes=5))
    clock.advance(dt.timedelta(minutes=10))
    world.journey_runtime.drain()
    world.journey_runtime.flush()  # nothing pending any more: a second flush adds nothing
    ref = world.profiles.resolve(hcp)
    found = world.log.timeline(TimelineQuery(ref.identifiers, limit=100))
    mine = [s.event for s in found if s.event.source == "journeys"]
    assert sorted(e.message_id for e in mine) == [
        f"journey:zen-intro:{hcp}:1:4:updated",
        f"journey:zen-intro:{hcp}:1:5:goal",
    ]
    update_event = next(e for e in mine if e.kind is EventKind.IDENTIFY)
    assert update_event.payload["traits"] == {"adoption_stage": {BRAND: "aware"}}
    assert update_event.synthetic


def test_pending_events_left_by_a_crash_are_appended_once(
    world: Container, clock: FixedClock
) -> None:
    """A crash after the commit and before the flush: the next flush appends the events;
    appending them again (a second crash) is a duplicate the log drops."""
    add_hcps(world, 1)
    publish(world)
    world.journey_runtime.drain()
    opened(world, 0, NOW + dt.timedelta(minutes=5))
    clock.advance(dt.timedelta(minutes=10))
    runtime = world.journey_runtime
    runtime.flush = lambda: 0  # type: ignore[method-assign]  # the process dies before flushing
    world.catch_up()
    runtime.consumer.catch_up()
    del runtime.flush  # the restarted process flushes
    with world.sessions() as session:
        pending = list(session.scalars(select(JourneyPendingEvent)))
    assert len(pending) == 2
    head = world.log.head()
    assert runtime.flush() == 2
    assert world.log.head() == head + 2
    result = world.log.append([logged_event(p.event) for p in pending])
    assert result.accepted == 0


# --- the guard: refusals are recorded, never skipped silently ----------------------------------
def test_a_refused_send_takes_the_refusal_branch_and_names_the_code(world: Container) -> None:
    add_hcps(world, 2, grants=(ConsentChannel.F2F_CALL,))  # no e-mail consent
    add_hcps(world, 1, start=2, email=False)  # consent, but no address
    publish(world)
    world.journey_runtime.drain()
    states = enrollments(world)
    assert {s.status for s in states.values()} == {"exited"}
    assert {s.exit_reason for s in states.values()} == {"contact_refused"}
    assert outbox(world) == []
    refused = transitions(world, "refused")
    assert sorted(tuple(t.detail["codes"]) for t in refused) == [
        ("no_address",),
        ("no_consent",),
        ("no_consent",),
    ]
    status = world.journeys.status("zen-intro")
    send = next(n for n in status["nodes"] if n["node"] == "send-intro")
    assert send["refused"] == 3
    assert send["refusals"] == {"no_consent": 2, "no_address": 1}


def test_a_rep_task_without_a_rep_for_the_territory_is_refused(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 1, territory="T9")
    publish(world, JOURNEY.replace("value: T1", "value: T9"))
    world.journey_runtime.drain()
    clock.advance(dt.timedelta(days=3, minutes=1))
    world.journey_runtime.drain()
    [refused] = transitions(world, "refused")
    assert (refused.node, refused.detail["codes"]) == ("rep-visit", ["no_rep_for_territory"])
    assert [e.channel for e in outbox(world)] == ["campaign_email"]


def test_the_rep_is_chosen_by_territory_role_and_name(world: Container, clock: FixedClock) -> None:
    rep(world, "another-rep-t1")  # sorts first by name
    world.users.create("kam-t1", "kam", TEST_ACTOR, territories=["T1"])
    world.users.create("rep-t2", "sales_rep", TEST_ACTOR, territories=["T2"])
    add_hcps(world, 1)
    publish(world)
    world.journey_runtime.drain()
    clock.advance(dt.timedelta(days=3, minutes=1))
    world.journey_runtime.drain()
    [task] = [e for e in outbox(world) if e.channel == "f2f_call"]
    assert task.context["rep"] == "another-rep-t1"  # the responsible role (rep), then by name


# --- life cycle ----------------------------------------------------------------------------------
def test_a_paused_journey_waits_and_fires_late_after_resume(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 2)
    who = manager(world)
    publish(world, who=who)
    world.journey_runtime.drain()
    world.journeys.pause("zen-intro", who, ORIGIN)
    opened(world, 0, NOW + dt.timedelta(hours=1))  # arrives while paused
    clock.advance(dt.timedelta(days=4))
    world.journey_runtime.drain()
    assert {s.node for s in enrollments(world).values()} == {"wait-open"}  # nothing moved
    result = world.journeys.resume("zen-intro", who, ORIGIN)
    assert result["caught_up"] == 1  # the open taken from the timeline
    world.journey_runtime.drain()
    states = sorted(enrollments(world).values(), key=lambda s: s.hcp_id)
    assert sorted(s.exit_reason or "" for s in states) == ["completed", "followed_up"]


def test_stop_exits_every_waiting_hcp_and_a_late_timer_is_a_recorded_no_op(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 3)
    who = manager(world)
    publish(world, who=who)
    world.journey_runtime.drain()
    result = world.journeys.stop("zen-intro", who, ORIGIN)
    assert result["exited"] == 3
    assert {(s.status, s.exit_reason) for s in enrollments(world).values()} == {
        ("exited", "journey_stopped")
    }
    # a timer that was due when the journey stopped (written back by hand): it exits
    with world.sessions.begin() as session:
        session.execute(
            update(JourneyEnrollment).values(
                status="waiting", exit_reason=None, visits=9, wake_at=NOW
            )
        )
    clock.advance(dt.timedelta(days=4))
    report = world.journey_runtime.drain()
    assert report.steps == 3
    assert {(s.status, s.exit_reason) for s in enrollments(world).values()} == {
        ("exited", "journey_stopped")
    }
    with pytest.raises(Exception, match="stopped"):
        world.journeys.resume("zen-intro", who, ORIGIN)


def test_a_new_version_leaves_running_hcps_on_theirs_and_move_brings_them(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 2)
    who = manager(world)
    publish(world, who=who)
    world.journey_runtime.drain()
    second = JOURNEY.replace("timeout: {days: 3}", "timeout: {days: 1}")
    assert publish(world, second, who)["current_version"] == 2
    assert publish(world, second, who)["changed"] is False
    assert {s.version for s in enrollments(world).values()} == {1}
    moved = world.journeys.move("zen-intro", who, ORIGIN, from_version=1)
    assert (moved["moved"], moved["stayed"], moved["to_version"]) == (2, 0, 2)
    assert {s.version for s in enrollments(world).values()} == {2}
    assert {s.wake_at for s in enrollments(world).values()} == {NOW + dt.timedelta(days=3)}
    clock.advance(dt.timedelta(days=3, minutes=1))
    world.journey_runtime.drain()
    assert {s.exit_reason for s in enrollments(world).values()} == {"followed_up"}


def test_move_keeps_hcps_whose_node_is_gone_and_lists_them(world: Container) -> None:
    add_hcps(world, 1)
    who = manager(world)
    publish(world, who=who)
    world.journey_runtime.drain()
    renamed = JOURNEY.replace("wait-open", "wait-for-open")
    publish(world, renamed, who)
    moved = world.journeys.move("zen-intro", who, ORIGIN, from_version=1, to_version=2)
    assert moved["moved"] == 0
    assert [s["reason"] for s in moved["staying"]] == ["node_not_in_new_version"]
    assert {s.version for s in enrollments(world).values()} == {1}


def test_a_version_with_an_unknown_node_exits_the_hcp_with_a_reason(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 1)
    publish(world)
    world.journey_runtime.drain()
    with world.sessions.begin() as session:  # as after a bad migration
        session.execute(update(JourneyEnrollment).values(node="no-such-node"))
    clock.advance(dt.timedelta(days=4))
    world.journey_runtime.drain()
    [state] = enrollments(world).values()
    assert (state.status, state.exit_reason) == ("exited", "unknown_node")


def test_publish_by_a_role_that_may_not_is_refused(world: Container) -> None:
    world.users.create("analyst", "data_analyst", TEST_ACTOR)
    with pytest.raises(JourneyForbiddenError, match="may not change journeys"):
        publish(world, who=world.users.principal("analyst"))
    other = Principal("x", "other-brand", Role.BRAND_MANAGER, brands=frozenset({"OTHER"}))
    with pytest.raises(JourneyForbiddenError, match="outside your brands") as caught:
        publish(world, who=other)
    assert caught.value.status == 403
    assert world.journeys.all() == []


def test_an_invalid_journey_is_refused_with_every_error(world: Container) -> None:
    bad = JOURNEY.replace("content: ZEN-EM-1\n      next", "content: ZEN-EM-9\n      next")
    with pytest.raises(JourneyInvalidError) as caught:
        publish(world, bad)
    problems = caught.value.extra["problems"]
    assert [p["code"] for p in problems] == ["content_unknown"]
    assert (problems[0]["node"], problems[0]["line"] is not None) == ("send-intro", True)


# --- re-entry and event entry -------------------------------------------------------------------
WEBINAR = """\
journey: zen-web
title: Zentrova webinar follow-up (synthetic test journey)
brand: ZENTROVA
markets: [DE]
map:
  stages: [awareness]
  touchpoints:
    - id: tp
      stage: awareness
      name: Thanks
      customer_goal: Be thanked
      business_reason: Follow up on attendance
      owner: {responsible: marketing_ops, accountable: brand_manager}
      channels: [campaign_email]
      content: [ZEN-EM-1]
flow:
  nodes:
    - id: entry
      type: entry
      touchpoint: tp
      trigger: {event: {channel: webinar, action: attended}}
      re_entry: {policy: after_exit, min_days: 7}
      next: thanks
    - {id: thanks, type: send, touchpoint: tp, channel: campaign_email, content: ZEN-EM-1,
       next: end}
    - {id: end, type: exit, reason: thanked}
"""


def attended(container: Container, i: int, at: dt.datetime) -> None:
    container.log.append(
        [
            LogEvent(
                f"att-{npi(i)}-{at.isoformat()}",
                EventKind.TRACK,
                f"npi:{npi(i)}",
                at,
                at,
                "tests",
                channel=Channel.WEBINAR,
                action=Action.ATTENDED,
            )
        ]
    )


def test_an_event_enters_hcps_and_re_entry_waits_for_min_days(
    world: Container, clock: FixedClock
) -> None:
    hcps = add_hcps(world, 2)
    publish(world, WEBINAR)
    world.journey_runtime.drain()
    assert enrollments(world) == {}  # no event yet: nobody enters
    attended(world, 0, NOW)
    attended(world, 0, NOW + dt.timedelta(seconds=1))  # twice in one chunk: one entry
    world.journey_runtime.drain()
    assert [e.hcp_id for e in outbox(world)] == [hcps[0]]
    clock.advance(dt.timedelta(days=2))
    attended(world, 0, clock.now())  # too soon for re-entry
    world.journey_runtime.drain()
    assert len(outbox(world)) == 1
    clock.advance(dt.timedelta(days=6))
    attended(world, 0, clock.now())
    world.journey_runtime.drain()
    with world.sessions() as session:
        ids = sorted(session.scalars(select(JourneyEnrollment.id)))
    assert ids == [f"zen-web:{hcps[0]}:1", f"zen-web:{hcps[0]}:2"]
    assert len(outbox(world)) == 2


def test_events_of_hcps_in_no_journey_and_unknown_subjects_are_ignored(world: Container) -> None:
    add_hcps(world, 1)
    publish(world, WEBINAR)
    events = [
        LogEvent(
            f"visit-{i}",
            EventKind.TRACK,
            f"anon:visitor-{i}",
            NOW,
            NOW,
            "tests",
            channel=Channel.WEBSITE,
            action=Action.VISITED,
        )
        for i in range(200)
    ]
    world.log.append(events)
    report = world.journey_runtime.drain()
    assert report.events >= 200
    assert enrollments(world) == {}
    assert world.journey_runtime.consumer.position() == world.log.head()


def test_a_condition_entry_takes_only_the_audience_in_the_journeys_markets(
    world: Container, clock: FixedClock
) -> None:
    add_hcps(world, 2)
    publish(world)
    world.journey_runtime.drain()
    add_hcps(world, 2, start=10)  # join the audience later
    world.journey_runtime.drain()
    assert len(enrollments(world)) == 2  # the next evaluation is due later
    clock.advance(dt.timedelta(minutes=5))
    world.journey_runtime.drain()
    assert len(enrollments(world)) == 4
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(JourneyEnrollment)) == 4


def _journey_rows(container: Container, *ids: str) -> None:
    with container.sessions.begin() as session:
        for journey_id in ids:
            session.add(
                Journey(id=journey_id, title=journey_id, brand=BRAND, markets=["DE"],
                        status="active", current_version=1, example=False,
                        created_at=NOW, updated_at=NOW)
            )  # fmt: skip


def _timers(container: Container, due_in: dict[str, list[int]]) -> None:
    """Waiting enrollments per journey, each due so many minutes after ``NOW``."""
    rows = []
    for journey_id, minutes in due_in.items():
        for n, m in enumerate(minutes):
            row = new_enrollment(journey_id, 1, f"hcp-{journey_id}-{n}", 1, "entry", NOW)
            row["wake_at"] = NOW + dt.timedelta(minutes=m)
            rows.append(row)
    with container.sessions.begin() as session:
        JourneyRepository(session).insert_enrollments(rows)


def test_due_timers_are_read_per_journey_earliest_first(container: Container) -> None:
    """The scheduler's read: only the journeys asked for (a paused one is left out, and its
    due rows are never scanned), earliest first across journeys, at most ``limit``."""
    _journey_rows(container, "j-a", "j-b", "j-paused")
    _timers(
        container,
        {"j-a": [5, 50, 500], "j-b": [1, 30, 90], "j-paused": [0, 2, 3]},  # paused: earliest
    )
    at = NOW + dt.timedelta(minutes=100)  # the 500-minute timer is not due yet
    with container.sessions() as session:
        repo = JourneyRepository(session)
        found = repo.due(at, 4, journeys=["j-a", "j-b"])
        everything = repo.due(at, 100, journeys=["j-a", "j-b"])
    assert [(e.journey, e.wake_at) for e in found] == [
        ("j-b", NOW + dt.timedelta(minutes=1)),
        ("j-a", NOW + dt.timedelta(minutes=5)),
        ("j-b", NOW + dt.timedelta(minutes=30)),
        ("j-a", NOW + dt.timedelta(minutes=50)),
    ]
    assert len(everything) == 5
    assert "j-paused" not in {e.journey for e in everything}


def test_due_timers_are_shared_so_a_backlog_does_not_starve_another_journey(
    container: Container,
) -> None:
    """A journey with a backlog of due timers gets what the others leave, not the whole
    pass: the later timer of a small journey is read in the same pass."""
    _journey_rows(container, "j-big", "j-small")
    _timers(container, {"j-big": list(range(10)), "j-small": [50]})
    with container.sessions() as session:
        found = JourneyRepository(session).due(
            NOW + dt.timedelta(hours=1), 4, journeys=["j-big", "j-small"]
        )
    assert [(e.journey, e.wake_at - NOW) for e in found] == [
        ("j-big", dt.timedelta(minutes=0)),
        ("j-big", dt.timedelta(minutes=1)),
        ("j-big", dt.timedelta(minutes=2)),
        ("j-small", dt.timedelta(minutes=50)),
    ]


def test_a_pass_gives_each_journey_at_least_its_least_in_the_order_given(
    container: Container,
) -> None:
    """With ``least``, a pass steps a few journeys (in the caller's order, which the runtime
    turns between passes) rather than a few rows of each."""
    _journey_rows(container, "j-a", "j-b", "j-c")
    _timers(container, {j: list(range(5)) for j in ("j-a", "j-b", "j-c")})
    at = NOW + dt.timedelta(hours=1)
    with container.sessions() as session:
        repo = JourneyRepository(session)
        even = repo.due(at, 6, journeys=["j-a", "j-b", "j-c"])
        first = repo.due(at, 6, journeys=["j-a", "j-b", "j-c"], least=3)
        turned = repo.due(at, 6, journeys=["j-b", "j-c", "j-a"], least=3)
    assert Counter(e.journey for e in even) == {"j-a": 2, "j-b": 2, "j-c": 2}
    assert Counter(e.journey for e in first) == {"j-a": 3, "j-b": 3}
    assert Counter(e.journey for e in turned) == {"j-b": 3, "j-c": 3}


def test_due_timers_held_by_another_worker_are_passed_over(container: Container) -> None:
    if container.settings.deployment is not Deployment.SERVER:
        pytest.skip("row locks with SKIP LOCKED: the server deployment")
    _journey_rows(container, "j-a")
    rows = [new_enrollment("j-a", 1, f"hcp-{n}", 1, "entry", NOW) for n in range(3)]
    with container.sessions.begin() as session:
        JourneyRepository(session).insert_enrollments(rows)
    with container.sessions.begin() as holder:
        held = JourneyRepository(holder).due(NOW, 1, journeys=["j-a"], skip_locked=True)
        assert len(held) == 1
        with container.sessions.begin() as other:
            rest = JourneyRepository(other).due(NOW, 3, journeys=["j-a"], skip_locked=True)
        assert len(rest) == 2
        assert held[0].id not in {e.id for e in rest}


def test_entering_builds_each_row_in_the_database_as_the_runtime_would(
    container: Container,
) -> None:
    """``enter_many`` inserts one row per (HCP, entry number) with the id of
    ``enrollment_id`` and the fields of ``new_enrollment``; an id already stored is left
    alone and not counted."""
    _journey_rows(container, "j-a")
    entering = [("hcp-1", 1), ("hcp-2", 1), ("hcp-3", 2), ("hcp-4", 1)]
    with container.sessions.begin() as session:
        repo = JourneyRepository(session)
        assert repo.enter_many("j-a", 1, "entry", NOW, entering) == 4
        assert repo.enter_many("j-a", 1, "entry", NOW, [("hcp-1", 1), ("hcp-5", 1)]) == 1
    with container.sessions() as session:
        stored = (
            session.execute(select(JourneyEnrollment).order_by(JourneyEnrollment.id))
            .scalars()
            .all()
        )
        rows = [
            {c: getattr(r, c) for c in new_enrollment("j", 1, "h", 1, "e", NOW)} for r in stored
        ]
    expected = [
        new_enrollment("j-a", 1, hcp, n, "entry", NOW) for hcp, n in [*entering, ("hcp-5", 1)]
    ]
    assert rows == sorted(expected, key=lambda r: r["id"])
    assert rows[2]["id"] == enrollment_id("j-a", "hcp-3", 2) == "j-a:hcp-3:2"


def _lock_free_between_chunks(world: Container) -> list[bool]:
    """Replays three events one chunk at a time; after each chunk, whether another thread
    (a timer pass) could take the runtime's lock."""
    add_hcps(world, 3)
    publish(world, WEBINAR)
    for i in range(3):
        attended(world, i, NOW)
    world.catch_up()  # the profile projector first: the journey consumer follows it
    consumer = world.journey_runtime.consumer
    consumer.chunk_size = 1
    free: list[bool] = []

    def other_thread_can_lock(_read: int) -> None:
        got: list[bool] = []

        def take() -> None:
            ok = world.journey_runtime.lock.acquire(timeout=0.2)
            if ok:
                world.journey_runtime.lock.release()
            got.append(ok)

        thread = threading.Thread(target=take)
        thread.start()
        thread.join()
        free.append(got[0])

    read = consumer.catch_up(progress=other_thread_can_lock)
    assert read >= 3  # the attendances, after the HCPs' own events
    assert len(free) == read  # one chunk per event
    return free


def test_a_long_replay_lets_timers_run_between_its_chunks(world: Container) -> None:
    free = _lock_free_between_chunks(world)
    assert free == [True] * len(free)
    world.journey_runtime.drain()  # the three who attended entered, one chunk each
    assert len(outbox(world)) == 3


def test_negative_control_a_replay_holding_the_lock_throughout_keeps_timers_out(
    world: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = world.journey_runtime
    real = JourneyEventConsumer.catch_up

    def held_throughout(self: JourneyEventConsumer, progress: Any = None) -> int:
        with runtime.lock:
            return real(self, progress)

    monkeypatch.setattr(JourneyEventConsumer, "catch_up", held_throughout)
    held = _lock_free_between_chunks(world)
    assert held == [False] * len(held)
