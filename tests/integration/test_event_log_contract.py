"""The ``EventLog`` contract, run against both adapters (DuckDB embedded, PostgreSQL server)
through ``container.log``."""

from __future__ import annotations

import datetime as dt

from counterpoint.container import Container, open_container
from counterpoint.event.canonical import Action, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import QuarantineEntry, QuarantineStatus, TimelineQuery
from counterpoint.kit.clock import FixedClock
from counterpoint.settings import Settings

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SUBJECT = "npi:1234567893"
OTHER = "npi:1245319599"


def _event(
    message_id: str,
    *,
    subject: str = SUBJECT,
    minutes_ago: int = 0,
    channel: Channel | None = Channel.CAMPAIGN_EMAIL,
    action: Action | None = Action.OPENED,
    brand: str | None = "ZENTROVA",
    function: Function | None = Function.COMMERCIAL,
    event_name: str | None = "Email Opened",
    payload: dict[str, object] | None = None,
) -> LogEvent:
    return LogEvent(
        message_id=message_id,
        kind=EventKind.TRACK,
        subject=subject,
        occurred_at=NOW - dt.timedelta(minutes=minutes_ago),
        received_at=NOW,
        source="wk_test",
        channel=channel,
        action=action,
        event_name=event_name,
        brand=brand,
        function=function,
        payload=payload if payload is not None else {"properties": {"k": "v"}},
    )


def _quarantine(reason: str, raw: str = '{"type": "track"}') -> QuarantineEntry:
    return QuarantineEntry(
        received_at=NOW,
        source="wk_test",
        reason_code=reason,
        field="properties.channel",
        detail=f"refused: {reason}",
        fix="send a channel code",
        raw=raw,
    )


def _ids(container: Container, query: TimelineQuery) -> list[str]:
    return [s.event.message_id for s in container.log.timeline(query)]


# --- append and de-duplication --------------------------------------------------------


def test_empty_log_has_head_zero_and_count_zero(container: Container) -> None:
    log = container.log
    assert log.head() == 0
    assert log.count() == 0
    assert log.read_after(0, 10).num_rows == 0
    assert log.timeline(TimelineQuery([SUBJECT])) == []
    assert log.timeline(TimelineQuery([])) == []
    assert log.quarantined(None, 0, 10) == []


def test_append_reports_accepted_and_duplicates(container: Container) -> None:
    log = container.log
    first = log.append([_event("a"), _event("b"), _event("c")])
    assert (first.accepted, first.duplicates, first.quarantined) == (3, 0, 0)
    assert first.stored is None
    assert first.last_seq == log.head() > 0
    assert log.count() == 3

    second = log.append([_event("b"), _event("d"), _event("a")])
    assert (second.accepted, second.duplicates) == (1, 2)
    assert second.last_seq == log.head()
    assert log.count() == 4


def test_duplicates_within_one_batch_keep_the_first(container: Container) -> None:
    log = container.log
    result = log.append(
        [
            _event("x", event_name="first", payload={"n": 1}),
            _event("y"),
            _event("x", event_name="second", payload={"n": 2}),
            _event("x", event_name="third", payload={"n": 3}),
        ]
    )
    assert (result.accepted, result.duplicates) == (2, 2)
    assert log.count() == 2
    stored = {s.event.message_id: s.event for s in log.timeline(TimelineQuery([SUBJECT]))}
    assert stored["x"].event_name == "first"
    assert stored["x"].payload == {"n": 1}


def test_report_stored_flags_each_event_that_was_stored(container: Container) -> None:
    log = container.log
    log.append([_event("old")])
    result = log.append(
        [_event("old"), _event("n1"), _event("n2"), _event("n1")], report_stored=True
    )
    assert result.stored == (False, True, True, False)  # the repeat of n1 is not stored
    assert (result.accepted, result.duplicates) == (2, 2)
    nothing_new = log.append([_event("n2")], report_stored=True)
    assert nothing_new.stored == (False,)
    assert nothing_new.accepted == 0


def test_an_empty_append_stores_nothing(container: Container) -> None:
    result = container.log.append([], report_stored=True)
    assert (result.accepted, result.duplicates, result.quarantined) == (0, 0, 0)
    assert result.stored == ()
    assert container.log.count() == 0


# --- reading in sequence order ---------------------------------------------------------


def test_read_after_is_in_sequence_order_and_honours_limit(container: Container) -> None:
    log = container.log
    log.append([_event(f"m{i}") for i in range(5)])
    log.append([_event("m2"), _event("m5"), _event("m6")])
    table = log.read_after(0, 100)
    seqs = table.column("seq").to_pylist()
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs) == 7
    assert table.column("message_id").to_pylist() == [f"m{i}" for i in range(7)]
    assert seqs[-1] == log.head()

    page = log.read_after(seqs[1], 3)
    assert page.column("seq").to_pylist() == seqs[2:5]
    assert page.column("message_id").to_pylist() == ["m2", "m3", "m4"]
    assert log.read_after(seqs[-1], 10).num_rows == 0


