"""``simulate market`` through the Typer sub-app."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from counterpoint.cli.simulate import app

runner = CliRunner()


def test_market_writes_every_file_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "market"
    result = runner.invoke(
        app,
        [
            "market",
            "--hcps",
            "300",
            "--weeks",
            "6",
            "--seed",
            "5",
            "--out",
            str(out),
            "--duplicates",
            "0.02",
            "--invalid",
            "0.01",
            "--start",
            "2026-01-05",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in (
        "hcps.parquet",
        "hcos.parquet",
        "affiliations.parquet",
        "reps.parquet",
        "consents.parquet",
        "catalog.json",
        "events/part-00000.parquet",
    ):
        assert (out / name).exists(), name
        assert name.split("/")[-1] in result.output or name.startswith("events/")
    for word in ("events/s", "peak memory", "elapsed", "duplicates", "invalid"):
        assert word in result.output
    assert pq.read_metadata(out / "hcps.parquet").num_rows == 300
    events = pq.read_table(out / "events" / "part-00000.parquet")
    first = pc.min(events.column("timestamp")).as_py()
    assert first >= dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    assert json.loads((out / "catalog.json").read_text(encoding="utf-8"))["synthetic"] is True


def test_market_defaults_to_the_data_dir_and_a_fixed_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["market", "--hcps", "50", "--weeks", "2"])
    assert result.exit_code == 0, result.output
    out = tmp_path / ".counterpoint" / "market"
    assert (out / "hcps.parquet").exists()
    catalog = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    assert catalog["start"] == "2026-10-19"


def test_market_rejects_bad_options(tmp_path: Path) -> None:
    bad_start = runner.invoke(
        app, ["market", "--hcps", "10", "--out", str(tmp_path), "--start", "soon"]
    )
    assert bad_start.exit_code == 2
    assert "ISO date" in bad_start.output
    bad_fraction = runner.invoke(
        app, ["market", "--hcps", "10", "--out", str(tmp_path), "--duplicates", "0.9"]
    )
    assert bad_fraction.exit_code == 2
    assert runner.invoke(app, ["market", "--hcps", "0"]).exit_code == 2
