"""Journeys over HTTP on both deployments: validate (YAML or JSON body), publish (only roles
holding journey: write, within their brands), list, read, status, the map with live
figures, pause, resume, stop, move; bad input is a problem document naming the field."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, bearer_for
from tests.integration.test_journey_runtime import (
    BRAND,
    JOURNEY,
    add_content,
    add_hcps,
    opened,
    rep,
)

from counterpoint.container import Container
from counterpoint.kit.clock import FixedClock

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def manager_headers(container: Container) -> dict[str, str]:
    add_content(container)
    rep(container)
    return bearer_for(container, "bm-zen", "brand_manager", brands=[BRAND], markets=["DE"])


def test_validate_takes_yaml_or_json_and_names_node_and_line(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/journeys/validate", content=JOURNEY, headers={**manager_headers, **YAML}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["ok"], r.json()["errors"], r.json()["journey"]) == (True, 0, "zen-intro")
    bad = JOURNEY.replace("next: wait-open\n", "next: nowhere\n")
    r = client.post(
        "/api/v1/journeys/validate", json={"source": bad, "name": "j.yaml"}, headers=manager_headers
    )
    body = r.json()
    assert body["ok"] is False
    [problem] = [p for p in body["problems"] if p["severity"] == "error"]
    assert problem["line"] is not None
    assert body["source"] == "j.yaml"
    r = client.post("/api/v1/journeys/validate", json={"text": JOURNEY}, headers=manager_headers)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        400,
        "validation_failed",
        "source",
    )


def test_publish_run_and_read_status_and_map(
    client: TestClient, container: Container, clock: FixedClock, manager_headers: dict[str, str]
) -> None:
    add_hcps(container, 2)
    r = client.post("/api/v1/journeys", content=JOURNEY, headers={**manager_headers, **YAML})
    assert r.status_code == 201, r.text
    assert (r.json()["id"], r.json()["current_version"]) == ("zen-intro", 1)
    container.journey_runtime.drain()
    container.delivery_worker.drain()
    opened(container, 0, NOW + dt.timedelta(hours=1))
    clock.advance(dt.timedelta(hours=2))
    container.journey_runtime.drain()

    listed = client.get("/api/v1/journeys", headers=manager_headers).json()["items"]
    assert [j["id"] for j in listed] == ["zen-intro"]
    one = client.get("/api/v1/journeys/zen-intro", headers=manager_headers).json()
    assert [v["version"] for v in one["versions"]] == [1]
    assert one["document"]["brand"] == BRAND

    status = client.get("/api/v1/journeys/zen-intro/status", headers=manager_headers).json()
    assert (status["totals"]["sent"], status["totals"]["completed"]) == (2, 1)
    assert (status["totals"]["waiting"], status["totals"]["goals"]) == (1, 1)

    journey_map = client.get("/api/v1/journeys/zen-intro/map", headers=manager_headers).json()
    email = next(t for t in journey_map["touchpoints"] if t["id"] == "tp-email")
    assert email["figures"]["sent"] == 2
    assert journey_map["totals"]["enrollments"] == 2
    assert journey_map["responses"] == {"hcps_read": 2, "complete": True}
    assert journey_map["stages"][0]["conversion_to_next"] == 0.5  # one of two reached it


def test_life_cycle_over_http(
    client: TestClient, container: Container, manager_headers: dict[str, str]
) -> None:
    add_hcps(container, 1)
    client.post("/api/v1/journeys", content=JOURNEY, headers={**manager_headers, **YAML})
    container.journey_runtime.drain()
    assert (
        client.post("/api/v1/journeys/zen-intro/pause", headers=manager_headers).json()["status"]
        == "paused"
    )
    r = client.post("/api/v1/journeys/zen-intro/pause", headers=manager_headers)
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    assert (
        client.post("/api/v1/journeys/zen-intro/resume", headers=manager_headers).json()["status"]
        == "active"
    )
    second = JOURNEY.replace("timeout: {days: 3}", "timeout: {days: 2}")
    client.post("/api/v1/journeys", content=second, headers={**manager_headers, **YAML})
    r = client.post(
        "/api/v1/journeys/zen-intro/move", json={"from_version": 1}, headers=manager_headers
    )
    assert (r.json()["moved"], r.json()["to_version"]) == (1, 2)
    r = client.post(
        "/api/v1/journeys/zen-intro/move", json={"from_version": 0}, headers=manager_headers
    )
    assert r.status_code == 422
    r = client.post("/api/v1/journeys/zen-intro/stop", headers=manager_headers)
    assert (r.json()["status"], r.json()["exited"]) == ("stopped", 1)
    admin = bearer_for(container, "adm", "admin")
    audit = client.get("/api/v1/audit", params={"object_id": "zen-intro"}, headers=admin)
    actions = [a["action"] for a in audit.json()["items"]]
    assert actions == [
        "journey.publish",
        "journey.pause",
        "journey.resume",
        "journey.publish",
        "journey.move",
        "journey.stop",
    ]


def test_publish_by_a_role_that_may_not_is_403_and_stores_nothing(
    client: TestClient, container: Container, manager_headers: dict[str, str]
) -> None:
    for name, role in (("analyst", "data_analyst"), ("rep-x", "sales_rep")):
        headers = bearer_for(container, name, role, territories=["T1"])
        r = client.post("/api/v1/journeys", content=JOURNEY, headers={**headers, **YAML})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    other = bearer_for(container, "bm-other", "brand_manager", brands=["OTHER"])
    r = client.post("/api/v1/journeys", content=JOURNEY, headers={**other, **YAML})
    assert (r.status_code, r.json()["field"]) == (403, "brand")
    assert client.get("/api/v1/journeys", headers=manager_headers).json()["items"] == []


def test_an_invalid_document_is_400_with_every_problem(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    r = client.post("/api/v1/journeys", content="journey: [", headers={**manager_headers, **YAML})
    assert (r.status_code, r.json()["code"]) == (400, "journey_invalid")
    assert r.json()["problems"][0]["code"] == "yaml_syntax"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post(
        "/api/v1/journeys",
        content=b"\xff\xfe",
        headers={**manager_headers, "Content-Type": "application/yaml"},
    )
    assert (r.status_code, r.json()["field"]) == (400, "body")
    r = client.get("/api/v1/journeys/nope/status", headers=manager_headers)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
