"""Transfers of value through the API: record, list, export; bad input changes nothing."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import bearer_for

from counterpoint.container import Container

NPI = "1234567893"


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    identify = {
        "type": "identify",
        "messageId": "id-1",
        "userId": f"npi:{NPI}",
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {
            "first_name": "Ines",
            "last_name": "Marlow",
            "market": "US",
            "specialty": "cardiology",
            "territory": "T1",
        },
    }
    assert client.post("/v1/batch", json={"batch": [identify]}, headers=basic).status_code == 200
    container.catch_up()
    found = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert found is not None
    return found


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": "125.50",
        "currency": "USD",
        "nature": "consulting_fee",
        "form": "cash",
        "date": "2026-10-15",
        "product": "Zentrova",
        "description": "advisory board, October",
        "reason": "contract C-17",
    }
    body.update(over)
    return body


def test_record_list_and_export(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    created = client.post(f"/api/v1/hcps/{hcp_id}/transfers", json=_body(), headers=bearer)
    assert created.status_code == 201, created.text
    assert created.json()["amount"] == "125.50"
    assert created.json()["market"] == "US"
    listed = client.get(f"/api/v1/hcps/{hcp_id}/transfers", headers=bearer).json()
    assert [t["nature"] for t in listed["items"]] == ["consulting_fee"]
    actions = [r.action for r in container.audit.iter_records(object_id=hcp_id)]
    assert "transfer_of_value.record" in actions
    export = client.get(
        "/api/v1/transfers/export",
        params={"format": "open_payments", "year": 2026},
        headers=bearer,
    )
    assert export.status_code == 200, export.text
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 1
    assert rows[0]["Covered_Recipient_NPI"] == NPI
    assert rows[0]["Covered_Recipient_Last_Name"] == "Marlow"
    assert rows[0]["Total_Amount_of_Payment_USDollars"] == "125.50"
    assert rows[0]["Nature_of_Payment_or_Transfer_of_Value"] == "Consulting Fee"
    assert rows[0]["Date_of_Payment"] == "10/15/2026"


@pytest.mark.parametrize(
    ("over", "status", "field"),
    [
        ({"amount": "-10.00"}, 400, "amount"),
        ({"amount": "0"}, 400, "amount"),
        ({"amount": "10.001"}, 400, "amount"),
        ({"amount": "ten"}, 400, "amount"),
        ({"currency": "XXY"}, 400, "currency"),
        ({"currency": "DOLLARS"}, 422, None),
        ({"nature": "bribe"}, 400, "nature"),
        ({"date": "2027-01-01"}, 400, "date"),
        ({"description": "<script>alert(1)</script>"}, 400, "description"),
        ({"description": '=HYPERLINK("http://x.invalid","click")'}, 400, "description"),
        ({"description": "fee\u0000hidden"}, 400, "description"),
        ({"brand": "x'; DROP TABLE transfer_of_value; --"}, 400, "brand"),
        ({"market": "ZZ"}, 400, "market"),
        ({"reason": ""}, 400, "reason"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    client: TestClient,
    bearer: dict[str, str],
    hcp_id: str,
    container: Container,
    over: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    response = client.post(f"/api/v1/hcps/{hcp_id}/transfers", json=_body(**over), headers=bearer)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert response.json()["field"] == field
    assert client.get(f"/api/v1/hcps/{hcp_id}/transfers", headers=bearer).json()["items"] == []


def test_unknown_or_out_of_scope_hcp(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    unknown = client.post(
        "/api/v1/hcps/hcp_00000000000000000000000000000000/transfers",
        json=_body(),
        headers=bearer,
    )
    assert unknown.status_code == 404
    rep = bearer_for(container, "rep-t9", "sales_rep", territories=["T9"])
    hidden = client.post(f"/api/v1/hcps/{hcp_id}/transfers", json=_body(), headers=rep)
    assert hidden.status_code == 404
    assert client.get(f"/api/v1/hcps/{hcp_id}/transfers", headers=bearer).json()["items"] == []


def test_export_refuses_non_usd_for_open_payments_and_needs_the_role(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    assert (
        client.post(
            f"/api/v1/hcps/{hcp_id}/transfers", json=_body(currency="EUR"), headers=bearer
        ).status_code
        == 201
    )
    refused = client.get(
        "/api/v1/transfers/export",
        params={"format": "open_payments", "year": 2026},
        headers=bearer,
    )
    assert refused.status_code == 400
    assert refused.json()["field"] == "currency"
    assert len(refused.json()["records"]) == 1
    ops = bearer_for(container, "ops", "marketing_ops")
    forbidden = client.get(
        "/api/v1/transfers/export", params={"format": "efpia", "year": 2026}, headers=ops
    )
    assert forbidden.status_code == 403
    bad = client.get(
        "/api/v1/transfers/export",
        params={"format": "efpia", "year": 2026, "market": "XX"},
        headers=bearer,
    )
    assert bad.status_code == 400
