"""Sending, previewing and the outbox over HTTP, on both deployments: who may send what to
whom (roles, territory scope without existence leaks), idempotent requests, refusals with
their reasons, bad input as problem documents naming the field, dead letters replayed and
entries cancelled with reasons in the audit trail. Default routing: the console adapter
writes what would be sent to a local file; nothing leaves the machine. All data is
synthetic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import bearer_for
from tests.content_rows import add_items, content_row
from tests.integration.test_delivery_smtp import hcp

from counterpoint.container import Container
from counterpoint.delivery.models import OutboxEntry

SENDS = "/api/v1/sends"
OUTBOX = "/api/v1/outbox"
REP_BODY = {"subject": "{{ rep.name }} schreibt", "text": "{{ rep.signature }}"}
BODY = {
    "subject": "{{ hcp.salutation }} {{ hcp.last_name }}, Neues zu Zentrova",
    "text": "{{ hcp.salutation }} {{ hcp.last_name }},\nmehr: https://pharma.example/zen\n"
    "Abmelden: {{ links.unsubscribe }}",
    "html": "<p>{{ hcp.salutation }} {{ hcp.last_name }}</p>"
    '<a href="https://pharma.example/zen">mehr</a>'
    '<a href="{{ links.unsubscribe }}">Abmelden</a>',
}


@pytest.fixture
def asset(container: Container) -> str:
    """An approved e-mail for campaign and rep e-mail in DE; returns its code."""
    add_items(container, content_row("ZEN-DE-EM-001", body=BODY))
    return "ZEN-DE-EM-001"


@pytest.fixture
def ops(container: Container) -> dict[str, str]:
    return bearer_for(container, "ops", "marketing_ops")


def _post(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(SENDS, json=body, headers=headers)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _outbox(container: Container) -> list[OutboxEntry]:
    with container.sessions() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def _console(container: Container) -> list[dict[str, Any]]:
    path = container.settings.data_dir / "outbox" / "console.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _audit(container: Container, action: str) -> list[Any]:
    return [r for r in container.audit.iter_records() if r.action == action]


# --- sending -----------------------------------------------------------------------------------


def test_marketing_ops_sends_to_named_hcps_and_refusals_come_back_with_reasons(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    allowed = hcp(container, 1, "a.muster@praxis.example")
    unconsented = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel", consent=False)
    report = _post(
        client, ops, content=asset, channel="campaign_email", hcp_ids=[allowed, unconsented]
    )
    assert report["counts"] == {"queued": 1, "already_queued": 0, "refused": 1, "deferred": 0}
    assert [q["hcp_id"] for q in report["queued"]] == [allowed]
    [refused] = report["refused"]
    assert refused["hcp_id"] == unconsented
    assert refused["reasons"] == ["no_consent"]
    assert refused["details"]
    assert all(refused["details"])
    [entry] = _outbox(container)
    assert (entry.id, entry.hcp_id) == (report["queued"][0]["outbox_id"], allowed)
    assert (entry.status, entry.role, entry.requested_by) == ("pending", "marketing_ops", "ops")

    done = container.delivery_worker.drain()
    assert done.sent == 1
    [line] = _console(container)
    assert line["hcp_id"] == allowed
    assert line["subject"] == "Guten Tag Dr. Muster, Neues zu Zentrova"
    assert line["metadata"]["requested_by"] == "ops"
    [record] = _audit(container, "send.requested")
    assert (record.actor, record.object_id) == ("ops", entry.content_id)
    assert record.after["queued"] == 1
    assert record.after["refused"] == 1


def test_marketing_ops_sends_to_a_segment(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    t1 = hcp(container, 1, "a.muster@praxis.example")
    t2 = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel", territory="T2")
    report = _post(client, ops, content=asset, channel="campaign_email", segment={"market": "DE"})
    assert sorted(q["hcp_id"] for q in report["queued"]) == sorted([t1, t2])
    narrow = _post(
        client, ops, content=asset, channel="campaign_email",
        segment={"market": "DE", "territory": "T2"},
    )  # fmt: skip
    assert [q["hcp_id"] for q in narrow["queued"]] == [t2]
    records = _audit(container, "send.requested")
    assert [r.after["segment"].get("territory") for r in records] == [None, "T2"]
    assert len(_outbox(container)) == 3


def test_a_rep_sends_rep_email_only_within_the_territory(
    client: TestClient, container: Container, asset: str
) -> None:
    rep = bearer_for(container, "rep-anna", "sales_rep", territories=["T1"])
    mine = hcp(container, 1, "a.muster@praxis.example")
    theirs = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel", territory="T2")
    report = _post(
        client, rep, content=asset, channel="rep_email",
        hcp_ids=[mine, theirs, "hcp_does_not_exist"],
    )  # fmt: skip
    assert [q["hcp_id"] for q in report["queued"]] == [mine]
    refused = {r["hcp_id"]: r for r in report["refused"]}
    assert refused[theirs]["reasons"] == ["unknown_hcp"]  # consent, caps …: nothing told
    # outside the territory reads exactly as an id that does not exist
    assert refused[theirs]["details"] == refused["hcp_does_not_exist"]["details"]
    assert refused[theirs]["reasons"] == refused["hcp_does_not_exist"]["reasons"]

    campaign = _post(client, rep, content=asset, channel="campaign_email", hcp_ids=[mine])
    assert campaign["counts"]["queued"] == 0
    assert "role_not_allowed" in campaign["refused"][0]["reasons"]

    container.delivery_worker.drain()
    [line] = _console(container)
    assert (line["hcp_id"], line["channel"]) == (mine, "rep_email")
    assert line["metadata"]["rep"] == "rep-anna"
    [entry] = _outbox(container)
    assert (entry.role, entry.status) == ("sales_rep", "sent")


def test_the_same_idempotency_key_queues_nothing_twice(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    target = hcp(container, 1, "a.muster@praxis.example")
    body = {"content": asset, "channel": "campaign_email", "hcp_ids": [target]}
    headers = {**ops, "Idempotency-Key": "campaign-2026-11-a"}
    first = client.post(SENDS, json=body, headers=headers).json()
    again = client.post(SENDS, json=body, headers=headers).json()
    assert first["counts"] == {"queued": 1, "already_queued": 0, "refused": 0, "deferred": 0}
    assert again["counts"] == {"queued": 0, "already_queued": 1, "refused": 0, "deferred": 0}
    assert again["already_queued"][0]["outbox_id"] == first["queued"][0]["outbox_id"]
    [entry] = _outbox(container)
    assert entry.idempotency_key.startswith("send:campaign-2026-11-a:")
    container.delivery_worker.drain()
    client.post(SENDS, json=body, headers=headers)  # after delivery too
    container.delivery_worker.drain()
    assert len(_console(container)) == 1
    # negative control: without the header each request is a new one
    other = client.post(SENDS, json=body, headers=ops).json()
    assert other["counts"]["already_queued"] == 0


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"channel": "carrier_pigeon"}, 400, "channel"),
        ({"segment": {"market": "DE"}}, 400, "hcp_ids"),  # and hcp_ids: both
        ({"hcp_ids": []}, 400, "hcp_ids"),  # neither
        ({"content": "NO-SUCH-ASSET"}, 404, "content"),
        ({"not_before": "2026-12-01T09:00:00"}, 400, "not_before"),
    ],
)
def test_bad_send_requests_name_the_field_and_queue_nothing(
    client: TestClient,
    container: Container,
    ops: dict[str, str],
    asset: str,
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    target = hcp(container, 1, "a.muster@praxis.example")
    body = {"content": asset, "channel": "campaign_email", "hcp_ids": [target], **change}
    response = client.post(SENDS, json=body, headers=ops)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == field
    assert problem["fix"]
    assert _outbox(container) == []
    assert _audit(container, "send.requested") == []
    # the control: the same request without the change is accepted
    good = {"content": asset, "channel": "campaign_email", "hcp_ids": [target]}
    assert client.post(SENDS, json=good, headers=ops).status_code == 202


def test_not_before_with_a_time_zone_delays_the_delivery(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    target = hcp(container, 1, "a.muster@praxis.example")
    later = "2026-11-24T09:00:00+01:00"
    report = _post(
        client, ops, content=asset, channel="campaign_email", hcp_ids=[target], not_before=later
    )
    assert report["counts"]["queued"] == 1
    [entry] = _outbox(container)
    assert entry.next_attempt_at.isoformat().startswith("2026-11-24T08:00:00")
    assert container.delivery_worker.drain().claimed == 0


# --- preview -----------------------------------------------------------------------------------


def test_preview_renders_for_one_hcp_with_the_guards_decision(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    allowed = hcp(container, 1, "a.muster@praxis.example")
    unconsented = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel", consent=False)
    url = f"/api/v1/content/{asset}/preview"
    response = client.get(url, params={"hcp_id": allowed, "channel": "campaign_email"}, headers=ops)
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["subject"] == "Guten Tag Dr. Muster, Neues zu Zentrova"
    assert shown["text"].startswith("Guten Tag Dr. Muster,\nmehr: https://pharma.example/zen")
    assert "/consent/unsubscribe" in shown["text"]
    assert shown["html"] is not None
    assert 'href="https://pharma.example/zen"' in shown["html"]  # not tracked in a preview
    assert "/t/c/" not in shown["html"]
    assert shown["address"] == "a.muster@praxis.example"
    assert shown["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert shown["guard"] == {"allowed": True, "refusals": []}
    refused = client.get(
        url, params={"hcp_id": unconsented, "channel": "campaign_email"}, headers=ops
    ).json()
    assert refused["guard"]["allowed"] is False
    assert [r["code"] for r in refused["guard"]["refusals"]] == ["no_consent"]
    assert _outbox(container) == []  # a preview sends nothing
    assert container.delivery_worker.drain().claimed == 0


def test_preview_outside_the_reps_scope_is_not_found(
    client: TestClient, container: Container, asset: str
) -> None:
    rep = bearer_for(container, "rep-anna", "sales_rep", territories=["T1"])
    mine = hcp(container, 1, "a.muster@praxis.example")
    theirs = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel", territory="T2")
    url = f"/api/v1/content/{asset}/preview"
    ok = client.get(url, params={"hcp_id": mine, "channel": "rep_email"}, headers=rep)
    assert ok.status_code == 200, ok.text
    assert ok.json()["guard"]["allowed"] is True
    outside = client.get(url, params={"hcp_id": theirs, "channel": "rep_email"}, headers=rep)
    missing = client.get(url, params={"hcp_id": "hcp_nobody", "channel": "rep_email"}, headers=rep)
    assert outside.status_code == missing.status_code == 404
    assert outside.json()["detail"].replace(theirs, "X") == missing.json()["detail"].replace(
        "hcp_nobody", "X"
    )
    assert "Beispiel" not in outside.text
    bad = client.get(url, params={"hcp_id": mine, "channel": "fax"}, headers=rep)
    assert (bad.status_code, bad.json()["field"]) == (400, "channel")
    unknown = client.get(
        "/api/v1/content/NO-SUCH/preview", params={"hcp_id": mine, "channel": "rep_email"},
        headers=rep,
    )  # fmt: skip
    assert (unknown.status_code, unknown.json()["field"]) == (404, "content")


# --- the outbox --------------------------------------------------------------------------------


def _dead_letter(client: TestClient, container: Container, ops: dict[str, str], asset: str) -> str:
    """Content that needs the sending rep's details, sent by operations: it is queued, and
    delivery fails for good (the template cannot be filled)."""
    add_items(container, content_row("ZEN-DE-EM-REP", body=REP_BODY))
    target = hcp(container, 1, "a.muster@praxis.example")
    report = _post(client, ops, content="ZEN-DE-EM-REP", channel="campaign_email", hcp_ids=[target])
    assert container.delivery_worker.drain().dead == 1
    outbox_id: str = report["queued"][0]["outbox_id"]
    return outbox_id


def test_the_outbox_lists_dead_letters_with_reasons_and_refuses_a_bad_status(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    dead = _dead_letter(client, container, ops, asset)
    pending = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel")
    _post(client, ops, content=asset, channel="campaign_email", hcp_ids=[pending])
    listed = client.get(OUTBOX, params={"status": "dead"}, headers=ops)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [i["id"] for i in page["items"]] == [dead]
    assert page["items"][0]["error_code"] == "template"
    assert "cannot be rendered" in page["items"][0]["last_error"]
    assert page["counts"] == {"dead": 1, "pending": 1}
    every = client.get(OUTBOX, headers=ops).json()["items"]
    assert {i["status"] for i in every} == {"dead", "pending"}
    by_channel = client.get(OUTBOX, params={"channel": "sms"}, headers=ops).json()
    assert by_channel["items"] == []
    bad = client.get(OUTBOX, params={"status": "lost"}, headers=ops)
    assert (bad.status_code, bad.json()["field"]) == (400, "status")
    assert "dead" in bad.json()["fix"]
    bad_channel = client.get(OUTBOX, params={"channel": "fax"}, headers=ops)
    assert (bad_channel.status_code, bad_channel.json()["field"]) == (400, "channel")


def test_a_dead_letter_is_replayed_with_a_reason_and_audited(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    dead = _dead_letter(client, container, ops, asset)
    url = f"{OUTBOX}/{dead}/replay"
    missing_reason = client.post(url, json={"reason": " "}, headers=ops)
    assert (missing_reason.status_code, missing_reason.json()["field"]) == (400, "reason")
    assert client.post(url, json={}, headers=ops).status_code == 422
    assert _audit(container, "outbox.replay") == []
    assert _outbox(container)[0].status == "dead"  # unchanged by the refused calls

    replayed = client.post(url, json={"reason": "the template was corrected"}, headers=ops)
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    [record] = _audit(container, "outbox.replay")
    assert (record.actor, record.object_id) == ("ops", dead)
    assert record.reason == "the template was corrected"
    assert (record.before["status"], record.after["status"]) == ("dead", "pending")

    again = client.post(url, json={"reason": "once more"}, headers=ops)
    assert again.status_code == 409
    assert again.json()["field"] == "entry_id"
    nowhere = client.post(f"{OUTBOX}/out_nothing/replay", json={"reason": "why not"}, headers=ops)
    assert nowhere.status_code == 404


def test_a_pending_entry_is_cancelled_with_a_reason_and_never_sent(
    client: TestClient, container: Container, ops: dict[str, str], asset: str
) -> None:
    target = hcp(container, 1, "a.muster@praxis.example")
    report = _post(client, ops, content=asset, channel="campaign_email", hcp_ids=[target])
    entry_id = report["queued"][0]["outbox_id"]
    url = f"{OUTBOX}/{entry_id}/cancel"
    assert client.post(url, json={"reason": ""}, headers=ops).status_code == 400
    cancelled = client.post(url, json={"reason": "campaign stopped"}, headers=ops)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    [record] = _audit(container, "outbox.cancel")
    assert (record.actor, record.object_id, record.reason) == ("ops", entry_id, "campaign stopped")
    assert container.delivery_worker.drain().claimed == 0
    assert _console(container) == []
    twice = client.post(url, json={"reason": "campaign stopped"}, headers=ops)
    assert twice.status_code == 409
    assert len(_audit(container, "outbox.cancel")) == 1


def test_roles_without_access_are_refused(
    client: TestClient, container: Container, asset: str
) -> None:
    target = hcp(container, 1, "a.muster@praxis.example")
    analyst = bearer_for(container, "analyst", "data_analyst")
    rep = bearer_for(container, "rep-anna", "sales_rep", territories=["T1"])
    body = {"content": asset, "channel": "campaign_email", "hcp_ids": [target]}
    refused = client.post(SENDS, json=body, headers=analyst)
    assert refused.status_code == 403
    assert (refused.json()["resource"], refused.json()["verb"]) == ("send", "write")
    assert client.get(OUTBOX, headers=rep).status_code == 403
    assert client.post(SENDS, json=body).status_code == 401
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 0
