"""The vectorised validator agrees with ``validate_event_row``: same rows refused, same errors,
same events (as ``events_to_arrow`` writes them) for the rows accepted."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from counterpoint.event import bulk
from counterpoint.event.arrow import LOG_SCHEMA, events_to_arrow
from counterpoint.event.bulk import convert_chunk, convert_rows
from counterpoint.event.canonical import Action, ActorType, Channel, Function, LogEvent
from counterpoint.event.rows import EVENT_COLUMNS, validate_event_row
from counterpoint.profile.records import RowError

RECEIVED = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
FILE = "events.x"
SOURCE = "import:events.x"
COLUMNS = list(EVENT_COLUMNS)

# --- the reference: the per-row validator -----------------------------------------------------


def expected(
    rows: Sequence[Mapping[str, object]], numbers: Sequence[int]
) -> tuple[list[LogEvent], list[tuple[int, list[RowError]]]]:
    events: list[LogEvent] = []
    refused: list[tuple[int, list[RowError]]] = []
    for number, row in zip(numbers, rows, strict=True):
        result = validate_event_row(
            row, row_number=number, file=FILE, source=SOURCE, received_at=RECEIVED
        )
        if isinstance(result, LogEvent):
            events.append(result)
        else:
            refused.append((number, result))
    return events, refused


class _Disagreements(logging.Handler):
    """Collects the warnings bulk logs when the per-row validator accepts a row it refused."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


Converted = tuple[pa.Table, list[tuple[int, dict[str, object], list[RowError]]]]


def check_agreement(
    run: Callable[[], Converted],
    rows: Sequence[Mapping[str, object]],
    numbers: Sequence[int],
    disagreements: _Disagreements,
) -> Converted:
    disagreements.messages.clear()  # the fixture outlives one Hypothesis example
    events, refused = expected(rows, numbers)
    try:
        reference = events_to_arrow(events)
    except UnicodeEncodeError:  # a lone surrogate in an accepted row: the log cannot store it
        with pytest.raises(UnicodeEncodeError):
            run()
        return events_to_arrow([]), []
    table, invalid = got = run()
    assert disagreements.messages == []
    assert [(n, errors) for n, _, errors in invalid] == refused
    assert table.schema == LOG_SCHEMA
    assert table.to_pylist() == reference.to_pylist()
    by_number = dict(zip(numbers, rows, strict=True))
    for number, row, _ in invalid:
        assert row == by_number[number]
    return got


@pytest.fixture
def disagreements() -> Iterator[_Disagreements]:
    handler = _Disagreements()
    logger = logging.getLogger(bulk.__name__)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def as_table(rows: Sequence[Mapping[str, object]]) -> pa.Table:
    """Parquet-like: strings, a UTC timestamp column and a boolean ``synthetic``."""
    types = {name: pa.string() for name in COLUMNS}
    types["timestamp"] = pa.timestamp("us", tz="UTC")
    types["synthetic"] = pa.bool_()
    return pa.table({name: pa.array([row[name] for row in rows], types[name]) for name in COLUMNS})


# --- values: valid and invalid in every way the validator checks ------------------------------
# Every field has a pool of good values (in all the forms the validator accepts) and a wild
# pool (good and bad). A row takes a few fields from the wild pools, so that rows are valid
# and invalid in about equal numbers and each kind of problem shows up alone and combined.

MISSING = ["", " ", "\t", "\u3000"]
PADDING = ["", "", " ", "\t", "\x1c", "\x85", "\xa0", "\u2007", "\u3000", "\n"]


def padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(PADDING), values, st.sampled_from(PADDING)).map("".join)


def code_values(members: Sequence[str]) -> st.SearchStrategy[str]:
    exact = st.sampled_from(list(members))
    return st.one_of(exact, exact, exact.map(str.upper), padded(exact))


