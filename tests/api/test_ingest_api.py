"""The Segment-compatible API end to end, on both deployments."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from fastapi.testclient import TestClient

from counterpoint.container import Container

NPI = "1234567893"


@pytest.fixture(params=[0, 2], ids=["in-process", "mapping-processes"])
def mapping_processes(request: pytest.FixtureRequest) -> int:
    """Every test here on both deployments, mapping requests in-process and in processes."""
    return int(request.param)


def _track(message_id: str, **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "track",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "event": "Email Opened",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"brand": "ZENTROVA", "content_id": "CNT-1"},
    }
    event.update(extra)
    return event


def _wait_for_profile(
    client: TestClient, bearer: dict[str, str], identifier: str
) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while True:
        response = client.get("/api/v1/hcps", params={"identifier": identifier}, headers=bearer)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response.json()  # type: ignore[no-any-return]
        time.sleep(0.02)


def test_batch_accepts_deduplicates_and_quarantines(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str]
) -> None:
    body = {
        "batch": [_track("m1"), _track("m2"), _track("m1"), {"type": "track", "messageId": "bad"}]
    }
    response = client.post("/v1/batch", json=body, headers=basic)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["duplicates"], result["quarantined"]) == (2, 1, 1)
    assert result["errors"][0]["code"] == "missing_identity"

    again = client.post("/v1/batch", json={"batch": [_track("m1")]}, headers=basic).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)

    quarantined = client.get("/api/v1/quarantine", headers=bearer).json()["items"]
    assert [q["reason_code"] for q in quarantined] == ["missing_identity"]


def test_event_reaches_the_profile_and_timeline(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str]
) -> None:
    client.post("/v1/track", json=_track("t1"), headers=basic).raise_for_status()
    profile = _wait_for_profile(client, bearer, f"npi:{NPI}")
    assert {"type": "npi", "value": NPI} in profile["identifiers"]  # type: ignore[operator]
    timeline = client.get(f"/api/v1/hcps/{profile['id']}/timeline", headers=bearer).json()
    assert [e["message_id"] for e in timeline["items"]] == ["t1"]
    assert timeline["items"][0]["channel"] == "campaign_email"
    assert timeline["items"][0]["action"] == "opened"


def test_gzip_body_is_accepted(client: TestClient, basic: dict[str, str]) -> None:
    payload = gzip.compress(json.dumps({"batch": [_track("g1")]}).encode())
    headers = {**basic, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = client.post("/v1/batch", content=payload, headers=headers)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_unknown_write_key_is_refused(client: TestClient, container: Container) -> None:
    response = client.post("/v1/batch", json={"batch": [_track("x")]}, auth=("nope", ""))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_write_key"
    assert container.log.count() == 0


def test_oversize_batch_is_413(client: TestClient, basic: dict[str, str]) -> None:
    big = {"batch": [_track(f"b{i}", properties={"pad": "x" * 30_000}) for i in range(20)]}
    response = client.post("/v1/batch", json=big, headers=basic)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_malformed_json_is_400_and_stores_nothing(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    response = client.post(
        "/v1/batch", content=b"{not json", headers={**basic, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert container.log.count() == 0


def test_management_api_needs_a_token(client: TestClient) -> None:
    response = client.get("/api/v1/hcps", params={"identifier": f"npi:{NPI}"})
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
