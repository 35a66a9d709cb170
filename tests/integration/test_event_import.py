"""Bulk interaction import through the vectorised path: counts, quarantine, row numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from counterpoint.container import Container
from counterpoint.kit.files import read_chunks

HEADER = ["message_id", "user_id", "channel", "action", "timestamp", "brand"]


def _rows() -> list[list[str]]:
    rows = []
    for i in range(25):
        channel = "carrier_pigeon" if i in (3, 17) else "f2f_call"
        rows.append(
            [f"m{i}", "npi:1234567893", channel, "call_completed", "2026-11-20T09:00:00Z", "B"]
        )
    rows.append(["m5", "npi:1234567893", "f2f_call", "call_completed", "2026-11-20T09:00:00Z", "B"])
    return rows


def test_csv_import_counts_and_row_numbers_across_chunks(
    container: Container, tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_rows())
    report = container.ingest.import_file(path, chunk_rows=7)
    assert (report.rows, report.accepted, report.duplicates, report.quarantined) == (26, 23, 1, 2)
    # line 1 is the header: data row i sits on line i + 2
    assert sorted({e.row for e in report.errors}) == [5, 19]
    assert {e.field for e in report.errors} == {"channel"}
    assert container.log.count() == 23


def test_parquet_import_matches_csv(container: Container, tmp_path: Path) -> None:
    rows = _rows()
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(HEADER)})
    path = tmp_path / "calls.parquet"
    pq.write_table(table, path)
    report = container.ingest.import_file(path, chunk_rows=7)
    assert (report.accepted, report.duplicates, report.quarantined) == (23, 1, 2)
    assert sorted({e.row for e in report.errors}) == [4, 18]
    again = container.ingest.import_file(path)
    assert (again.accepted, again.duplicates) == (0, 24)


def test_a_lone_surrogate_refuses_its_row_not_the_import(
    container: Container, tmp_path: Path
) -> None:
    good = '{"message_id": "ok", "user_id": "npi:1234567893", "channel": "f2f_call", '
    good += '"action": "call_completed", "timestamp": "2026-11-20T09:00:00Z"}'
    lone = good.replace('"ok"', '"bad\\ud800"')
    inside = good.replace('"ok"', '"props"').replace(
        '"timestamp"', '"properties": "{\\"note\\": \\"x\\\\ud800\\"}", "timestamp"'
    )
    path = tmp_path / "calls.ndjson"
    path.write_text("\n".join([good, lone, inside]) + "\n")
    report = container.ingest.import_file(path)
    assert (report.rows, report.accepted, report.quarantined) == (3, 1, 2)
    assert container.log.count() == 1


def test_ndjson_read_columnar_or_by_line_gives_the_same_result(
    container: Container, tmp_path: Path
) -> None:
    rows = _rows()
    lines = [json.dumps(dict(zip(HEADER, r, strict=True))) for r in rows]
    plain = tmp_path / "plain.ndjson"
    plain.write_text("\n".join(lines) + "\n")
    first = container.ingest.import_file(plain, chunk_rows=7)
    # a blank line sends the same content through the line-by-line reader
    gappy = tmp_path / "gappy.ndjson"
    gappy.write_text("\n".join([*lines[:10], "", *lines[10:]]) + "\n")
    second = container.ingest.import_file(gappy, chunk_rows=7)
    assert all(c.table is not None for c in read_chunks(plain, chunk_rows=7))
    assert all(c.table is None for c in read_chunks(gappy, chunk_rows=7))
    assert (first.accepted, first.duplicates, first.quarantined) == (23, 1, 2)
    assert (second.accepted, second.duplicates, second.quarantined) == (0, 24, 2)
    assert sorted({e.row for e in first.errors}) == [4, 18]
    assert sorted({e.row for e in second.errors}) == [4, 19]
