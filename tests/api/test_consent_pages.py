"""The HCP's own consent pages end to end, on both deployments: double opt-in, unsubscribe
(page and RFC 8058 one-click), SMS keywords, the preference centre, and bad links and input.

"Nothing changed" is measured as the number of consent records and the audit trail's length,
each with a negative control: the same harness sees the change when one is made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from tests.conftest import TEST_ACTOR, bearer_for

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.consent.links import FREQUENCY_ACTION, PREFERENCE_REASON, ConsentLinks
from counterpoint.consent.models import ConsentRow
from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.signing import LinkSigner
from counterpoint.policy.guard_service import CheckRequest
from counterpoint.policy.models import AuditRecord

NPI = "1234567893"
PHONE = "+4915112345678"
UNKNOWN_PHONE = "+33612345678"
SMS_SECRET = "sms-gateway-shared-secret"
WORDING = "I agree to receive promotional e-mails about cardiology products. Version 3."
PROBLEM = "application/problem+json"


# --- harness ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Counts:
    records: int
    audit: int


def _counts(container: Container) -> Counts:
    with container.sessions() as session:
        records = session.scalar(select(func.count()).select_from(ConsentRow)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
    return Counts(records, audit)


def _records(container: Container, hcp_id: str) -> list[ConsentRecord]:
    return container.consents.records(container.profiles.resolve(hcp_id))


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def _identify(
    client: TestClient, basic: dict[str, str], container: Container, message_id: str, **traits: Any
) -> None:
    event = {
        "type": "identify",
        "messageId": message_id,
        "userId": traits.pop("user_id"),
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": traits,
    }
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    container.projector.catch_up()


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    _identify(
        client,
        basic,
        container,
        "id-1",
        user_id=f"npi:{NPI}",
        email="jane.doe@clinic.example",
        phone=PHONE,
        first_name="Jane",
        last_name="Doe",
        market="DE",
        territory="T1",
    )
    found = container.profiles.find_by_identifier(f"npi:{NPI}")
    assert found is not None
    return found


@pytest.fixture
def links(container: Container) -> ConsentLinks:
    return ConsentLinks.from_settings(container.settings, container.clock)


def _start(
    client: TestClient, bearer: dict[str, str], hcp_id: str, **overrides: Any
) -> dict[str, Any]:
    body = {
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "wording_version": "email-promo-3",
        "wording": WORDING,
        "source": "web_form",
        "reason": "HCP signed up on the congress landing page",
        **overrides,
    }
    response = client.post(
        f"/api/v1/hcps/{hcp_id}/consents/double-opt-in", json=body, headers=bearer
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _decide(container: Container, hcp_id: str, channel: ConsentChannel, purpose: Purpose) -> Any:
    return container.consents.decide(
        container.profiles.resolve(hcp_id), channel=channel, purpose=purpose, market="DE"
    )


def _html_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert code in response.text
    assert "Nothing was changed" in response.text


# --- double opt-in ------------------------------------------------------------------------


def test_double_opt_in_records_pending_and_returns_the_link_and_message(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    before = _counts(container)
    result = _start(client, bearer, hcp_id)
    assert _counts(container) == Counts(before.records + 1, before.audit + 1)
    record = result["record"]
    assert record["state"] == "pending"
    assert record["proof"]["source"] == "web_form"
    assert record["proof"]["wording_version"] == "email-promo-3"
    assert record["proof"]["wording_hash"] == hashlib.sha256(WORDING.encode()).hexdigest()
    url = result["confirmation_url"]
    assert url.startswith(container.settings.public_base_url + "/consent/confirm?token=")
    assert result["expires_at"].startswith("2026-11-30T12:00:00")
    assert url in result["message"]["text"]
    assert WORDING in result["message"]["text"]
    decision = _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    assert (decision.allowed, decision.reason) == (False, "consent_pending")


def test_double_opt_in_refuses_a_hash_that_is_not_the_wordings(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    before = _counts(container)
    response = client.post(
        f"/api/v1/hcps/{hcp_id}/consents/double-opt-in",
        json={
            "channel": "email",
            "purpose": "promotional",
            "market": "DE",
            "wording_version": "v1",
            "wording": WORDING,
            "wording_hash": "0" * 64,
            "reason": "sign-up form",
        },
        headers=bearer,
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "wording_hash"
    for bad, field in (({"market": "XX"}, "market"), ({"brand": "<b>x</b>"}, "brand")):
        body = {
            "channel": "email",
            "purpose": "promotional",
            "market": "DE",
            "wording_version": "v1",
            "wording": WORDING,
            "reason": "sign-up form",
            **bad,
        }
        refused = client.post(
            f"/api/v1/hcps/{hcp_id}/consents/double-opt-in", json=body, headers=bearer
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == field
    assert _counts(container) == before


def test_double_opt_in_is_limited_to_the_callers_scope(
    client: TestClient, container: Container, hcp_id: str
) -> None:
    before = _counts(container)
    other_rep = bearer_for(container, "rep-t2", "sales_rep", territories=["T2"])
    body = {
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "wording_version": "v1",
        "wording": WORDING,
        "reason": "captured at a visit",
    }
    path = f"/api/v1/hcps/{hcp_id}/consents/double-opt-in"
    assert client.post(path, json=body, headers=other_rep).status_code == 404
    fr_ops = bearer_for(container, "ops-fr", "marketing_ops", markets=["FR"])
    assert client.post(path, json=body, headers=fr_ops).status_code == 404
    de_ops = bearer_for(container, "ops-de", "marketing_ops", markets=["DE"])
    assert client.post(path, json={**body, "market": "FR"}, headers=de_ops).status_code == 403
    assert _counts(container).records == before.records
    own_rep = bearer_for(container, "rep-t1", "sales_rep", territories=["T1"])
    assert client.post(path, json=body, headers=own_rep).status_code == 201  # control


def test_opening_the_confirmation_link_changes_nothing(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    url = _start(client, bearer, hcp_id)["confirmation_url"]
    before = _counts(container)
    for _ in range(3):  # link scanners, previews, the HCP
        page = client.get(urlsplit(url).path + "?" + urlsplit(url).query)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert WORDING in page.text
        assert 'method="post"' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "script-src" not in page.headers["content-security-policy"]
    assert _counts(container) == before
    decision = _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    assert decision.reason == "consent_pending"


def test_confirming_grants_once_with_proof(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    token = _token(_start(client, bearer, hcp_id)["confirmation_url"])
    before = _counts(container)
    response = client.post(
        "/consent/confirm", data={"token": token}, headers={"User-Agent": "Mail Client 1.0"}
    )
    assert response.status_code == 200, response.text
    assert "confirmed" in response.text
    assert _counts(container) == Counts(before.records + 1, before.audit + 1)
    granted = _records(container, hcp_id)[-1]
    assert granted.state is ConsentState.GRANTED
    assert granted.scope == ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE")
    assert granted.proof.source is ConsentSource.EMAIL_LINK
    assert granted.proof.wording_version == "email-promo-3"
    assert granted.proof.wording_hash == hashlib.sha256(WORDING.encode()).hexdigest()
    assert granted.proof.ip == "testclient"
    assert granted.proof.user_agent == "Mail Client 1.0"
    assert _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL).allowed

    again = client.post("/consent/confirm", data={"token": token})
    assert again.status_code == 200
    assert "already confirmed" in again.text
    assert _counts(container) == Counts(before.records + 1, before.audit + 1)


def test_an_expired_confirmation_link_records_nothing(
    client: TestClient,
    container: Container,
    bearer: dict[str, str],
    hcp_id: str,
    clock: FixedClock,
) -> None:
    token = _token(_start(client, bearer, hcp_id)["confirmation_url"])
    clock.advance(dt.timedelta(days=7, seconds=1))
    before = _counts(container)
    _html_error(client.get("/consent/confirm", params={"token": token}), 400, "expired_link")
    _html_error(client.post("/consent/confirm", data={"token": token}), 400, "expired_link")
    assert _counts(container) == before
    # control: the same token a second before expiry is accepted
    clock.advance(dt.timedelta(seconds=-2))
    assert client.post("/consent/confirm", data={"token": token}).status_code == 200
    assert _counts(container).records == before.records + 1


def test_forged_tampered_and_wrong_purpose_tokens_record_nothing(
    client: TestClient,
    container: Container,
    bearer: dict[str, str],
    hcp_id: str,
    links: ConsentLinks,
    clock: FixedClock,
) -> None:
    good = _token(_start(client, bearer, hcp_id)["confirmation_url"])
    scope = ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE")
    forged = ConsentLinks(
        LinkSigner("an-attackers-own-key", clock), "https://evil.example", clock
    ).confirmation(hcp_id, scope, wording_version="v9", wording_hash=None)
    middle = len(good) // 2
    tampered = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
    wrong_purpose = links.unsubscribe(hcp_id, ConsentChannel.EMAIL).token
    before = _counts(container)
    for token in (forged.token, tampered, wrong_purpose, "", "not-a-token"):
        _html_error(client.get("/consent/confirm", params={"token": token}), 400, "invalid_link")
        _html_error(client.post("/consent/confirm", data={"token": token}), 400, "invalid_link")
    _html_error(client.post("/consent/confirm", data={}), 400, "invalid_link")
    assert _counts(container) == before
    assert client.post("/consent/confirm", data={"token": good}).status_code == 200  # control
    assert _counts(container).records == before.records + 1


# --- unsubscribe --------------------------------------------------------------------------


def _grant(container: Container, hcp_id: str, channel: ConsentChannel, purpose: Purpose) -> None:
    container.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(channel, purpose, "DE"),
        state=ConsentState.GRANTED,
        proof=Proof(ConsentSource.API, "tests", wording_version="v1"),
        actor=TEST_ACTOR,
        reason="test set-up",
    )


def test_unsubscribe_page_then_button_withdraws_once(
    client: TestClient, container: Container, hcp_id: str, links: ConsentLinks
) -> None:
    for purpose in (Purpose.PROMOTIONAL, Purpose.MEDICAL):
        _grant(container, hcp_id, ConsentChannel.EMAIL, purpose)
    link = links.unsubscribe(hcp_id, ConsentChannel.EMAIL, purposes=[Purpose.PROMOTIONAL])
    before = _counts(container)
    page = client.get("/consent/unsubscribe", params={"token": link.token})
    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert _counts(container) == before
    assert _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL).allowed

    done = client.post("/consent/unsubscribe", data={"token": link.token})
    assert done.status_code == 200
    assert "unsubscribed" in done.text
    assert _counts(container) == Counts(before.records + 1, before.audit + 1)
    last = _records(container, hcp_id)[-1]
    assert (last.state, last.proof.source) == (ConsentState.REVOKED, ConsentSource.EMAIL_LINK)
    promotional = _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    assert (promotional.allowed, promotional.reason) == (False, "consent_revoked")
    assert _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.MEDICAL).allowed

    replay = client.post("/consent/unsubscribe", data={"token": link.token})
    assert replay.status_code == 200
    assert "already unsubscribed" in replay.text
    assert _counts(container).records == before.records + 1


def test_one_click_unsubscribe_from_the_list_unsubscribe_header(
    client: TestClient, container: Container, hcp_id: str, links: ConsentLinks
) -> None:
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    headers = links.list_unsubscribe_headers(hcp_id, purposes=[Purpose.PROMOTIONAL])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    target = urlsplit(headers["List-Unsubscribe"].strip("<>"))
    before = _counts(container)
    for _ in range(2):  # mailbox providers may retry: the replay records nothing
        response = client.post(
            f"{target.path}?{target.query}", data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status_code == 200
        assert response.text == "unsubscribed"
    assert _counts(container) == Counts(before.records + 1, before.audit + 1)
    last = _records(container, hcp_id)[-1]
    assert (last.state, last.proof.source) == (ConsentState.REVOKED, ConsentSource.ONE_CLICK)
    assert not _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL).allowed


def test_one_click_with_a_bad_token_records_nothing(
    client: TestClient, container: Container, hcp_id: str, links: ConsentLinks, clock: FixedClock
) -> None:
    link = links.unsubscribe(hcp_id, ConsentChannel.EMAIL)
    before = _counts(container)
    bad = client.post(
        "/consent/unsubscribe",
        params={"token": link.token[:-3] + "xyz"},
        data={"List-Unsubscribe": "One-Click"},
    )
    assert bad.status_code == 400
    assert bad.text.startswith("invalid_link")
    confirm_token = links.confirmation(
        hcp_id,
        ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
        wording_version="v1",
        wording_hash=None,
    ).token
    wrong = client.post(
        "/consent/unsubscribe",
        params={"token": confirm_token},
        data={"List-Unsubscribe": "One-Click"},
    )
    assert wrong.status_code == 400
    clock.advance(dt.timedelta(days=401))
    expired = client.post(
        "/consent/unsubscribe", params={"token": link.token}, data={"List-Unsubscribe": "One-Click"}
    )
    assert expired.status_code == 400
    assert expired.text.startswith("expired_link")
    assert _counts(container) == before


# --- SMS keywords -------------------------------------------------------------------------


def _sms(
    client: TestClient,
    payload: dict[str, Any],
    *,
    secret: str | None = SMS_SECRET,
    signature: str | None = None,
) -> Any:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Counterpoint-Signature"] = signature
    elif secret is not None:
        digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        headers["X-Counterpoint-Signature"] = f"sha256={digest}"
    return client.post("/hooks/sms/inbound", content=raw, headers=headers)


@pytest.fixture
def sms_secret(container: Container) -> str:
    container.settings.sms_webhook_secret = SecretStr(SMS_SECRET)
    return SMS_SECRET


def _stop(sender: str = PHONE, text: str = "STOP", message_id: str = "sms-1") -> dict[str, Any]:
    return {"from": sender, "to": "+4930000000", "text": text, "message_id": message_id}


def test_sms_stop_withdraws_sms_for_every_purpose_once(
    client: TestClient, container: Container, hcp_id: str, sms_secret: str
) -> None:
    for purpose in Purpose:
        _grant(container, hcp_id, ConsentChannel.SMS, purpose)
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    before = _counts(container)
    response = _sms(client, _stop(text="  stop \n"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "action": "withdrawn",
        "keyword": "STOP",
        "recorded": len(Purpose),
    }
    assert _counts(container) == Counts(before.records + len(Purpose), before.audit + len(Purpose))
    for purpose in Purpose:
        decision = _decide(container, hcp_id, ConsentChannel.SMS, purpose)
        assert (decision.allowed, decision.reason) == (False, "consent_revoked")
    assert _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL).allowed
    last = _records(container, hcp_id)[-1]
    assert last.proof.source is ConsentSource.SMS_KEYWORD
    assert "sms-1" in (last.proof.evidence or "")

    replay = _sms(client, _stop(text="STOP"))
    assert replay.status_code == 200
    assert replay.json()["action"] == "duplicate"
    assert _counts(container).records == before.records + len(Purpose)


def test_sms_with_a_missing_or_wrong_signature_is_refused(
    client: TestClient, container: Container, hcp_id: str, sms_secret: str
) -> None:
    _grant(container, hcp_id, ConsentChannel.SMS, Purpose.PROMOTIONAL)
    before = _counts(container)
    attempts = [
        _sms(client, _stop(), secret=None),
        _sms(client, _stop(), secret="a-guessed-secret"),
        _sms(client, _stop(), signature="sha256=" + "0" * 64),
        _sms(client, _stop(), signature="md5=abc"),
        _sms(client, _stop(), signature="sha256=not-hex"),
    ]
    for refused in attempts:
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == PROBLEM
        body = refused.json()
        assert body["code"] == "unauthorized"
        assert body["field"] == "X-Counterpoint-Signature"
    # a body changed after signing
    raw = json.dumps(_stop()).encode()
    digest = hmac.new(SMS_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    changed = client.post(
        "/hooks/sms/inbound",
        content=json.dumps(_stop(sender="+4915199999999")).encode(),
        headers={"X-Counterpoint-Signature": f"sha256={digest}"},
    )
    assert changed.status_code == 401
    assert _counts(container) == before
    assert _decide(container, hcp_id, ConsentChannel.SMS, Purpose.PROMOTIONAL).allowed
    assert _sms(client, _stop()).status_code == 200  # control: the right signature works
    assert _counts(container).records > before.records


def test_sms_is_refused_while_no_secret_is_configured(
    client: TestClient, container: Container, hcp_id: str
) -> None:
    assert container.settings.sms_webhook_secret is None
    before = _counts(container)
    refused = _sms(client, _stop())
    assert refused.status_code == 401
    assert "COUNTERPOINT_SMS_WEBHOOK_SECRET" in refused.json()["fix"]
    assert _counts(container) == before


def test_sms_stop_from_an_unknown_number_is_kept_by_subject(
    client: TestClient,
    container: Container,
    basic: dict[str, str],
    hcp_id: str,
    sms_secret: str,
) -> None:
    before = _counts(container)
    response = _sms(client, _stop(sender=UNKNOWN_PHONE, text="Unsubscribe", message_id="sms-9"))
    assert response.status_code == 200
    assert response.json()["action"] == "recorded_by_subject"
    assert _counts(container).records == before.records + len(Purpose)
    with container.sessions() as session:
        rows = list(session.scalars(select(ConsentRow).where(ConsentRow.subject.isnot(None))))
    assert {(r.subject, r.market, r.state, r.hcp_id) for r in rows} == {
        (f"phone:{UNKNOWN_PHONE}", "FR", "revoked", None)
    }
    assert _sms(client, _stop(sender=UNKNOWN_PHONE, message_id="sms-9")).json()["recorded"] == 0
    # the number later turns up on a profile: it may not be texted
    _identify(
        client, basic, container, "id-2", user_id="npi:1245319599", phone=UNKNOWN_PHONE, market="FR"
    )
    newcomer = container.profiles.resolve_identifier(f"phone:{UNKNOWN_PHONE}")
    assert newcomer is not None
    decision = container.consents.decide(
        newcomer, channel=ConsentChannel.SMS, purpose=Purpose.PROMOTIONAL, market="FR"
    )
    assert (decision.allowed, decision.reason) == (False, "consent_revoked")


@pytest.mark.parametrize("text", ["Hello, please call me", "STOP calling at 8", "", "START"])
def test_other_texts_are_acknowledged_and_record_nothing(
    client: TestClient, container: Container, hcp_id: str, sms_secret: str, text: str
) -> None:
    before = _counts(container)
    response = _sms(client, _stop(text=text))
    assert response.status_code == 200
    assert response.json()["action"] == "ignored"
    assert _counts(container) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"from": "not a number", "to": "x", "text": "STOP", "message_id": "m1"}, "from"),
        ({"to": "x", "text": "STOP", "message_id": "m1"}, "from"),
        ({"from": PHONE, "to": "x", "text": "STOP", "message_id": "<script>"}, "message_id"),
        ({"from": PHONE, "to": "x", "text": "STOP"}, "message_id"),
    ],
)
def test_bad_sms_payloads_are_refused_with_the_field(
    client: TestClient,
    container: Container,
    hcp_id: str,
    sms_secret: str,
    payload: dict[str, Any],
    field: str,
) -> None:
    before = _counts(container)
    response = _sms(client, payload)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert _counts(container) == before


# --- preference centre ---------------------------------------------------------------------


def _form_of(page: str) -> dict[str, Any]:
    """The form the page would submit as shown: hidden fields and checked boxes."""
    import re

    fields: dict[str, Any] = {"shown": [], "consent": []}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        assert name
        assert value
        if name.group(1) == "shown":
            fields["shown"].append(value.group(1))
        elif name.group(1) == "consent":
            if " checked" in tag:
                fields["consent"].append(value.group(1))
        else:
            fields[name.group(1)] = value.group(1)
    return fields


def test_preference_centre_shows_the_state_and_changes_only_what_changed(
    client: TestClient, container: Container, hcp_id: str, links: ConsentLinks
) -> None:
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    _grant(container, hcp_id, ConsentChannel.SMS, Purpose.MEDICAL)
    token = links.preferences(hcp_id).token
    before = _counts(container)
    page = client.get("/consent/preferences", params={"token": token})
    assert page.status_code == 200
    assert _counts(container) == before
    settings = container.settings
    assert settings.preference_wording in page.text
    assert settings.preference_wording_version in page.text
    form = _form_of(page.text)
    assert sorted(form["consent"]) == ["email:promotional", "sms:medical"]
    assert "phone:educational" in form["shown"]

    form["consent"] = ["email:promotional", "phone:educational"]  # untick SMS, tick phone
    form["frequency"] = "4"
    saved = client.post("/consent/preferences", data=form)
    assert saved.status_code == 200, saved.text
    # two consent records and the frequency, each with its audit record, nothing else
    assert _counts(container) == Counts(before.records + 2, before.audit + 3)
    new = _records(container, hcp_id)[-2:]
    by_scope = {(r.scope.channel, r.scope.purpose): r for r in new}
    granted = by_scope[(ConsentChannel.PHONE, Purpose.EDUCATIONAL)]
    revoked = by_scope[(ConsentChannel.SMS, Purpose.MEDICAL)]
    assert granted.state is ConsentState.GRANTED
    assert revoked.state is ConsentState.REVOKED
    for record in new:
        assert record.proof.source is ConsentSource.PREFERENCE_CENTRE
        assert record.reason == PREFERENCE_REASON
    assert granted.proof.wording_version == settings.preference_wording_version
    assert (
        granted.proof.wording_hash
        == hashlib.sha256(settings.preference_wording.encode()).hexdigest()
    )
    frequency = [
        r for r in container.audit.iter_records(object_id=hcp_id) if r.action == FREQUENCY_ACTION
    ]
    assert len(frequency) == 1
    assert frequency[0].after is not None
    assert frequency[0].after["max_promotional_per_month"] == 4
    assert frequency[0].after["source"] == "preference_centre"
    assert frequency[0].before is None
    # stored where the guard reads it
    stored = container.contact.preference(container.profiles.resolve(hcp_id), "DE")
    assert (stored["max_promotional_per_month"], stored["source"]) == (4, "preference_centre")
    assert _decide(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL).allowed
    assert not _decide(container, hcp_id, ConsentChannel.SMS, Purpose.MEDICAL).allowed

    # the page now shows the new state; saving it unchanged records nothing
    shown_again = client.get("/consent/preferences", params={"token": token}).text
    again = _form_of(shown_again)
    assert sorted(again["consent"]) == ["email:promotional", "phone:educational"]
    assert '<option value="4" selected>' in shown_again
    after = _counts(container)
    unchanged = client.post("/consent/preferences", data={**again, "frequency": "4"})
    assert unchanged.status_code == 200
    assert "Nothing had changed" in unchanged.text
    assert _counts(container) == after


def test_the_frequency_chosen_in_the_preference_centre_is_enforced_by_the_guard(
    client: TestClient, container: Container, hcp_id: str, links: ConsentLinks
) -> None:
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    container.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "only the HCP's own limit")
    sent = LogEvent("promo-1", EventKind.TRACK, f"npi:{NPI}", dt.datetime(2026, 11, 20, 9, 0,
                    tzinfo=dt.UTC), dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC), "tests",
                    channel=Channel.CAMPAIGN_EMAIL, action=Action.SENT)  # fmt: skip
    container.log.append([sent])
    container.catch_up()
    mail = CheckRequest(hcp_id, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL)
    assert container.guard.check(mail, role=None).allowed  # control: no limit of its own yet

    token = links.preferences(hcp_id).token
    form = _form_of(client.get("/consent/preferences", params={"token": token}).text)
    before = _counts(container)
    saved = client.post("/consent/preferences", data={**form, "frequency": "1"})
    assert saved.status_code == 200, saved.text
    assert _counts(container) == Counts(before.records, before.audit + 1)
    assert container.guard.check(mail, role=None).codes == ["hcp_frequency_cap"]
    [many] = container.guard.check_many([mail], role=None)
    assert many.codes == ["hcp_frequency_cap"]

    # back to "no limit of my own": stored, audited before/after, and the guard allows again
    form = _form_of(client.get("/consent/preferences", params={"token": token}).text)
    cleared = client.post("/consent/preferences", data={**form, "frequency": ""})
    assert cleared.status_code == 200
    assert "no limit of your own" in cleared.text
    last = [
        r for r in container.audit.iter_records(object_id=hcp_id) if r.action == FREQUENCY_ACTION
    ][-1]
    assert last.before is not None
    assert last.before["max_promotional_per_month"] == 1
    assert last.after is not None
    assert last.after["max_promotional_per_month"] is None
    assert container.guard.check(mail, role=None).allowed


def test_preference_centre_refuses_a_changed_wording_and_bad_tokens(
    client: TestClient,
    container: Container,
    hcp_id: str,
    links: ConsentLinks,
    clock: FixedClock,
) -> None:
    token = links.preferences(hcp_id).token
    form = _form_of(client.get("/consent/preferences", params={"token": token}).text)
    form["consent"] = ["email:promotional"]
    before = _counts(container)
    stale = client.post("/consent/preferences", data={**form, "wording_hash": "0" * 64})
    _html_error(stale, 409, "conflict")
    unsub = links.unsubscribe(hcp_id, ConsentChannel.EMAIL).token
    _html_error(
        client.post("/consent/preferences", data={**form, "token": unsub}), 400, "invalid_link"
    )
    clock.advance(dt.timedelta(days=401))
    _html_error(client.post("/consent/preferences", data=form), 400, "expired_link")
    _html_error(client.get("/consent/preferences", params={"token": token}), 400, "expired_link")
    assert _counts(container) == before


# --- injection ----------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"


def test_html_in_the_wording_is_shown_as_text(
    client: TestClient, container: Container, bearer: dict[str, str], hcp_id: str
) -> None:
    wording = f'I agree {SCRIPT} <img src=x onerror="alert(2)"> & more'
    result = _start(client, bearer, hcp_id, wording=wording)
    page = client.get("/consent/confirm", params={"token": _token(result["confirmation_url"])})
    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "<img" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; more" in page.text
    # the stored proof is the hash of the text exactly as given
    pending = _records(container, hcp_id)[-1]
    assert pending.proof.wording_hash == hashlib.sha256(wording.encode()).hexdigest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("consent", SCRIPT),
        ("consent", "email:promotional' OR '1'='1"),
        ("shown", f"email:{SCRIPT}"),
        ("frequency", '"><img src=x onerror=alert(1)>'),
        ("frequency", "1000"),
    ],
)
def test_injected_form_values_are_refused_escaped_and_change_nothing(
    client: TestClient,
    container: Container,
    hcp_id: str,
    links: ConsentLinks,
    field: str,
    value: str,
) -> None:
    token = links.preferences(hcp_id).token
    form = _form_of(client.get("/consent/preferences", params={"token": token}).text)
    form["consent"] = ["email:promotional"]
    if field in ("consent", "shown"):
        form[field] = [*form[field], value]
    else:
        form[field] = value
    before = _counts(container)
    response = client.post("/consent/preferences", data=form)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert field in response.text
    assert "<script" not in response.text
    assert "<img" not in response.text
    assert _counts(container) == before
    # control: the same form without the injected value saves
    clean = {**form, field: [v for v in form[field] if v != value]}
    if field == "frequency":
        clean[field] = ""
    assert client.post("/consent/preferences", data=clean).status_code == 200
    assert _counts(container).records == before.records + 1


def test_html_in_a_token_is_never_echoed(client: TestClient, container: Container) -> None:
    before = _counts(container)
    for path in ("/consent/confirm", "/consent/unsubscribe", "/consent/preferences"):
        response = client.get(path, params={"token": '"><script>alert(1)</script>'})
        assert response.status_code == 400
        assert "<script" not in response.text
    assert _counts(container) == before


@pytest.mark.parametrize("consumer_skips_own_events", [True, False])
def test_an_unsubscribe_is_a_delivery_result_in_the_log_recorded_once_in_the_ledger(
    client: TestClient,
    container: Container,
    hcp_id: str,
    links: ConsentLinks,
    consumer_skips_own_events: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from counterpoint.consent import consumer as consent_consumer
    from counterpoint.event.log import TimelineQuery

    if not consumer_skips_own_events:  # negative control: the consumer revokes again
        monkeypatch.setattr(consent_consumer, "UNSUBSCRIBE_SOURCE", "nothing-matches")
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    link = links.unsubscribe(hcp_id, ConsentChannel.EMAIL, purposes=[Purpose.PROMOTIONAL])
    before = _counts(container)
    assert client.post("/consent/unsubscribe", data={"token": link.token}).status_code == 200
    container.catch_up()
    ref = container.profiles.resolve(hcp_id)
    events = container.log.timeline(TimelineQuery(subjects=list(ref.identifiers), limit=50))
    unsubscribed = [e.event for e in events if e.event.action == "unsubscribed"]
    assert len(unsubscribed) == 1
    assert unsubscribed[0].source == "consent-links"
    assert unsubscribed[0].channel == "campaign_email"
    written = _counts(container).records - before.records
    if consumer_skips_own_events:
        assert written == 1
    else:
        assert written > 1  # the same withdrawal recorded again by the consumer
