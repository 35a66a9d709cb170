"""Manual unmerge: split identifiers off an HCP, with their events, for good."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from counterpoint.container import Container

NPI = "1234567893"


def _send(client: TestClient, basic: dict[str, str], *events: dict[str, Any]) -> None:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic)
    assert response.status_code == 200, response.text
    assert response.json()["quarantined"] == 0, response.text


def _settled(container: Container) -> None:
    deadline = time.monotonic() + 5
    while container.projector.position() < container.log.head():
        assert time.monotonic() < deadline, "the projector did not catch up"
        time.sleep(0.02)


def _page(message_id: str, anon: str) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": message_id,
        "anonymousId": anon,
        "name": "Dosing",
        "timestamp": "2026-11-20T09:00:00Z",
    }


def _identify(message_id: str, anon: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "anonymousId": anon,
        "traits": {"first_name": "Ada"},
        "timestamp": "2026-11-21T09:00:00Z",
    }


def _hcp(client: TestClient, bearer: dict[str, str], identifier: str) -> dict[str, Any]:
    response = client.get("/api/v1/hcps", params={"identifier": identifier}, headers=bearer)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _timeline(client: TestClient, bearer: dict[str, str], hcp_id: str) -> list[str]:
    response = client.get(f"/api/v1/hcps/{hcp_id}/timeline", headers=bearer)
    return [e["message_id"] for e in response.json()["items"]]


def test_unmerge_splits_identifiers_and_their_events_for_good(
    client: TestClient, container: Container, basic: dict[str, str], bearer: dict[str, str]
) -> None:
    _send(client, basic, _page("p1", "shared-tablet"))
    _send(client, basic, _identify("i1", "shared-tablet"))
    _settled(container)
    merged = _hcp(client, bearer, f"npi:{NPI}")
    assert {"type": "anon", "value": "shared-tablet"} in merged["identifiers"]
    assert set(_timeline(client, bearer, merged["id"])) == {"p1", "i1"}

    response = client.post(
        f"/api/v1/hcps/{merged['id']}/unmerge",
        json={"identifiers": ["anon:shared-tablet"], "reason": "a tablet shared by a ward"},
        headers=bearer,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["hcp"]["id"] != result["separated"]["id"]
    doctor = _hcp(client, bearer, f"npi:{NPI}")
    tablet = _hcp(client, bearer, "anon:shared-tablet")
    assert doctor["id"] != tablet["id"]
    assert _timeline(client, bearer, tablet["id"]) == ["p1"]
    assert _timeline(client, bearer, doctor["id"]) == ["i1"]
    assert any(m["kind"] == "split" for m in doctor["merges"] + tablet["merges"])

    # the same evidence arriving again does not join them
    _send(client, basic, _identify("i2", "shared-tablet"))
    _settled(container)
    assert (
        _hcp(client, bearer, f"npi:{NPI}")["id"] != _hcp(client, bearer, "anon:shared-tablet")["id"]
    )

    # nor does a replay of the whole log
    container.projector.rebuild()
    assert (
        _hcp(client, bearer, f"npi:{NPI}")["id"] != _hcp(client, bearer, "anon:shared-tablet")["id"]
    )


def test_unmerge_refuses_what_it_cannot_do(
    client: TestClient, container: Container, basic: dict[str, str], bearer: dict[str, str]
) -> None:
    _send(client, basic, _identify("i1", "tab-2"))
    _settled(container)
    hcp = _hcp(client, bearer, f"npi:{NPI}")
    url = f"/api/v1/hcps/{hcp['id']}/unmerge"
    stranger = client.post(
        url, json={"identifiers": ["crm:NOT-HERS"], "reason": "test"}, headers=bearer
    )
    assert stranger.status_code == 400
    assert stranger.json()["field"] == "identifiers"
    everything = client.post(
        url, json={"identifiers": [f"npi:{NPI}", "anon:tab-2"], "reason": "test"}, headers=bearer
    )
    assert everything.status_code == 400
    assert everything.json()["field"] == "identifiers"
    no_reason = client.post(url, json={"identifiers": ["anon:tab-2"]}, headers=bearer)
    assert no_reason.status_code == 422
    anonymous = client.post(url, json={"identifiers": ["anon:tab-2"], "reason": "test"})
    assert anonymous.status_code == 401
    assert _hcp(client, bearer, "anon:tab-2")["id"] == hcp["id"]
