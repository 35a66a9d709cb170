"""A synthetic interaction file in each format, read by ``read_chunks``: the vectorised
conversion stores the same log rows and refuses the same rows as the per-row validator."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from counterpoint.event.arrow import events_to_arrow
from counterpoint.event.bulk import convert_chunk, convert_rows
from counterpoint.event.canonical import LogEvent
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.event.rows import validate_event_row
from counterpoint.kit.files import Chunk, read_chunks
from counterpoint.profile.records import RowError
from counterpoint.simulate.market import MarketConfig, generate_market

RECEIVED = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
Refused = list[tuple[int, list[RowError]]]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One synthetic market's events (5 % invalid, 1 % duplicates) as Parquet, CSV, NDJSON."""
    root = tmp_path_factory.mktemp("bulk")
    generate_market(
        MarketConfig(
            hcps=150, weeks=20, seed=11, out=root / "market", duplicates=0.01, invalid=0.05
        )
    )
    table = pq.read_table(root / "market" / "events" / "part-00000.parquet")
    paths = {kind: root / f"events.{kind}" for kind in ("parquet", "csv", "ndjson")}
    pq.write_table(table, paths["parquet"], row_group_size=1_000)
    rows = table.to_pylist()
    for i, row in enumerate(rows):  # the forms other systems write
        stamp = row["timestamp"]
        if isinstance(stamp, dt.datetime):
            row["timestamp"] = stamp.isoformat() if i % 2 else stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.column_names)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {
                    k: "" if v is None else str(v).lower() if isinstance(v, bool) else v
                    for k, v in row.items()
                }
            )
            if i % 997 == 0:
                fh.write("\n")  # a blank line: row numbers are no longer consecutive
    with paths["ndjson"].open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            if i % 3 == 0 and isinstance(row["properties"], str):
                row["properties"] = json.loads(row["properties"])  # an object, not its text
            fh.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    return paths


def _per_row(chunk: Chunk, file: str) -> tuple[pa.Table, Refused]:
    events: list[LogEvent] = []
    refused: Refused = []
    for number, row in chunk.numbered():
        result = validate_event_row(
            row, row_number=number, file=file, source="import:x", received_at=RECEIVED
        )
        if isinstance(result, LogEvent):
            events.append(result)
        else:
            refused.append((number, result))
    return events_to_arrow(events), refused


def _vectorised(chunk: Chunk, file: str) -> tuple[pa.Table, Refused]:
    if chunk.table is not None:
        table, invalid = convert_chunk(
            chunk.table,
            file=file,
            source="import:x",
            received_at=RECEIVED,
            first_row_number=chunk.first_row_number,
            row_numbers=chunk.row_numbers,
        )
    else:
        table, invalid = convert_rows(
            chunk.rows,
            chunk.columns,
            file=file,
            source="import:x",
            received_at=RECEIVED,
            first_row_number=chunk.first_row_number,
            row_numbers=chunk.row_numbers,
        )
    return table, [(number, errors) for number, _, errors in invalid]


@pytest.mark.parametrize("kind", ["parquet", "csv", "ndjson"])
def test_vectorised_import_stores_what_the_row_validator_stores(
    files: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    path = files[kind]
    logs = {name: DuckDBEventLog(tmp_path / f"{name}.duckdb") for name in ("rows", "bulk")}
    refused: dict[str, Refused] = {"rows": [], "bulk": []}
    try:
        for chunk in read_chunks(path, chunk_rows=700):
            for name, convert in (("rows", _per_row), ("bulk", _vectorised)):
                table, problems = convert(chunk, path.name)
                refused[name].extend(problems)
                logs[name].append_arrow(table)
        assert refused["bulk"] == refused["rows"]
        assert len(refused["rows"]) > 100
        stored = {name: log.read_after(0, 1_000_000).to_pylist() for name, log in logs.items()}
        assert len(stored["rows"]) > 5_000
        assert stored["bulk"] == stored["rows"]
    finally:
        for log in logs.values():
            log.close()
