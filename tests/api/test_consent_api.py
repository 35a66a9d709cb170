"""The consent API (/api/v1/hcps/{hcp_id}/consents) end to end, on both deployments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import NOW, bearer_for

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.consent.models import ConsentRow
from counterpoint.container import Container
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.models import AuditRecord

NPI = "1234567893"
PROBLEM = "application/problem+json"
HASH = "0123456789abcdef" * 4


def _grant(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "state": "granted",
        "source": "web_form",
        "wording_version": "email-v3",
        "wording_hash": HASH,
        "reason": "signed up on the HCP portal",
    }
    body.update(change)
    return {k: v for k, v in body.items() if v is not None}


def _counts(container: Container) -> tuple[int, int]:
    with container.sessions() as session:
        records = session.scalar(select(func.count()).select_from(ConsentRow)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
    return records, audit


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    identify = {
        "type": "identify",
        "messageId": "id-1",
        "userId": f"npi:{NPI}",
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {"first_name": "Jane", "last_name": "Doe", "market": "DE", "territory": "T1"},
    }
    response = client.post("/v1/batch", json={"batch": [identify]}, headers=basic)
    assert response.status_code == 200, response.text
    container.projector.catch_up()
    found = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert found is not None
    return found


def _url(hcp_id: str, tail: str = "") -> str:
    return f"/api/v1/hcps/{hcp_id}/consents{tail}"


def test_record_read_and_withdraw(
    client: TestClient,
    bearer: dict[str, str],
    container: Container,
    clock: FixedClock,
    hcp_id: str,
) -> None:
    headers = bearer | {"User-Agent": "HCP browser/1.0"}
    created = client.post(_url(hcp_id), json=_grant(), headers=headers)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["state"] == "granted"
    assert record["market"] == "DE"
    assert record["proof"]["source"] == "web_form"
    assert record["proof"]["wording_hash"] == HASH
    assert record["proof"]["user_agent"] == "HCP browser/1.0"  # a web capture keeps the agent
    assert record["proof"]["captured_by"] == "tests-admin (admin)"
    assert container.consents.decide(
        container.profiles.resolve(hcp_id),
        channel=ConsentChannel.EMAIL,
        purpose=Purpose.PROMOTIONAL,
        market="DE",
    ).allowed

    clock.advance(dt.timedelta(days=1))
    read = client.get(_url(hcp_id), headers=bearer)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["hcp_id"] == hcp_id
    assert [(s["channel"], s["purpose"], s["state"]) for s in body["state"]] == [
        ("email", "promotional", "granted")
    ]
    assert [r["seq"] for r in body["records"]] == [record["seq"]]

    withdrawn = client.post(
        _url(hcp_id, "/withdraw"),
        json={"channel": "email", "reason": "asked the rep to stop e-mails"},
        headers=bearer,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    revoked = withdrawn.json()["records"]
    assert {(r["purpose"], r["market"], r["state"]) for r in revoked} == {
        (p.value, "DE", "revoked") for p in Purpose
    }
    now = client.get(_url(hcp_id), headers=bearer).json()
    assert {s["state"] for s in now["state"]} == {"revoked"}
    assert not container.consents.decide(
        container.profiles.resolve(hcp_id),
        channel=ConsentChannel.EMAIL,
        purpose=Purpose.PROMOTIONAL,
        market="DE",
    ).allowed

    # "what was the consent yesterday": the grant, and only the records known then
    then = client.get(
        _url(hcp_id), params={"at": (NOW + dt.timedelta(hours=1)).isoformat()}, headers=bearer
    ).json()
    assert [s["state"] for s in then["state"]] == ["granted"]
    assert len(then["records"]) == 1
    before = client.get(
        _url(hcp_id), params={"at": (NOW - dt.timedelta(days=1)).isoformat()}, headers=bearer
    ).json()
    assert before["state"] == []
    assert before["records"] == []

    # every change is in the audit trail, with the reason
    actions = [r.action for r in container.audit.iter_records(object_id=hcp_id)]
    assert actions.count("consent.granted") == 1
    assert actions.count("consent.revoked") == len(Purpose)


def test_withdraw_one_purpose_in_named_markets(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    response = client.post(
        _url(hcp_id, "/withdraw"),
        json={
            "channel": "sms",
            "purposes": ["market_research"],
            "markets": ["fr", "DE"],
            "reason": "opted out by letter",
        },
        headers=bearer,
    )
    assert response.status_code == 200, response.text
    assert {(r["channel"], r["purpose"], r["market"]) for r in response.json()["records"]} == {
        ("sms", "market_research", "DE"),
        ("sms", "market_research", "FR"),
    }


def _problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    if field is not None:
        assert field in str(body["field"]), body
    assert body.get("fix"), body
    return body


def test_unknown_hcp_is_404_and_stores_nothing(
    client: TestClient, bearer: dict[str, str], container: Container, hcp_id: str
) -> None:
    before = _counts(container)
    _problem(client.post(_url("hcp_nobody"), json=_grant(), headers=bearer), 404, "hcp_id")
    _problem(client.get(_url("hcp_nobody"), headers=bearer), 404, "hcp_id")
    _problem(
        client.post(
            _url("hcp_nobody", "/withdraw"),
            json={"channel": "email", "reason": "stop"},
            headers=bearer,
        ),
        404,
        "hcp_id",
    )
    assert _counts(container) == before


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (_grant(channel="pigeon"), 422, "channel"),
        (_grant(purpose="lunch"), 422, "purpose"),
        (_grant(state="expired"), 422, "state"),
        (_grant(source="event"), 422, "source"),
        (_grant(market="XX"), 400, "market"),
        (_grant(market="DEU"), 422, "market"),
        (_grant(wording_hash="abc"), 422, "wording_hash"),
        (_grant(wording_hash="<script>alert(1)</script>"), 422, "wording_hash"),
        (_grant(brand="x'); DROP TABLE consent_record;--"), 422, "brand"),
        (_grant(content_type="a b"), 422, "content_type"),
        (_grant(wording_version=None), 400, "wording_version"),
        (_grant(source="rep_capture"), 400, "evidence"),
        (_grant(reason="  "), 422, "reason"),
        (_grant(reason=None), 422, "reason"),
        (_grant(evidence="x" * 2001), 422, "evidence"),
        (_grant(effective_at="2026-11-23T12:00:00"), 422, "effective_at"),  # no offset
        (_grant(effective_at="2027-01-01T00:00:00Z"), 400, "effective_at"),  # the future
        (_grant(expires_at="2026-01-01T00:00:00Z"), 400, "expires_at"),
        (_grant(admin=True), 422, "admin"),  # extra fields are forbidden
    ],
)
def test_bad_input_is_refused_naming_the_field_and_stores_nothing(
    client: TestClient,
    bearer: dict[str, str],
    container: Container,
    hcp_id: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    before = _counts(container)
    _problem(client.post(_url(hcp_id), json=body, headers=bearer), status, field)
    assert _counts(container) == before


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"channel": "email"}, 422, "reason"),
        ({"channel": "fax", "reason": "stop"}, 422, "channel"),
        ({"channel": "email", "purposes": ["x"], "reason": "stop"}, 422, "purposes"),
        ({"channel": "email", "markets": ["ZZ"], "reason": "stop"}, 400, "markets"),
        ({"channel": "email", "markets": [], "reason": "stop"}, 422, "markets"),
    ],
)
def test_bad_withdrawals_are_refused_and_store_nothing(
    client: TestClient,
    bearer: dict[str, str],
    container: Container,
    hcp_id: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    before = _counts(container)
    _problem(client.post(_url(hcp_id, "/withdraw"), json=body, headers=bearer), status, field)
    assert _counts(container) == before


def test_bad_at_is_refused(client: TestClient, bearer: dict[str, str], hcp_id: str) -> None:
    _problem(client.get(_url(hcp_id), params={"at": "yesterday"}, headers=bearer), 422, "at")


def test_scope_and_roles(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    other_market = bearer_for(container, "ops-fr", "marketing_ops", markets=["FR"])
    other_territory = bearer_for(container, "rep-t2", "sales_rep", territories=["T2"])
    analyst = bearer_for(container, "analyst", "data_analyst")
    auditor = bearer_for(container, "auditor", "compliance_auditor")
    de_ops = bearer_for(container, "ops-de", "marketing_ops", markets=["DE"])
    rep = bearer_for(container, "rep-t1", "sales_rep", territories=["T1"])
    before = _counts(container)
    _problem(client.get(_url(hcp_id), headers=other_market), 404, "hcp_id")
    _problem(client.post(_url(hcp_id), json=_grant(), headers=other_market), 404, "hcp_id")
    _problem(client.get(_url(hcp_id), headers=other_territory), 404, "hcp_id")
    assert client.get(_url(hcp_id), headers=analyst).status_code == 403
    assert client.get(_url(hcp_id), headers=auditor).status_code == 200
    assert client.post(_url(hcp_id), json=_grant(), headers=auditor).status_code == 403
    _problem(client.post(_url(hcp_id), json=_grant(market="FR"), headers=de_ops), 403, "market")
    assert client.get(_url(hcp_id)).status_code == 401
    assert _counts(container) == before
    captured = client.post(
        _url(hcp_id),
        json=_grant(source="rep_capture", evidence="signature sig-42"),
        headers=rep,
    )
    assert captured.status_code == 201, captured.text
    assert captured.json()["proof"]["ip"] is None  # not a web capture
