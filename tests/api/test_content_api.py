"""The content API end to end: create, edit, submit, sign with re-authentication, replay
refused, withdraw, expiring; errors are problem documents naming the field and the fix."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, TEST_ACTOR, bearer_for

from counterpoint.container import Container

PASSWORD = "correct horse battery staple"
BASE = "/api/v1/content"


def _footer() -> dict[str, Any]:
    return {
        "kind": "fragment",
        "code": "footer-de",
        "title": "Footer",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "body": {"text": "Abmelden: {{ links.unsubscribe }}"},
    }


def _email(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "code": "CMX-DE-EM-1",
        "asset_type": "campaign_email",
        "title": "Cardiomax news",
        "brand": "Cardiomax",
        "therapeutic_area": "cardiology",
        "topics": ["dosing"],
        "journey_stage": "consideration",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "channels": ["campaign_email"],
        "minutes": 2,
        "synthetic": True,
        "body": {"subject": "Hallo {{ hcp.last_name }}", "text": "Text {{ links.unsubscribe }}"},
    }
    doc.update(changes)
    return doc


TERMS = {
    "job_code": "JOB-1",
    "markets": ["DE"],
    "channels": ["campaign_email"],
    "valid_from": NOW.isoformat(),
    "valid_until": (NOW + dt.timedelta(days=365)).isoformat(),
}


class Api:
    def __init__(self, client: TestClient, container: Container) -> None:
        self.client = client
        self.author = bearer_for(container, "author", "brand_manager")
        self.reviewers: dict[str, dict[str, str]] = {}
        for discipline in ("medical", "legal", "regulatory"):
            name = f"rev-{discipline}"
            self.reviewers[discipline] = bearer_for(container, name, "mlr_reviewer")
            container.users.set_password(name, PASSWORD, TEST_ACTOR)

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(BASE, json=doc, headers=self.author)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def submit(self, item_id: str, **terms: Any) -> str:
        body = {**TERMS, **terms}
        response = self.client.post(f"{BASE}/{item_id}/submit", json=body, headers=self.author)
        assert response.status_code == 200, response.text
        manifest: str = response.json()["manifest_hash"]
        return manifest

    def sign(self, item_id: str, discipline: str, manifest: str, **changes: Any) -> Any:
        body = {
            "discipline": discipline,
            "decision": "approved",
            "password": PASSWORD,
            "meaning": f"approved as {discipline} reviewer",
            "manifest_hash": manifest,
        }
        body.update(changes)
        headers = changes.pop("headers", None) or self.reviewers[discipline]
        body.pop("headers", None)
        return self.client.post(f"{BASE}/{item_id}/reviews", json=body, headers=headers)


@pytest.fixture
def api(client: TestClient, container: Container) -> Api:
    return Api(client, container)


def test_the_whole_workflow_over_http(api: Api, client: TestClient) -> None:
    footer = api.create(_footer())
    manifest = api.submit(footer["id"], channels=[])  # a fragment has no channels
    for discipline in ("medical", "legal", "regulatory"):
        signed = api.sign(footer["id"], discipline, manifest)
        assert signed.status_code == 201, signed.text
        assert "password" not in signed.text
        assert PASSWORD not in signed.text
    assert signed.json()["item"]["state"] == "approved"

    email = api.create(_email(body={"subject": "s", "text": '{% include "footer-de" %}'}))
    assert email["fragments"] == ["footer-de"]
    manifest = api.submit(email["id"])
    for discipline in ("medical", "legal", "regulatory"):
        assert api.sign(email["id"], discipline, manifest).status_code == 201
    got = client.get(f"{BASE}/CMX-DE-EM-1", headers=api.author).json()
    assert got["state"] == "approved"
    assert got["approval"]["approved_hash"] == manifest

    reviews = client.get(f"{BASE}/{email['id']}/reviews", headers=api.reviewers["legal"])
    assert reviews.status_code == 200
    assert [r["binds"] for r in reviews.json()["reviews"]] == [True, True, True]

    expiring = client.get(f"{BASE}/expiring", params={"days": 400}, headers=api.author)
    assert [i["code"] for i in expiring.json()["items"]] == ["CMX-DE-EM-1", "footer-de"]
    assert client.get(f"{BASE}/expiring", headers=api.author).json()["items"] == []

    page = client.get(BASE, params={"kind": "asset", "state": "approved"}, headers=api.author)
    assert [i["code"] for i in page.json()["items"]] == ["CMX-DE-EM-1"]

    withdrawn = client.post(
        f"{BASE}/{email['id']}/withdraw",
        json={"reason": "new safety information"},
        headers=api.reviewers["regulatory"],
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["state"] == "withdrawn"


def test_a_wrong_password_is_refused_and_no_signature_recorded(
    api: Api, client: TestClient
) -> None:
    item = api.create(_email())
    manifest = api.submit(item["id"])
    refused = api.sign(item["id"], "medical", manifest, password="wrong password here")
    assert refused.status_code == 403
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "reauthentication_failed"
    assert problem["field"] == "password"
    assert "wrong password here" not in refused.text
    history = client.get(f"{BASE}/{item['id']}/reviews", headers=api.reviewers["medical"])
    assert history.json()["reviews"] == []


def test_a_wrong_meaning_is_a_400_naming_the_words(api: Api) -> None:
    item = api.create(_email())
    manifest = api.submit(item["id"])
    refused = api.sign(item["id"], "legal", manifest, meaning="ok")
    assert refused.status_code == 400
    assert refused.json()["field"] == "meaning"
    assert "approved as legal reviewer" in refused.json()["fix"]


def test_a_signature_replayed_after_an_edit_is_stale(api: Api, client: TestClient) -> None:
    item = api.create(_email())
    old = api.submit(item["id"])
    assert api.sign(item["id"], "medical", old).status_code == 201
    edited = client.put(
        f"{BASE}/{item['id']}", json=_email(title="Cardiomax news (v2)"), headers=api.author
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["state"] == "draft"
    api.submit(item["id"])
    replay = api.sign(item["id"], "legal", old)
    assert replay.status_code == 409
    assert replay.json()["code"] == "stale_content"
    assert "changed since you opened it" in replay.json()["detail"]


def test_the_same_reviewer_cannot_sign_twice(api: Api) -> None:
    item = api.create(_email())
    manifest = api.submit(item["id"])
    assert api.sign(item["id"], "medical", manifest).status_code == 201
    twice = api.sign(item["id"], "legal", manifest, headers=api.reviewers["medical"])
    assert twice.status_code == 403
    assert twice.json()["rule"] == "second_discipline"


def test_a_bad_document_is_a_400_listing_every_problem(api: Api, client: TestClient) -> None:
    bad = _email(markets=["XX"], channels=["sms"], minutes=0)
    response = client.post(BASE, json=bad, headers=api.author)
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "content_invalid"
    fields = {p["field"] for p in problem["problems"]}
    assert {"markets", "minutes"} <= fields
    assert all(p["fix"] for p in problem["problems"])
    assert client.get(BASE, headers=api.author).json()["total"] == 0


def test_submission_without_metadata_names_each_field(api: Api, client: TestClient) -> None:
    item = api.create(
        {"code": "BARE", "asset_type": "sms_text", "title": "Bare", "function": "medical"}
    )
    response = client.post(f"{BASE}/{item['id']}/submit", json=TERMS, headers=api.author)
    assert response.status_code == 400
    fields = [p["field"] for p in response.json()["problems"]]
    assert "brand" in fields
    assert "body.text" in fields
    assert response.json()["code"] == "content_incomplete"


def test_only_reviewers_review_and_withdraw(api: Api, client: TestClient) -> None:
    item = api.create(_email())
    manifest = api.submit(item["id"])
    as_author = api.sign(item["id"], "medical", manifest, headers=api.author)
    assert as_author.status_code == 403
    assert as_author.json()["code"] == "forbidden"
    withdraw = client.post(
        f"{BASE}/{item['id']}/withdraw", json={"reason": "because"}, headers=api.author
    )
    assert withdraw.status_code == 403


def test_an_unknown_item_is_a_404(api: Api, client: TestClient) -> None:
    response = client.get(f"{BASE}/nothing-here", headers=api.author)
    assert response.status_code == 404
    assert response.json()["field"] == "id"


def test_passwords_are_set_by_administrators_and_never_echoed(
    client: TestClient, container: Container, bearer: dict[str, str]
) -> None:
    container.users.create("new-reviewer", "mlr_reviewer", TEST_ACTOR)
    short = client.put(
        "/api/v1/users/new-reviewer/password", json={"password": "short"}, headers=bearer
    )
    assert short.status_code == 400
    assert short.json()["field"] == "password"
    assert "short" not in short.json()["detail"]
    done = client.put(
        "/api/v1/users/new-reviewer/password", json={"password": PASSWORD}, headers=bearer
    )
    assert done.status_code == 200, done.text
    assert PASSWORD not in done.text
    user = container.users.principal("new-reviewer")
    assert container.users.verify_password(user.user_id, PASSWORD)
    assert not container.users.verify_password(user.user_id, PASSWORD + "x")
    record = [r for r in container.audit.iter_records() if r.action == "user.set_password"][-1]
    assert PASSWORD not in str(record.after)
