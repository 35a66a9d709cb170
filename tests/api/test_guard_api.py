"""The guard over HTTP and GuardService end to end, on both deployments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, TEST_ACTOR, bearer_for

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.policy.access import Role
from counterpoint.policy.guard_service import CheckRequest

# NOW is Monday 2026-11-23 12:00 UTC: 13:00 in Berlin, inside the default working hours.
PROOF = Proof(ConsentSource.API, "tests", wording_version="v1")


def _hcp(container: Container, npi: str, territory: str = "T1", market: str = "DE") -> str:
    traits = {"market": market, "territory": territory, "time_zone": "Europe/Berlin"}
    event = LogEvent(
        f"id-{npi}", EventKind.IDENTIFY, f"npi:{npi}", NOW, NOW, "tests", payload={"traits": traits}
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{npi}")
    assert hcp_id is not None
    return hcp_id


def _grant(container: Container, hcp_id: str, channel: ConsentChannel, purpose: Purpose) -> None:
    container.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(channel, purpose, "DE"),
        state=ConsentState.GRANTED,
        proof=PROOF,
        actor=TEST_ACTOR,
        reason="signed form",
        effective_at=NOW - dt.timedelta(days=30),
    )


@pytest.fixture
def hcp(container: Container) -> str:
    hcp_id = _hcp(container, "1234567893")
    _grant(container, hcp_id, ConsentChannel.EMAIL, Purpose.PROMOTIONAL)
    _grant(container, hcp_id, ConsentChannel.F2F_CALL, Purpose.PROMOTIONAL)
    return hcp_id


def _check(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/guard/check", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _codes(result: dict[str, Any]) -> list[str]:
    return [r["code"] for r in result["reasons"]]


def test_single_checks_for_people_and_for_orchestration(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str
) -> None:
    ops = bearer_for(container, "ops", "marketing_ops")
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    mail = {"hcp_id": hcp, "channel": "campaign_email", "purpose": "promotional"}
    assert _check(client, ops, **mail, automated=True) == {
        "hcp_id": hcp,
        "allowed": True,
        "reasons": [],
    }
    assert _codes(_check(client, rep, **mail)) == ["role_not_allowed"]
    assert _check(client, rep, **{**mail, "channel": "f2f_call"})["allowed"] is True
    medical = _check(client, rep, **{**mail, "channel": "f2f_call", "purpose": "medical"})
    assert set(_codes(medical)) == {"role_not_allowed", "no_consent"}
    assert all(r["detail"] for r in medical["reasons"])
    refused = client.post("/api/v1/guard/check", json={**mail, "automated": True}, headers=rep)
    assert refused.status_code == 403
    sms = _check(client, bearer, **{**mail, "channel": "sms"}, automated=True)
    assert _codes(sms) == ["no_consent"]


def test_withdrawal_takes_effect_at_once(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str
) -> None:
    mail = {"hcp_id": hcp, "channel": "campaign_email", "purpose": "promotional", "automated": True}
    assert _check(client, bearer, **mail)["allowed"] is True
    container.consents.withdraw(
        container.profiles.resolve(hcp),
        ConsentChannel.EMAIL,
        proof=Proof(ConsentSource.ONE_CLICK, "hcp"),
        actor=TEST_ACTOR,
        reason="unsubscribed",
    )
    assert _codes(_check(client, bearer, **mail)) == ["consent_revoked"]


def test_out_of_scope_and_unknown_hcps_read_as_unknown(
    client: TestClient, container: Container, hcp: str
) -> None:
    other = _hcp(container, "1245319599", territory="T2")
    _grant(container, other, ConsentChannel.F2F_CALL, Purpose.PROMOTIONAL)
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    visit = {"channel": "f2f_call", "purpose": "promotional"}
    out = _check(client, rep, hcp_id=other, **visit)
    unknown = _check(client, rep, hcp_id="hcp_does_not_exist", **visit)
    assert out["reasons"] == unknown["reasons"]  # no existence leak
    assert _codes(out) == ["unknown_hcp"]
    many = _check(
        client,
        rep,
        candidates=[{"hcp_id": h, **visit} for h in (hcp, other, "hcp_nope", hcp)],
    )
    assert many["count"] == 4
    assert many["allowed"] == 2
    assert [d["allowed"] for d in many["decisions"]] == [True, False, False, True]
    assert [_codes(d) for d in many["decisions"][1:3]] == [["unknown_hcp"], ["unknown_hcp"]]


def test_batch_decisions_equal_single_decisions(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str
) -> None:
    second = _hcp(container, "1245319599")
    _grant(container, second, ConsentChannel.SMS, Purpose.EDUCATIONAL)
    container.contact.add_dnc(
        container.profiles.resolve(second), Channel.F2F_CALL, "asked at a visit", TEST_ACTOR
    )
    container.contact.set_policy(
        "DE",
        {"caps": [{"scope": "all", "period_days": 7, "max_touches": 1}],
         "min_gap_hours": {"campaign_email": 72},
         "quiet_hours": {"start": "20:00", "end": "08:00"}},
        TEST_ACTOR,
        "tight",
    )  # fmt: skip
    container.log.append(
        [LogEvent("s-1", EventKind.TRACK, "npi:1234567893", NOW - dt.timedelta(hours=5), NOW,
                  "tests", channel=Channel.CAMPAIGN_EMAIL, action=Action.SENT)]
    )  # fmt: skip
    container.catch_up()
    requests = [
        CheckRequest(h, ch, pu, brand=b, at=NOW + dt.timedelta(hours=dh))
        for h in (hcp, second, "hcp_unknown")
        for ch in (Channel.CAMPAIGN_EMAIL, Channel.SMS, Channel.F2F_CALL)
        for pu in (Purpose.PROMOTIONAL, Purpose.EDUCATIONAL)
        for b in (None, "ZENTROVA")
        for dh in (0, 9, 30 * 24)
    ]
    for role in (None, Role.SALES_REP):
        many = container.guard.check_many(requests, role=role)
        single = [container.guard.check(r, role=role) for r in requests]
        assert [d.allowed for d in many] == [d.allowed for d in single]
        assert [sorted(d.codes) for d in many] == [sorted(d.codes) for d in single]
        assert any(d.allowed for d in many)
        assert {c for d in many for c in d.codes} >= {"over_cap", "min_gap", "quiet_hours"}


def test_refusals_are_recorded_as_events(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str
) -> None:
    before = container.log.count()
    sms = {"hcp_id": hcp, "channel": "sms", "purpose": "promotional", "automated": True}
    _check(client, bearer, **sms)  # a check alone records nothing
    assert container.log.count() == before
    _check(client, bearer, **sms, record_refusal=True)
    _check(client, bearer, candidates=[{k: v for k, v in sms.items() if k != "automated"}],
           automated=True, record_refusal=True)  # fmt: skip
    assert container.log.count() == before + 2
    table = container.log.read_after(0, 1000).to_pylist()
    refused = [r for r in table if r["action"] == "refused"]
    assert len(refused) == 2
    assert refused[0]["channel"] == "sms"
    assert refused[0]["subject"] == "npi:1234567893"
    assert refused[0]["actor_type"] == "system"
    assert '"no_consent"' in refused[0]["payload"]
    container.catch_up()  # refused events are not touches: the budget is untouched
    facts = container.guard.check(
        CheckRequest(hcp, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL), role=None
    )
    assert facts.allowed


@pytest.mark.parametrize(
    "body",
    [
        {"hcp_id": "x", "channel": "fax", "purpose": "promotional"},
        {"hcp_id": "x", "channel": "sms", "purpose": "gossip"},
        {"hcp_id": "x", "channel": "sms", "purpose": "promotional", "at": "2026-11-23T12:00:00"},
        {"hcp_id": "x", "channel": "sms", "purpose": "promotional", "brand": "x'; DROP TABLE hcp"},
        {"hcp_id": "", "channel": "sms", "purpose": "promotional"},
        {"candidates": []},
        {"candidates": [{"hcp_id": "x", "channel": "sms", "purpose": "medical"}] * 10_001},
        {"hcp_id": "x", "channel": "sms", "purpose": "promotional", "colour": "red"},
    ],
)
def test_bad_requests_are_422(
    client: TestClient, container: Container, bearer: dict[str, str], body: dict[str, Any]
) -> None:
    before = container.log.count()
    response = client.post("/api/v1/guard/check", json=body, headers=bearer)
    assert response.status_code == 422, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert container.log.count() == before


def test_guard_access(client: TestClient, container: Container, hcp: str) -> None:
    body = {"hcp_id": hcp, "channel": "sms", "purpose": "promotional"}
    assert client.post("/api/v1/guard/check", json=body).status_code == 401
    analyst = bearer_for(container, "analyst", "data_analyst")
    assert client.post("/api/v1/guard/check", json=body, headers=analyst).status_code == 403
    expired = {"Authorization": "Bearer not-a-real-token"}
    assert client.post("/api/v1/guard/check", json=body, headers=expired).status_code == 401
