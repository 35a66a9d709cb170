"""``counterpoint import consents FILE`` and the consent CLI, on both deployments."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from tests.conftest import TEST_ACTOR
from typer.testing import CliRunner

from counterpoint.cli.app import app
from counterpoint.consent.importer import import_consents
from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.consent.models import ConsentRow
from counterpoint.container import Container
from counterpoint.errors import ValidationFailedError
from counterpoint.policy.models import AuditRecord
from counterpoint.settings import Settings

NPI = "1234567893"
OTHER_NPI = "1245319599"
COLUMNS = ["identifier", "channel", "purpose", "market", "state", "wording_version", "reason"]


def _hcp(container: Container, npi: str = NPI, market: str = "DE") -> str:
    from counterpoint.event.canonical import EventKind, LogEvent

    now = container.clock.now()
    container.log.append(
        [
            LogEvent(
                message_id=f"id-{npi}",
                kind=EventKind.IDENTIFY,
                subject=f"npi:{npi}",
                occurred_at=now,
                received_at=now,
                source="tests",
                payload={"traits": {"market": market, "last_name": "Doe"}},
            )
        ]
    )
    container.catch_up()
    found = container.profiles.find_by_identifier(f"npi:{npi}")
    assert found is not None
    return found


def _csv(path: Path, rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(**change: Any) -> dict[str, Any]:
    row = {
        "identifier": f"npi:{NPI}",
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "state": "granted",
        "wording_version": "v2",
        "reason": "paper form 2026",
    }
    row.update(change)
    return row


def _import(container: Container, path: Path) -> Any:
    return import_consents(
        path,
        consents=container.consents,
        profiles=container.profiles,
        audit=container.audit,
        clock=container.clock,
        actor=TEST_ACTOR,
    )


def _counts(container: Container) -> tuple[int, int]:
    with container.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(ConsentRow)) or 0,
            session.scalar(select(func.count()).select_from(AuditRecord)) or 0,
        )


def test_import_validates_rejects_and_records_once(container: Container, tmp_path: Path) -> None:
    hcp = _hcp(container)
    path = _csv(
        tmp_path / "consents.csv",
        [
            _row(),
            _row(channel="sms", purpose="medical", state="denied", wording_version=""),
            _row(identifier=f"npi:{OTHER_NPI}"),  # a valid id, but no such HCP
            _row(channel="pigeon", market="XX"),
            _row(reason='=HYPERLINK("http://x")<script>', brand="ALPHA"),
        ],
        [*COLUMNS, "brand"],
    )
    report = _import(container, path)
    assert report.rows == 5
    assert report.recorded == 3
    assert report.rejected_rows == 2
    assert {(e.row, e.field) for e in report.rejected} == {
        (4, "identifier"),
        (5, "channel"),
        (5, "market"),
    }
    assert next(e for e in report.rejected if e.row == 4).reason == "unknown HCP"
    assert report.reject_file == tmp_path / "consents.rejects.csv"
    with report.reject_file.open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["row"] for r in rejects] == ["4", "5"]
    assert "unknown HCP" in rejects[0]["reasons"]
    assert rejects[1]["channel"] == "pigeon"

    rows = sorted(container.consents.records(container.profiles.resolve(hcp)), key=lambda r: r.seq)
    assert [r.state.value for r in rows] == ["granted", "denied", "granted"]
    assert {r.proof.source.value for r in rows} == {"import"}
    assert {r.proof.captured_by for r in rows} == {TEST_ACTOR.name}
    assert rows[2].reason == '=HYPERLINK("http://x")<script>'  # kept as text, never evaluated
    assert container.consents.decide(
        container.profiles.resolve(hcp),
        channel=ConsentChannel.EMAIL,
        purpose=Purpose.PROMOTIONAL,
        market="DE",
    ).allowed

    counts = _counts(container)
    again = _import(container, path)
    assert (again.recorded, again.unchanged) == (0, 3)
    assert _counts(container)[0] == counts[0]  # nothing new in the ledger
    assert container.audit.verify()[1] == []


def test_parquet_with_times(container: Container, tmp_path: Path) -> None:
    _hcp(container)
    now = container.clock.now()
    table = pa.Table.from_pylist(
        [
            {
                "identifier": f"npi:{NPI}",
                "channel": "email",
                "purpose": "educational",
                "market": "de",
                "state": "granted",
                "wording_version": "v1",
                "effective_at": now - dt.timedelta(days=30),
                "expires_at": now - dt.timedelta(days=1),
                "source": "rep_capture",
                "evidence": "signature sig-1",
            }
        ]
    )
    pq.write_table(table, tmp_path / "c.parquet")
    report = _import(container, tmp_path / "c.parquet")
    assert report.recorded == 1
    (status,) = container.consents.state(container.profiles.resolve(_hcp(container)))
    assert status.state.value == "expired"


@pytest.mark.parametrize(
    ("columns", "field"),
    [
        (["identifier", "channel", "purpose", "market"], "state"),  # missing required
        ([*COLUMNS, "sql"], "sql"),  # unknown
    ],
)
def test_a_bad_header_imports_nothing(
    container: Container, tmp_path: Path, columns: list[str], field: str
) -> None:
    _hcp(container)
    before = _counts(container)
    path = _csv(tmp_path / "c.csv", [{c: _row().get(c, "x") for c in columns}], columns)
    with pytest.raises(ValidationFailedError) as caught:
        _import(container, path)
    assert caught.value.field == field
    assert caught.value.fix
    assert _counts(container) == before


def _cli(settings: Settings, *args: str) -> Any:
    env: dict[str, str | None] = {
        "COUNTERPOINT_DATA_DIR": str(settings.data_dir),
        "COUNTERPOINT_DATABASE_URL": settings.database_url or None,
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_import_show_and_withdraw(
    container: Container, settings: Settings, tmp_path: Path
) -> None:
    hcp = _hcp(container)
    container.close()  # the embedded event log is one process's
    path = _csv(tmp_path / "c.csv", [_row(), _row(channel="pigeon")])
    result = _cli(settings, "import", "consents", str(path))
    assert result.exit_code == 0, result.output
    assert "2 rows, 1 recorded, 0 unchanged, 1 rejected" in result.output
    assert "c.rejects.csv" in result.output

    shown = _cli(settings, "consent", "show", f"npi:{NPI}", "--json")
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["hcp_id"] == hcp
    assert [s["state"] for s in body["state"]] == ["granted"]
    assert _cli(settings, "consent", "show", hcp).exit_code == 0
    earlier = json.loads(
        _cli(settings, "consent", "show", hcp, "--at", "2026-01-01", "--json").output
    )
    assert earlier["state"] == []

    withdrawn = _cli(
        settings, "consent", "withdraw", hcp, "--channel", "email", "--reason", "phoned to stop"
    )
    assert withdrawn.exit_code == 0, withdrawn.output
    after = json.loads(_cli(settings, "consent", "show", hcp, "--json").output)
    assert {s["state"] for s in after["state"]} == {"revoked"}

    bad = _cli(settings, "consent", "show", "npi:1245319599")
    assert bad.exit_code != 0
    assert isinstance(bad.exception, Exception)
    assert getattr(bad.exception, "field", None) == "HCP"
