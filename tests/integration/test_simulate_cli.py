"""``simulate market`` through the Typer sub-app, and ``demo`` importing the market's consents
(labelled synthetic in the ledger)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import TEST_ACTOR
from typer.testing import CliRunner

from counterpoint.cli.app import app as main_app
from counterpoint.cli.simulate import app
from counterpoint.consent.importer import import_consents
from counterpoint.consent.models import ConsentRow
from counterpoint.consent.service import record_dict
from counterpoint.container import Container, open_container
from counterpoint.policy.models import AuditRecord
from counterpoint.settings import Settings

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


# -- the demo imports the market's consents ----------------------------------------------------


def _cli(settings: Settings, *args: str) -> Any:
    env: dict[str, str | None] = {
        "COUNTERPOINT_DATA_DIR": str(settings.data_dir),
        "COUNTERPOINT_DATABASE_URL": settings.database_url or None,
        "COLUMNS": "200",
    }
    return CliRunner().invoke(main_app, list(args), env=env)


def _ledger(settings: Settings) -> list[ConsentRow]:
    built = open_container(settings)
    try:
        with built.sessions() as session:
            return list(session.scalars(select(ConsentRow).order_by(ConsentRow.seq)))
    finally:
        built.close()


def test_demo_imports_the_consents_after_the_hcps(settings: Settings) -> None:
    result = _cli(settings, "demo", "--hcps", "40", "--weeks", "2", "--seed", "3", "--no-serve")
    assert result.exit_code == 0, result.output
    assert "consents.parquet: 320 rows, 320 recorded, 0 unchanged, 0 rejected" in result.output
    out = settings.data_dir / "market"
    consents = pq.read_table(out / "consents.parquet").to_pylist()
    imported = [r for r in _ledger(settings) if r.reason == "synthetic market"]
    assert len(imported) == len(consents) == 320
    assert all(r.synthetic for r in imported)
    keys = {f"npi:{h['npi']}" if h["npi"] else f"crm:{h['crm_id']}" for h in _hcp_rows(out)}
    assert {r.subject for r in imported} == keys  # every demo HCP has its consent records
    assert all(r.hcp_id is not None for r in imported)
    assert Counter(r.source for r in imported) == Counter(c["source"] for c in consents)
    # a second run changes nothing in the ledger
    again = _cli(settings, "demo", "--no-serve")
    assert again.exit_code == 0, again.output
    assert "consents.parquet: 320 rows, 0 recorded, 320 unchanged, 0 rejected" in again.output
    assert len([r for r in _ledger(settings) if r.reason == "synthetic market"]) == 320


def test_demo_redoes_a_market_with_consents_in_the_old_shape(settings: Settings) -> None:
    out = settings.data_dir / "market"
    made = runner.invoke(app, ["market", "--hcps", "20", "--weeks", "1", "--out", str(out)])
    assert made.exit_code == 0, made.output
    old = pa.table({"hcp": ["crm:CRM-1"], "channel": ["campaign_email"], "status": ["granted"]})
    pq.write_table(old, out / "consents.parquet")
    result = _cli(settings, "demo", "--hcps", "20", "--weeks", "1", "--no-serve")
    assert result.exit_code == 0, result.output
    assert "consents.parquet: 160 rows, 160 recorded, 0 unchanged, 0 rejected" in result.output


def _hcp_rows(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "hcps.parquet").to_pylist()


# -- the synthetic label in the ledger -------------------------------------------------------


def test_import_carries_the_synthetic_column(container: Container, tmp_path: Path) -> None:
    out = tmp_path / "market"
    runner.invoke(app, ["market", "--hcps", "10", "--weeks", "1", "--out", str(out)])
    container.profiles.import_master_data(out / "hcps.parquet", "hcps")
    who = next(f"crm:{h['crm_id']}" for h in _hcp_rows(out) if not h["npi"])
    market = next(h["market"] for h in _hcp_rows(out) if f"crm:{h['crm_id']}" == who)
    values = ["yes", "", "0", "TRUE", "maybe", "=cmd|' /C calc'!A0", "1; DROP TABLE consent_record"]
    path = tmp_path / "consents.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identifier", "channel", "purpose", "market", "state", "synthetic"])
        for i, value in enumerate(values):
            purpose = ("promotional", "medical", "educational", "market_research")[i % 4]
            writer.writerow([who, "sms" if i < 4 else "email", purpose, market, "denied", value])
    report = import_consents(
        path,
        consents=container.consents,
        profiles=container.profiles,
        audit=container.audit,
        clock=container.clock,
        actor=TEST_ACTOR,
    )
    assert report.recorded == 4
    assert {(e.row, e.field) for e in report.rejected} == {
        (6, "synthetic"),
        (7, "synthetic"),
        (8, "synthetic"),
    }
    assert all(e.fix == "write true or false (or leave it empty)" for e in report.rejected)
    hcp_id = container.profiles.find_by_identifier(who)
    assert hcp_id is not None
    records = container.consents.records(container.profiles.resolve(hcp_id))
    assert [record_dict(r)["synthetic"] for r in records] == [True, False, False, True]
    with container.sessions() as session:
        rows = list(session.scalars(select(ConsentRow).order_by(ConsentRow.seq)))
        assert [r.synthetic for r in rows] == [True, False, False, True]
        kept = session.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "consent.denied")
        ).all()
    assert [a["synthetic"] for a in kept if a] == [True, False, False, True]


def test_records_are_not_synthetic_unless_said(
    container: Container, client: TestClient, bearer: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "market"
    runner.invoke(app, ["market", "--hcps", "5", "--weeks", "1", "--out", str(out)])
    container.profiles.import_master_data(out / "hcps.parquet", "hcps")
    row = _hcp_rows(out)[0]
    hcp_id = container.profiles.find_by_identifier(f"crm:{row['crm_id']}")
    body = {
        "channel": "email",
        "purpose": "medical",
        "market": row["market"],
        "state": "denied",
        "source": "api",
        "reason": "asked by phone",
    }
    posted = client.post(f"/api/v1/hcps/{hcp_id}/consents", json=body, headers=bearer)
    assert posted.status_code == 201, posted.text
    assert posted.json()["synthetic"] is False
    forged = client.post(
        f"/api/v1/hcps/{hcp_id}/consents", json=body | {"synthetic": True}, headers=bearer
    )
    assert forged.status_code == 422  # a caller cannot label a record synthetic
    listed = client.get(f"/api/v1/hcps/{hcp_id}/consents", headers=bearer).json()
    assert [r["synthetic"] for r in listed["records"]] == [False]