def test_read_after_returns_every_column(container: Container) -> None:
    container.log.append([_event("full", payload={"properties": {"a": [1, 2]}})])
    row = container.log.read_after(0, 1).to_pylist()[0]
    assert row["message_id"] == "full"
    assert row["kind"] == "track"
    assert row["subject"] == SUBJECT
    assert row["channel"] == "campaign_email"
    assert row["action"] == "opened"
    assert row["brand"] == "ZENTROVA"
    assert row["function"] == "commercial"
    assert row["synthetic"] is False
    assert row["occurred_at"] == NOW


# --- timeline ---------------------------------------------------------------------------


def test_timeline_is_newest_first_with_filters(container: Container) -> None:
    log = container.log
    log.append(
        [
            _event("e1", minutes_ago=50),
            _event("e2", minutes_ago=40, channel=Channel.F2F_CALL, action=Action.CALL_COMPLETED),
            _event("e3", minutes_ago=30, brand="OTHERBRAND"),
            _event(
                "e4",
                minutes_ago=20,
                channel=Channel.MEDICAL_INQUIRY,
                action=Action.INQUIRY_RECEIVED,
                function=Function.MEDICAL,
            ),
            _event("e5", minutes_ago=10),
            _event("x1", minutes_ago=5, subject=OTHER),
        ]
    )
    assert _ids(container, TimelineQuery([SUBJECT])) == ["e5", "e4", "e3", "e2", "e1"]
    assert _ids(container, TimelineQuery([SUBJECT, OTHER])) == [
        "x1",
        "e5",
        "e4",
        "e3",
        "e2",
        "e1",
    ]
    assert _ids(container, TimelineQuery([SUBJECT], channel="f2f_call")) == ["e2"]
    assert _ids(container, TimelineQuery([SUBJECT], brand="OTHERBRAND")) == ["e3"]
    assert _ids(container, TimelineQuery([SUBJECT], function="medical")) == ["e4"]
    assert _ids(
        container, TimelineQuery([SUBJECT], channel="campaign_email", brand="ZENTROVA")
    ) == ["e5", "e1"]
    assert _ids(container, TimelineQuery([SUBJECT], channel="sms")) == []
    assert _ids(container, TimelineQuery([SUBJECT], limit=2)) == ["e5", "e4"]


