"""Consent through ingestion: consent events and unsubscribes become ledger records through
the checkpointed consent consumer; grants only from trusted write keys. Both deployments."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from counterpoint.consent import schemas
from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.consent.models import ConsentRow
from counterpoint.container import Container
from counterpoint.event.log import QuarantineStatus
from counterpoint.policy.models import AuditRecord

NPI = "1234567893"
HASH = "ab" * 32


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def trusted(container: Container) -> dict[str, str]:
    return _basic(container.write_keys.create("crm server", trusted=True)[1])


def _consent(message_id: str, name: str = "Consent Granted", **props: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "wording_version": "v3",
        "wording_hash": HASH,
    }
    properties.update(props)
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "event": name,
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {k: v for k, v in properties.items() if v is not None},
        "context": {"ip": "192.0.2.10", "userAgent": "crm/2.0"},
    }


def _send(
    client: TestClient, headers: dict[str, str], container: Container, *events: dict[str, Any]
) -> dict[str, Any]:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=headers)
    assert response.status_code == 200, response.text
    container.catch_up()
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def hcp(client: TestClient, trusted: dict[str, str], container: Container) -> str:
    identify = {
        "type": "identify",
        "messageId": "id-1",
        "userId": f"npi:{NPI}",
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {"first_name": "Jane", "last_name": "Doe", "market": "DE"},
    }
    _send(client, trusted, container, identify)
    found = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert found is not None
    return found


def _rows(container: Container) -> list[ConsentRow]:
    with container.sessions() as session:
        return list(session.scalars(select(ConsentRow).order_by(ConsentRow.seq)))


def _audit_count(container: Container) -> int:
    with container.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditRecord)) or 0


def _allowed(container: Container, hcp: str, purpose: Purpose = Purpose.PROMOTIONAL) -> bool:
    return container.consents.decide(
        container.profiles.resolve(hcp),
        channel=ConsentChannel.EMAIL,
        purpose=purpose,
        market="DE",
    ).allowed


def test_a_grant_from_a_trusted_key_is_recorded(
    client: TestClient, trusted: dict[str, str], container: Container, hcp: str
) -> None:
    result = _send(client, trusted, container, _consent("cg-1", brand="ALPHA"))
    assert result["accepted"] == 1
    (row,) = _rows(container)
    assert (row.hcp_id, row.subject) == (hcp, f"npi:{NPI}")
    assert (row.channel, row.purpose, row.market, row.brand, row.state) == (
        "email",
        "promotional",
        "DE",
        "ALPHA",
        "granted",
    )
    assert row.source == "event"
    assert row.dedupe_key == "event:cg-1"
    assert row.wording_hash == HASH
    assert (row.ip, row.user_agent) == ("192.0.2.10", "crm/2.0")
    assert row.reason is not None
    assert row.reason.startswith("consent event cg-1 from wk_")
    assert container.consents.decide(
        container.profiles.resolve(hcp),
        channel=ConsentChannel.EMAIL,
        purpose=Purpose.PROMOTIONAL,
        market="DE",
        brand="ALPHA",
    ).allowed
    actions = [r.action for r in container.audit.iter_records(object_id=hcp)]
    assert actions == ["consent.granted"]


def _untrusted_grant(
    client: TestClient, basic: dict[str, str], container: Container
) -> tuple[list[str], int]:
    """The harness: an untrusted key sends a grant; the quarantine codes and records after."""
    before = len(_rows(container))
    result = _send(client, basic, container, _consent("cg-untrusted"))
    return [e["code"] for e in result["errors"]], len(_rows(container)) - before


def test_a_grant_from_an_untrusted_key_is_quarantined_and_not_recorded(
    client: TestClient, basic: dict[str, str], container: Container, hcp: str
) -> None:
    audit_before = _audit_count(container)
    codes, recorded = _untrusted_grant(client, basic, container)
    assert codes == ["untrusted_consent_grant"]
    assert recorded == 0
    assert not _allowed(container, hcp)
    assert _audit_count(container) == audit_before
    (entry,) = container.ingest.quarantined(QuarantineStatus.OPEN)
    assert entry.entry.reason_code == "untrusted_consent_grant"
    assert entry.entry.field == "batch[0].event"
    assert entry.entry.fix is not None
    assert "trusted" in entry.entry.fix
    # pending (the start of a double opt-in) is a grant too
    pending = _send(client, basic, container, _consent("cp-1", "consent pending"))
    assert [e["code"] for e in pending["errors"]] == ["untrusted_consent_grant"]
    # replaying it from the quarantine does not make it trusted
    with pytest.raises(Exception, match="trusted"):
        container.ingest.replay(entry.id)
    assert _rows(container) == []


def test_negative_control_without_the_trust_check_the_untrusted_grant_is_recorded(
    client: TestClient,
    basic: dict[str, str],
    container: Container,
    hcp: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schemas, "grant_trusted", lambda _trusted: True)
    codes, recorded = _untrusted_grant(client, basic, container)
    assert codes == []
    assert recorded == 1
    assert _allowed(container, hcp)


def test_withdrawals_are_accepted_from_any_key(
    client: TestClient,
    trusted: dict[str, str],
    basic: dict[str, str],
    container: Container,
    hcp: str,
) -> None:
    _send(client, trusted, container, _consent("cg-1"), _consent("cg-2", purpose="educational"))
    assert _allowed(container, hcp)
    revoked = _consent("cr-1", "CONSENT REVOKED", wording_version=None, wording_hash=None)
    revoked["timestamp"] = "2026-11-21T09:00:00Z"
    result = _send(client, basic, container, revoked)
    assert result["accepted"] == 1
    assert not _allowed(container, hcp)
    assert _allowed(container, hcp, Purpose.EDUCATIONAL)
    # an e-mail unsubscribe (no market, no purpose): every purpose in the HCP's market
    unsubscribe = {
        "type": "track",
        "messageId": "unsub-1",
        "userId": f"npi:{NPI}",
        "event": "Unsubscribed",
        "timestamp": "2026-11-22T09:00:00Z",
    }
    assert _send(client, basic, container, unsubscribe)["accepted"] == 1
    assert not _allowed(container, hcp, Purpose.EDUCATIONAL)
    rows = [r for r in _rows(container) if r.dedupe_key and r.dedupe_key.startswith("event:unsub")]
    assert {(r.purpose, r.market, r.state, r.source) for r in rows} == {
        (p.value, "DE", "revoked", "delivery") for p in Purpose
    }


def test_an_unsubscribe_for_one_purpose(
    client: TestClient, trusted: dict[str, str], container: Container, hcp: str
) -> None:
    _send(client, trusted, container, _consent("cg-1"), _consent("cg-2", purpose="educational"))
    unsubscribe = {
        "type": "track",
        "messageId": "unsub-1",
        "userId": f"npi:{NPI}",
        "event": "SMS stop",
        "timestamp": "2026-11-22T09:00:00Z",
        "properties": {
            "channel": "campaign_email",
            "action": "unsubscribed",
            "purpose": "Educational",
        },
    }
    assert _send(client, trusted, container, unsubscribe)["accepted"] == 1
    assert _allowed(container, hcp)
    assert not _allowed(container, hcp, Purpose.EDUCATIONAL)


@pytest.mark.parametrize(
    ("event", "code", "field"),
    [
        (_consent("bad-1", channel="pigeon"), "invalid_consent", "properties.channel"),
        (_consent("bad-2", purpose="lunch"), "invalid_consent", "properties.purpose"),
        (_consent("bad-3", market="XX"), "invalid_field", "properties.market"),
        (_consent("bad-4", market=None), "invalid_consent", "properties.market"),
        (_consent("bad-5", wording_version=None), "invalid_consent", "properties.wording_version"),
        (
            _consent("bad-6", wording_hash="'; DROP TABLE x;--"),
            "invalid_consent",
            "properties.wording_hash",
        ),
        (
            {**_consent("bad-7", "Unsubscribed"), "properties": {"purpose": "spam"}},
            "invalid_consent",
            "properties.purpose",
        ),
    ],
)
def test_invalid_consent_events_are_quarantined_at_ingestion(
    client: TestClient,
    trusted: dict[str, str],
    container: Container,
    hcp: str,
    event: dict[str, Any],
    code: str,
    field: str,
) -> None:
    audit_before = _audit_count(container)
    result = _send(client, trusted, container, event)
    assert result["accepted"] == 0
    assert [(e["code"], e["field"]) for e in result["errors"]] == [(code, f"batch[0].{field}")]
    assert all(e["fix"] for e in result["errors"])
    assert _rows(container) == []
    assert _audit_count(container) == audit_before


def test_a_replay_of_the_log_records_nothing_twice(
    client: TestClient,
    trusted: dict[str, str],
    basic: dict[str, str],
    container: Container,
    hcp: str,
) -> None:
    revoked = _consent("cr-1", "Consent Revoked", purpose="medical")
    unsubscribe = {
        "type": "track",
        "messageId": "unsub-1",
        "userId": f"npi:{NPI}",
        "event": "Email Marked as Spam",
        "timestamp": "2026-11-22T09:00:00Z",
    }
    _send(client, trusted, container, _consent("cg-1"), revoked)
    _send(client, basic, container, unsubscribe)
    # the same messages again (a client retry) are duplicates in the log
    again = _send(client, trusted, container, _consent("cg-1"))
    assert again["duplicates"] == 1
    rows = [(r.seq, r.dedupe_key, r.state) for r in _rows(container)]
    assert len(rows) == 2 + len(Purpose)
    audit = _audit_count(container)
    (consumer,) = [c for c in container.consumers if c.name == "consent"]
    assert consumer.rebuild() > 0
    assert [(r.seq, r.dedupe_key, r.state) for r in _rows(container)] == rows
    assert _audit_count(container) == audit
    assert container.audit.verify()[1] == []


def test_an_unknown_person_keeps_the_record_by_identifier(
    client: TestClient, trusted: dict[str, str], container: Container
) -> None:
    event = _consent("cg-anon")
    event["userId"] = "jane.doe@clinic.example"
    _send(client, trusted, container, event)
    (row,) = _rows(container)
    assert row.subject == "email:jane.doe@clinic.example"
    # the only profile it can name is the one the projector made of this very identifier
    # (the consent consumer may run before or after the projector: both are consistent)
    holder = container.profiles.find_by_identifier("email:jane.doe@clinic.example")
    assert row.hcp_id in (None, holder)
    # an unsubscribe with neither a market nor consent records to revoke is quarantined
    unsubscribe = {
        "type": "track",
        "messageId": "unsub-x",
        "userId": "someone@else.example",
        "event": "Unsubscribed",
        "timestamp": "2026-11-22T09:00:00Z",
    }
    _send(client, trusted, container, unsubscribe)
    codes = [q.entry.reason_code for q in container.ingest.quarantined(QuarantineStatus.OPEN)]
    assert codes == ["consent_market_unknown"]


def test_consent_events_in_an_interaction_file_are_trusted(
    container: Container, tmp_path: Path
) -> None:
    container.write_keys.create("unused")
    path = tmp_path / "events.parquet"
    rows = [
        {
            "message_id": "file-1",
            "user_id": f"npi:{NPI}",
            "channel": "campaign_email",
            "action": "registered",
            "event": "Consent Granted",
            "timestamp": "2026-11-20T09:00:00Z",
            "market": "DE",
            "properties": json.dumps(
                {"channel": "email", "purpose": "medical", "wording_version": "v1"}
            ),
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = container.ingest.import_file(path)
    assert report.accepted == 1
    container.catch_up()
    (row,) = _rows(container)
    assert (row.channel, row.purpose, row.state, row.source) == (
        "email",
        "medical",
        "granted",
        "event",
    )
