"""The HCP 360 and quarantine management API end to end, on both deployments."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from counterpoint.container import Container

NPI = "1234567893"
OTHER_NPI = "1245319599"
BAD_NPI = "1234567894"
PROBLEM = "application/problem+json"


def _track(message_id: str, day: int, channel: str, action: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "event": f"{channel} {action}",
        "timestamp": f"2026-11-{day:02d}T09:00:00Z",
        "properties": {"channel": channel, "action": action, **props},
    }


def _send(
    client: TestClient, basic: dict[str, str], container: Container, *events: dict[str, Any]
) -> dict[str, Any]:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic)
    assert response.status_code == 200, response.text
    container.projector.catch_up()
    return response.json()  # type: ignore[no-any-return]


def _problem(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["detail"]
    if field is not None:
        assert body["field"] == field
    return body


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    identify = {
        "type": "identify",
        "messageId": "id-1",
        "userId": f"npi:{NPI}",
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {
            "email": "jane.doe@clinic.org",
            "first_name": "Jane",
            "last_name": "Doe",
            "specialty": "cardiology",
        },
    }
    events = [identify]
    # 12 interactions over 12 days, three on the same day and hour as another (same
    # occurred_at), so pages must break ties by sequence number.
    for i in range(12):
        day = 2 + i - (1 if i % 4 == 3 else 0)
        if i % 3 == 0:
            events.append(_track(f"call-{i}", day, "f2f_call", "call_completed", actor_type="rep"))
        elif i % 3 == 1:
            events.append(
                _track(f"msl-{i}", day, "medical_inquiry", "inquiry_answered", actor_type="msl")
            )
        else:
            events.append(_track(f"mail-{i}", day, "campaign_email", "opened", brand="ZENTROVA"))
    result = _send(client, basic, container, *events)
    assert result["accepted"] == 13
    return container.profiles.find_by_identifier(f"npi:{NPI}")  # type: ignore[return-value]


# --- HCP 360 ----------------------------------------------------------------------------


def test_hcp_360_by_id_and_by_identifier(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    by_id = client.get(f"/api/v1/hcps/{hcp_id}", headers=bearer)
    assert by_id.status_code == 200, by_id.text
    profile = by_id.json()
    assert profile["id"] == hcp_id
    assert (profile["first_name"], profile["last_name"], profile["specialty"]) == (
        "Jane",
        "Doe",
        "cardiology",
    )
    assert {"type": "npi", "value": NPI} in profile["identifiers"]
    assert {"type": "email", "value": "jane.doe@clinic.org"} in profile["identifiers"]
    assert profile["engagement"]["events"]["90d"] == 12
    assert set(profile["engagement"]["channels"]) == {
        "f2f_call",
        "medical_inquiry",
        "campaign_email",
    }

    for identifier in (f"npi:{NPI}", NPI, "email:Jane.Doe@clinic.org", "jane.doe@clinic.org"):
        found = client.get("/api/v1/hcps", params={"identifier": identifier}, headers=bearer)
        assert found.status_code == 200, (identifier, found.text)
        assert found.json() == profile


def test_unknown_id_and_identifier_are_404_problems(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    _problem(client.get("/api/v1/hcps/hcp_nope", headers=bearer), 404, "not_found", "hcp_id")
    _problem(
        client.get("/api/v1/hcps/hcp_nope/timeline", headers=bearer), 404, "not_found", "hcp_id"
    )
    body = _problem(
        client.get("/api/v1/hcps", params={"identifier": f"npi:{OTHER_NPI}"}, headers=bearer),
        404,
        "not_found",
        "identifier",
    )
    assert OTHER_NPI in body["detail"]
    assert body["fix"]


def test_invalid_identifier_is_400_naming_the_field(
    client: TestClient, bearer: dict[str, str]
) -> None:
    body = _problem(
        client.get("/api/v1/hcps", params={"identifier": f"npi:{BAD_NPI}"}, headers=bearer),
        400,
        "validation_failed",
        "identifier",
    )
    assert BAD_NPI in body["detail"]
    assert "check digit" in body["fix"]
    _problem(
        client.get("/api/v1/hcps", params={"identifier": "email:not-an-address"}, headers=bearer),
        400,
        "validation_failed",
        "identifier",
    )
    _problem(
        client.get("/api/v1/hcps", headers=bearer), 422, "validation_failed", "query.identifier"
    )


def test_hcp_api_needs_a_valid_token(client: TestClient, hcp_id: str) -> None:
    _problem(client.get(f"/api/v1/hcps/{hcp_id}"), 401, "unauthorized", "Authorization")
    _problem(
        client.get(f"/api/v1/hcps/{hcp_id}", headers={"Authorization": "Bearer cpt_wrong"}),
        401,
        "unauthorized",
        "Authorization",
    )


# --- timeline ---------------------------------------------------------------------------


def _walk(
    client: TestClient, bearer: dict[str, str], hcp_id: str, **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/api/v1/hcps/{hcp_id}/timeline", params=query, headers=bearer)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["hcp_id"] == hcp_id
        assert len(page["items"]) <= params["limit"]
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor walk did not end")


def test_timeline_pages_return_every_event_exactly_once(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    everything = client.get(
        f"/api/v1/hcps/{hcp_id}/timeline", params={"limit": 500}, headers=bearer
    ).json()
    assert everything["next_cursor"] is None
    all_ids = [e["message_id"] for e in everything["items"]]
    assert len(all_ids) == 13
    keys = [(e["occurred_at"], e["seq"]) for e in everything["items"]]
    assert keys == sorted(keys, reverse=True)

    for limit in (1, 4, 5, 13):
        walked = _walk(client, bearer, hcp_id, limit=limit)
        ids = [e["message_id"] for e in walked]
        assert ids == all_ids, limit
        assert len(set(ids)) == len(ids)


def test_timeline_filters_by_channel_and_function(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    calls = _walk(client, bearer, hcp_id, limit=3, channel="f2f_call")
    assert [e["message_id"] for e in calls] == ["call-9", "call-6", "call-3", "call-0"]
    assert {e["channel"] for e in calls} == {"f2f_call"}

    medical = _walk(client, bearer, hcp_id, limit=2, function="medical")
    assert [e["message_id"] for e in medical] == ["msl-10", "msl-7", "msl-4", "msl-1"]
    assert {e["function"] for e in medical} == {"medical"}

    commercial_mail = _walk(
        client, bearer, hcp_id, limit=50, function="commercial", channel="campaign_email"
    )
    assert len(commercial_mail) == 4
    assert {e["brand"] for e in commercial_mail} == {"ZENTROVA"}

    none = client.get(
        f"/api/v1/hcps/{hcp_id}/timeline", params={"channel": "sms"}, headers=bearer
    ).json()
    assert (none["items"], none["next_cursor"]) == ([], None)


def test_timeline_of_a_merged_identity_includes_every_identifier(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str], container: Container
) -> None:
    page = {
        "type": "page",
        "messageId": "pv-1",
        "anonymousId": "anon-42",
        "name": "Dosing",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    identify = {
        "type": "identify",
        "messageId": "id-42",
        "userId": f"npi:{NPI}",
        "anonymousId": "anon-42",
        "timestamp": "2026-11-21T10:00:00Z",
    }
    _send(client, basic, container, page)
    _send(client, basic, container, identify)
    hcp = client.get("/api/v1/hcps", params={"identifier": "anon:anon-42"}, headers=bearer).json()
    timeline = client.get(f"/api/v1/hcps/{hcp['id']}/timeline", headers=bearer).json()
    assert [e["message_id"] for e in timeline["items"]] == ["id-42", "pv-1"]
    assert {e["identifier"] for e in timeline["items"]} == {f"npi:{NPI}", "anon:anon-42"}


INVALID_CURSORS = [
    "!!!",
    "abc",
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    base64.urlsafe_b64encode(b"yesterday|5").decode(),
    base64.urlsafe_b64encode(b"2026-11-20T09:00:00+00:00|five").decode(),
]


def test_invalid_cursor_is_400_on_the_cursor_field(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    for cursor in INVALID_CURSORS:
        response = client.get(
            f"/api/v1/hcps/{hcp_id}/timeline", params={"cursor": cursor}, headers=bearer
        )
        body = _problem(response, 400, "validation_failed", "cursor")
        assert "next_cursor" in body["fix"]


def test_a_crafted_cursor_out_of_range_is_400(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    crafted = [b"2026-11-20T09:00:00|5", b"2026-11-20T09:00:00+00:00|" + b"9" * 30]
    for raw in crafted:
        cursor = base64.urlsafe_b64encode(raw).decode()
        response = client.get(
            f"/api/v1/hcps/{hcp_id}/timeline", params={"cursor": cursor}, headers=bearer
        )
        _problem(response, 400, "validation_failed", "cursor")


def test_a_cursor_before_year_one_in_utc_is_400(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    cursor = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|5").decode()
    try:
        response = client.get(
            f"/api/v1/hcps/{hcp_id}/timeline", params={"cursor": cursor}, headers=bearer
        )
    except Exception as exc:  # the TestClient re-raises what became a 503
        pytest.fail(f"unexpected server error {exc!r}")
    _problem(response, 400, "validation_failed", "cursor")


def test_invalid_timeline_query_is_422_naming_the_field(
    client: TestClient, bearer: dict[str, str], hcp_id: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": "fax"}, "query.channel"),
        ({"function": "sales"}, "query.function"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
    ]
    for params, field in cases:
        response = client.get(f"/api/v1/hcps/{hcp_id}/timeline", params=params, headers=bearer)
        body = _problem(response, 422, "validation_failed", field)
        assert body["errors"][0]["field"] == field
        assert body["fix"]


# --- quarantine -------------------------------------------------------------------------


def _quarantine_one(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str], message_id: str = "q-1"
) -> dict[str, Any]:
    event = _track(message_id, 20, "telepathy", "opened")
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic)
    assert response.status_code == 200
    assert response.json()["quarantined"] == 1
    assert response.json()["errors"][0]["code"] == "unknown_channel"
    items: list[dict[str, Any]] = client.get("/api/v1/quarantine", headers=bearer).json()["items"]
    (item,) = [i for i in items if message_id in i["raw"]]
    assert item["status"] == "open"
    assert item["reason_code"] == "unknown_channel"
    assert item["field"] == "batch[0].properties.channel"
    assert item["fix"]
    return item


def _status(client: TestClient, bearer: dict[str, str], entry_id: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    for status in ("open", "replayed", "discarded"):
        response = client.get("/api/v1/quarantine", params={"status": status}, headers=bearer)
        assert response.status_code == 200, response.text
        found += response.json()["items"]
    (item,) = [i for i in found if i["id"] == entry_id]
    return item


def test_replay_with_a_correction_appends_and_marks_replayed(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str], container: Container
) -> None:
    item = _quarantine_one(client, basic, bearer)
    assert container.log.count() == 0
    corrected = _track("q-1", 20, "campaign_email", "opened")
    replay = client.post(f"/api/v1/quarantine/{item['id']}/replay", json=corrected, headers=bearer)
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"accepted": 1, "duplicates": 0}
    assert container.log.count() == 1

    entry = _status(client, bearer, item["id"])
    assert entry["status"] == "replayed"
    assert entry["resolved_at"] is not None
    assert entry["note"] == "replayed with a correction"
    open_items = client.get("/api/v1/quarantine", headers=bearer).json()["items"]
    assert item["id"] not in [i["id"] for i in open_items]

    container.projector.catch_up()
    hcp = client.get("/api/v1/hcps", params={"identifier": f"npi:{NPI}"}, headers=bearer).json()
    timeline = client.get(f"/api/v1/hcps/{hcp['id']}/timeline", headers=bearer).json()
    assert [e["message_id"] for e in timeline["items"]] == ["q-1"]

    again = client.post(f"/api/v1/quarantine/{item['id']}/replay", json=corrected, headers=bearer)
    body = _problem(again, 400, "bad_request", "id")
    assert "replayed" in body["detail"]
    assert container.log.count() == 1


def test_replay_of_a_still_invalid_correction_keeps_the_entry_open(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str], container: Container
) -> None:
    item = _quarantine_one(client, basic, bearer)
    still_bad = _track("q-1", 20, "campaign_email", "teleported")
    response = client.post(
        f"/api/v1/quarantine/{item['id']}/replay", json=still_bad, headers=bearer
    )
    body = _problem(response, 400, "still_invalid", "properties.action")
    assert body["fix"]
    # Replaying as stored (no correction) is refused the same way.
    _problem(
        client.post(f"/api/v1/quarantine/{item['id']}/replay", headers=bearer),
        400,
        "still_invalid",
        "properties.channel",
    )
    assert container.log.count() == 0
    assert _status(client, bearer, item["id"])["status"] == "open"


def test_replay_of_an_unknown_entry_is_404(
    client: TestClient, bearer: dict[str, str], container: Container
) -> None:
    _problem(
        client.post("/api/v1/quarantine/424242/replay", json={}, headers=bearer),
        404,
        "not_found",
        "id",
    )
    assert container.log.count() == 0


def test_discard_with_a_note(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str], container: Container
) -> None:
    item = _quarantine_one(client, basic, bearer)
    too_short = client.post(
        f"/api/v1/quarantine/{item['id']}/discard", json={"note": "x"}, headers=bearer
    )
    _problem(too_short, 422, "validation_failed", "body.note")
    done = client.post(
        f"/api/v1/quarantine/{item['id']}/discard",
        json={"note": "test traffic from the agency"},
        headers=bearer,
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"discarded": 1}
    entry = _status(client, bearer, item["id"])
    assert (entry["status"], entry["note"]) == ("discarded", "test traffic from the agency")
    discarded = client.get(
        "/api/v1/quarantine", params={"status": "discarded"}, headers=bearer
    ).json()["items"]
    assert [i["id"] for i in discarded] == [item["id"]]
    # Discarding again changes nothing; replaying a discarded entry is refused.
    again = client.post(
        f"/api/v1/quarantine/{item['id']}/discard", json={"note": "again!"}, headers=bearer
    )
    assert again.json() == {"discarded": 0}
    _problem(
        client.post(f"/api/v1/quarantine/{item['id']}/replay", headers=bearer),
        400,
        "bad_request",
        "id",
    )
    assert container.log.count() == 0


def test_quarantine_list_pages_by_id(
    client: TestClient, basic: dict[str, str], bearer: dict[str, str]
) -> None:
    for i in range(3):
        _quarantine_one(client, basic, bearer, f"qp-{i}")
    first = client.get("/api/v1/quarantine", params={"limit": 2}, headers=bearer).json()
    assert len(first["items"]) == 2
    assert first["next_after_id"] == first["items"][-1]["id"]
    rest = client.get(
        "/api/v1/quarantine",
        params={"limit": 2, "after_id": first["next_after_id"]},
        headers=bearer,
    ).json()
    assert len(rest["items"]) == 1
    assert rest["next_after_id"] is None
    ids = [i["id"] for i in first["items"] + rest["items"]]
    assert ids == sorted(ids)
    _problem(
        client.get("/api/v1/quarantine", params={"status": "lost"}, headers=bearer),
        422,
        "validation_failed",
        "query.status",
    )
    _problem(client.get("/api/v1/quarantine"), 401, "unauthorized", "Authorization")
