"""Chunked readers for CSV, Parquet and NDJSON import files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from counterpoint.errors import ValidationFailedError
from counterpoint.kit.files import Chunk, count_rows, detect_format, read_chunks
from counterpoint.profile.records import HcpRecord
from counterpoint.profile.validation import check_columns, validate_hcp_row


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def numbered(path: Path, chunk_rows: int = 50_000) -> list[tuple[int, dict[str, object]]]:
    return [pair for chunk in read_chunks(path, chunk_rows) for pair in chunk.numbered()]


def bad_lines(path: Path, chunk_rows: int = 50_000) -> list[tuple[int, str]]:
    return [bad for chunk in read_chunks(path, chunk_rows) for bad in chunk.bad_lines]


def unreadable(path: Path) -> ValidationFailedError:
    with pytest.raises(ValidationFailedError) as info:
        for _ in read_chunks(path):
            pass
    error = info.value
    assert str(path) in error.detail
    assert error.fix
    assert error.extra["file"] == str(path)
    return error


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.ndjson", "ndjson"),
        ("dir.v2/a.jsonl", "ndjson"),
    ],
)
def test_detect_format(name: str, kind: str) -> None:
    assert detect_format(Path(name)) == kind
    assert detect_format(name) == kind


@pytest.mark.parametrize("name", ["a.xlsx", "a", "a.json", "a.csv.gz"])
def test_unknown_format_names_the_file_and_the_fix(name: str) -> None:
    with pytest.raises(ValidationFailedError) as info:
        detect_format(name)
    assert name in info.value.detail
    assert info.value.fix is not None
    assert ".csv" in info.value.fix


# --- counting ---------------------------------------------------------------------------------


def test_count_rows(tmp_path: Path) -> None:
    assert count_rows(write(tmp_path / "a.csv", "a,b\n1,2\n3,4\n")) == 2
    assert count_rows(write(tmp_path / "b.csv", "a,b\n1,2\n3,4")) == 2
    assert count_rows(write(tmp_path / "c.csv", "a,b\n")) == 0
    assert count_rows(write(tmp_path / "d.ndjson", '{"a":1}\n{"a":2}\n{"a":3}')) == 3
    pq.write_table(pa.table({"a": list(range(7))}), tmp_path / "e.parquet", row_group_size=3)
    assert count_rows(tmp_path / "e.parquet") == 7


def test_count_rows_of_unreadable_file_is_none(tmp_path: Path) -> None:
    assert count_rows(write(tmp_path / "a.parquet", "not parquet")) is None
    assert count_rows(tmp_path / "missing.csv") is None
    assert count_rows(tmp_path / "a.xlsx") is None


# --- CSV --------------------------------------------------------------------------------------


def test_csv_values_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "npi,decile,flag,name\n00123,7,true,\n1.50,,False,Zoë\n")
    [chunk] = read_chunks(path)
    assert chunk.columns == ["npi", "decile", "flag", "name"]
    assert chunk.rows == [
        {"npi": "00123", "decile": "7", "flag": "true", "name": ""},
        {"npi": "1.50", "decile": "", "flag": "False", "name": "Zoë"},
    ]
    assert chunk.first_row_number == 2
    assert chunk.table is None
    assert chunk.bad_lines == []


def test_csv_null_words_and_quotes_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'a,b\nNULL,"NA"\n"",N/A\n')
    assert [row for _, row in numbered(path)] == [
        {"a": "NULL", "b": "NA"},
        {"a": "", "b": "N/A"},
    ]


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfnpi,market\r\n1234567893,US\r\n")
    [chunk] = read_chunks(path)
    assert chunk.columns == ["npi", "market"]
    assert chunk.rows == [{"npi": "1234567893", "market": "US"}]


def test_csv_row_numbers_across_chunks(tmp_path: Path) -> None:
    lines = "".join(f"{i},v{i}\n" for i in range(10))
    path = write(tmp_path / "a.csv", "id,value\n" + lines)
    chunks = list(read_chunks(path, chunk_rows=3))
    assert [len(c.rows) for c in chunks] == [3, 3, 3, 1]
    assert [c.first_row_number for c in chunks] == [2, 5, 8, 11]
    pairs = [pair for c in chunks for pair in c.numbered()]
    assert [(n, row["id"]) for n, row in pairs] == [(i + 2, str(i)) for i in range(10)]


def test_csv_blank_bad_and_multiline_rows_keep_line_numbers(tmp_path: Path) -> None:
    text = (
        "a,b\n"  # 1
        '1,"two\nlines"\n'  # 2-3
        "2,x,extra\n"  # 4: too many fields
        "\n"  # 5: blank
        "3,y\n"  # 6
        "4\n"  # 7: too few fields
        '5,"three\r\nline\nvalue"\n'  # 8-10
        "6,z\n"  # 11
    )
    path = write(tmp_path / "a.csv", text)
    for chunk_rows in (1, 2, 100):
        pairs = numbered(path, chunk_rows)
        assert [(n, row["a"]) for n, row in pairs] == [(2, "1"), (6, "3"), (8, "5"), (11, "6")]
        assert bad_lines(path, chunk_rows) == [
            (4, "has 3 fields where the header has 2"),
            (7, "has 1 field where the header has 2"),
        ]


def test_csv_bad_last_line_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,b\n1,2\n3\n")
    chunks = list(read_chunks(path, chunk_rows=1))
    assert [row for c in chunks for row in c.rows] == [{"a": "1", "b": "2"}]
    assert [bad for c in chunks for bad in c.bad_lines] == [
        (3, "has 1 field where the header has 2")
    ]


def test_csv_header_only_gives_one_empty_chunk(tmp_path: Path) -> None:
    [chunk] = read_chunks(write(tmp_path / "a.csv", "npi,first_name\n"))
    assert chunk.columns == ["npi", "first_name"]
    assert chunk.rows == []
    assert chunk.first_row_number == 2


def test_csv_large_file_in_several_blocks(tmp_path: Path) -> None:
    rows = 60_000
    body = "".join(f"{i:06d},{'x' * 80}\n" for i in range(rows))
    path = write(tmp_path / "big.csv", "id,pad\n" + body)
    chunks = list(read_chunks(path, chunk_rows=25_000))
    assert [len(c.rows) for c in chunks] == [25_000, 25_000, 10_000]
    assert [c.first_row_number for c in chunks] == [2, 25_002, 50_002]
    assert chunks[2].rows[-1]["id"] == f"{rows - 1:06d}"
    assert all(c.row_numbers is None for c in chunks)


def test_empty_csv_is_unreadable(tmp_path: Path) -> None:
    assert "empty" in unreadable(write(tmp_path / "a.csv", "")).detail
    assert "empty" in unreadable(write(tmp_path / "b.csv", "\n\n")).detail


def test_binary_garbage_as_csv_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(bytes(range(256)) * 8)
    assert "binary" in unreadable(path).detail


def test_parquet_named_csv_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    unreadable(path)


def test_non_utf8_csv_is_unreadable(tmp_path: Path) -> None:
    header = tmp_path / "a.csv"
    header.write_bytes("prénom,nom\nA,B\n".encode("latin-1"))
    assert "UTF-8" in unreadable(header).detail
    body = tmp_path / "b.csv"
    body.write_bytes("a,b\n1,café\n".encode("latin-1"))
    error = unreadable(body)
    assert "UTF-8" in error.detail
    assert error.fix == "save it as UTF-8 CSV"


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    assert "no such file" in unreadable(tmp_path / "nope.csv").detail


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        read_chunks(write(tmp_path / "a.csv", "a\n1\n"), chunk_rows=0)


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_values_are_typed_and_table_is_kept(tmp_path: Path) -> None:
    stamp = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    table = pa.table(
        {
            "npi": ["00123", None],
            "decile": pa.array([7, None], pa.int64()),
            "flag": [True, False],
            "at": pa.array([stamp, None], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    [chunk] = read_chunks(tmp_path / "a.parquet")
    assert chunk.columns == ["npi", "decile", "flag", "at"]
    assert chunk.rows == [
        {"npi": "00123", "decile": 7, "flag": True, "at": stamp},
        {"npi": None, "decile": None, "flag": False, "at": None},
    ]
    assert chunk.table is not None
    assert chunk.table.equals(table)


def test_parquet_nanosecond_timestamps_become_datetimes(tmp_path: Path) -> None:
    nanos = 1_772_357_400_123_456_789
    table = pa.table(
        {
            "utc": pa.array([nanos], pa.timestamp("ns", tz="UTC")),
            "naive": pa.array([nanos], pa.timestamp("ns")),
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    [chunk] = read_chunks(tmp_path / "a.parquet")
    row = chunk.rows[0]
    utc = row["utc"]
    assert isinstance(utc, dt.datetime)
    assert utc.utcoffset() == dt.timedelta(0)
    assert utc.replace(tzinfo=None) == row["naive"] == dt.datetime(2026, 3, 1, 9, 30, 0, 123456)
    assert chunk.table is not None
    assert chunk.table.schema.field("utc").type == pa.timestamp("ns", tz="UTC")


def test_parquet_row_numbers_across_chunks_and_row_groups(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "a.parquet", row_group_size=4)
    chunks = list(read_chunks(tmp_path / "a.parquet", chunk_rows=3))
    assert [len(c.rows) for c in chunks] == [3, 3, 3, 1]
    assert [c.first_row_number for c in chunks] == [1, 4, 7, 10]
    assert [(n, row["id"]) for c in chunks for n, row in c.numbered()] == [
        (i + 1, i) for i in range(10)
    ]
    assert all(c.table is not None and c.table.num_rows == len(c.rows) for c in chunks)


def test_empty_parquet_gives_one_empty_chunk(tmp_path: Path) -> None:
    schema = pa.schema([("npi", pa.string()), ("market", pa.string())])
    pq.write_table(schema.empty_table(), tmp_path / "a.parquet")
    [chunk] = read_chunks(tmp_path / "a.parquet")
    assert chunk.columns == ["npi", "market"]
    assert chunk.rows == []
    assert chunk.table is not None
    assert chunk.table.num_rows == 0


def test_truncated_parquet_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "Parquet" in unreadable(path).detail


def test_csv_named_parquet_is_unreadable(tmp_path: Path) -> None:
    unreadable(write(tmp_path / "a.pq", "a,b\n1,2\n"))


def test_parquet_with_corrupt_page_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": [f"value-{i}" for i in range(5000)]}), path, compression="none")
    data = bytearray(path.read_bytes())
    data[100:3000] = b"\xff" * 2900
    path.write_bytes(bytes(data))
    unreadable(path)


# --- NDJSON -----------------------------------------------------------------------------------


def test_ndjson_rows_bad_lines_and_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps({"message_id": "m1", "properties": {"a": [1, 2]}}),  # 1
        "",  # 2: blank
        "{not json",  # 3
        "[1, 2]",  # 4
        json.dumps({"message_id": "m2", "user_id": "npi:1234567893"}),  # 5
        json.dumps({"message_id": "m3"}),  # 6
    ]
    path = write(tmp_path / "a.ndjson", "\n".join(lines) + "\n")
    for chunk_rows in (1, 2, 100):
        pairs = numbered(path, chunk_rows)
        assert [(n, row["message_id"]) for n, row in pairs] == [(1, "m1"), (5, "m2"), (6, "m3")]
        bad = bad_lines(path, chunk_rows)
        assert [n for n, _ in bad] == [3, 4]
        assert bad[0][1].startswith("is not valid JSON")
        assert bad[1][1] == "is a JSON list, not an object"
    [chunk] = read_chunks(path)
    assert chunk.columns == ["message_id", "properties", "user_id"]
    assert chunk.rows[0]["properties"] == {"a": [1, 2]}
    assert chunk.row_numbers == [1, 5, 6]


def test_ndjson_row_numbers_across_chunks(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", "".join(json.dumps({"i": i}) + "\n" for i in range(7)))
    chunks = list(read_chunks(path, chunk_rows=3))
    assert [c.first_row_number for c in chunks] == [1, 4, 7]
    assert [(n, row["i"]) for c in chunks for n, row in c.numbered()] == [
        (i + 1, i) for i in range(7)
    ]


def test_ndjson_invalid_utf8_line_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    assert bad_lines(path) == [(2, "is not UTF-8 text")]


def test_ndjson_that_is_no_json_at_all_is_unreadable(tmp_path: Path) -> None:
    error = unreadable(write(tmp_path / "a.ndjson", "npi,market\n1234567893,US\n"))
    assert "no line is a JSON object" in error.detail


def _objects(count: int, start: int = 0) -> list[str]:
    return [json.dumps({"message_id": f"m{i}", "n": i}) for i in range(start, start + count)]


def test_plain_ndjson_is_read_columnar_in_one_pass(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ndjson", "\n".join(_objects(5)) + "\n")
    chunks = list(read_chunks(path, chunk_rows=2))
    assert all(c.table is not None for c in chunks)
    assert [(n, row["n"]) for c in chunks for n, row in c.numbered()] == [
        (i + 1, i) for i in range(5)
    ]


@pytest.mark.parametrize(
    ("odd_line", "why"),
    [
        ("", "a blank line (Arrow would skip it)"),
        ("   ", "a line of blanks"),
        ('{"message_id": "x1", "n": 90} {"message_id": "x2", "n": 91}', "two objects"),
        ('{"message_id": "x1", "n": 90}{"message_id": "x2", "n": 91}', "two objects, no blank"),
        ('{"message_id": "x1",\n "n": 90}', "one object over two lines"),
        ('{"message_id": "x1", "n": 90, "t": "\\ud83d"}', "half a character"),
    ],
)
def test_ndjson_that_arrow_would_count_differently_keeps_line_numbers(
    tmp_path: Path, odd_line: str, why: str
) -> None:
    """Row numbers stay line numbers: such files are read line by line, never by Arrow."""
    lines = [*_objects(3), odd_line, *_objects(3, start=3)]
    path = write(tmp_path / "a.ndjson", "\n".join(lines) + "\n")
    chunks = list(read_chunks(path))
    assert all(c.table is None for c in chunks), why
    pairs = [(n, row.get("n")) for c in chunks for n, row in c.numbered()]
    after = 6 if "\n" in odd_line else 5
    assert pairs[:3] == [(1, 0), (2, 1), (3, 2)]
    assert pairs[-3:] == [(after, 3), (after + 1, 4), (after + 2, 5)], why


def test_ndjson_block_that_does_not_read_is_read_line_by_line_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks before it stay columnar; from the first line of the failing block on, the
    rows are read line by line with their own line numbers and the bad line is named."""
    monkeypatch.setattr("counterpoint.kit.files._JSON_BLOCK_BYTES", 4096)
    first = _objects(400)  # several blocks of plain rows
    turned = json.dumps({"message_id": "m400", "n": "four hundred"})  # n changes type
    lines = [*first, turned, "[1, 2]}", *_objects(50, start=401)]
    path = write(tmp_path / "a.ndjson", "\n".join(lines) + "\n")
    chunks = list(read_chunks(path, chunk_rows=100))
    assert chunks[0].table is not None
    assert chunks[-1].table is None
    pairs = [(n, row["message_id"]) for c in chunks for n, row in c.numbered()]
    expected = [(i + 1, f"m{i}") for i in range(401)] + [(i + 2, f"m{i}") for i in range(401, 451)]
    assert pairs == expected
    assert [n for c in chunks for n, _ in c.bad_lines] == [402]