GOOD_IDS = [
    "npi:1234567893",
    "1234567893",
    " npi:1234567893 ",
    "NPI:1234567893",
    "Jane.Doe@Clinic.org",
    "email:jane@clinic.example",
    "+1 415 555 0100",
    "phone:+14155550100",
    "crm:A-1",
    "A-1",
    "national:fr-10001",
    "anon:a-1",
]
BAD_IDS = ["npi:1234567890", "npi:1", "email:bad", "phone:12", "national:10001", "has space"]
BAD_IDS += ["x" * 201, "x" * 129, "vendor:", "\u3000"]
stamps = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
past = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2026, 3, 30))
GOOD_ZONES = ["Z", "Z", "+00:00", "-00:00", "+01:00", "-05:30", "+23:59", "+0100", "+01:60"]
ODD_TIMES = [
    "",
    " ",
    "yesterday",
    "2026-03-01",
    "2026-03-01T10:00:00",
    "2026-02-29T10:00:00Z",
    "2024-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-04-31T10:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T10:60:00Z",
    "2026-03-01T10:00:60Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+01:00",
    "0001-01-01T00:30:00-01:00",
    "9999-12-31T23:59:59.999999Z",
    "2026-04-02T11:59:59.999999Z",
    "2026-04-02T12:00:00Z",
    "2026-04-02T12:00:00.000001Z",
    "2026-04-02T13:00:00+01:00",
    "2026-04-02T13:00:00.000001+01:00",
    "2026-03-01T10:00:00.Z",
    "2026-03-01T10:00:00.1234567Z",
    "2026-03-01T10:00:00+24:00",
    "2026-03-01T10:00:00+1:00",
    "2026-03-01T10:00:00+01",
    "2026-03-01T10:00:00ZZ",
    "２０２６-03-01T10:00:00Z",
    "20260301T100000Z",
]


@st.composite
def iso_texts(draw: st.DrawFn, moments: st.SearchStrategy[dt.datetime], zones: list[str]) -> str:
    stamp = draw(moments)
    digits = draw(st.sampled_from([0, 0, 1, 2, 3, 6, 6, 7]))
    separator = draw(st.sampled_from(["T", "T", " ", "t"]))
    text = f"{stamp.year:04d}" + stamp.strftime(f"-%m-%d{separator}%H:%M:%S")
    if digits:
        text += "." + f"{stamp.microsecond:06d}{draw(st.integers(0, 9))}"[:digits]
    return text + draw(st.sampled_from(zones))


good_times = st.one_of(iso_texts(past, GOOD_ZONES), padded(iso_texts(past, GOOD_ZONES)))
wild_times = st.one_of(
    good_times,
    iso_texts(stamps, [*GOOD_ZONES, "", "+24:00", "-23:59"]),
    iso_texts(st.datetimes(min_value=dt.datetime(2026, 3, 31)), GOOD_ZONES),
    st.sampled_from(ODD_TIMES),
)


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(
            [0.0, -0.0, 1.0, 0.5, 0.0001, 0.00001, 1e16, 1e15, 123.456, 1234567.1234567]
        ),
        st.text(max_size=6),
        st.sampled_from(
            ['"', "\\", "\n", "\x00", "\x7f", "/", "é", "\u2028", "\U0001f600", ":", ","]
        ),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def json_objects(draw: st.DrawFn) -> str:
    """JSON objects written every which way."""
    value = draw(st.dictionaries(st.text(max_size=4), json_values(), max_size=4))
    separators = draw(st.sampled_from([(",", ":"), (",", ":"), (", ", ": "), (",", ": ")]))
    return json.dumps(value, separators=separators, ensure_ascii=draw(st.booleans()))


