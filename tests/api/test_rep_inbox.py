"""The rep inbox through the API: a field user's own items, newest first, paged; marking done.

Items are put in the inbox by the rep inbox channel adapter, as the delivery worker does. A
user never sees or changes another user's items (404, as for an id that does not exist).
All data is synthetic.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import bearer_for

from counterpoint.channel.base import AdapterContext, OutboundMessage, Receipt
from counterpoint.channel.rep_inbox import RepInboxAdapter, RepInboxConfig
from counterpoint.container import Container
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import FixedClock


def _deliver(container: Container, rep: str, keys: list[str]) -> None:
    context = AdapterContext(container.sessions, container.settings.data_dir, container.clock)
    adapter = RepInboxAdapter(RepInboxConfig(), context)
    messages = [
        OutboundMessage(
            outbox_id=f"obx_{key}",
            idempotency_key=key,
            channel=Channel.F2F_CALL,
            hcp_id="hcp_syn_0001",
            address=None,
            subject=f"Suggested call ({key}), synthetic",
            text="Discuss the new dosing guide.",
            content_id="var_syn_1",
            approval_code="ZEN-DE-0042",
            brand="ZENTROVA",
            metadata={"rep": rep, "reason": "opened the last two e-mails"},
        )
        for key in keys
    ]
    results = adapter.send_many(messages)
    assert all(isinstance(r, Receipt) for r in results), results


@pytest.fixture
def anna(container: Container) -> dict[str, str]:
    return bearer_for(container, "rep-anna", "sales_rep", territories=["T1"])


@pytest.fixture
def ben(container: Container) -> dict[str, str]:
    return bearer_for(container, "rep-ben", "kam", territories=["T2"])


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def test_a_rep_reads_own_items_newest_first_page_by_page(
    client: TestClient,
    container: Container,
    clock: FixedClock,
    anna: dict[str, str],
    ben: dict[str, str],
) -> None:
    for n in range(5):
        _deliver(container, "rep-anna", [f"anna-{n}"])
        clock.advance(dt.timedelta(minutes=1))
    _deliver(container, "rep-ben", ["ben-0", "ben-1"])
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/rep-inbox", params=params, headers=anna)
        assert page.status_code == 200, page.text
        seen += _ids(page.json())
        cursor = page.json()["next_cursor"]
    assert seen == ["anna-4", "anna-3", "anna-2", "anna-1", "anna-0"]
    assert cursor is None
    first = client.get("/api/v1/rep-inbox", headers=anna).json()["items"][0]
    assert first["subject"] == "Suggested call (anna-4), synthetic"
    assert first["details"] == {"reason": "opened the last two e-mails"}
    assert first["approval_code"] == "ZEN-DE-0042"
    assert first["done_at"] is None
    assert _ids(client.get("/api/v1/rep-inbox", headers=ben).json()) == ["ben-1", "ben-0"]


def test_items_delivered_together_are_paged_without_loss(
    client: TestClient, container: Container, anna: dict[str, str]
) -> None:
    keys = [f"batch-{n}" for n in range(7)]
    _deliver(container, "rep-anna", keys)  # one created_at for all: ordered by id
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/rep-inbox", params=params, headers=anna).json()
        seen += _ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(keys, reverse=True)


def test_marking_done_is_audited_once_and_filters_the_inbox(
    client: TestClient, container: Container, clock: FixedClock, anna: dict[str, str]
) -> None:
    _deliver(container, "rep-anna", ["task-1", "task-2"])
    done = client.post("/api/v1/rep-inbox/task-1/done", headers=anna)
    assert done.status_code == 200, done.text
    assert done.json()["done_at"] == clock.now().isoformat()
    clock.advance(dt.timedelta(hours=1))
    again = client.post("/api/v1/rep-inbox/task-1/done", headers=anna)
    assert again.json()["done_at"] == done.json()["done_at"]  # unchanged
    records = [r for r in container.audit.iter_records() if r.action == "rep_inbox.done"]
    assert [(r.actor, r.object_id) for r in records] == [("rep-anna", "task-1")]
    assert container.audit.verify()[1] == []
    open_items = client.get("/api/v1/rep-inbox", params={"status": "open"}, headers=anna)
    assert _ids(open_items.json()) == ["task-2"]
    done_items = client.get("/api/v1/rep-inbox", params={"status": "done"}, headers=anna)
    assert _ids(done_items.json()) == ["task-1"]


def test_another_users_item_is_not_found_and_unchanged(
    client: TestClient, container: Container, anna: dict[str, str], ben: dict[str, str]
) -> None:
    _deliver(container, "rep-ben", ["ben-task"])
    before = len(list(container.audit.iter_records()))
    theirs = client.post("/api/v1/rep-inbox/ben-task/done", headers=anna)
    missing = client.post("/api/v1/rep-inbox/no-such-task/done", headers=anna)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == missing.json()["detail"]  # no existence leak
    assert theirs.json()["field"] == "item_id"
    assert len(list(container.audit.iter_records())) == before
    (item,) = client.get("/api/v1/rep-inbox", headers=ben).json()["items"]
    assert item["done_at"] is None
    assert client.post("/api/v1/rep-inbox/ben-task/done", headers=ben).status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"cursor": "not-a-cursor"}, 400, "cursor"),
        ({"cursor": "WyIyMDI2LTExLTIzIiwgNV0"}, 400, "cursor"),  # valid base64, wrong shape
        ({"limit": 0}, 422, "query.limit"),
        ({"limit": 201}, 422, "query.limit"),
        ({"status": "archived"}, 422, "query.status"),
    ],
)
def test_bad_paging_input_names_the_field(
    client: TestClient,
    anna: dict[str, str],
    params: dict[str, Any],
    status: int,
    field: str,
) -> None:
    response = client.get("/api/v1/rep-inbox", params=params, headers=anna)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field
    assert body["fix"]


def test_roles_without_an_inbox_are_refused(client: TestClient, container: Container) -> None:
    manager = bearer_for(container, "bm-1", "brand_manager")
    assert client.get("/api/v1/rep-inbox", headers=manager).status_code == 403
    assert client.post("/api/v1/rep-inbox/x/done", headers=manager).status_code == 403
    msl = bearer_for(container, "msl-1", "msl", territories=["T1"])
    _deliver(container, "msl-1", ["msl-task"])
    assert _ids(client.get("/api/v1/rep-inbox", headers=msl).json()) == ["msl-task"]