def test_binary_ndjson_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\x00\x01\x02" * 100)
    unreadable(path)


def test_chunk_numbered_uses_explicit_numbers() -> None:
    chunk = Chunk(["a"], [{"a": 1}, {"a": 2}], 3, row_numbers=[3, 9])
    assert list(chunk.numbered()) == [(3, {"a": 1}), (9, {"a": 2})]


# --- round trip: a valid HCP row through CSV and Parquet --------------------------------------

HCP = {
    "npi": "1234567893",
    "crm_id": "00123",
    "email": "Jane.Doe@Clinic.org",
    "first_name": "Zoë",
    "last_name": "O'Neil, Jr.",
    "specialty": "cardiology",
    "market": "DE",
    "potential_decile": "7",
    "segments": "a;b",
    "adoption_stage": "cardiozen:trial",
    "preferred_language": "de",
    "time_zone": "Europe/Berlin",
    "synthetic": "true",
}


def validated(path: Path) -> list[HcpRecord]:
    records = []
    for chunk in read_chunks(path):
        assert check_columns(chunk.columns, "hcps", file=path.name) == []
        for number, row in chunk.numbered():
            record = validate_hcp_row(row, row_number=number, file=path.name)
            assert isinstance(record, HcpRecord), record
            records.append(record)
    return records


def test_round_trip_through_csv_and_parquet(tmp_path: Path) -> None:
    direct = validate_hcp_row(HCP, row_number=2, file="direct")
    assert isinstance(direct, HcpRecord)
    csv_path = tmp_path / "hcps.csv"
    pa_csv.write_csv(pa.table({k: [v] for k, v in HCP.items()}), csv_path)
    typed = {
        **{k: [v] for k, v in HCP.items()},
        "potential_decile": pa.array([7], pa.int8()),
        "segments": pa.array([["a", "b"]], pa.list_(pa.string())),
        "adoption_stage": pa.array([[("cardiozen", "trial")]], pa.map_(pa.string(), pa.string())),
        "synthetic": [True],
    }
    pq.write_table(pa.table(typed), tmp_path / "hcps.parquet")
    assert validated(csv_path) == validated(tmp_path / "hcps.parquet") == [direct]