ODD_JSON = [
    "{oops",
    "[1, 2]",
    "5",
    "null",
    '"text"',
    '{"a":1,"a":2}',
    '{"a":1,"b":2,"a":3}',
    '{"a":[1,2],"b":"x,\\"a\\":1","b":0}',
    '{"k":",\\":","k":2}',
    '{"a":10.05,"a":1}',
    '{"a":1.50}',
    '{"a":1.5}',
    '{"a":1e5}',
    '{"a":1E5}',
    '{"a":-0}',
    '{"a":-0.0}',
    '{"a":0.00001}',
    '{"a":0.0001}',
    '{"a":01}',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"\\u00e9":1}',
    '{"a":"\\/"}',
    '{"a":"\\ud800"}',
    '{"a":"\x01"}',
    '{"a":"\x7f"}',
    '{"a":{"b":1,"b":2}}',
    '{"a":[{"b":1}]}',
    '{"a":[[1]]}',
    '{"a":1}x',
    '{"a":' + "9" * 18 + "}",
    '{"a":' + "9" * 19 + "}",
    '{"a":' + "9" * 5000 + "}",
    '{"a":"' + "[" * 10 + '"}',
    "[" * 3000 + "]" * 3000,
]
good_json = st.one_of(st.sampled_from(["", "{}"]), json_objects(), padded(json_objects()))
wild_json = st.one_of(good_json, st.sampled_from(["", " ", *ODD_JSON]))
good_texts = st.one_of(
    st.sampled_from(["", "", "cardiozen", " C-9 ", "b" * 200, "é" * 200, "\x85b"]),
    st.text(max_size=8).filter(lambda t: len(t.strip()) <= 200),
)
FIELDS: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "message_id": (
        st.one_of(
            st.text("abcdef0123456789-", min_size=1, max_size=20),
            padded(st.text("abc-", min_size=1, max_size=5)),
            st.sampled_from(["m" * 200, "é" * 200, "\u3000m\u3000", "m\u200b"]),
        ),
        st.sampled_from([*MISSING, "m" * 201, "é" * 201, " " + "m" * 200 + " "]),
    ),
    "type": (
        st.sampled_from(["", "", "track", "identify", "IDENTIFY", " Track "]),
        st.sampled_from([*MISSING, "page", "alias"]),
    ),
    "user_id": (st.sampled_from(["", *GOOD_IDS]), st.sampled_from([*MISSING, *BAD_IDS])),
    "anonymous_id": (
        st.one_of(
            st.sampled_from(["", "", "cookie-1", " 3f2c-77 "]),
            st.text("abcdef0123456789-", min_size=1, max_size=12),
        ),
        st.sampled_from([*MISSING, "has space", "a" * 129, "a" * 201, "é"]),
    ),
    "channel": (code_values([c.value for c in Channel]), st.sampled_from([*MISSING, "fax"])),
    "action": (code_values([a.value for a in Action]), st.sampled_from([*MISSING, "liked"])),
    "event": (good_texts, st.sampled_from(["b" * 201, "é" * 201])),
    "timestamp": (good_times, wild_times),
    "brand": (good_texts, st.sampled_from(["b" * 201, " " + "b" * 200 + " "])),
    "content_id": (good_texts, st.just("c" * 201)),
    "slide": (good_texts, st.just("s" * 300)),
    "actor_type": (
        code_values(["", *(a.value for a in ActorType)]),
        st.sampled_from([*MISSING, "boss"]),
    ),
    "actor_id": (good_texts, st.just("é" * 201)),
    "function": (
        code_values(["", *(f.value for f in Function)]),
        st.sampled_from([*MISSING, "legal"]),
    ),
    "market": (
        st.sampled_from(["", "", "US", "de", "Fr", " jp ", "\u3000DE"]),
        st.sampled_from(["XX", "Germany", "uk", "D E"]),
    ),
    "properties": (good_json, wild_json),
    "synthetic": (
        st.sampled_from(["", "true", "false", "yes", "No", "0", "1", "TRUE", " "]),
        st.sampled_from(["maybe", "2", "truth"]),
    ),
}
assert list(FIELDS) == COLUMNS
wild_fields = st.one_of(
    st.just(frozenset[str]()),
    st.frozensets(st.sampled_from(COLUMNS), max_size=1),
    st.frozensets(st.sampled_from(COLUMNS), max_size=3),
)


@st.composite
def text_rows(draw: st.DrawFn) -> dict[str, object]:
    """A CSV-like row: every value a string ("" when missing)."""
    wild = draw(wild_fields)
    return {name: draw(FIELDS[name][name in wild]) for name in COLUMNS}


OPTIONAL = [name for name, required in EVENT_COLUMNS.items() if not required]


