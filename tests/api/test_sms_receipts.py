"""SMS delivery receipts from the gateway: delivered and bounced events, hard bounces
suppress, signed like inbound SMS, clear errors for bad calls."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tests.conftest import NOW, TEST_ACTOR
from tests.integration.test_delivery import PROOF, SYSTEM, Receiver, _use, approved_asset

from counterpoint.consent.ledger import ConsentChannel, ConsentScope, ConsentState, Purpose
from counterpoint.container import Container
from counterpoint.delivery.service import SendRequest
from counterpoint.event.canonical import Channel, EventKind, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.kit.clock import FixedClock

SECRET = "sms-gateway-secret-for-tests"
PHONE = "+4915112345678"


def _post(client: TestClient, payload: dict[str, Any], secret: str | None = SECRET) -> Any:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        headers["X-Counterpoint-Signature"] = f"sha256={digest}"
    return client.post("/hooks/sms/status", content=raw, headers=headers)


@pytest.fixture
def sent(container: Container) -> tuple[str, str, Receiver]:
    """An SMS sent to a synthetic HCP; returns the HCP id, the asset and the receiver."""
    container.settings.sms_webhook_secret = SecretStr(SECRET)
    receiver = Receiver()
    _use(container, receiver)
    traits = {"market": "DE", "time_zone": "Europe/Berlin", "phone": PHONE, "last_name": "Muster"}
    container.log.append(
        [LogEvent("id-sms", EventKind.IDENTIFY, "npi:1234567893", NOW, NOW, "tests",
                  payload={"traits": traits})]
    )  # fmt: skip
    container.catch_up()
    hcp = container.profiles.find_by_identifier("npi:1234567893")
    assert hcp is not None
    container.consents.record(
        hcp_id=hcp, subject=None, scope=ConsentScope(ConsentChannel.SMS, Purpose.PROMOTIONAL, "DE"),
        state=ConsentState.GRANTED, proof=PROOF, actor=TEST_ACTOR, reason="signed form",
        effective_at=NOW - dt.timedelta(days=30),
    )  # fmt: skip
    asset = approved_asset(
        container, "CMX-DE-SMS-001", asset_type="sms_text", channels=["sms"],
        approval_channels=["sms"], body={"text": "{{ hcp.last_name }}: Cardiomax (synthetic)"},
    )  # fmt: skip
    _send(container, asset, hcp, "k1")
    assert container.delivery_worker.drain().sent == 1
    assert [m.address for m in receiver.got] == [PHONE]
    return hcp, asset, receiver


def _send(container: Container, asset: str, hcp: str, key: str) -> dict[str, Any]:
    return container.delivery.send(
        SendRequest(content=asset, channel=Channel.SMS, hcp_ids=[hcp], request_key=key),
        principal=None,
        actor=SYSTEM,
    ).as_dict()


def _actions(container: Container) -> list[str]:
    events = container.log.timeline(TimelineQuery(subjects=["npi:1234567893"], limit=50))
    return sorted(str(e.event.action) for e in events if e.event.source == "delivery")


def test_a_delivered_receipt_becomes_a_delivered_event_once(
    client: TestClient, container: Container, sent: tuple[str, str, Receiver]
) -> None:
    first = _post(client, {"id": "p-1", "status": "delivered"})
    assert first.status_code == 200, first.text
    assert first.json()["event"] == "delivered"
    assert first.json()["recorded"] is True
    again = _post(client, {"id": "p-1", "status": "delivered"})
    assert again.json()["recorded"] is False  # gateways repeat receipts
    assert _actions(container) == ["delivered", "sent"]


def test_an_undeliverable_number_is_a_hard_bounce_and_suppresses_sms(
    client: TestClient, container: Container, sent: tuple[str, str, Receiver], clock: FixedClock
) -> None:
    hcp, asset, _ = sent
    response = _post(client, {"id": "p-1", "status": "failed", "error": "invalid_number"})
    assert response.status_code == 200, response.text
    assert response.json()["bounce_type"] == "hard"
    container.catch_up()
    clock.advance(dt.timedelta(days=8))  # past the gap and the weekly cap
    again = _send(container, asset, hcp, "k2")
    assert again["refused"][0]["reasons"] == ["suppressed"]  # and nothing else


def test_a_temporary_failure_is_a_soft_bounce_without_suppression(
    client: TestClient, container: Container, sent: tuple[str, str, Receiver], clock: FixedClock
) -> None:
    hcp, asset, _ = sent
    assert _post(client, {"id": "p-1", "status": "failed"}).json()["bounce_type"] == "soft"
    container.catch_up()
    clock.advance(dt.timedelta(days=8))
    assert _send(container, asset, hcp, "k2")["counts"]["queued"] == 1


@pytest.mark.parametrize(
    ("payload", "secret", "status", "code"),
    [
        ({"id": "p-1", "status": "delivered"}, None, 401, "unauthorized"),
        ({"id": "p-1", "status": "delivered"}, "wrong-secret", 401, "unauthorized"),
        ({"id": "p-999", "status": "delivered"}, SECRET, 404, "not_found"),
        ({"id": "p-1", "status": "read"}, SECRET, 400, "validation_failed"),
        ({"status": "delivered"}, SECRET, 400, "validation_failed"),
        ({"id": "p-1", "status": "delivered", "at": "2026-11-23T12:00:00"}, SECRET, 400,
         "validation_failed"),
    ],
)  # fmt: skip
def test_bad_receipts_are_refused_with_a_reason_and_record_nothing(
    client: TestClient,
    container: Container,
    sent: tuple[str, str, Receiver],
    payload: dict[str, Any],
    secret: str | None,
    status: int,
    code: str,
) -> None:
    response = _post(client, payload, secret)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert _actions(container) == ["sent"]
