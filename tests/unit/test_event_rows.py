"""Interaction rows to LogEvents: every rule, CSV strings and Parquet values."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.event.canonical import (
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.event.rows import (
    EVENT_COLUMNS,
    check_event_columns,
    validate_event_row,
    validate_event_table,
)
from counterpoint.kit.files import read_chunks
from counterpoint.profile.records import RowError

RECEIVED = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
FILE = "events.csv"


def event_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(EVENT_COLUMNS, "")
    row |= {
        "message_id": "m-1",
        "user_id": "npi:1234567893",
        "channel": "campaign_email",
        "action": "opened",
        "timestamp": "2026-03-01T09:30:00Z",
    }
    row.update(overrides)
    return row


def validate(row: dict[str, object], number: int = 2) -> LogEvent | list[RowError]:
    return validate_event_row(
        row, row_number=number, file=FILE, source="import:events.csv", received_at=RECEIVED
    )


def event(**overrides: object) -> LogEvent:
    result = validate(event_row(**overrides))
    assert isinstance(result, LogEvent), result
    return result


def errors(**overrides: object) -> list[RowError]:
    result = validate(event_row(**overrides), number=9)
    assert isinstance(result, list), result
    return result


def only_error(**overrides: object) -> RowError:
    found = errors(**overrides)
    assert len(found) == 1, found
    assert found[0].row == 9
    assert found[0].file == FILE
    assert found[0].fix
    return found[0]


# --- valid rows -------------------------------------------------------------------------------


def test_full_track_row() -> None:
    result = event(
        type="track",
        anonymous_id="cookie-1",
        event="Email Opened",
        brand="cardiozen",
        content_id="C-9",
        slide="3",
        actor_type="marketing",
        actor_id="u-7",
        function="commercial",
        market="de",
        properties='{"campaign": "spring", "n": 2}',
        synthetic="true",
    )
    assert result == LogEvent(
        message_id="m-1",
        kind=EventKind.TRACK,
        subject="npi:1234567893",
        occurred_at=dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        received_at=RECEIVED,
        source="import:events.csv",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.OPENED,
        event_name="Email Opened",
        anonymous_id="cookie-1",
        brand="cardiozen",
        content_id="C-9",
        slide="3",
        actor_type=ActorType.MARKETING,
        actor_id="u-7",
        function=Function.COMMERCIAL,
        market="DE",
        payload={"properties": {"campaign": "spring", "n": 2}},
        synthetic=True,
    )


def test_minimal_track_row_defaults() -> None:
    result = event()
    assert result.kind is EventKind.TRACK
    assert result.payload == {"properties": {}}
    assert result.synthetic is False
    assert result.market is None
    assert result.anonymous_id is None


def test_identify_row_puts_properties_into_traits() -> None:
    result = event(type="identify", channel="", action="", properties='{"specialty": "oncology"}')
    assert result.kind is EventKind.IDENTIFY
    assert result.payload == {"traits": {"specialty": "oncology"}}
    assert result.channel is None


@pytest.mark.parametrize(
    ("user_id", "subject"),
    [
        ("npi:1234567893", "npi:1234567893"),
        ("1234567893", "npi:1234567893"),
        ("Jane.Doe@Clinic.org", "email:jane.doe@clinic.org"),
        ("+1 415 555 0100", "phone:+14155550100"),
        ("crm:A-1", "crm:A-1"),
        ("A-1", "crm:A-1"),
        (1234567893, "npi:1234567893"),
    ],
)
def test_subject_is_the_canonical_user_id(user_id: object, subject: str) -> None:
    assert event(user_id=user_id).subject == subject


def test_anonymous_only_row_has_anon_subject() -> None:
    result = event(user_id="", anonymous_id=" 3f2c-77 ")
    assert result.subject == "anon:3f2c-77"
    assert result.anonymous_id == "3f2c-77"


def test_user_id_wins_over_anonymous_id() -> None:
    result = event(anonymous_id="a-1")
    assert (result.subject, result.anonymous_id) == ("npi:1234567893", "a-1")


def test_codes_are_case_insensitive() -> None:
    result = event(channel="F2F_Call", action=" Call_Completed ", actor_type="REP")
    assert (result.channel, result.action, result.actor_type) == (
        Channel.F2F_CALL,
        Action.CALL_COMPLETED,
        ActorType.REP,
    )


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-03-01T09:30:00Z", dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)),
        ("2026-03-01T10:30:00+01:00", dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)),
        ("2026-03-01 04:30:00.250-05:00", dt.datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=dt.UTC)),
        (dt.datetime(2026, 3, 1, 9, 30), dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)),
        (
            dt.datetime(2026, 3, 1, 10, 30, tzinfo=ZoneInfo("Europe/Berlin")),
            dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        ),
        ("2026-04-02T11:59:59Z", dt.datetime(2026, 4, 2, 11, 59, 59, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_become_utc(stamp: object, expected: dt.datetime) -> None:
    occurred = event(timestamp=stamp).occurred_at
    assert occurred == expected
    assert occurred.tzinfo is dt.UTC


def test_naive_received_at_is_taken_as_utc() -> None:
    result = validate_event_row(
        event_row(),
        row_number=2,
        file=FILE,
        source="s",
        received_at=RECEIVED.replace(tzinfo=None),
    )
    assert isinstance(result, LogEvent)
    assert result.received_at == RECEIVED


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"a": 1}, {"a": 1}),
        ('{"nested": {"b": [1, null]}}', {"nested": {"b": [1, None]}}),
        (None, {}),
        ("", {}),
    ],
)
def test_properties_json_or_dict(properties: object, expected: dict[str, object]) -> None:
    assert event(properties=properties).payload == {"properties": expected}


def test_message_id_of_200_characters_is_accepted() -> None:
    assert event(message_id="m" * 200).message_id == "m" * 200


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("0", False), (True, True)])
def test_synthetic_flag(value: object, expected: bool) -> None:
    assert event(synthetic=value).synthetic is expected


# --- invalid rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "reason_part", "fix_part"),
    [
        ({"message_id": ""}, "message_id", "required", "unique id"),
        ({"message_id": "m" * 201}, "message_id", "longer than 200", "shorten"),
        ({"type": "page"}, "type", "not a known type", "track, identify"),
        ({"user_id": "npi:1234567890"}, "user_id", "invalid npi", "Luhn"),
        ({"user_id": "", "anonymous_id": ""}, "user_id", "neither", "anonymous_id"),
        ({"user_id": "", "anonymous_id": "has space"}, "anonymous_id", "invalid anon", "letters"),
        ({"channel": ""}, "channel", "required for a track row", "docs/events.md"),
        ({"channel": "fax"}, "channel", "not a known channel", "f2f_call, remote_call"),
        ({"action": None}, "action", "required for a track row", "fill action"),
        ({"action": "liked"}, "action", "not a known action", "planned, sent"),
        ({"actor_type": "boss"}, "actor_type", "not a known actor_type", "rep, kam, msl"),
        ({"function": "legal"}, "function", "not a known function", "commercial, medical"),
        ({"timestamp": ""}, "timestamp", "required", "ISO 8601"),
        ({"timestamp": "yesterday"}, "timestamp", "not an ISO 8601", "2026-03-01T09:30:00Z"),
        ({"timestamp": "2026-03-01T09:30:00"}, "timestamp", "no UTC offset", "Z"),
        ({"timestamp": "2026-03-01"}, "timestamp", "no UTC offset", "Z"),
        ({"timestamp": 1772357400}, "timestamp", "not a timestamp", "ISO 8601"),
        ({"timestamp": dt.date(2026, 3, 1)}, "timestamp", "not a timestamp", "ISO 8601"),
        ({"timestamp": "2026-04-02T12:00:01Z"}, "timestamp", "in the future", "clock"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp", "out of range", "ISO 8601"),
        ({"properties": "{oops"}, "properties", "not valid JSON", "JSON object"),
        ({"properties": "[1, 2]"}, "properties", "not a JSON object", "JSON object"),
        ({"properties": 5}, "properties", "not a JSON object", "JSON object"),
        ({"market": "XX"}, "market", "ISO 3166-1", "such as DE"),
        ({"market": "Germany"}, "market", "ISO 3166-1", "code DE"),
        ({"synthetic": "maybe"}, "synthetic", "not a boolean", "true or false"),
        ({"brand": "b" * 201}, "brand", "longer than 200", "shorten"),
        ({"slide": 2.5}, "slide", "not text", "text"),
    ],
)
def test_invalid_value(
    overrides: dict[str, object], field: str, reason_part: str, fix_part: str
) -> None:
    error = only_error(**overrides)
    assert error.field == field
    assert reason_part in error.reason
    assert fix_part in error.fix


def test_identify_requires_user_id() -> None:
    found = errors(type="identify", user_id="", anonymous_id="a-1")
    assert [(e.field, e.reason) for e in found] == [("user_id", "is required for an identify row")]


def test_all_errors_of_a_row_are_collected() -> None:
    found = errors(
        message_id="",
        user_id="npi:1",
        channel="fax",
        action="",
        timestamp="soon",
        market="ZZ",
        properties="[]",
        synthetic="x",
    )
    assert [e.field for e in found] == [
        "message_id",
        "user_id",
        "channel",
        "action",
        "timestamp",
        "properties",
        "market",
        "synthetic",
    ]
    assert {e.row for e in found} == {9}


def test_error_shows_the_value() -> None:
    assert only_error(channel="fax").value == "fax"


# --- columns ----------------------------------------------------------------------------------


def test_event_columns() -> None:
    assert check_event_columns(EVENT_COLUMNS) == []
    [unknown] = check_event_columns([*EVENT_COLUMNS, "timestmap"], file="e.csv")
    assert (unknown.field, unknown.reason, unknown.file) == ("timestmap", "unknown column", "e.csv")
    assert "rename it to timestamp" in unknown.fix
    missing = check_event_columns(["channel", "action"])
    assert [e.field for e in missing] == ["message_id", "timestamp", "user_id"]


def test_event_columns_without_required_for_ndjson() -> None:
    assert check_event_columns(["message_id", "anonymous_id"], required=False) == []
    assert [e.field for e in check_event_columns(["userId"], required=False)] == ["userId"]


# --- tables -----------------------------------------------------------------------------------


def test_validate_event_table_numbers_rows() -> None:
    stamp = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    table = pa.table(
        {
            "message_id": ["a", "b", "c"],
            "user_id": ["npi:1234567893", "npi:1234567890", None],
            "anonymous_id": [None, None, "anon-1"],
            "channel": ["website", "website", "website"],
            "action": ["visited", "visited", "visited"],
            "timestamp": pa.array([stamp] * 3, pa.timestamp("us", tz="UTC")),
            "properties": pa.array(
                [{"path": "/a"}, None, {"path": "/c"}], pa.struct([("path", pa.string())])
            ),
            "synthetic": [True, True, False],
        }
    )
    events, problems = validate_event_table(
        table, file="e.parquet", source="import", received_at=RECEIVED, first_row_number=101
    )
    assert [e.message_id for e in events] == ["a", "c"]
    assert events[1].subject == "anon:anon-1"
    assert events[0].payload == {"properties": {"path": "/a"}}
    assert events[0].occurred_at == stamp
    assert [(p.row, p.field) for p in problems] == [(102, "user_id")]


def test_parquet_and_ndjson_files_give_the_same_events(tmp_path: Path) -> None:
    rows = [event_row(message_id=f"m-{i}", synthetic=True) for i in range(5)]
    expected = [validate(row) for row in rows]
    ndjson = tmp_path / "e.ndjson"
    ndjson.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    for path in (ndjson, tmp_path / "e.parquet"):
        got = [validate(row, number) for c in read_chunks(path, 2) for number, row in c.numbered()]
        assert got == expected


# --- properties -------------------------------------------------------------------------------

valid_rows = st.fixed_dictionaries(
    {
        "message_id": st.text("abcdef0123456789-", min_size=1, max_size=40),
        "channel": st.sampled_from([c.value for c in Channel]),
        "action": st.sampled_from([a.value for a in Action]),
        "timestamp": st.datetimes(
            min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2026, 4, 1)
        ).map(lambda d: d.isoformat() + "Z"),
        "anonymous_id": st.text("abcdef0123456789", min_size=1, max_size=20),
        "actor_type": st.sampled_from(["", *(a.value for a in ActorType)]),
        "function": st.sampled_from(["", *(f.value for f in Function)]),
        "market": st.sampled_from(["", "US", "de", "Fr"]),
        "properties": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(
            json.dumps
        ),
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows)
def test_generated_valid_rows_become_events(row: dict[str, object]) -> None:
    result = validate(row)
    assert isinstance(result, LogEvent), result
    assert result.subject == f"anon:{row['anonymous_id']}"
    assert result.channel == row["channel"]
    assert result.payload == {"properties": json.loads(str(row["properties"]))}
    assert result.occurred_at.tzinfo is dt.UTC


scalars = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
    st.dates(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(EVENT_COLUMNS)), scalars))
def test_event_validation_never_raises(overrides: dict[str, object]) -> None:
    result = validate(event_row(**overrides))
    assert isinstance(result, LogEvent) or all(isinstance(e, RowError) for e in result)
