"""The hot-path reads of one guard check agree with the general ones, on both deployments."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import TEST_ACTOR

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.errors import NotFoundError
from counterpoint.policy.access import Principal, Role


def _identify(message_id: str, user_id: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id,
        "userId": user_id,
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": traits,
    }


@pytest.fixture
def people(client: TestClient, basic: dict[str, str], container: Container) -> dict[str, str]:
    """A plain HCP, and two records that a later identify merges into one."""
    first = {
        "batch": [
            _identify("a", "npi:1234567893", market="DE", territory="T1"),
            _identify("b", "crm:OTHER-1", market="DE", territory="T2", email="x@clinic.example"),
            _identify("d", "npi:1245319599", market="DE", territory="T2"),
        ]
    }
    assert client.post("/v1/batch", json=first, headers=basic).json()["accepted"] == 3
    container.catch_up()
    merged_away = container.profiles.find_by_identifier("crm:OTHER-1")
    join = {"batch": [_identify("c", "npi:1245319599", email="x@clinic.example")]}
    assert client.post("/v1/batch", json=join, headers=basic).json()["accepted"] == 1
    container.catch_up()
    survivor = container.profiles.find_by_identifier("npi:1245319599")
    plain = container.profiles.find_by_identifier("npi:1234567893")
    assert plain is not None
    assert merged_away is not None
    assert survivor is not None
    assert len(container.profiles.resolve(survivor).aliases) == 2  # a real merge happened
    return {"plain": plain, "merged_away": merged_away, "survivor": survivor}


def test_resolve_in_agrees_with_resolve(container: Container, people: dict[str, str]) -> None:
    rep = Principal("u1", "rep", Role.SALES_REP, territories=frozenset({"T1"}))
    for hcp_id in [*people.values(), "hcp_nobody"]:
        for viewer in (None, rep):
            try:
                expected: object = container.profiles.resolve(hcp_id, viewer=viewer)
            except NotFoundError as exc:
                expected = type(exc)
            with container.sessions() as session:
                try:
                    got: object = container.profiles.resolve_in(session, hcp_id, viewer=viewer)
                except NotFoundError as exc:
                    got = type(exc)
            assert got == expected, (hcp_id, viewer)


def test_records_in_agrees_with_records(container: Container, people: dict[str, str]) -> None:
    proof = Proof(ConsentSource.API, "tests", wording_version="v1")
    for hcp_id, subject in (
        (people["plain"], None),
        (people["merged_away"], None),
        (None, "email:x@clinic.example"),
    ):
        container.consents.record(
            hcp_id=hcp_id,
            subject=subject,
            scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
            state=ConsentState.GRANTED,
            proof=proof,
            actor=TEST_ACTOR,
            reason="signed form",
        )
    for hcp_id in people.values():
        ref = container.profiles.resolve(hcp_id)
        with container.sessions() as session:
            fast = container.consents.records_in(session, ref)
        assert fast == container.consents.records(ref)
    survivor = container.profiles.resolve(people["survivor"])
    assert len(container.consents.records(survivor)) == 2  # by merged-away id and by e-mail
