"""Segments over HTTP: definitions, previews and counts (of a stored segment or of a condition
in the body), refreshes; roles without the permission get 403, bad documents and conditions
a problem document naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, bearer_for

from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent

KOL = {"attribute": {"name": "segments", "op": "eq", "value": "kol"}}
DOCUMENT: dict[str, Any] = {
    "name": "kol-openers",
    "description": "key opinion leaders who opened an e-mail this month",
    "condition": {
        "all": [KOL, {"events": {"channel": "campaign_email", "action": "opened",
                                 "within_days": 30}}]
    },
}  # fmt: skip


@pytest.fixture
def hcps(container: Container) -> list[str]:
    """Three synthetic HCPs tagged kol (DE, DE, FR); the first two opened an e-mail."""
    events = []
    for n, market in enumerate(["DE", "DE", "FR"]):
        traits = {"market": market, "segments": ["kol"], "email": f"k{n}@x.example"}
        events.append(
            LogEvent(
                f"id-k{n}",
                EventKind.IDENTIFY,
                f"crm:K{n}",
                NOW,
                NOW,
                "tests",
                payload={"traits": traits},
                synthetic=True,
            )
        )
        if n < 2:
            at = NOW - dt.timedelta(days=3)
            events.append(
                LogEvent(f"open-k{n}", EventKind.TRACK, f"email:k{n}@x.example", at, at, "tests",
                         channel=Channel.CAMPAIGN_EMAIL, action=Action.OPENED, synthetic=True)
            )  # fmt: skip
    container.log.append(events)
    container.catch_up()
    found = [container.profiles.find_by_identifier(f"crm:K{n}") for n in range(3)]
    assert all(found)
    return [h for h in found if h is not None]


def test_define_preview_count_refresh_and_delete(
    client: TestClient, bearer: dict[str, str], hcps: list[str]
) -> None:
    created = client.post("/api/v1/segments", json=DOCUMENT, headers=bearer)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    listed = client.get("/api/v1/segments", headers=bearer).json()["items"]
    assert [s["name"] for s in listed] == ["kol-openers"]
    count = client.get("/api/v1/segments/kol-openers/count", headers=bearer)
    assert count.json()["count"] == 2
    preview = client.get("/api/v1/segments/kol-openers/preview", headers=bearer).json()
    assert preview["size"] == 2
    assert preview["markets"] == [{"market": "DE", "size": 2}]
    assert {c["channel"] for c in preview["consent"]} >= {"email", "sms", "f2f_call"}
    assert sorted(preview["sample"]) == sorted(hcps[:2])
    ad_hoc = client.post("/api/v1/segments/preview", json=KOL, headers=bearer).json()
    assert ad_hoc["size"] == 3
    assert client.post("/api/v1/segments/count", json=KOL, headers=bearer).json() == {"count": 3}
    refreshed = client.post("/api/v1/segments/kol-openers/refresh", headers=bearer).json()
    assert (refreshed["entered"], refreshed["left"]) == (2, 0)
    assert client.get("/api/v1/segments/kol-openers", headers=bearer).json()["members"] == 2
    wider = {"description": "every KOL", "condition": KOL}
    updated = client.put("/api/v1/segments/kol-openers", json=wider, headers=bearer)
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["changed"]) == (2, True)
    assert (
        client.post("/api/v1/segments/kol-openers/refresh", headers=bearer).json()["entered"] == 1
    )
    deleted = client.delete("/api/v1/segments/kol-openers", headers=bearer)
    assert deleted.json()["left"] == 3
    gone = client.get("/api/v1/segments/kol-openers", headers=bearer)
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"


def test_analysts_read_but_may_not_change_segments(
    client: TestClient, container: Container, bearer: dict[str, str], hcps: list[str]
) -> None:
    assert client.post("/api/v1/segments", json=DOCUMENT, headers=bearer).status_code == 201
    analyst = bearer_for(container, "ana", "data_analyst")
    assert client.get("/api/v1/segments/kol-openers/count", headers=analyst).status_code == 200
    for method, path, body in (
        ("POST", "/api/v1/segments", {**DOCUMENT, "name": "other"}),
        ("PUT", "/api/v1/segments/kol-openers", DOCUMENT),
        ("DELETE", "/api/v1/segments/kol-openers", None),
        ("POST", "/api/v1/segments/kol-openers/refresh", None),
    ):
        refused = client.request(method, path, json=body, headers=analyst)
        assert refused.status_code == 403, (method, path)
        assert (refused.json()["resource"], refused.json()["verb"]) == ("segment", "write")
    reviewer = bearer_for(container, "mlr", "mlr_reviewer")
    assert client.get("/api/v1/segments", headers=reviewer).status_code == 403
    assert client.get("/api/v1/segments/kol-openers", headers=bearer).json()["version"] == 1


def test_a_market_scoped_user_previews_only_their_markets(
    client: TestClient, container: Container, hcps: list[str]
) -> None:
    fr = bearer_for(container, "bm-fr", "brand_manager", markets=["FR"])
    preview = client.post("/api/v1/segments/preview", json=KOL, headers=fr).json()
    assert (preview["size"], preview["sample"]) == (1, [hcps[2]])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DOCUMENT, "name": "Bad Name"}, "name"),
        ({**DOCUMENT, "condition": {"attribute": {"name": "specialty", "op": "gt",
                                                  "value": "x"}}}, "condition.attribute"),
        ({**DOCUMENT, "condition": {"all": []}}, "condition.all"),
        ({**DOCUMENT, "condition": {"events": {"channel": "pigeon", "within_days": 3}}},
         "condition.events.channel.0"),
        ({**DOCUMENT, "condition": {"attribute": {}, "consent": {}}}, "condition"),
        ({"name": "x"}, "condition"),
        ([], "document"),
    ],
)  # fmt: skip
def test_bad_documents_are_refused_naming_the_field(
    client: TestClient, bearer: dict[str, str], body: Any, field: str
) -> None:
    response = client.post("/api/v1/segments", json=body, headers=bearer)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (problem["code"], problem["field"]) == ("validation_failed", field)
    assert problem["fix"]
    assert client.get("/api/v1/segments", headers=bearer).json()["items"] == []


def test_bad_conditions_and_bodies_in_previews(client: TestClient, bearer: dict[str, str]) -> None:
    bad = client.post(
        "/api/v1/segments/preview",
        json={"feature": {"name": "response_rate", "window_days": 9999, "op": "gte",
                          "value": 0.2}},
        headers=bearer,
    )  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["field"] == "condition.feature.window_days"
    not_json = client.post(
        "/api/v1/segments/count",
        content=b"{not json",
        headers={**bearer, "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert not_json.json()["code"] == "validation_failed"
    renamed = client.put(
        "/api/v1/segments/some-name", json={**DOCUMENT, "name": "other-name"}, headers=bearer
    )
    assert renamed.status_code == 400
    assert renamed.json()["field"] == "name"
    missing = client.put("/api/v1/segments/some-name", json=DOCUMENT | {"name": "some-name"},
                         headers=bearer)  # fmt: skip
    assert missing.status_code == 404
