"""The event-log reads segments rely on, on both adapters (DuckDB and PostgreSQL):
``count_by_subject`` counts exactly what ``conditions.matches`` says, per subject and filter,
and ``TimelineQuery.since`` keeps only events after the window's start."""

from __future__ import annotations

import datetime as dt
import random

from tests.conftest import NOW

from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.segment.conditions import (
    EventFact,
    EventFilter,
    count_of,
    event_filters,
    parse_condition,
)

SUBJECTS = ["crm:L1", "crm:L2", "email:l3@x.example", "anon:visitor"]
US = dt.timedelta(microseconds=1)


def _events(seed: int, n: int) -> list[LogEvent]:
    """Synthetic events at times around the windows' edges, some without channel or action."""
    rng = random.Random(seed)
    offsets = [dt.timedelta(days=d) + e for d in (1, 7, 30) for e in (-US, dt.timedelta(0), US)]
    offsets += [dt.timedelta(0), -US, -dt.timedelta(days=2), dt.timedelta(days=45)]
    out = []
    for i in range(n):
        at = NOW - rng.choice(offsets)
        out.append(
            LogEvent(
                f"log-{seed}-{i}",
                EventKind.TRACK,
                rng.choice(SUBJECTS),
                at,
                NOW,
                "tests",
                channel=rng.choice([None, Channel.CAMPAIGN_EMAIL, Channel.WEBINAR]),
                action=rng.choice([None, Action.OPENED, Action.SENT, Action.ATTENDED]),
                brand=rng.choice([None, "Cardiomax", "O'Brien"]),
                content_id=rng.choice([None, "C1"]),
                function=rng.choice([None, Function.COMMERCIAL, Function.MEDICAL]),
                synthetic=True,
            )
        )
    return out


def _fact(e: LogEvent) -> EventFact:
    return EventFact(
        e.occurred_at,
        e.channel.value if e.channel else None,
        e.action.value if e.action else None,
        e.brand,
        e.content_id,
        e.function.value if e.function else None,
    )


FILTERS = [
    EventFilter(within_days=30),
    EventFilter(channel=["campaign_email"], action=["opened", "sent"], within_days=7),
    EventFilter(brand=["O'Brien", "Cardiomax"], function="medical", within_days=1),
    EventFilter(content_id=["C1"], channel=["webinar"], action=["attended"], within_days=30),
    EventFilter(brand=["nobody"], within_days=7),
]


def test_count_by_subject_counts_what_matches_says(container: Container) -> None:
    events = _events(1, 400)
    container.log.append(events)
    table = container.log.count_by_subject(FILTERS, NOW)
    assert table.column_names == ["subject", *(f"c{i}" for i in range(len(FILTERS)))]
    got = {row["subject"]: row for row in table.to_pylist()}
    for subject in SUBJECTS:
        facts = [_fact(e) for e in events if e.subject == subject]
        expected = [count_of(f, facts, NOW) for f in FILTERS]
        if subject not in got:  # no interaction in the longest window at all
            assert expected == [0] * len(FILTERS)
            continue
        assert [got[subject][f"c{i}"] for i in range(len(FILTERS))] == expected, subject
    assert sum(r["c0"] for r in got.values()) > 0  # the data hits the windows
    assert all(r["c4"] == 0 for r in got.values())


def test_count_by_subject_with_one_filter_of_a_condition(container: Container) -> None:
    container.log.append(_events(2, 50))
    condition = parse_condition({"events": {"channel": "webinar", "within_days": 7}})
    table = container.log.count_by_subject(event_filters(condition), NOW)
    assert table.column_names == ["subject", "c0"]
    assert str(table.schema.field("c0").type) == "int64"


def test_the_timeline_since_a_window_start(container: Container) -> None:
    events = _events(3, 120)
    container.log.append(events)
    since = NOW - dt.timedelta(days=7)
    got = container.log.timeline(TimelineQuery(SUBJECTS[:2], since=since, limit=1000))
    expected = {e.message_id for e in events if e.subject in SUBJECTS[:2] and e.occurred_at > since}
    assert {i.event.message_id for i in got} == expected
    assert expected  # some events fall inside, and …
    assert any(e.occurred_at == since for e in events if e.subject in SUBJECTS[:2])  # … on it
