"""Segments kept current by the log consumer: an HCP enters as its interaction arrives and
leaves when the window has passed (the periodic refresh); a bulk chunk refreshes in SQL."""

from __future__ import annotations

import datetime as dt

import pytest
from tests.conftest import NOW, TEST_ACTOR
from tests.integration.test_segment_service import OPENERS, identify, opened, segment_events

from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.kit.clock import FixedClock
from counterpoint.segment.consumer import SegmentConsumer, refresh_all
from counterpoint.segment.service import parse_segment


def test_an_arriving_interaction_moves_the_hcp_into_the_segment(
    container: Container, clock: FixedClock
) -> None:
    hcp = identify(container, 11, specialty="cardiology", market="DE")
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    assert container.segments.refresh("cardio-openers")["size"] == 0
    opened(container, 11, 0)  # appends and catches every consumer up
    assert [i.event.action for i in segment_events(container, 11)] == [Action.SEGMENT_ENTERED]
    assert container.segments.get("cardio-openers")["members"] == 1
    # its own membership event does not bring it back round (no second event)
    container.catch_up()
    assert len(segment_events(container, 11)) == 1
    # time passes: only the refresh can see that the open left the 7-day window
    clock.advance(dt.timedelta(days=8))
    assert refresh_all(container.segments) == 1
    assert [i.event.action for i in segment_events(container, 11)] == [
        Action.SEGMENT_ENTERED,
        Action.SEGMENT_LEFT,
    ]
    assert hcp not in container.segments.get("cardio-openers").get("sample", [])


def test_without_the_consumer_nothing_moves_until_a_refresh(container: Container) -> None:
    """Negative control: the same arrival, with the segment consumer taken out."""
    container.consumers[:] = [c for c in container.consumers if not isinstance(c, SegmentConsumer)]
    identify(container, 12, specialty="cardiology", market="DE")
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)
    opened(container, 12, 0)
    assert segment_events(container, 12) == []
    assert refresh_all(container.segments) == 1  # the refresh repairs it


def test_a_large_chunk_is_answered_in_sql(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = next(c for c in container.consumers if isinstance(c, SegmentConsumer))
    consumer.bulk_threshold = 1
    for n in (21, 22):
        identify(container, n, specialty="cardiology", market="DE")
    container.segments.create(parse_segment(OPENERS), TEST_ACTOR)

    def one_by_one(hcp_id: str) -> None:
        raise AssertionError("a chunk above the threshold is refreshed in SQL")

    monkeypatch.setattr(container.segments, "evaluate_one", one_by_one)
    events = [
        LogEvent(f"bulk-open-{n}", EventKind.TRACK, f"email:s{n}@x.example", NOW, NOW, "tests",
                 channel=Channel.CAMPAIGN_EMAIL, action=Action.OPENED, synthetic=True)
        for n in (21, 22)
    ]  # fmt: skip
    container.log.append(events)
    container.catch_up()
    assert container.segments.get("cardio-openers")["members"] == 2
