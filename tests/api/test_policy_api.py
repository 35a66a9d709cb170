"""Contact policies, do-not-contact entries and suppressions over the API, on both deployments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, bearer_for

from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent

PROBLEM = "application/problem+json"
DE_POLICY: dict[str, Any] = {
    "time_zone": "Europe/Berlin",
    "caps": [{"scope": "all", "period_days": 7, "max_touches": 3}],
    "min_gap_hours": {"campaign_email": 72},
    "quiet_hours": {"start": "19:00", "end": "08:00"},
}


def _hcp(container: Container, npi: str, territory: str = "T1", market: str = "DE") -> str:
    traits = {"market": market, "territory": territory, "email": f"dr{npi[-3:]}@clinic.example"}
    container.log.append(
        [
            LogEvent(
                f"id-{npi}",
                EventKind.IDENTIFY,
                f"npi:{npi}",
                NOW,
                NOW,
                "tests",
                payload={"traits": traits},
            )
        ]
    )
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{npi}")
    assert hcp_id is not None
    return hcp_id


def _problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code
    return body


def _audit(container: Container, action: str) -> list[Any]:
    return [r for r in container.audit.iter_records() if r.action == action]


def test_put_and_get_a_policy_with_versions(
    client: TestClient, container: Container, bearer: dict[str, str]
) -> None:
    assert client.get("/api/v1/policies/DE", headers=bearer).json()["builtin"] is True
    put = client.put(
        "/api/v1/policies/de", json={"document": DE_POLICY, "reason": "new caps"}, headers=bearer
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1
    assert put.json()["changed"] is True
    again = client.put(
        "/api/v1/policies/DE", json={"document": DE_POLICY, "reason": "same"}, headers=bearer
    )
    assert again.json()["changed"] is False
    changed = {**DE_POLICY, "quiet_weekdays": ["sunday"]}
    assert (
        client.put(
            "/api/v1/policies/DE", json={"document": changed, "reason": "sundays"}, headers=bearer
        ).json()["version"]
        == 2
    )
    got = client.get("/api/v1/policies/DE", headers=bearer).json()
    assert got["version"] == 2
    assert got["document"]["quiet_weekdays"] == ["sunday"]
    assert [v["version"] for v in got["history"]] == [1, 2]
    assert client.get("/api/v1/policies", headers=bearer).json()["markets"] == ["DE"]
    audit = _audit(container, "contact_policy.set")
    assert len(audit) == 2
    assert audit[1].before["version"] == 1
    assert audit[1].after["version"] == 2
    assert audit[1].reason == "sundays"
    assert container.contact.policy("DE").quiet_weekdays == {6}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({**DE_POLICY, "caps": [{"scope": "all", "period_days": -1, "max_touches": 1}]},
         "caps[0].period_days"),
        ({**DE_POLICY, "min_gap_hours": {"carrier_pigeon": 1}}, "min_gap_hours.carrier_pigeon"),
        ({**DE_POLICY, "quiet_hours": {"start": "'; DROP TABLE x; --", "end": "08:00"}},
         "quiet_hours.start"),
        ({**DE_POLICY, "market": "US"}, "market"),
    ],
)  # fmt: skip
def test_bad_policies_are_refused_and_change_nothing(
    client: TestClient,
    container: Container,
    bearer: dict[str, str],
    document: dict[str, Any],
    field: str,
) -> None:
    response = client.put(
        "/api/v1/policies/DE", json={"document": document, "reason": "try"}, headers=bearer
    )
    body = _problem(response, 400)
    assert body["field"] == field
    assert body["fix"]
    assert client.get("/api/v1/policies/DE", headers=bearer).json()["builtin"] is True
    assert _audit(container, "contact_policy.set") == []


def test_policy_access_rules(client: TestClient, container: Container) -> None:
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    ops_fr = bearer_for(container, "ops-fr", "marketing_ops", markets=["FR"])
    body = {"document": DE_POLICY, "reason": "try"}
    _problem(client.put("/api/v1/policies/DE", json=body), 401)
    _problem(client.put("/api/v1/policies/DE", json=body, headers=rep), 403, "forbidden")
    _problem(client.put("/api/v1/policies/DE", json=body, headers=ops_fr), 403, "forbidden")
    assert client.get("/api/v1/policies/DE", headers=rep).status_code == 200
    _problem(client.get("/api/v1/policies/Germany", headers=rep), 400, "validation_failed")
    _problem(client.put("/api/v1/policies/DE", json={"document": DE_POLICY}, headers=rep), 403)
    forged = {"Authorization": "Bearer cp_forged_token_value"}
    _problem(client.get("/api/v1/policies/DE", headers=forged), 401)


def test_do_not_contact_lifecycle(
    client: TestClient, container: Container, bearer: dict[str, str]
) -> None:
    hcp_id = _hcp(container, "1234567893")
    url = f"/api/v1/hcps/{hcp_id}/do-not-contact"
    added = client.post(
        url, json={"channel": "sms", "reason": "asked at the visit"}, headers=bearer
    )
    assert added.status_code == 201, added.text
    assert added.json()["created"] is True
    assert (
        client.post(url, json={"channel": "sms", "reason": "again"}, headers=bearer).json()[
            "created"
        ]
        is False
    )
    client.post(url, json={"reason": "retired"}, headers=bearer)
    listed = client.get(url, headers=bearer).json()["items"]
    assert [(i["channel"], i["reason"]) for i in listed] == [
        ("all", "retired"),
        ("sms", "asked at the visit"),
    ]
    assert len(_audit(container, "dnc.add")) == 2
    removed = client.delete(
        url, params={"channel": "sms", "reason": "changed mind"}, headers=bearer
    )
    assert removed.status_code == 200, removed.text
    _problem(client.delete(url, params={"channel": "sms", "reason": "again"}, headers=bearer), 404)
    assert [i["channel"] for i in client.get(url, headers=bearer).json()["items"]] == ["all"]
    [record] = _audit(container, "dnc.remove")
    assert record.before["channel"] == "sms"
    assert record.reason == "changed mind"


def test_do_not_contact_bad_input_and_scope(
    client: TestClient, container: Container, bearer: dict[str, str]
) -> None:
    hcp_id = _hcp(container, "1234567893", territory="T1")
    url = f"/api/v1/hcps/{hcp_id}/do-not-contact"
    _problem(client.post(url, json={"channel": "fax", "reason": "x y z"}, headers=bearer), 422)
    _problem(client.post(url, json={"channel": "sms"}, headers=bearer), 422)
    _problem(client.post(url, json={"channel": "sms", "reason": "      "}, headers=bearer), 400)
    _problem(
        client.post(
            "/api/v1/hcps/hcp_nope'%20OR%201=1/do-not-contact",
            json={"reason": "abc"},
            headers=bearer,
        ),
        404,
    )
    assert client.get(url, headers=bearer).json()["items"] == []
    ops_fr = bearer_for(container, "ops-fr", "marketing_ops", markets=["FR"])
    _problem(client.post(url, json={"reason": "outside"}, headers=ops_fr), 404, "not_found")
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    _problem(client.post(url, json={"reason": "a rep"}, headers=rep), 403)
    assert client.get(url, headers=rep).status_code == 200
    assert _audit(container, "dnc.add") == []


def test_suppressions_are_listed_and_lifted(
    client: TestClient, container: Container, bearer: dict[str, str]
) -> None:
    hcp_id = _hcp(container, "1234567893")
    bounce = LogEvent(
        "b-1",
        EventKind.TRACK,
        "email:dr893@clinic.example",
        NOW - dt.timedelta(hours=2),
        NOW,
        "tests",
        channel=Channel.CAMPAIGN_EMAIL,
        action=Action.BOUNCED,
        payload={"properties": {"bounce_type": "hard"}},
    )
    container.log.append([bounce])
    container.catch_up()
    url = f"/api/v1/hcps/{hcp_id}/suppressions"
    [item] = client.get(url, headers=bearer).json()["items"]
    assert item["channel"] == "email"
    assert item["identifier"] == "email:dr893@clinic.example"
    _problem(client.delete(f"{url}/email", headers=bearer), 422)
    _problem(client.delete(f"{url}/fax", params={"reason": "fixed"}, headers=bearer), 422)
    lifted = client.delete(f"{url}/email", params={"reason": "address fixed"}, headers=bearer)
    assert lifted.status_code == 200, lifted.text
    assert client.get(url, headers=bearer).json()["items"] == []
    assert (
        len(client.get(url, params={"include_lifted": True}, headers=bearer).json()["items"]) == 1
    )
    _problem(client.delete(f"{url}/email", params={"reason": "again"}, headers=bearer), 404)
    [record] = _audit(container, "suppression.lift")
    assert record.after["lifted_at"] is not None
