"""Authorisation on every route, generated from the route table (deny by default).

Every API route declares ``Allow(resource, verb)`` or ``Public(reason)``; a route without
either fails here. For each ``Allow`` route and every role, the call is refused with 403
exactly when the permission table (``policy.access.RULES``) says so, and refused with 401
without a valid token. Object scope (markets, territories) and the medical/commercial
separation are tested on the HCP routes.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from tests.conftest import TEST_ACTOR, bearer_for

from counterpoint.api.deps import Allow, Public
from counterpoint.container import Container
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.access import Resource, Role, Verb, is_allowed

PUBLIC_PREFIXES = ("/health", "/v1/", "/consent/", "/hooks/", "/t/")
"""Where routes outside bearer-token access may live (write keys, signed links, webhooks)."""


def _declarations(route: APIRoute) -> list[Allow | Public]:
    found: list[Allow | Public] = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, (Allow, Public)):
            found.append(dependant.call)
        stack.extend(dependant.dependencies)
    return found


def _routes(client: TestClient) -> list[APIRoute]:
    """Every API route, with the path it is served at (routers' prefixes included).

    Access rules are declared on routes or on their ``APIRouter``, never in
    ``include_router(dependencies=…)``, so each route's own dependencies hold them.
    """
    found: list[APIRoute] = []
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if isinstance(context.route, APIRoute):
            route = context.route
            if context.path != route.path:
                route = copy.copy(route)
                route.path = context.path
            found.append(route)
    return found


def _path(route: APIRoute) -> str:
    """The route's path with placeholder values (ints where the route wants an int)."""
    kinds = {p.name: p.field_info.annotation for p in route.dependant.path_params}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return "1" if kinds.get(name) is int else ("DE" if name == "market" else "hcp_nobody")

    return re.sub(r"\{([^}]+)\}", fill, route.path)


def _calls(client: TestClient) -> Iterator[tuple[APIRoute, str, Allow]]:
    for route in _routes(client):
        declared = _declarations(route)
        allow = [d for d in declared if isinstance(d, Allow)]
        if allow:
            for method in sorted(route.methods):
                yield route, method, allow[0]


def test_every_route_declares_exactly_one_access_rule(client: TestClient) -> None:
    routes = _routes(client)
    assert len(routes) >= 15
    for route in routes:
        declared = _declarations(route)
        assert len(declared) == 1, f"{route.path} declares {declared or 'no access rule'}"
        rule = declared[0]
        if isinstance(rule, Public):
            assert rule.reason.strip(), route.path
            assert route.path.startswith(PUBLIC_PREFIXES), (
                f"{route.path} is public outside {PUBLIC_PREFIXES}: give it an Allow rule"
            )


def test_a_route_without_a_rule_is_caught(client: TestClient) -> None:
    """Negative control of the test above: an undeclared route is found."""
    app = client.app

    @app.get("/api/v1/undeclared")  # type: ignore[attr-defined,misc]
    def undeclared() -> dict[str, str]:
        return {}

    missing = [r.path for r in _routes(client) if not _declarations(r)]
    assert missing == ["/api/v1/undeclared"]


@pytest.fixture
def role_headers(container: Container) -> dict[Role, dict[str, str]]:
    """One user per role; field roles get a territory (a field role without one sees none)."""
    return {
        role: bearer_for(
            container,
            f"user-{role.value}",
            role.value,
            territories=["T1"] if role in (Role.SALES_REP, Role.KAM, Role.MSL) else [],
        )
        for role in Role
    }


def test_every_route_refuses_exactly_the_roles_the_table_refuses(
    client: TestClient, role_headers: dict[Role, dict[str, str]]
) -> None:
    checked = 0
    for route, method, rule in _calls(client):
        path = _path(route)
        anonymous = client.request(method, path)
        assert anonymous.status_code == 401, f"{method} {path} without a token"
        forged = client.request(method, path, headers={"Authorization": "Bearer cpt_forged"})
        assert forged.status_code == 401, f"{method} {path} with a forged token"
        for role, headers in role_headers.items():
            response = client.request(method, path, headers=headers, json={})
            allowed = is_allowed(role, rule.resource, rule.verb)
            where = f"{method} {path} as {role.value} ({rule!r})"
            assert response.status_code != 500, where
            if allowed:
                assert response.status_code not in (401, 403), f"{where}: {response.text}"
            else:
                assert response.status_code == 403, f"{where}: {response.text}"
                body = response.json()
                assert body["code"] == "forbidden"
                assert (body["resource"], body["verb"]) == (rule.resource.value, rule.verb.value)
            checked += 1
    assert checked >= 7 * len(Role)


def test_auditors_read_everything_and_change_nothing() -> None:
    for resource in Resource:
        for verb in Verb:
            allowed = is_allowed(Role.COMPLIANCE_AUDITOR, resource, verb)
            if verb in (Verb.READ, Verb.EXPORT):
                granted_to_someone = any(is_allowed(r, resource, verb) for r in Role)
                assert allowed == granted_to_someone, (resource, verb)
            else:
                assert not allowed, (resource, verb)


def test_commercial_roles_never_read_medical_content() -> None:
    for role in (Role.BRAND_MANAGER, Role.MARKETING_OPS, Role.SALES_REP, Role.KAM):
        assert not is_allowed(role, Resource.MEDICAL, Verb.READ)
    assert is_allowed(Role.MSL, Resource.MEDICAL, Verb.READ)


# --- tokens ------------------------------------------------------------------------------


def test_expired_revoked_and_disabled_tokens_are_refused(
    client: TestClient, container: Container, clock: FixedClock
) -> None:
    container.users.create("ops", "marketing_ops", TEST_ACTOR)
    _, secret = container.tokens.create("ops", TEST_ACTOR, days=1)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/quarantine", headers=headers).status_code == 200
    clock.advance(dt.timedelta(days=1, seconds=1))
    expired = client.get("/api/v1/quarantine", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["field"] == "Authorization"

    _, secret = container.tokens.create("ops", TEST_ACTOR)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/quarantine", headers=headers).status_code == 200
    container.users.disable("ops", TEST_ACTOR, "left the company")
    assert client.get("/api/v1/quarantine", headers=headers).status_code == 401

    container.users.create("ops2", "marketing_ops", TEST_ACTOR)
    token, secret = container.tokens.create("ops2", TEST_ACTOR)
    headers = {"Authorization": f"Bearer {secret}"}
    assert container.tokens.revoke(token.id, TEST_ACTOR)
    assert client.get("/api/v1/quarantine", headers=headers).status_code == 401


def test_a_write_key_is_not_an_api_token(client: TestClient, write_key: str) -> None:
    as_bearer = client.get("/api/v1/quarantine", headers={"Authorization": f"Bearer {write_key}"})
    assert as_bearer.status_code == 401
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    as_basic = client.get("/api/v1/quarantine", headers={"Authorization": f"Basic {basic}"})
    assert as_basic.status_code == 401


def test_user_and_token_changes_are_audited(container: Container) -> None:
    container.users.create("audited", "msl", TEST_ACTOR, territories=["T9"])
    token, _ = container.tokens.create("audited", TEST_ACTOR)
    container.tokens.revoke(token.id, TEST_ACTOR)
    actions = [r.action for r in container.audit.iter_records()]
    assert actions[-3:] == ["user.create", "token.create", "token.revoke"]
    count, problems = container.audit.verify()
    assert (count, problems) == (len(actions), [])


@pytest.mark.parametrize(
    ("name", "role", "scopes", "field"),
    [
        ("x<script>", "admin", {}, "name"),
        ("ok", "superuser", {}, "role"),
        ("ok", "sales_rep", {"markets": ["XX"]}, "markets"),
        ("ok", "sales_rep", {"territories": ["north; DROP TABLE app_user"]}, "territories"),
    ],
)
def test_bad_user_input_names_the_field_and_stores_nothing(
    container: Container, name: str, role: str, scopes: dict[str, Any], field: str
) -> None:
    from counterpoint.errors import ValidationFailedError

    with pytest.raises(ValidationFailedError) as caught:
        container.users.create(name, role, TEST_ACTOR, **scopes)
    assert caught.value.field == field
    assert caught.value.fix
    assert container.users.list() == []
    assert list(container.audit.iter_records()) == []


# --- object scope and the medical/commercial separation -----------------------------------


def _identify(npi: str, market: str, territory: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": f"id-{npi}",
        "userId": f"npi:{npi}",
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {"first_name": "Ada", "market": market, "territory": territory},
    }


def _medical(npi: str) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": f"inq-{npi}",
        "userId": f"npi:{npi}",
        "event": "Medical Inquiry Received",
        "timestamp": "2026-11-02T08:00:00Z",
        "properties": {
            "channel": "medical_inquiry",
            "action": "inquiry_received",
            "question": "off-label dosing in renal impairment?",
            "content_id": "MI-ANSWER-7",
        },
    }


@pytest.fixture
def scoped(client: TestClient, basic: dict[str, str], container: Container) -> dict[str, str]:
    """Two HCPs: one in DE territory T1 (with a medical inquiry), one in FR territory T2."""
    batch = {
        "batch": [
            _identify("1234567893", "DE", "T1"),
            _identify("1245319599", "FR", "T2"),
            _medical("1234567893"),
        ]
    }
    sent = client.post("/v1/batch", json=batch, headers=basic)
    assert sent.status_code == 200, sent.text
    assert sent.json()["accepted"] == 3, sent.text
    container.catch_up()
    ids = {
        "de": container.profiles.find_by_identifier("npi:1234567893"),
        "fr": container.profiles.find_by_identifier("npi:1245319599"),
    }
    assert all(ids.values())
    return ids  # type: ignore[return-value]


def test_a_rep_reads_only_hcps_in_their_territory(
    client: TestClient, container: Container, scoped: dict[str, str]
) -> None:
    rep = bearer_for(container, "rep-t1", "sales_rep", territories=["T1"])
    assert client.get(f"/api/v1/hcps/{scoped['de']}", headers=rep).status_code == 200
    other = client.get(f"/api/v1/hcps/{scoped['fr']}", headers=rep)
    assert other.status_code == 404  # out of scope reads as absent: no existence leak
    assert client.get(f"/api/v1/hcps/{scoped['fr']}/timeline", headers=rep).status_code == 404
    lookup = client.get("/api/v1/hcps", params={"identifier": "npi:1245319599"}, headers=rep)
    assert lookup.status_code == 404
    nowhere = bearer_for(container, "rep-none", "sales_rep")
    assert client.get(f"/api/v1/hcps/{scoped['de']}", headers=nowhere).status_code == 404


def test_market_scope_limits_headquarters_roles(
    client: TestClient, container: Container, scoped: dict[str, str]
) -> None:
    de_brand = bearer_for(container, "bm-de", "brand_manager", markets=["DE"])
    assert client.get(f"/api/v1/hcps/{scoped['de']}", headers=de_brand).status_code == 200
    assert client.get(f"/api/v1/hcps/{scoped['fr']}", headers=de_brand).status_code == 404


def test_commercial_roles_see_that_a_medical_interaction_happened_not_what(
    client: TestClient, container: Container, scoped: dict[str, str]
) -> None:
    rep = bearer_for(container, "rep-med", "sales_rep", territories=["T1"])
    msl = bearer_for(container, "msl-med", "msl", territories=["T1"])
    seen_by_rep = client.get(f"/api/v1/hcps/{scoped['de']}/timeline", headers=rep).json()
    seen_by_msl = client.get(f"/api/v1/hcps/{scoped['de']}/timeline", headers=msl).json()
    (rep_item,) = [i for i in seen_by_rep["items"] if i["channel"] == "medical_inquiry"]
    (msl_item,) = [i for i in seen_by_msl["items"] if i["channel"] == "medical_inquiry"]
    assert rep_item["redacted"] is True
    assert "renal" not in str(rep_item)
    assert "MI-ANSWER-7" not in str(rep_item)
    assert msl_item["redacted"] is False
    assert "renal" in str(msl_item["payload"])  # the control: the content exists and MSL sees it


def test_medical_interactions_can_be_hidden_from_commercial_roles_entirely(
    client: TestClient, container: Container, scoped: dict[str, str]
) -> None:
    container.profiles._medical_visible = False  # the setting medical_visible_to_commercial
    rep = bearer_for(container, "rep-hidden", "sales_rep", territories=["T1"])
    items = client.get(f"/api/v1/hcps/{scoped['de']}/timeline", headers=rep).json()["items"]
    assert [i["kind"] for i in items] == ["identify"]  # the inquiry is left out
    asked = client.get(
        f"/api/v1/hcps/{scoped['de']}/timeline", params={"function": "medical"}, headers=rep
    )
    assert asked.json()["items"] == []


def test_the_documented_permission_table_is_the_rule_set() -> None:
    from pathlib import Path

    from counterpoint.policy.access import permission_table

    docs = (Path(__file__).parents[2] / "docs" / "access.md").read_text(encoding="utf-8")
    assert permission_table() in docs, "regenerate the table in docs/access.md"


def test_brand_scope_limits_what_a_user_may_act_for(
    client: TestClient, container: Container, scoped: dict[str, str]
) -> None:
    ops = bearer_for(container, "ops-zen", "marketing_ops", brands=["ZENTROVA"])
    check = {"hcp_id": scoped["de"], "channel": "campaign_email", "purpose": "promotional"}
    own = client.post("/api/v1/guard/check", json={**check, "brand": "ZENTROVA"}, headers=ops)
    assert own.status_code == 200, own.text
    other = client.post("/api/v1/guard/check", json={**check, "brand": "OTHER"}, headers=ops)
    assert other.status_code == 403
    assert other.json()["field"] == "brand"
    many = client.post(
        "/api/v1/guard/check",
        json={"candidates": [{**check, "brand": "ZENTROVA"}, {**check, "brand": "OTHER"}]},
        headers=ops,
    )
    assert many.status_code == 403
    assert many.json()["field"] == "candidates[1].brand"
    consent = {
        "channel": "email",
        "purpose": "promotional",
        "market": "DE",
        "state": "granted",
        "source": "web_form",
        "wording_version": "v1",
        "reason": "signed web form",
    }
    before = len(list(container.audit.iter_records()))
    refused = client.post(
        f"/api/v1/hcps/{scoped['de']}/consents", json={**consent, "brand": "OTHER"}, headers=ops
    )
    assert refused.status_code == 403
    assert len(list(container.audit.iter_records())) == before  # nothing recorded
    allowed = client.post(
        f"/api/v1/hcps/{scoped['de']}/consents", json={**consent, "brand": "ZENTROVA"}, headers=ops
    )
    assert allowed.status_code == 201, allowed.text
