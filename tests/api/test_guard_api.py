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
from counterpoint.event.canonical import Action, Channel, EventKind, Function, LogEvent
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


# --- the HCP's own contact preference ------------------------------------------------------
PREFS = "/api/v1/hcps/{}/contact-preferences"


def _sent(container: Container, *hours_ago: float, function: Function | None = None) -> None:
    container.log.append(
        [
            LogEvent(f"promo-{h}-{function}", EventKind.TRACK, "npi:1234567893",
                     NOW - dt.timedelta(hours=h), NOW, "tests", channel=Channel.CAMPAIGN_EMAIL,
                     action=Action.SENT, function=function)
            for h in hours_ago
        ]
    )  # fmt: skip
    container.catch_up()


def _put(client: TestClient, headers: dict[str, str], hcp_id: str, **body: Any) -> Any:
    return client.put(PREFS.format(hcp_id), json=body, headers=headers)


def _preference_audit(container: Container, hcp_id: str) -> list[Any]:
    return [
        r for r in container.audit.iter_records(object_id=hcp_id)
        if r.action == "hcp.contact_frequency"
    ]  # fmt: skip


def test_contact_preference_recorded_by_operations_is_enforced_by_the_guard(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str
) -> None:
    container.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "only the HCP's own limit")
    ops = bearer_for(container, "ops", "marketing_ops", markets=["DE"])
    mail = {"hcp_id": hcp, "channel": "campaign_email", "purpose": "promotional"}
    empty = client.get(PREFS.format(hcp), headers=ops).json()
    assert empty["max_promotional_per_month"] is None
    assert empty["market"] == "DE"
    assert empty["promotional_last_30_days"] == 0

    put = _put(client, ops, hcp, max_promotional_per_month=2, reason="HCP asked by phone")
    assert put.status_code == 200, put.text
    stored = put.json()
    assert (stored["max_promotional_per_month"], stored["source"], stored["changed"]) == (
        2, "api", True,
    )  # fmt: skip
    [audit] = _preference_audit(container, hcp)
    assert audit.before is None
    assert audit.after is not None
    assert audit.after["max_promotional_per_month"] == 2
    assert audit.reason == "HCP asked by phone"

    # one commercial and one medical touch: one of two used, still allowed
    _sent(container, 30, function=Function.COMMERCIAL)
    _sent(container, 20, function=Function.MEDICAL)
    assert client.get(PREFS.format(hcp), headers=ops).json()["promotional_last_30_days"] == 1
    assert _check(client, ops, **mail, automated=True)["allowed"] is True
    # a second promotional touch (no function given: commercial) reaches the HCP's limit
    _sent(container, 10)
    assert client.get(PREFS.format(hcp), headers=ops).json()["promotional_last_30_days"] == 2
    refused = _check(client, ops, **mail, automated=True)
    assert _codes(refused) == ["hcp_frequency_cap"]
    assert "at most 2" in refused["reasons"][0]["detail"]
    assert "2 in the last 30 days" in refused["reasons"][0]["detail"]
    many = _check(client, ops, candidates=[mail, {**mail, "purpose": "educational"}],
                  automated=True)  # fmt: skip
    assert _codes(many["decisions"][0]) == ["hcp_frequency_cap"]
    assert "hcp_frequency_cap" not in _codes(many["decisions"][1])  # not promotional
    # 30 days later the touches have left the window
    later = (NOW + dt.timedelta(days=30)).isoformat()
    assert _check(client, ops, **mail, at=later, automated=True)["allowed"] is True

    # the company's cap refuses as well, independently
    container.contact.set_policy(
        "DE", {"caps": [{"scope": "all", "period_days": 7, "max_touches": 2}]}, TEST_ACTOR, "cap"
    )
    assert _codes(_check(client, ops, **mail, automated=True)) == [
        "over_cap", "hcp_frequency_cap",
    ]  # fmt: skip

    # the same value again changes nothing; no limit lifts the HCP's own refusal
    same = _put(client, ops, hcp, max_promotional_per_month=2, reason="asked again")
    assert same.json()["changed"] is False
    assert len(_preference_audit(container, hcp)) == 1
    lifted = _put(client, ops, hcp, max_promotional_per_month=None, reason="letter: no limit")
    assert lifted.status_code == 200
    assert lifted.json()["max_promotional_per_month"] is None
    second = _preference_audit(container, hcp)[-1]
    assert second.before is not None
    assert second.before["max_promotional_per_month"] == 2
    assert second.after is not None
    assert second.after["max_promotional_per_month"] is None
    assert _codes(_check(client, ops, **mail, automated=True)) == ["over_cap"]


