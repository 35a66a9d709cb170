"""Segments through the service, on both deployments: definitions and versions, previews and
counts, refreshes that write one event per entry and exit (and nothing when nothing
changed), exits when events age out of the window, one HCP evaluated as its events arrive,
and membership events that survive a crash between the commit and the log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import NOW, TEST_ACTOR

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.errors import ConflictError, NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.event.log import StoredEvent, TimelineQuery
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.access import Principal, Role
from counterpoint.segment.conditions import event_filters, parse_condition
from counterpoint.segment.consumer import SegmentConsumer
from counterpoint.segment.models import SegmentPendingEvent
from counterpoint.segment.service import parse_segment

OPENERS: dict[str, Any] = {
    "name": "cardio-openers",
    "description": "cardiologists who opened a campaign e-mail in the last 7 days",
    "condition": {
        "all": [
            {"attribute": {"name": "specialty", "op": "eq", "value": "cardiology"}},
            {"events": {"channel": "campaign_email", "action": "opened", "within_days": 7}},
        ]
    },
}


def identify(container: Container, n: int, **traits: Any) -> str:
    """A synthetic HCP ``crm:S<n>`` with an e-mail address as a second identifier."""
    event = LogEvent(
        f"id-{n}",
        EventKind.IDENTIFY,
        f"crm:S{n}",
        NOW - dt.timedelta(days=100),
        NOW,
        "tests",
        payload={"traits": {"email": f"s{n}@x.example", **traits}},
        synthetic=True,
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"crm:S{n}")
    assert hcp_id is not None
    return hcp_id


def opened(container: Container, n: int, days_ago: float, tag: str = "") -> None:
    at = NOW - dt.timedelta(days=days_ago)
    event = LogEvent(
        f"open-{n}-{days_ago}{tag}",
        EventKind.TRACK,
        f"email:s{n}@x.example",
        at,
        at,
        "tests",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        synthetic=True,
    )
    container.log.append([event])
    container.catch_up()


def segment_events(container: Container, n: int) -> list[StoredEvent]:
    items = container.log.timeline(
        TimelineQuery([f"crm:S{n}", f"email:s{n}@x.example"], limit=1000)
    )
    return sorted((i for i in items if i.event.source == "segments"), key=lambda i: i.seq)


@pytest.fixture
def population(container: Container) -> dict[str, str]:
    """Three cardiologists (two opened recently, one long ago) and an oncologist who opened."""
    ids = {
        "a": identify(container, 1, specialty="cardiology", market="DE"),
        "b": identify(container, 2, specialty="cardiology", market="FR"),
        "c": identify(container, 3, specialty="cardiology", market="DE"),
        "d": identify(container, 4, specialty="oncology", market="DE"),
    }
    opened(container, 1, 1)
    opened(container, 2, 6)
    opened(container, 3, 30)
    opened(container, 4, 1)
    return ids


def test_refresh_writes_one_event_per_entry_and_nothing_when_unchanged(
    container: Container, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    first = container.segments.refresh("cardio-openers")
    assert (first["size"], first["entered"], first["left"]) == (2, 2, 0)
    assert set(first["entered_sample"]) == {population["a"], population["b"]}
    [entered] = segment_events(container, 1)
    assert entered.event.action is Action.SEGMENT_ENTERED
    assert entered.event.channel is None
    assert entered.event.subject == "crm:S1"  # the HCP's subject (no NPI: first identifier)
    assert entered.event.message_id.startswith(f"segment:cardio-openers:1:{population['a']}:")
    assert entered.event.message_id.endswith(":entered:1")
    assert entered.event.payload["properties"] == {
        "segment": "cardio-openers",
        "version": 1,
        "hcp_id": population["a"],
    }
    assert entered.event.synthetic is True
    assert entered.event.market == "DE"
    assert segment_events(container, 3) == []  # opened 30 days ago: outside the window
    head = container.log.head()
    again = container.segments.refresh("cardio-openers")
    assert (again["entered"], again["left"]) == (0, 0)
    assert container.log.head() == head  # nothing written
    assert container.segments.get("cardio-openers")["members"] == 2


def test_an_hcp_whose_events_age_out_leaves_on_refresh(
    container: Container, clock: FixedClock, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    container.segments.refresh("cardio-openers")
    clock.advance(dt.timedelta(days=1, seconds=1))  # b's open is now 7 days and 1 s old
    result = container.segments.refresh("cardio-openers")
    assert (result["entered"], result["left"]) == (0, 1)
    assert result["left_sample"] == [population["b"]]
    actions = [i.event.action for i in segment_events(container, 2)]
    assert actions == [Action.SEGMENT_ENTERED, Action.SEGMENT_LEFT]
    assert [i.event.action for i in segment_events(container, 1)] == [Action.SEGMENT_ENTERED]


def test_reentry_gets_a_new_message_id(
    container: Container, clock: FixedClock, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    container.segments.refresh("cardio-openers")
    clock.advance(dt.timedelta(days=7))
    container.segments.refresh("cardio-openers")  # a leaves
    opened(container, 1, -7 + 0.5, tag="again")  # a opens again, half a day before "now"
    container.segments.refresh("cardio-openers")  # a enters again
    ids = [i.event.message_id for i in segment_events(container, 1)]
    prefix = f"segment:cardio-openers:1:{population['a']}"
    assert ids == [f"{prefix}:entered:1", f"{prefix}:left:2", f"{prefix}:entered:3"]


def test_segment_events_never_count_as_interactions(
    container: Container, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    container.segments.refresh("cardio-openers")
    assert segment_events(container, 1)  # the log holds a membership event for a
    anything = parse_condition(
        {"feature": {"name": "events", "window_days": 2, "op": "gte", "value": 2}}
    )
    # a has one interaction (an open) in the last two days, and a membership event: not two
    assert population["a"] not in set(
        container.segments.bulk.evaluate(anything, NOW).column("hcp_id").to_pylist()
    )
    facts = container.segments._facts.facts_for(population["a"], anything, NOW)
    assert [e.action for e in facts.events].count("segment_entered") == 1  # it is read …
    one = parse_condition({"feature": {"name": "events", "window_days": 2, "op": "eq", "value": 1}})
    assert container.segments.count(one) == 2  # … and not counted (a and d: one open each)
    counts = container.log.count_by_subject(event_filters(anything), NOW)
    assert "crm:S1" not in counts.column("subject").to_pylist()  # the events' subject


def test_one_hcp_enters_and_leaves_as_its_events_arrive(
    container: Container, clock: FixedClock, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    container.segments.refresh("cardio-openers")
    assert container.segments.evaluate_one(population["c"])["entered"] == []
    consumer = next(c for c in container.consumers if isinstance(c, SegmentConsumer))
    container.consumers.remove(consumer)  # by hand here; test_segment_consumer.py has it
    opened(container, 3, 0)  # c opens now
    result = container.segments.evaluate_one(population["c"])
    assert (result["entered"], result["left"]) == (["cardio-openers"], [])
    assert [i.event.action for i in segment_events(container, 3)] == [Action.SEGMENT_ENTERED]
    assert container.segments.evaluate_one(population["c"])["entered"] == []  # no change
    again = container.segments.refresh("cardio-openers")
    assert (again["entered"], again["left"]) == (0, 0)  # the bulk evaluation agrees
    clock.advance(dt.timedelta(days=8))
    gone = container.segments.evaluate_one(population["c"])
    assert gone["left"] == ["cardio-openers"]
    assert container.segments.get("cardio-openers")["members"] == 2  # a and b until refresh


def test_membership_events_survive_a_crash_between_commit_and_log(
    container: Container, population: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    real = container.log.append

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the process died before the log append")

    monkeypatch.setattr(container.log, "append", crash)
    with pytest.raises(OSError, match="died"):
        container.segments.refresh("cardio-openers")
    monkeypatch.setattr(container.log, "append", real)
    assert container.segments.get("cardio-openers")["members"] == 2  # committed
    assert segment_events(container, 1) == []  # … but not in the log yet
    assert container.segments.flush() == 2  # the next flush appends them
    assert len(segment_events(container, 1)) == 1
    # a crash after the append, before the pending rows were dropped: a replay is a no-op
    [event] = segment_events(container, 1)
    with container.sessions.begin() as session:
        session.add(
            SegmentPendingEvent(
                message_id=event.event.message_id,
                subject=event.event.subject,
                action=Action.SEGMENT_ENTERED.value,
                occurred_at=NOW,
                market="DE",
                synthetic=True,
                payload={},
            )
        )
    assert container.segments.flush() == 0
    assert len(segment_events(container, 1)) == 1
    with container.sessions() as session:
        assert session.scalars(select(SegmentPendingEvent)).all() == []
    again = container.segments.refresh("cardio-openers")
    assert (again["entered"], again["left"]) == (0, 0)


def test_definitions_versions_and_deletion(
    container: Container, population: dict[str, str]
) -> None:
    created = container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    assert (created["version"], created["members"]) == (1, 0)
    with pytest.raises(ConflictError) as twice:
        container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    assert twice.value.field == "name"
    same = container.segments.update(parse_segment(OPENERS), TEST_ACTOR)
    assert (same["changed"], same["version"]) == (False, 1)
    container.segments.refresh("cardio-openers")
    wider = {**OPENERS, "condition": {"events": {"action": "opened", "within_days": 7}}}
    updated = container.segments.update(parse_segment(wider), TEST_ACTOR)
    assert (updated["changed"], updated["version"]) == (True, 2)
    refreshed = container.segments.refresh("cardio-openers")
    assert (refreshed["version"], refreshed["entered"]) == (2, 1)  # d (an oncologist) comes in
    [d_event] = segment_events(container, 4)
    assert d_event.event.message_id.startswith("segment:cardio-openers:2:")
    assert [s["name"] for s in container.segments.list()] == ["cardio-openers"]
    deleted = container.segments.delete("cardio-openers", TEST_ACTOR)
    assert deleted["left"] == 3
    assert [i.event.action for i in segment_events(container, 4)][-1] is Action.SEGMENT_LEFT
    with pytest.raises(NotFoundError):
        container.segments.get("cardio-openers")
    assert container.segments.list() == []
    again = container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    assert again["version"] == 3  # a name keeps counting: message ids are never reused
    actions = [r.action for r in container.audit.iter_records()]
    assert [a for a in actions if a.startswith("segment.")] == [
        "segment.create",
        "segment.update",
        "segment.delete",
        "segment.create",
    ]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({**OPENERS, "name": "Cardio Openers"}, "name"),
        ({**OPENERS, "name": "-x"}, "name"),
        ({k: v for k, v in OPENERS.items() if k != "condition"}, "condition"),
        ({**OPENERS, "owner": "me"}, "owner"),
        ({**OPENERS, "condition": {"all": [{"attribute": {"name": "mood", "op": "eq",
                                                         "value": "x"}}]}},
         "condition.all.0.attribute.name"),
        ({**OPENERS, "condition": {"events": {"within_days": 0}}}, "condition.events.within_days"),
        ("not a mapping", "document"),
    ],
)  # fmt: skip
def test_bad_documents_name_the_field_and_store_nothing(
    container: Container, document: Any, field: str
) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        container.segments.create(parse_segment(document), TEST_ACTOR)
    assert caught.value.field == field
    assert caught.value.fix
    assert container.segments.list() == []


def test_preview_counts_markets_consent_coverage_and_scope(
    container: Container, population: dict[str, str]
) -> None:
    proof = Proof(ConsentSource.IMPORT, "tests", wording_version="v1")
    for hcp, market, state in (("a", "DE", ConsentState.GRANTED),
                               ("b", "DE", ConsentState.GRANTED),  # b is in FR: not covered
                               ("c", "DE", ConsentState.REVOKED)):  # fmt: skip
        container.consents.record(
            hcp_id=population[hcp],
            subject=None,
            scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, market),
            state=state,
            proof=proof,
            actor=TEST_ACTOR,
            reason="synthetic test data",
            effective_at=NOW - dt.timedelta(days=1),
        )
    cardiologists = parse_condition(
        {"attribute": {"name": "specialty", "op": "eq", "value": "cardiology"}}
    )
    result = container.segments.preview(cardiologists)
    assert result["size"] == 3
    assert result["markets"] == [{"market": "DE", "size": 2}, {"market": "FR", "size": 1}]
    email = next(c for c in result["consent"] if c["channel"] == "email")
    assert (email["allowed"], email["share"]) == (1, pytest.approx(1 / 3))
    sms = next(c for c in result["consent"] if c["channel"] == "sms")
    assert (sms["allowed"], sms["share"]) == (0, 0.0)
    assert sorted(result["sample"]) == sorted(population[k] for k in "abc")
    de_only = Principal("u", "u", Role.BRAND_MANAGER, markets=frozenset({"DE"}))
    assert container.segments.count(cardiologists, viewer=de_only) == 2
    rep = Principal("r", "r", Role.SALES_REP, territories=frozenset({"T9"}))
    assert container.segments.preview(cardiologists, viewer=rep)["size"] == 0
    empty = container.segments.preview(
        parse_condition({"attribute": {"name": "specialty", "op": "eq", "value": "none"}})
    )
    assert (empty["size"], empty["consent"][0]["share"]) == (0, None)


def test_an_erased_hcp_leaves_every_segment_without_a_trace(
    container: Container, population: dict[str, str]
) -> None:
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    container.segments.refresh("cardio-openers")
    container.privacy.erase(population["a"], TEST_ACTOR, "GDPR request, ticket 1234")
    assert container.segments.get("cardio-openers")["members"] == 1  # the erasure swept it
    again = container.segments.refresh("cardio-openers")
    assert (again["entered"], again["left"]) == (0, 0)  # and no exit event names anyone
    assert segment_events(container, 1) == []  # the membership event was redacted too
