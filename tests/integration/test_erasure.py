"""Erasure of one HCP (GDPR), end to end on both deployments: nothing readable is left in the
operational store or the event log, aggregates stay, replay brings nothing back, the person
is never re-imported, and new events about them are stored pseudonymised. A negative control
proves the scan finds the person when the log is not redacted."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from tests.conftest import TEST_ACTOR

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.errors import CounterpointError
from counterpoint.kit.db import Base
from counterpoint.privacy.models import ErasedIdentifier, Erasure
from counterpoint.settings import Deployment

NPI = "1234567893"


@pytest.fixture(params=[0, 2], ids=["in-process", "mapping-processes"])
def mapping_processes(request: pytest.FixtureRequest) -> int:
    """Events arriving after an erasure are filtered alike whichever process mapped them."""
    return int(request.param)


EMAIL = "zephyrine.quillfeather@example-clinic.org"
FIRST, LAST = "Zephyrine", "Quillfeather"
OTHER_NPI = "1245319599"
NEEDLES = (NPI, EMAIL, FIRST.lower(), LAST.lower())
MD_COLUMNS = ["npi", "email", "first_name", "last_name", "specialty", "market"]


def _master_file(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MD_COLUMNS)
        writer.writerow([NPI, EMAIL, FIRST, LAST, "cardiology", "US"])
        writer.writerow(
            [OTHER_NPI, "someone.else@example-clinic.org", "Ada", "Other", "oncology", "US"]
        )
    return path


def _events_file(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message_id", "user_id", "channel", "action", "timestamp", "brand"])
        for i in range(4):
            writer.writerow(
                [
                    f"imp-{i}",
                    f"npi:{NPI}",
                    "f2f_call",
                    "call_completed",
                    f"2026-11-1{i}T09:00:00Z",
                    "B",
                ]
            )
        writer.writerow(
            ["imp-x", f"npi:{OTHER_NPI}", "f2f_call", "call_completed", "2026-11-10T09:00:00Z", "B"]
        )
    return path


def _http_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": "web-id-1",
            "userId": f"email:{EMAIL}",
            "anonymousId": "anon-zq-77",
            "timestamp": "2026-11-05T08:00:00Z",
            "traits": {"npi": NPI, "first_name": FIRST, "last_name": LAST},
        }
    ]
    for i in range(3):
        events.append(
            {
                "type": "track",
                "messageId": f"web-{i}",
                "userId": f"email:{EMAIL}",
                "event": f"Email opened by {FIRST} {LAST}",
                "timestamp": f"2026-11-0{6 + i}T09:00:00Z",
                "properties": {
                    "channel": "campaign_email",
                    "action": "opened",
                    "brand": "B",
                    "note": f"{FIRST} {LAST} <{EMAIL}>",
                },
            }
        )
    # refused at ingestion: stays in the quarantine, naming the person
    events.append(
        {
            "type": "track",
            "messageId": "web-bad",
            "userId": f"email:{EMAIL}",
            "timestamp": "2026-11-06T09:00:00Z",
            "properties": {"channel": "carrier_pigeon", "action": "opened"},
        }
    )
    return events


def _setup(container: Container, client: TestClient, basic: dict[str, str], tmp_path: Path) -> str:
    container.profiles.import_master_data(_master_file(tmp_path / "hcps.csv"), "hcps")
    response = client.post("/v1/batch", json={"batch": _http_events()}, headers=basic)
    assert response.status_code == 200, response.text
    assert response.json()["quarantined"] == 1
    report = container.ingest.import_file(_events_file(tmp_path / "calls.csv"))
    assert report.accepted == 5
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert hcp_id is not None
    assert container.profiles.find_by_identifier(f"email:{EMAIL}") == hcp_id
    container.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "US"),
        state=ConsentState.GRANTED,
        proof=Proof(
            ConsentSource.WEB_FORM,
            "web",
            wording_version="v1",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0",
            evidence="signature SIG-0042",
        ),
        actor=TEST_ACTOR,
        reason="consent given on the web form",
    )
    container.transfers.record(
        hcp_id,
        {"amount": "85.00", "currency": "USD", "nature": "food_and_beverage", "date": "2026-11-02"},
        TEST_ACTOR,
        "dinner at the symposium",
    )
    return hcp_id


def _store_hits(container: Container) -> list[str]:
    """Every (table, column) of the operational store whose text holds a needle."""
    hits: list[str] = []
    existing = set(inspect(container.engine).get_table_names())
    with container.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in existing:
                continue
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    textual = str(value).lower()
                    hits.extend(f"{table.name}.{column}" for n in NEEDLES if n in textual)
    return hits


def _log_hits(container: Container) -> list[str]:
    hits: list[str] = []
    for table in ("event_log", "quarantine"):
        if container.settings.deployment is Deployment.SERVER:
            with container.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(text(f"SELECT * FROM {table}")).mappings()]
        else:
            cur = container.log._cursor()  # type: ignore[attr-defined]
            result = cur.execute(f"SELECT COLUMNS(*)::VARCHAR FROM {table}")
            names = [d[0] for d in result.description]
            rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        for row in rows:
            for column, value in row.items():
                textual = str(value).lower()
                hits.extend(f"{table}.{column}" for n in NEEDLES if n in textual)
    return hits


def _file_hits(container: Container) -> list[str]:
    """SQLite only: the bytes of the database file and its WAL after a checkpoint."""
    if container.settings.deployment is Deployment.SERVER:
        return []
    with container.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    hits = []
    db = container.settings.data_dir / "counterpoint.db"
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            data = path.read_bytes().lower()
            hits.extend(f"{path.name}:{n}" for n in NEEDLES if n.encode() in data)
    return hits


def _per_channel(container: Container) -> Counter[str]:
    table = container.log.read_after(0, 1_000_000)
    return Counter(c for c in table.column("channel").to_pylist() if c)


def _rebuild(container: Container) -> None:
    container.projector.rebuild()
    for consumer in container.consumers:
        consumer.rebuild()


def test_erasure_leaves_nothing_readable_and_keeps_aggregates(
    container: Container, client: TestClient, basic: dict[str, str], tmp_path: Path
) -> None:
    hcp_id = _setup(container, client, basic, tmp_path)
    assert _store_hits(container)
    assert _log_hits(container)
    before = _per_channel(container)
    assert before == Counter({"campaign_email": 3, "f2f_call": 5})

    result = container.privacy.erase(hcp_id, TEST_ACTOR, "GDPR request ticket 4711")

    assert result.events_redacted == 9  # 3 opens, 4 calls, the web identify, the master data
    assert result.quarantine_deleted == 1
    assert result.consent_records == 1
    assert result.transfers == 1
    assert _store_hits(container) == []
    assert _log_hits(container) == []
    assert _file_hits(container) == []
    assert _per_channel(container) == before
    with container.sessions() as session:
        erasure = session.scalars(select(Erasure)).one()
        assert erasure.pseudonym == result.pseudonym
        assert session.scalar(select(ErasedIdentifier).limit(1)) is not None
    # the aggregates of the customer record moved to the pseudonym
    pseudonym_profile = container.profiles.find_by_identifier(f"crm:{result.pseudonym}")
    assert pseudonym_profile is None  # the pseudonym is not an identifier anyone can look up
    engagement_before_rebuild = _engagement(container, result.pseudonym)
    assert engagement_before_rebuild == {"campaign_email": 3, "f2f_call": 4}

    # lookups answer "erased"
    for lookup in (
        lambda: container.profiles.find_by_identifier(f"npi:{NPI}"),
        lambda: container.profiles.find_by_identifier(f"email:{EMAIL}"),
        lambda: container.profiles.get_hcp(hcp_id),
    ):
        with pytest.raises(CounterpointError) as caught:
            lookup()
        assert (caught.value.status, caught.value.code) == (410, "erased")

    # replaying the log brings nothing back
    _rebuild(container)
    assert _store_hits(container) == []
    assert _engagement(container, result.pseudonym) == engagement_before_rebuild
    assert _per_channel(container) == before

    # a re-import of the master-data file refuses the row
    report = container.profiles.import_master_data(tmp_path / "hcps.csv", "hcps")
    assert [(e.row, e.reason) for e in report.rejected] == [(2, "erased person")]
    container.catch_up()
    assert _store_hits(container) == []

    # a new event for the e-mail (HTTP and file) is stored under the pseudonym, empty
    late = {
        "type": "track",
        "messageId": "web-late",
        "event": "Email Clicked",
        "userId": f"email:{EMAIL}",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"channel": "campaign_email", "action": "clicked", "name": LAST},
    }
    response = client.post("/v1/batch", json={"batch": [late]}, headers=basic)
    assert response.json()["accepted"] == 1, response.text
    late_file = tmp_path / "late.csv"
    late_file.write_text(
        "message_id,user_id,channel,action,timestamp\n"
        f"imp-late,email:{EMAIL},f2f_call,call_completed,2026-11-21T09:00:00Z\n"
    )
    assert container.ingest.import_file(late_file).accepted == 1
    container.catch_up()
    assert _log_hits(container) == []
    assert _store_hits(container) == []
    newest = container.log.read_after(0, 1_000_000).to_pylist()[-2:]
    assert [(r["subject"], r["payload"]) for r in newest] == [(result.pseudonym, "{}")] * 2


def _engagement(container: Container, pseudonym: str) -> dict[str, int]:
    from counterpoint.profile.models import EngagementDay

    with container.sessions() as session:
        rows = session.scalars(select(EngagementDay).where(EngagementDay.identifier == pseudonym))
        out: Counter[str] = Counter()
        for r in rows:
            out[r.channel] += r.count
    return dict(out)


def test_negative_control_without_log_redaction_the_scan_finds_the_person(
    container: Container,
    client: TestClient,
    basic: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hcp_id = _setup(container, client, basic, tmp_path)
    monkeypatch.setattr(container.log, "redact", lambda subjects, pseudonym: 0)
    container.privacy.erase(hcp_id, TEST_ACTOR, "GDPR request ticket 4712")
    assert _log_hits(container)  # the log still holds the person
    _rebuild(container)
    hits = _store_hits(container)
    assert any(h.startswith("attribute_observation.") for h in hits), hits


def test_erasure_refuses_a_reason_naming_the_person(
    container: Container, client: TestClient, basic: dict[str, str], tmp_path: Path
) -> None:
    hcp_id = _setup(container, client, basic, tmp_path)
    head = container.log.count()
    with pytest.raises(CounterpointError) as caught:
        container.privacy.erase(hcp_id, TEST_ACTOR, f"asked by {FIRST} {LAST} by phone")
    assert caught.value.field == "reason"
    assert container.profiles.find_by_identifier(f"npi:{NPI}") == hcp_id
    assert container.log.count() == head
    assert _log_hits(container)


def test_the_other_hcp_is_untouched(
    container: Container, client: TestClient, basic: dict[str, str], tmp_path: Path
) -> None:
    hcp_id = _setup(container, client, basic, tmp_path)
    other = container.profiles.find_by_identifier(f"npi:{OTHER_NPI}")
    assert other is not None
    profile_before = container.profiles.get_hcp(other)
    container.privacy.erase(hcp_id, TEST_ACTOR, "GDPR request ticket 4713")
    profile_after = container.profiles.get_hcp(other)
    assert profile_after["last_name"] == "Other"
    assert profile_after["engagement"] == profile_before["engagement"]
