"""The audit trail: append-only, hash-chained, tamper-evident, on both deployments."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from tests.conftest import TEST_ACTOR, bearer_for
from typer.testing import CliRunner

from counterpoint.cli.app import app as cli
from counterpoint.container import Container
from counterpoint.policy.audit import Actor
from counterpoint.policy.models import AuditHead, AuditRecord
from counterpoint.settings import Settings


def _write(container: Container, n: int, actor: Actor = TEST_ACTOR) -> None:
    for i in range(n):
        with container.sessions.begin() as session:
            container.audit.record(
                session,
                actor,
                "test.change",
                "thing",
                f"thing-{i}",
                before={"value": i},
                after={"value": i + 1},
                reason="because",
            )


def _problems(container: Container) -> list[str]:
    return [p.problem for p in container.audit.verify()[1]]


def test_an_untouched_chain_verifies(container: Container) -> None:
    _write(container, 5)
    count, problems = container.audit.verify()
    assert (count, problems) == (5, [])
    rows = list(container.audit.iter_records())
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


def test_an_edited_record_is_detected(container: Container) -> None:
    _write(container, 5)
    with container.sessions.begin() as session:
        session.execute(
            update(AuditRecord).where(AuditRecord.seq == 3).values(reason="nothing to see")
        )
    assert _problems(container) == ["content differs from what was recorded"]


def test_an_edit_that_also_fixes_the_hash_breaks_the_next_link(container: Container) -> None:
    _write(container, 5)
    with container.sessions.begin() as session:
        row = session.get(AuditRecord, 3)
        assert row is not None
        row.after = {"value": 999}
        session.flush()
        from counterpoint.policy.audit import _row_hash

        row.hash = _row_hash(row)
    assert _problems(container) == ["does not link to the previous record"]


def test_a_deleted_record_is_detected(container: Container) -> None:
    _write(container, 5)
    with container.sessions.begin() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    problems = _problems(container)
    assert "records 2..2 are missing" in problems
    assert "does not link to the previous record" in problems


def test_a_truncated_tail_is_detected(container: Container) -> None:
    _write(container, 5)
    with container.sessions.begin() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    (problem,) = _problems(container)
    assert "removed from the end" in problem


def test_a_rewritten_head_is_detected(container: Container) -> None:
    _write(container, 3)
    with container.sessions.begin() as session:
        session.execute(update(AuditHead).values(hash="f" * 64))
    assert len(_problems(container)) == 1


def test_concurrent_writers_keep_one_linear_chain(container: Container) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _write(container, 15)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    count, problems = container.audit.verify()
    assert (count, problems) == (90, [])


def test_a_failed_change_leaves_no_record(container: Container) -> None:
    def failing_change() -> None:
        with container.sessions.begin() as session:
            container.audit.record(session, TEST_ACTOR, "test.change", "thing", "x")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert container.audit.verify() == (0, [])


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"COUNTERPOINT_DATA_DIR": str(settings.data_dir), "COUNTERPOINT_ENVIRONMENT": "test"}
    if settings.database_url:
        env["COUNTERPOINT_DATABASE_URL"] = settings.database_url
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_cli_verify_exits_non_zero_on_tampering_and_exports(
    container: Container, settings: Settings, tmp_path: Path
) -> None:
    _write(container, 4)
    code, output = _cli(settings, "audit", "verify")
    assert (code, "intact" in output) == (0, True), output
    out = tmp_path / "audit.ndjson"
    code, output = _cli(settings, "audit", "export", "--out", str(out))
    assert code == 0, output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]
    assert all(len(line["hash"]) == 64 for line in lines)
    with container.sessions.begin() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="someone"))
    code, output = _cli(settings, "audit", "verify")
    assert code == 1
    assert "TAMPERED" in output
    assert "record 2" in output


def test_api_changes_record_who_from_where(client: TestClient, container: Container) -> None:
    admin = bearer_for(container, "boss", "admin")
    created = client.post(
        "/api/v1/users",
        json={"name": "rep-north", "role": "sales_rep", "territories": ["NORTH"]},
        headers={**admin, "User-Agent": "ops-console/1.0"},
    )
    assert created.status_code == 201, created.text
    (record,) = [r for r in container.audit.iter_records() if r.object_id == created.json()["id"]]
    assert record.actor == "boss"
    assert record.actor_role == "admin"
    assert "ops-console/1.0" in record.origin
    assert record.after is not None
    assert record.after["territories"] == ["NORTH"]


def test_auditors_verify_and_export_over_the_api_and_cannot_change_anything(
    client: TestClient, container: Container
) -> None:
    _write(container, 3)
    auditor = bearer_for(container, "inspector", "compliance_auditor")
    verified = client.get("/api/v1/audit/verify", headers=auditor)
    # 3 written here, and the inspector's user and token
    assert verified.json() == {"intact": True, "records": 5, "problems": []}
    exported = client.get("/api/v1/audit/export", headers=auditor)
    assert exported.status_code == 200
    assert len(exported.text.splitlines()) == 5
    refused = client.post("/api/v1/users", json={"name": "x", "role": "admin"}, headers=auditor)
    assert refused.status_code == 403
    assert container.audit.verify()[0] == 5  # the refusal changed nothing
