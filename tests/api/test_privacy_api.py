"""Export and erasure of one HCP through the API, on both deployments."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import bearer_for

from counterpoint.container import Container

NPI = "1234567893"
EMAIL = "orla.brightwater@example-clinic.org"


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": "id-1",
            "userId": f"npi:{NPI}",
            "timestamp": "2026-11-01T08:00:00Z",
            "traits": {
                "email": EMAIL,
                "first_name": "Orla",
                "last_name": "Brightwater",
                "market": "US",
            },
        }
    ]
    for i in range(3):
        events.append(
            {
                "type": "track",
                "messageId": f"msl-{i}",
                "userId": f"npi:{NPI}",
                "event": "Inquiry answered",
                "timestamp": f"2026-11-0{2 + i}T09:00:00Z",
                "properties": {
                    "channel": "medical_inquiry",
                    "action": "inquiry_answered",
                    "question": "dosing in renal impairment",
                },
            }
        )
    assert client.post("/v1/batch", json={"batch": events}, headers=basic).status_code == 200
    container.catch_up()
    found = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert found is not None
    return found


def test_export_holds_everything_and_is_audited(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    response = client.get(
        f"/api/v1/hcps/{hcp_id}/export", params={"reason": "access request 12"}, headers=bearer
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hcp_id"] == hcp_id
    assert body["profile"]["last_name"] == "Brightwater"
    assert sorted(body["identifiers"]) == [f"email:{EMAIL}", f"npi:{NPI}"]
    assert len(body["events"]) == 4
    # medical content is the person's own data: not redacted in their export
    assert {e["payload"].get("properties", {}).get("question") for e in body["events"]} >= {
        "dosing in renal impairment"
    }
    assert body["generated_at"]
    assert body["synthetic"] is False
    audit = list(container.audit.iter_records(object_id=hcp_id))
    assert audit[-1].action == "hcp.export"
    assert audit[-1].reason == "access request 12"


def test_export_needs_a_reason_and_the_role(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    missing = client.get(f"/api/v1/hcps/{hcp_id}/export", headers=bearer)
    assert missing.status_code == 422
    blank = client.get(f"/api/v1/hcps/{hcp_id}/export", params={"reason": " "}, headers=bearer)
    assert blank.status_code == 400
    assert blank.json()["field"] == "reason"
    rep = bearer_for(container, "rep", "marketing_ops")
    forbidden = client.get(
        f"/api/v1/hcps/{hcp_id}/export", params={"reason": "curious"}, headers=rep
    )
    assert forbidden.status_code == 403
    assert [r.action for r in container.audit.iter_records(object_id=hcp_id)] == []


def test_erase_then_lookups_answer_erased(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    response = client.post(
        f"/api/v1/hcps/{hcp_id}/erase", json={"reason": "erasure request 77"}, headers=bearer
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pseudonym"].startswith("erased:")
    assert body["events_redacted"] == 4
    gone = client.get(f"/api/v1/hcps/{hcp_id}", headers=bearer)
    assert gone.status_code == 410
    assert gone.json()["code"] == "erased"
    by_email = client.get("/api/v1/hcps", params={"identifier": f"email:{EMAIL}"}, headers=bearer)
    assert by_email.status_code == 410
    again = client.post(
        f"/api/v1/hcps/{hcp_id}/erase", json={"reason": "erasure request 77"}, headers=bearer
    )
    assert again.status_code == 410


def test_erase_refuses_bad_input_and_changes_nothing(
    client: TestClient, bearer: dict[str, str], hcp_id: str, container: Container
) -> None:
    head = container.log.count()
    for body, status in (
        ({}, 422),
        ({"reason": ""}, 400),
        ({"reason": "asked by Orla Brightwater"}, 400),
        ({"reason": f"mail from {EMAIL}"}, 400),
    ):
        response = client.post(f"/api/v1/hcps/{hcp_id}/erase", json=body, headers=bearer)
        assert response.status_code == status, response.text
    unknown = client.post(
        "/api/v1/hcps/hcp_00000000000000000000000000000000/erase",
        json={"reason": "erasure request 78"},
        headers=bearer,
    )
    assert unknown.status_code == 404
    ops = bearer_for(container, "ops", "marketing_ops")
    forbidden = client.post(
        f"/api/v1/hcps/{hcp_id}/erase", json={"reason": "erasure request 79"}, headers=ops
    )
    assert forbidden.status_code == 403
    assert container.profiles.find_by_identifier(f"npi:{NPI}") == hcp_id
    assert container.log.count() == head
    assert container.privacy.erased() == []