@st.composite
def typed_rows(draw: st.DrawFn) -> dict[str, object]:
    """A Parquet-like row: missing values None, a UTC timestamp, a boolean flag."""
    row: dict[str, object] = draw(text_rows())
    for name in draw(st.frozensets(st.sampled_from(OPTIONAL), max_size=4)):
        row[name] = None
    row["timestamp"] = draw(
        st.one_of(
            past.map(lambda d: d.replace(tzinfo=dt.UTC)),
            past.map(lambda d: d.replace(tzinfo=dt.UTC)),
            st.none(),
            stamps.map(lambda d: d.replace(tzinfo=dt.UTC)),
            st.datetimes(min_value=dt.datetime(2026, 3, 30), max_value=dt.datetime(2026, 4, 5)).map(
                lambda d: d.replace(tzinfo=dt.UTC)
            ),
            st.sampled_from(
                [RECEIVED + dt.timedelta(days=1), RECEIVED + dt.timedelta(days=1, microseconds=1)]
            ),
        )
    )
    row["synthetic"] = draw(st.sampled_from([None, True, False]))
    return row


odd_json_values = st.one_of(
    st.none(),
    st.integers(-5, 10**12),
    st.just(1234567893),
    st.integers(2**63, 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), json_values(3), max_size=3),
    st.sampled_from(["\ud800", "a\udfff", " \ud800 "]),
)


@st.composite
def json_rows(draw: st.DrawFn) -> dict[str, object]:
    """An NDJSON-like row: keys may be absent, values of any JSON type."""
    row: dict[str, object] = draw(text_rows())
    for name in draw(st.frozensets(st.sampled_from(COLUMNS), max_size=3)):
        if draw(st.integers(0, 3)) == 0:
            del row[name]
        else:
            row[name] = draw(odd_json_values)
    return row


# --- properties -------------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(rows=st.lists(text_rows(), max_size=25), first=st.integers(1, 10))
def test_text_rows_agree(
    rows: list[dict[str, object]], first: int, disagreements: _Disagreements
) -> None:
    check_agreement(
        lambda: convert_rows(
            rows, COLUMNS, file=FILE, source=SOURCE, received_at=RECEIVED, first_row_number=first
        ),
        rows,
        range(first, first + len(rows)),
        disagreements,
    )


@SETTINGS
@given(rows=st.lists(typed_rows(), max_size=25))
def test_typed_rows_agree(rows: list[dict[str, object]], disagreements: _Disagreements) -> None:
    table = as_table(rows)
    numbers = [3 * i + 7 for i in range(len(rows))]
    check_agreement(
        lambda: convert_chunk(
            table, file=FILE, source=SOURCE, received_at=RECEIVED, row_numbers=numbers
        ),
        table.to_pylist(),
        numbers,
        disagreements,
    )


@SETTINGS
@given(rows=st.lists(json_rows(), max_size=25))
def test_json_rows_agree(rows: list[dict[str, object]], disagreements: _Disagreements) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    check_agreement(
        lambda: convert_rows(rows, columns, file=FILE, source=SOURCE, received_at=RECEIVED),
        rows,
        range(1, len(rows) + 1),
        disagreements,
    )


@SETTINGS
@given(properties=st.lists(wild_json, min_size=1, max_size=30), identify=st.booleans())
def test_payloads_agree(
    properties: list[str], identify: bool, disagreements: _Disagreements
) -> None:
    rows = [
        {
            "message_id": f"m-{i}",
            "type": "identify" if identify else "track",
            "user_id": "npi:1234567893",
            "channel": "website",
            "action": "visited",
            "timestamp": "2026-03-01T09:30:00Z",
            "properties": text,
        }
        for i, text in enumerate(properties)
    ]
    check_agreement(
        lambda: convert_rows(rows, list(rows[0]), file=FILE, source=SOURCE, received_at=RECEIVED),
        rows,
        range(1, len(rows) + 1),
        disagreements,
    )


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 20))
@example(1e16, 0)
@example(0.00001, 0)
def test_plain_decimals_are_written_back_as_read(number: float, places: int) -> None:
    """Any decimal the JSON fast path accepts is its own ``repr``."""
    for text in (repr(number), f"{number:.{places}f}", f"{number:.{places}g}"):
        if re.fullmatch(bulk._J_FLOAT, text):
            assert repr(float(text)) == text


def test_space_characters_are_those_python_strips() -> None:
    python = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
    assert python == bulk._SPACES


# --- fixed examples ---------------------------------------------------------------------------


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = dict.fromkeys(EVENT_COLUMNS, "")
    base |= {
        "message_id": "m-1",
        "user_id": "npi:1234567893",
        "channel": "campaign_email",
        "action": "opened",
        "timestamp": "2026-03-01T09:30:00Z",
    }
    base.update(overrides)
    return base