@pytest.mark.parametrize(
    "body",
    [
        {"max_promotional_per_month": 0, "reason": "asked by phone"},
        {"max_promotional_per_month": 101, "reason": "asked by phone"},
        {"max_promotional_per_month": -3, "reason": "asked by phone"},
        {"max_promotional_per_month": "4", "reason": "asked by phone"},
        {"max_promotional_per_month": 2.5, "reason": "asked by phone"},
        {"max_promotional_per_month": True, "reason": "asked by phone"},
        {"max_promotional_per_month": "1; DROP TABLE contact_preference", "reason": "phone"},
        {"max_promotional_per_month": 4},
        {"max_promotional_per_month": 4, "reason": ""},
        {"reason": "asked by phone"},
        {"max_promotional_per_month": 4, "reason": "phone", "market": "D'E"},
        {"max_promotional_per_month": 4, "reason": "phone", "market": "<script>"},
        {"max_promotional_per_month": 4, "reason": "phone", "colour": "red"},
    ],
)
def test_bad_contact_preferences_are_422_and_change_nothing(
    client: TestClient, container: Container, bearer: dict[str, str], hcp: str, body: Any
) -> None:
    assert _put(client, bearer, hcp, max_promotional_per_month=3, reason="first").status_code == 200
    audit = len(list(container.audit.iter_records()))
    response = _put(client, bearer, hcp, **body)
    assert response.status_code == 422, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(PREFS.format(hcp), headers=bearer).json()["max_promotional_per_month"] == 3
    assert len(list(container.audit.iter_records())) == audit
    # control: a good body through the same harness changes both
    assert (
        _put(client, bearer, hcp, max_promotional_per_month=4, reason="by letter").status_code
        == 200
    )
    assert client.get(PREFS.format(hcp), headers=bearer).json()["max_promotional_per_month"] == 4
    assert len(list(container.audit.iter_records())) == audit + 1


def test_contact_preferences_access_and_scope(
    client: TestClient, container: Container, hcp: str
) -> None:
    body = {"max_promotional_per_month": 1, "reason": "asked at a visit"}
    assert client.get(PREFS.format(hcp)).status_code == 401
    analyst = bearer_for(container, "analyst", "data_analyst")
    assert client.get(PREFS.format(hcp), headers=analyst).status_code == 403
    auditor = bearer_for(container, "auditor", "compliance_auditor")
    assert client.get(PREFS.format(hcp), headers=auditor).status_code == 200
    assert _put(client, auditor, hcp, **body).status_code == 403
    elsewhere = bearer_for(container, "rep2", "sales_rep", territories=["T2"])
    assert client.get(PREFS.format(hcp), headers=elsewhere).status_code == 404
    assert _put(client, elsewhere, hcp, **body).status_code == 404
    assert _put(client, elsewhere, "hcp_does_not_exist", **body).status_code == 404
    france = bearer_for(container, "ops-fr", "marketing_ops", markets=["FR"])
    assert _put(client, france, hcp, **body, market="DE").status_code in (403, 404)
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    outside = _put(client, rep, hcp, **body, market="FR")
    assert outside.status_code == 200  # the rep's user has no market limit
    assert outside.json()["market"] == "FR"
    assert _put(client, rep, hcp, **body).status_code == 200
    assert len(_preference_audit(container, hcp)) == 2
    # the French preference does not limit contacts in the HCP's market (DE)
    assert client.get(PREFS.format(hcp), headers=rep).json()["max_promotional_per_month"] == 1
