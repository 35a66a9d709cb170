"""``GET /api/v1/hcps/{hcp_id}/eligible-content`` end to end, on both deployments: scope (404
outside, as if absent), bad input (400 naming the field), role and brand rules, HCP-level
refusals for whole groups, and ``include_refused`` telling why. All data synthetic."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import NOW, bearer_for
from tests.content_rows import add_items, change_item, content_row, make_hcp

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.container import Container
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import FixedClock

PROBLEM = "application/problem+json"


@pytest.fixture
def library(container: Container) -> dict[str, str]:
    """A small synthetic library for DE (and one FR item)."""
    rows = {
        "zen_new": content_row("ZEN-NEW", approved_at=NOW - dt.timedelta(days=1)),
        "zen_old": content_row("ZEN-OLD", approved_at=NOW - dt.timedelta(days=9)),
        "cardio": content_row("CAR-1", brand="CARDIOMAX"),
        "edu": content_row("EDU-1", brand=None, function="educational"),
        "medical": content_row("MED-1", function="medical"),
        "withdrawn": content_row("ZEN-WD", state="withdrawn"),
        "english": content_row("ZEN-EN", languages=["en"]),
        "fr": content_row("ZEN-FR", approval_markets=["FR"]),
        "expiring": content_row("ZEN-EXP", valid_until=NOW + dt.timedelta(hours=2)),
        "sms": content_row("ZEN-SMS", approval_channels=["sms"]),
    }
    ids = add_items(container, *rows.values())
    variant = content_row("ZEN-NEW-AT", parent_id=ids[0], approved_at=NOW - dt.timedelta(days=2))
    (variant_id,) = add_items(container, variant)
    return {**dict(zip(rows, ids, strict=True)), "variant": variant_id}


@pytest.fixture
def hcp(container: Container) -> str:
    return make_hcp(
        container,
        "1234567893",
        grants=(
            (ConsentChannel.EMAIL, Purpose.PROMOTIONAL),
            (ConsentChannel.EMAIL, Purpose.EDUCATIONAL),
            (ConsentChannel.EMAIL, Purpose.MEDICAL),
        ),
    )


def _get(client: TestClient, hcp_id: str, headers: dict[str, str], **params: Any) -> Any:
    return client.get(f"/api/v1/hcps/{hcp_id}/eligible-content", params=params, headers=headers)


def _ok(client: TestClient, hcp_id: str, headers: dict[str, str], **params: Any) -> Any:
    response = _get(client, hcp_id, headers, **params)
    assert response.status_code == 200, response.text
    return response.json()


def _codes(body: dict[str, Any]) -> list[str]:
    return [i["code"] for i in body["items"]]


def test_a_rep_sees_what_they_may_send_best_first(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    body = _ok(client, hcp, rep, channel="rep_email")
    assert body["hcp_id"] == hcp
    assert body["channel"] == "rep_email"
    # newest approval first, then code; medical, withdrawn, English, FR, SMS-only left out
    assert _codes(body) == ["ZEN-NEW", "ZEN-NEW-AT", "ZEN-OLD", "CAR-1", "EDU-1", "ZEN-EXP"]
    assert body["count"] == 6
    assert "refused" not in body
    first = body["items"][0]
    assert first["id"] == library["zen_new"]
    assert first["job_code"] == "JOB-ZEN-NEW"
    assert first["languages"] == ["de"]
    assert body["items"][1]["parent_id"] == library["zen_new"]
    assert "body" not in first


def test_an_msl_sees_medical_content_and_orchestration_its_own_channels(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    msl = bearer_for(container, "msl", "msl", territories=["T1"])
    assert _codes(_ok(client, hcp, msl, channel="rep_email")) == ["EDU-1", "MED-1"]
    ops = bearer_for(container, "ops", "marketing_ops")
    assert _codes(_ok(client, hcp, ops, channel="rep_email")) == []  # not a rep channel for ops
    assert "ZEN-NEW" in _codes(_ok(client, hcp, ops, channel="campaign_email"))
    admin = bearer_for(container, "admin", "admin")
    assert _codes(_ok(client, hcp, admin, channel="campaign_email")) == []  # admin sends nothing
    automated = _ok(client, hcp, admin, channel="campaign_email", automated="true")
    assert _codes(automated) == ["ZEN-NEW", "ZEN-NEW-AT", "ZEN-OLD", "CAR-1", "EDU-1", "ZEN-EXP"]
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    refused = _get(client, hcp, rep, channel="campaign_email", automated="true")
    assert refused.status_code == 403
    assert refused.json()["field"] == "automated"


def test_orchestration_in_python_gets_the_same_answer(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    result = container.eligible.query(hcp, Channel.CAMPAIGN_EMAIL, None)
    ops = bearer_for(container, "ops", "marketing_ops")
    assert [i.code for i in result.items] == _codes(_ok(client, hcp, ops, channel="campaign_email"))
    assert result.refused is None


def test_scope_outside_reads_as_absent(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    other = make_hcp(container, "1245319599", territory="T2")
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    out = _get(client, other, rep, channel="rep_email")
    unknown = _get(client, "hcp_does_not_exist", rep, channel="rep_email")
    assert out.status_code == unknown.status_code == 404
    assert out.json()["detail"].replace(other, "X") == unknown.json()["detail"].replace(
        "hcp_does_not_exist", "X"
    )
    assert _get(client, hcp, rep, channel="rep_email").status_code == 200  # control
    fr_manager = bearer_for(container, "bm-fr", "brand_manager", markets=["FR"])
    assert _get(client, hcp, fr_manager, channel="campaign_email").status_code == 404
    mlr = bearer_for(container, "mlr", "mlr_reviewer")  # reads content, never HCPs
    assert _get(client, hcp, mlr, channel="campaign_email").status_code == 404


def test_brand_scope_limits_the_list(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    rep = bearer_for(container, "rep-car", "sales_rep", territories=["T1"], brands=["CARDIOMAX"])
    assert _codes(_ok(client, hcp, rep, channel="rep_email")) == ["CAR-1", "EDU-1"]
    refused = _ok(client, hcp, rep, channel="rep_email", include_refused="true")["refused"]
    assert all(r["brand"] in ("CARDIOMAX", None) for r in refused)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "channel"),
        ({"channel": "fax"}, "channel"),
        ({"channel": ""}, "channel"),
        ({"channel": "rep_email", "at": "tomorrow"}, "at"),
        ({"channel": "rep_email", "at": "2026-11-24T09:00:00"}, "at"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient,
    container: Container,
    hcp: str,
    params: dict[str, str],
    field: str,
) -> None:
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    response = _get(client, hcp, rep, **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["field"] == field
    assert body["code"] == "validation_failed"
    assert body["fix"]


def test_hcp_level_refusals_apply_to_whole_groups(
    client: TestClient, container: Container, library: dict[str, str]
) -> None:
    """Consent is per purpose: an HCP who consented to education only gets education."""
    hcp = make_hcp(container, "1003000126", grants=((ConsentChannel.EMAIL, Purpose.EDUCATIONAL),))
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    assert _codes(_ok(client, hcp, rep, channel="rep_email")) == ["EDU-1"]
    body = _ok(client, hcp, rep, channel="rep_email", include_refused="true")
    groups = {(g["purpose"], g["brand"]): g for g in body["groups"]}
    assert groups[("educational", None)]["allowed"] is True
    promo = groups[("promotional", "ZENTROVA")]
    assert promo["allowed"] is False
    assert [r["code"] for r in promo["reasons"]] == ["no_consent"]
    refused = {r["code"]: r for r in body["refused"]}
    assert [x["code"] for x in refused["ZEN-NEW"]["reasons"]] == ["no_consent"]


def test_include_refused_tells_why(
    client: TestClient, container: Container, hcp: str, library: dict[str, str]
) -> None:
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    plain = _ok(client, hcp, rep, channel="rep_email")
    body = _ok(client, hcp, rep, channel="rep_email", include_refused="true")
    assert body["items"] == plain["items"]  # the two paths agree
    why = {r["code"]: [x["code"] for x in r["reasons"]] for r in body["refused"]}
    assert why == {
        "MED-1": ["role_not_allowed"],
        "ZEN-WD": ["content_not_approved"],
        "ZEN-EN": ["content_language"],
    }
    withdrawn = next(r for r in body["refused"] if r["code"] == "ZEN-WD")
    assert "withdrawn" in withdrawn["reasons"][0]["detail"]
    # the FR and SMS-only items are not offered for DE / rep e-mail at all
    listed = {r["code"] for r in body["refused"]} | set(_codes(body))
    assert not {"ZEN-FR", "ZEN-SMS"} & listed


def test_withdrawal_and_expiry_take_effect_at_once(
    client: TestClient,
    container: Container,
    clock: FixedClock,
    hcp: str,
    library: dict[str, str],
) -> None:
    rep = bearer_for(container, "rep", "sales_rep", territories=["T1"])
    before = _codes(_ok(client, hcp, rep, channel="rep_email"))
    assert {"ZEN-EXP", "CAR-1"} <= set(before)
    change_item(container, library["cardio"], state="withdrawn", withdrawn_at=NOW)
    clock.advance(dt.timedelta(hours=2))
    after = _codes(_ok(client, hcp, rep, channel="rep_email"))
    assert after == [c for c in before if c not in ("ZEN-EXP", "CAR-1")]
    at = (NOW + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    earlier = _ok(client, hcp, rep, channel="rep_email", at=at)  # asking for an earlier time
    assert "ZEN-EXP" in _codes(earlier)
    assert earlier["at"].startswith("2026-11-23T13:00:00")


def test_an_hcp_without_a_market_gets_nothing(
    client: TestClient, container: Container, library: dict[str, str]
) -> None:
    from counterpoint.event.canonical import EventKind, LogEvent

    event = LogEvent(
        "id-nomarket", EventKind.IDENTIFY, "npi:1497758544", NOW, NOW, "tests", payload={}
    )
    container.log.append([event])
    container.catch_up()
    hcp = container.profiles.find_by_identifier("npi:1497758544")
    assert hcp is not None
    ops = bearer_for(container, "ops", "marketing_ops")
    body = _ok(client, hcp, ops, channel="campaign_email", include_refused="true")
    assert body["items"] == body["refused"] == []


def test_many_items_stay_correct_after_a_reload(
    client: TestClient, container: Container, hcp: str
) -> None:
    add_items(container, *(content_row(f"BULK-{i:03d}") for i in range(120)))
    ops = bearer_for(container, "ops", "marketing_ops")
    body = _ok(client, hcp, ops, channel="campaign_email")
    assert body["count"] == 120
    add_items(container, content_row("BULK-NEW", approved_at=NOW))
    assert _codes(_ok(client, hcp, ops, channel="campaign_email"))[0] == "BULK-NEW"