def convert(rows: list[dict[str, object]]) -> tuple[pa.Table, list[Any]]:
    return convert_rows(rows, list(rows[0]), file=FILE, source=SOURCE, received_at=RECEIVED)


def test_full_track_row_becomes_one_log_row() -> None:
    table, invalid = convert(
        [
            row(
                type="track",
                anonymous_id="cookie-1",
                event="Email Opened",
                brand="cardiozen",
                actor_type="MARKETING",
                function="commercial",
                market="de",
                properties='{"campaign": "spring", "n": 2}',
                synthetic="true",
            )
        ]
    )
    assert invalid == []
    [got] = table.to_pylist()
    assert got == {
        "message_id": "m-1",
        "kind": "track",
        "subject": "npi:1234567893",
        "occurred_at": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        "received_at": RECEIVED,
        "source": SOURCE,
        "channel": "campaign_email",
        "action": "opened",
        "event_name": "Email Opened",
        "anonymous_id": "cookie-1",
        "brand": "cardiozen",
        "content_id": None,
        "slide": None,
        "actor_type": "marketing",
        "actor_id": None,
        "function": "commercial",
        "market": "DE",
        "payload": '{"properties":{"campaign":"spring","n":2}}',
        "synthetic": True,
    }


def test_identify_row_puts_properties_into_traits() -> None:
    table, _ = convert(
        [row(type="identify", channel="", action="", properties='{"specialty":"oncology"}')]
    )
    assert table.column("payload").to_pylist() == ['{"traits":{"specialty":"oncology"}}']
    assert table.column("kind").to_pylist() == ["identify"]


def test_invalid_rows_carry_the_validators_errors_and_row_numbers() -> None:
    rows = [
        row(message_id="a"),
        row(message_id="b", user_id="npi:1234567890"),
        row(message_id="c", channel="fax", timestamp="soon"),
        row(message_id="d", type="identify", user_id="", anonymous_id="x"),
        row(message_id="e"),
    ]
    table, invalid = convert_rows(
        rows,
        list(rows[0]),
        file=FILE,
        source=SOURCE,
        received_at=RECEIVED,
        row_numbers=[2, 3, 5, 8, 9],
    )
    assert table.column("message_id").to_pylist() == ["a", "e"]
    assert [(n, [e.field for e in errors]) for n, _, errors in invalid] == [
        (3, ["user_id"]),
        (5, ["channel", "timestamp"]),
        (8, ["user_id"]),
    ]
    assert invalid[0][1] == rows[1]
    assert all(e.file == FILE for _, _, errors in invalid for e in errors)


def test_parquet_types_nanoseconds_zones_and_dictionaries(disagreements: _Disagreements) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    stamps = [dt.datetime(2026, 3, 1, 10, 30, tzinfo=berlin), None, dt.datetime(2026, 4, 3)]
    table = pa.table(
        {
            "message_id": pa.array(["a", "b", "c"]).dictionary_encode(),
            "user_id": pa.array([1234567893, 1234567890, None], pa.int64()),
            "anonymous_id": pa.array([None, None, "anon-1"], pa.large_string()),
            "channel": ["website"] * 3,
            "action": ["visited"] * 3,
            "timestamp": pa.array(stamps, pa.timestamp("ns", tz="Europe/Berlin")),
            "slide": pa.array([2.5, None, None], pa.float64()),
            "properties": pa.array(
                [{"path": "/a"}, None, {"path": "/c"}], pa.struct([("path", pa.string())])
            ),
            "synthetic": pa.array(["yes", None, "0"]),
        }
    )
    rows = table.cast(
        table.schema.set(
            table.schema.get_field_index("timestamp"),
            pa.field("timestamp", pa.timestamp("us", tz="Europe/Berlin")),
        )
    ).to_pylist()
    got = check_agreement(
        lambda: convert_chunk(table, file=FILE, source=SOURCE, received_at=RECEIVED),
        rows,
        [1, 2, 3],
        disagreements,
    )
    assert got[0].num_rows == 0  # a float slide, a bad NPI, a future timestamp