def test_timeline_keyset_cursor_walks_every_event_once(container: Container) -> None:
    log = container.log
    # Three events share one timestamp: the cursor must break ties by seq.
    events = [_event(f"t{i}", minutes_ago=i // 3) for i in range(10)]
    log.append(events)
    seen: list[str] = []
    before: tuple[dt.datetime, int] | None = None
    pages = 0
    while True:
        page = log.timeline(TimelineQuery([SUBJECT], before=before, limit=3))
        pages += 1
        if not page:
            break
        seen.extend(s.event.message_id for s in page)
        before = (page[-1].event.occurred_at, page[-1].seq)
        assert pages < 10
    assert sorted(seen) == sorted(e.message_id for e in events)
    assert len(seen) == len(set(seen)) == 10
    full = log.timeline(TimelineQuery([SUBJECT], limit=100))
    assert [s.event.message_id for s in full] == seen
    keys = [(s.event.occurred_at, s.seq) for s in full]
    assert keys == sorted(keys, reverse=True)


def test_timeline_before_is_strict(container: Container) -> None:
    log = container.log
    log.append([_event("a", minutes_ago=2), _event("b", minutes_ago=1), _event("c")])
    full = log.timeline(TimelineQuery([SUBJECT]))
    middle = full[1]
    assert middle.event.message_id == "b"
    older = log.timeline(TimelineQuery([SUBJECT], before=(middle.event.occurred_at, middle.seq)))
    assert [s.event.message_id for s in older] == ["a"]


def test_timeline_round_trips_the_event(container: Container) -> None:
    original = _event("rt", payload={"properties": {"nested": {"x": 1}}, "context": {}})
    container.log.append([original])
    (stored,) = container.log.timeline(TimelineQuery([SUBJECT]))
    assert stored.event == original
    assert stored.seq == container.log.head()


# --- quarantine -------------------------------------------------------------------------


def test_quarantine_is_stored_in_the_same_append(container: Container) -> None:
    log = container.log
    result = log.append([_event("ok")], [_quarantine("unknown_channel", raw='{"a": 1}')])
    assert (result.accepted, result.quarantined) == (1, 1)
    (item,) = log.quarantined(QuarantineStatus.OPEN, 0, 10)
    assert item.status is QuarantineStatus.OPEN
    assert item.entry == _quarantine("unknown_channel", raw='{"a": 1}')
    assert item.resolved_at is None
    assert item.note is None

    only_quarantine = log.append([], [_quarantine("missing_identity")])
    assert (only_quarantine.accepted, only_quarantine.quarantined) == (0, 1)
    assert log.count() == 1
    assert len(log.quarantined(None, 0, 10)) == 2


def test_quarantined_filters_by_status_and_pages_by_id(container: Container) -> None:
    log = container.log
    log.append([], [_quarantine(f"r{i}") for i in range(5)])
    items = log.quarantined(None, 0, 100)
    ids = [q.id for q in items]
    assert ids == sorted(ids)
    assert [q.entry.reason_code for q in items] == [f"r{i}" for i in range(5)]

    assert [q.id for q in log.quarantined(None, ids[1], 2)] == ids[2:4]
    assert log.quarantined(None, ids[-1], 10) == []

    at = NOW + dt.timedelta(hours=1)
    assert log.resolve_quarantined([ids[0], ids[2]], QuarantineStatus.DISCARDED, "junk", at) == 2
    assert log.resolve_quarantined([ids[3]], QuarantineStatus.REPLAYED, "fixed", at) == 1
    assert [q.id for q in log.quarantined(QuarantineStatus.OPEN, 0, 10)] == [ids[1], ids[4]]
    discarded = log.quarantined(QuarantineStatus.DISCARDED, 0, 10)
    assert [q.id for q in discarded] == [ids[0], ids[2]]
    assert all(q.note == "junk" and q.resolved_at == at for q in discarded)
    (replayed,) = log.quarantined(QuarantineStatus.REPLAYED, 0, 10)
    assert (replayed.id, replayed.note, replayed.status) == (
        ids[3],
        "fixed",
        QuarantineStatus.REPLAYED,
    )
    assert [q.id for q in log.quarantined(QuarantineStatus.OPEN, ids[1], 10)] == [ids[4]]


def test_resolve_changes_only_open_entries(container: Container) -> None:
    log = container.log
    log.append([], [_quarantine("a"), _quarantine("b")])
    first, second = (q.id for q in log.quarantined(None, 0, 10))
    t1 = NOW + dt.timedelta(minutes=1)
    t2 = NOW + dt.timedelta(minutes=2)
    assert log.resolve_quarantined([first], QuarantineStatus.REPLAYED, "replayed", t1) == 1
    # Already resolved: neither status, note nor time changes.
    assert log.resolve_quarantined([first], QuarantineStatus.DISCARDED, "again", t2) == 0
    assert log.resolve_quarantined([first, second], QuarantineStatus.DISCARDED, "both", t2) == 1
    assert log.resolve_quarantined([], QuarantineStatus.DISCARDED, "none", t2) == 0
    assert log.resolve_quarantined([999_999], QuarantineStatus.DISCARDED, "missing", t2) == 0
    by_id = {q.id: q for q in log.quarantined(None, 0, 10)}
    assert (by_id[first].status, by_id[first].note, by_id[first].resolved_at) == (
        QuarantineStatus.REPLAYED,
        "replayed",
        t1,
    )
    assert (by_id[second].status, by_id[second].note, by_id[second].resolved_at) == (
        QuarantineStatus.DISCARDED,
        "both",
        t2,
    )


# --- durability -------------------------------------------------------------------------


def test_reopening_keeps_events_dedup_and_quarantine(settings: Settings) -> None:
    clock = FixedClock(NOW)
    first = open_container(settings, clock=clock)
    try:
        first.log.append(
            [_event("p1", minutes_ago=2), _event("p2", minutes_ago=1)],
            [_quarantine("unknown_channel")],
        )
        (entry,) = first.log.quarantined(None, 0, 10)
        first.log.resolve_quarantined([entry.id], QuarantineStatus.DISCARDED, "noise", NOW)
        first.log.append([], [_quarantine("missing_identity")])
        head = first.log.head()
        before = first.log.read_after(0, 100).to_pylist()
    finally:
        first.close()

    second = open_container(settings, clock=clock)
    try:
        log = second.log
        assert log.count() == 2
        assert log.head() == head
        assert log.read_after(0, 100).to_pylist() == before
        # De-duplication survives the restart: the old ids are still refused.
        again = log.append([_event("p1"), _event("p3")], report_stored=True)
        assert again.stored == (False, True)
        assert again.duplicates == 1
        assert again.last_seq > head
        items = log.quarantined(None, 0, 10)
        assert [(q.entry.reason_code, q.status) for q in items] == [
            ("unknown_channel", QuarantineStatus.DISCARDED),
            ("missing_identity", QuarantineStatus.OPEN),
        ]
        assert items[0].note == "noise"
        # New quarantine ids continue after the old ones.
        log.append([], [_quarantine("later")])
        ids = [q.id for q in log.quarantined(None, 0, 10)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 3
        assert [s.event.message_id for s in log.timeline(TimelineQuery([SUBJECT]))] == [
            "p3",
            "p2",
            "p1",
        ]
    finally:
        second.close()
