"""Bulk interaction import through the vectorised path: counts, quarantine, row numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from counterpoint.container import Container
from counterpoint.kit.files import read_chunks
from counterpoint.profile.identifiers import npi_is_valid

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


def _npi(n: int) -> str:
    base = f"{912350000 + n:09d}"
    return next(base + d for d in "0123456789" if npi_is_valid(base + d))


def _calls(path: Path, hcps: int, per_hcp: int) -> Path:
    """``hcps`` HCPs with ``per_hcp`` calls each, plus one row with an unknown channel."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for h in range(hcps):
            for c in range(per_hcp):
                writer.writerow([f"c{h}-{c}", f"npi:{_npi(h)}", "f2f_call", "call_completed",
                                 f"2026-11-{10 + c:02d}T09:00:00Z", "B"])  # fmt: skip
        writer.writerow(["bad", f"npi:{_npi(0)}", "carrier_pigeon", "x", "2026-11-20", "B"])
    return path


def _calls_of(container: Container, n: int) -> int:
    hcp_id = container.profiles.find_by_identifier(f"npi:{_npi(n)}")
    assert hcp_id is not None
    engagement = container.profiles.get_hcp(hcp_id)["engagement"]
    return int(engagement["channels"]["f2f_call"]["events"]["90d"])


def test_import_events_updates_profiles_with_the_projector_following(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _calls(tmp_path / "calls.csv", hcps=30, per_hcp=5)
    real = container.ingest.import_file
    monkeypatch.setattr(  # small chunks, so the projector has something to follow
        container.ingest, "import_file", lambda p, **kw: real(p, chunk_rows=20, **kw)
    )
    rows: list[int] = []
    applied: list[int] = []
    report = container.import_events(path, progress=rows.append, profiles=applied.append)
    assert (report.rows, report.accepted, report.quarantined) == (151, 150, 1)
    assert sum(rows) == 151
    assert len(rows) == 8  # one call per chunk landed
    assert sum(applied) == 150  # every accepted event reached the profiles, once
    assert container.projector.position() == container.log.head()
    assert not container.projector.running  # the follower is gone
    assert [_calls_of(container, n) for n in (0, 29)] == [5, 5]


def test_import_events_beside_a_running_projector_leaves_it_running(
    container: Container, tmp_path: Path
) -> None:
    path = _calls(tmp_path / "calls.csv", hcps=3, per_hcp=2)
    container.projector.start()
    try:
        report = container.import_events(path)
        assert report.accepted == 6
        assert container.projector.running
        assert container.projector.position() == container.log.head()
        assert _calls_of(container, 2) == 2
    finally:
        container.projector.stop()


def test_a_failing_profile_update_fails_the_import_and_keeps_the_log(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _calls(tmp_path / "calls.csv", hcps=3, per_hcp=2)

    def broken(progress: object = None) -> int:
        raise RuntimeError("profile store unavailable")

    monkeypatch.setattr(container.projector, "catch_up", broken)
    with pytest.raises(RuntimeError, match="profile store unavailable"):
        container.import_events(path)
    assert container.log.count() == 6  # appended and kept; the projector resumes from there
    monkeypatch.undo()
    assert container.projector.catch_up() == 6
    assert _calls_of(container, 0) == 2