def test_naive_parquet_timestamps_are_utc(disagreements: _Disagreements) -> None:
    table = pa.table(
        {
            "message_id": ["a"],
            "user_id": ["npi:1234567893"],
            "channel": ["website"],
            "action": ["visited"],
            "timestamp": pa.array([dt.datetime(2026, 3, 1, 9, 30)], pa.timestamp("ms")),
        }
    )
    got = check_agreement(
        lambda: convert_chunk(table, file=FILE, source=SOURCE, received_at=RECEIVED),
        table.to_pylist(),
        [1],
        disagreements,
    )
    assert got[0].column("occurred_at").to_pylist() == [
        dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    ]


def test_missing_columns_and_empty_chunks() -> None:
    table, invalid = convert_rows([], COLUMNS, file=FILE, source=SOURCE, received_at=RECEIVED)
    assert (table.num_rows, table.schema, invalid) == (0, LOG_SCHEMA, [])
    table, invalid = convert_chunk(
        pa.table({"message_id": ["a"]}), file=FILE, source=SOURCE, received_at=RECEIVED
    )
    assert table.num_rows == 0
    assert [e.field for e in invalid[0][2]] == ["user_id", "channel", "action", "timestamp"]


def test_naive_received_at_is_utc() -> None:
    table, _ = convert_rows(
        [row()], COLUMNS, file=FILE, source=SOURCE, received_at=RECEIVED.replace(tzinfo=None)
    )
    assert table.column("received_at").to_pylist() == [RECEIVED]


def test_row_numbers_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="row numbers"):
        convert_rows(
            [row()], COLUMNS, file=FILE, source=SOURCE, received_at=RECEIVED, row_numbers=[]
        )


def test_a_row_the_fast_path_misjudges_is_still_imported_in_order(
    monkeypatch: pytest.MonkeyPatch, disagreements: _Disagreements
) -> None:
    """The safety net: should the vectorised rules refuse a valid row, the row validator's
    event is kept, in file order, and the disagreement is logged."""
    real = bulk._check

    def refuse_second(*args: Any, **kwargs: Any) -> Any:
        checked = real(*args, **kwargs)
        checked.valid[1] = False
        checked.table = pa.concat_tables([checked.table.slice(0, 1), checked.table.slice(2)])
        return checked

    monkeypatch.setattr(bulk, "_check", refuse_second)
    rows = [row(message_id=f"m-{i}") for i in range(3)]
    table, invalid = convert(rows)
    assert invalid == []
    assert table.column("message_id").to_pylist() == ["m-0", "m-1", "m-2"]
    assert len(disagreements.messages) == 1


identifier_texts = st.one_of(
    st.sampled_from([*GOOD_IDS, *BAD_IDS]),
    st.text(st.sampled_from("0123456789"), min_size=9, max_size=11),
    st.text(st.sampled_from("0123456789"), min_size=10, max_size=10).map("npi:".__add__),
    st.tuples(
        st.sampled_from(
            ["", "", "npi:", "email:", "EMAIL:", "crm:", "anon:", "phone:", "+", "x:", "national:"]
        ),
        st.text(st.sampled_from("aZ09@.:+#-_/ é\u3000"), max_size=12),
    ).map("".join),
    st.tuples(
        st.sampled_from(["national:", "national:", "NATIONAL:", "", "vendor:"]),
        st.sampled_from(["FR", "fr", "Fr", "ÉS", "F", "JP1"]),
        st.sampled_from(["-", "", "_"]),
        st.text(st.sampled_from("aZ09.-/_ é"), max_size=70),
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(identifier_texts, min_size=1, max_size=40))
@example(texts=["email:0@..0", "0@..0", "a@b.", "a@.b", "x" * 250 + "@ab.cd"])  # labels, length
def test_identifier_keys_agree(texts: list[str]) -> None:
    for column, rule, fast in (
        ("user_id", bulk._user_rule, bulk._user_fast),
        ("anonymous_id", bulk._anonymous_rule, bulk._anonymous_fast),
    ):
        values = bulk._subjects(bulk._Column(pa.array(texts)), rule, fast)
        got = [tuple(a.to_pylist()[e] for a in values.arrays) for e in values.index]
        assert got == [rule(text) for text in texts], column
