"""Bad input to the Segment-compatible API: every refusal is a problem document with a stable
code (and the field), never a 500, and a refused request stores nothing. Both deployments."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from counterpoint.container import Container

NPI = "1234567893"
BAD_NPI = "1234567894"
PROBLEM = "application/problem+json"
KB = 1024


@pytest.fixture(params=[0, 2], ids=["in-process", "mapping-processes"])
def mapping_processes(request: pytest.FixtureRequest) -> int:
    """Every test here on both deployments, mapping requests in-process and in processes."""
    return int(request.param)


def _track(message_id: str, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "messageId": message_id,
        "userId": f"npi:{NPI}",
        "event": "Email Opened",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"brand": "ZENTROVA"},
    }
    event.update(extra)
    return event


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


def _post_raw(
    client: TestClient, body: bytes, headers: dict[str, str], path: str = "/v1/batch"
) -> Any:
    return client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})


# --- events refused one by one (the request succeeds) -------------------------------------

PER_EVENT: list[tuple[dict[str, Any], str, str | None]] = [
    (_track("p-props", properties=["not", "an", "object"]), "invalid_field", "properties"),
    (_track("p-user-list", userId=["npi", NPI]), "invalid_field", "userId"),
    (_track("p-user-bool", userId=True), "invalid_field", "userId"),
    (_track("p-bad-npi", userId=f"npi:{BAD_NPI}"), "invalid_user_id", "userId"),
    (_track("p-bare-bad-npi", userId=BAD_NPI), "invalid_user_id", "userId"),
    (
        _track("p-channel", event="Visit", properties={"channel": "fax", "action": "sent"}),
        "unknown_channel",
        "properties.channel",
    ),
    (
        _track("p-action", event="Visit", properties={"channel": "sms", "action": "yelled"}),
        "unknown_action",
        "properties.action",
    ),
    (_track("p-future", timestamp="2031-01-01T00:00:00Z"), "invalid_timestamp", "timestamp"),
    (_track("p-stamp", timestamp="next tuesday"), "invalid_timestamp", "timestamp"),
    (_track("p-stamp-num", timestamp=1_700_000_000), "invalid_timestamp", "timestamp"),
    (_track("p-mid", messageId=["m"]), "invalid_field", "messageId"),
    (_track("p-anon", userId=None, anonymousId={"id": 1}), "invalid_field", "anonymousId"),
    (_track("p-ctx", context="web"), "invalid_field", "context"),
    (_track("p-type", type="purchase"), "unsupported_type", "type"),
    (_track("p-noid", userId=None), "missing_identity", None),
    (_track("p-noname", event=None), "missing_event_name", "event"),
    (
        _track(
            "p-medical",
            event="Inquiry",
            properties={
                "channel": "medical_inquiry",
                "action": "inquiry_received",
                "function": "commercial",
            },
        ),
        "invalid_field",
        "properties.function",
    ),
]


def test_each_bad_event_is_quarantined_with_code_and_field(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    batch: list[Any] = [_track("good-1")]
    batch += [event for event, _, _ in PER_EVENT]
    batch += [42, "text", None, [1, 2]]
    batch.append(_track("good-2"))
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic)
    assert response.status_code == 200, response.text
    result = response.json()
    refused = len(PER_EVENT) + 4
    assert (result["accepted"], result["duplicates"], result["quarantined"]) == (2, 0, refused)
    errors = {e["index"]: e for e in result["errors"]}
    assert sorted(errors) == list(range(1, refused + 1))
    for position, (event, code, field) in enumerate(PER_EVENT, start=1):
        error = errors[position]
        assert error["code"] == code, (event["messageId"], error)
        expected = f"batch[{position}]" + (f".{field}" if field else "")
        assert error["field"] == expected, (event["messageId"], error)
        assert error["detail"]
        assert error["fix"]
    for position in range(len(PER_EVENT) + 1, refused + 1):
        assert errors[position]["code"] == "not_an_object"
    assert container.log.count() == 2
    quarantined = container.log.quarantined(None, 0, 100)
    assert len(quarantined) == refused
    # The raw event is kept as received, to be fixed and replayed.
    raws = [json.loads(q.entry.raw) for q in quarantined]
    assert raws[:3] == [e for e, _, _ in PER_EVENT[:3]]
    assert raws[len(PER_EVENT) :] == [42, "text", None, [1, 2]]


def test_an_event_over_32_kb_is_quarantined_and_the_rest_accepted(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    big = _track("big", properties={"pad": "x" * (33 * KB)})
    batch = [_track("small-1"), big, _track("small-2")]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["quarantined"]) == (2, 1)
    (error,) = result["errors"]
    assert (error["index"], error["code"], error["field"]) == (1, "event_too_large", "batch[1]")
    assert container.log.count() == 2
    (entry,) = container.log.quarantined(None, 0, 10)
    assert entry.entry.reason_code == "event_too_large"
    assert json.loads(entry.entry.raw)["messageId"] == "big"


def test_a_single_call_with_a_bad_field_is_quarantined(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    event = _track("single", userId=["x"])
    del event["type"]
    response = client.post("/v1/track", json=event, headers=basic)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["quarantined"] == 1
    assert (result["errors"][0]["code"], result["errors"][0]["field"]) == (
        "invalid_field",
        "userId",
    )
    assert container.log.count() == 0


# --- requests refused as a whole ------------------------------------------------------------


def test_wrong_json_shapes_are_400_and_store_nothing(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("/v1/batch", json.dumps({"batch": {"type": "track"}}).encode(), "batch"),
        ("/v1/batch", json.dumps({"batch": "everything"}).encode(), "batch"),
        ("/v1/batch", json.dumps([_track("a")]).encode(), "batch"),
        ("/v1/batch", json.dumps({"batch": [_track("a")], "sentAt": 5}).encode(), "batch"),
        ("/v1/batch", b"", "body"),
        ("/v1/batch", b"{not json", "body"),
        ("/v1/track", json.dumps([_track("a")]).encode(), "body"),
        ("/v1/identify", b"null", "body"),
    ]
    for path, body, field in cases:
        response = _post_raw(client, body, basic, path)
        problem = _problem(response, 400, "malformed_json", field)
        assert problem["fix"], (path, body)
    assert container.log.count() == 0
    assert container.log.quarantined(None, 0, 10) == []


def test_a_batch_over_500_kb_is_413(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    batch = [_track(f"b{i}", properties={"pad": "x" * (30 * KB)}) for i in range(18)]
    body = json.dumps({"batch": batch}).encode()
    assert len(body) > 500 * KB
    problem = _problem(_post_raw(client, body, basic), 413, "payload_too_large", "body")
    assert "500 KB" in problem["fix"]
    # Just under the limit is fine.
    smaller = json.dumps({"batch": batch[:15]}).encode()
    assert len(smaller) < 500 * KB
    assert _post_raw(client, smaller, basic).json()["accepted"] == 15
    assert container.log.count() == 15


def test_a_gzip_bomb_is_413(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    padding = " " * (2 * 1024 * KB)
    plain = b'{"batch": [' + json.dumps(_track("bomb")).encode() + padding.encode() + b"]}"
    bomb = gzip.compress(plain, compresslevel=9)
    assert len(bomb) < 10 * KB < 500 * KB < len(plain)
    headers = {**basic, "Content-Encoding": "gzip"}
    _problem(_post_raw(client, bomb, headers), 413, "payload_too_large", "body")
    assert container.log.count() == 0


def test_undecodable_or_unsupported_encodings_are_400(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    plain = json.dumps({"batch": [_track("enc")]}).encode()
    gzip_headers = {**basic, "Content-Encoding": "gzip"}
    not_gzip = _problem(_post_raw(client, plain, gzip_headers), 400, "malformed_json", "body")
    assert "gzip" in not_gzip["detail"]
    garbage = b"\x1f\x8b" + b"garbage" * 10
    _problem(_post_raw(client, garbage, gzip_headers), 400, "malformed_json", "body")
    # Cut inside the compressed data: what inflates is not complete JSON.
    truncated = gzip.compress(plain)[:-12]
    _problem(_post_raw(client, truncated, gzip_headers), 400, "malformed_json", "body")
    brotli = _post_raw(client, plain, {**basic, "Content-Encoding": "br"})
    _problem(brotli, 400, "validation_failed", "Content-Encoding")
    assert container.log.count() == 0
    # Declared identity, or upper-case gzip, is fine.
    assert _post_raw(client, plain, {**basic, "Content-Encoding": "identity"}).status_code == 200
    upper = _post_raw(client, gzip.compress(plain), {**basic, "Content-Encoding": "GZIP"})
    assert upper.json()["duplicates"] == 1
    assert container.log.count() == 1


def test_a_gzip_body_without_its_trailer_is_400(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    plain = json.dumps({"batch": [_track("no-trailer")]}).encode()
    cut = gzip.compress(plain)[:-8]
    response = _post_raw(client, cut, {**basic, "Content-Encoding": "gzip"})
    _problem(response, 400, "malformed_json", "body")
    assert container.log.count() == 0


def test_invalid_utf8_inside_a_string_is_400(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    cases = [
        ("/v1/batch", b'{"batch": [], "sentAt": "\xe9"}'),
        ("/v1/track", b'{"type": "track", "event": "caf\xe9"}'),
    ]
    for path, body in cases:
        try:
            response = _post_raw(client, body, basic, path)
        except UnicodeDecodeError as exc:
            pytest.fail(f"{path} {body!r}: unexpected server error {exc!r}")
        _problem(response, 400, "malformed_json", "body")
    assert container.log.count() == 0


def test_invalid_utf8_inside_one_event_quarantines_only_that_event(
    client: TestClient, basic: dict[str, str], container: Container
) -> None:
    good = (
        b'{"type": "track", "messageId": "ok-1", "userId": "npi:1234567893", '
        b'"event": "Email Opened"}'
    )
    body = b'{"batch": [{"type": "track", "event": "caf\xe9"}, ' + good + b"]}"
    response = _post_raw(client, body, basic, "/v1/batch")
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["quarantined"]) == (1, 1)
    assert result["errors"][0]["code"] == "malformed_json"
    assert container.log.count() == 1


# --- write keys ---------------------------------------------------------------------------


def test_write_key_in_the_body_is_accepted(
    client: TestClient, write_key: str, container: Container
) -> None:
    body = {"batch": [_track("wk-1")], "writeKey": write_key}
    response = client.post("/v1/batch", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    single = {**_track("wk-2"), "writeKey": write_key}
    assert client.post("/v1/track", json=single).json()["accepted"] == 1
    assert container.log.count() == 2
    wrong = client.post("/v1/batch", json={"batch": [_track("wk-3")], "writeKey": "cpk_nope"})
    _problem(wrong, 401, "unknown_write_key", "Authorization")
    assert container.log.count() == 2


def test_missing_and_revoked_write_keys_are_401(client: TestClient, container: Container) -> None:
    info, key = container.write_keys.create("to revoke")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    assert (
        client.post("/v1/batch", json={"batch": [_track("r-1")]}, headers=auth).json()["accepted"]
        == 1
    )
    assert container.write_keys.revoke(info.id) is True
    revoked = client.post("/v1/batch", json={"batch": [_track("r-2")]}, headers=auth)
    _problem(revoked, 401, "unknown_write_key", "Authorization")
    in_body = client.post("/v1/batch", json={"batch": [_track("r-3")], "writeKey": key})
    _problem(in_body, 401, "unknown_write_key", "Authorization")
    missing = client.post("/v1/batch", json={"batch": [_track("r-4")]})
    _problem(missing, 401, "unauthorized", "Authorization")
    not_basic = client.post(
        "/v1/batch", json={"batch": [_track("r-5")]}, headers={"Authorization": "Basic %%%"}
    )
    _problem(not_basic, 401, "unauthorized", "Authorization")
    assert container.log.count() == 1
    assert container.log.quarantined(None, 0, 10) == []
