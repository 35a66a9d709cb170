"""Content library rows written directly, as the library service writes them (a row change
and a generation bump in one transaction), and synthetic HCPs with consents: a small factory
for the tests of the guard's content checks and of the eligible-content query."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from tests.conftest import NOW, TEST_ACTOR

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.content.models import ContentGeneration, ContentItem
from counterpoint.event.canonical import EventKind, LogEvent
from counterpoint.kit.ids import new_id

PROOF = Proof(ConsentSource.API, "tests", wording_version="v1")
ZEN = "ZENTROVA"


def bump(session: Session) -> None:
    """What the library does in every transaction that changes what may be sent."""
    row = session.get(ContentGeneration, 1)
    if row is None:
        session.add(ContentGeneration(id=1, value=1))
    else:
        row.value += 1


def content_row(code: str, **changes: Any) -> ContentItem:
    """An approved, synthetic promotional e-mail for DE in German, valid around NOW."""
    values: dict[str, Any] = {
        "id": new_id("cnt"),
        "code": code,
        "kind": "asset",
        "asset_type": "campaign_email",
        "title": f"Synthetic {code}",
        "brand": ZEN,
        "therapeutic_area": "cardiology",
        "topics": [],
        "journey_stage": "awareness",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "channels": ["campaign_email", "rep_email"],
        "claims": [],
        "minutes": 2.0,
        "persona": None,
        "parent_id": None,
        "body": {"subject": "s", "text": "t"},
        "fragment_codes": [],
        "version": 1,
        "content_hash": "0" * 64,
        "state": "approved",
        "review_note": None,
        "author_id": "usr_author",
        "author": "author",
        "created_at": NOW - dt.timedelta(days=20),
        "updated_at": NOW - dt.timedelta(days=20),
        "job_code": f"JOB-{code}",
        "approval_markets": ["DE"],
        "approval_channels": ["campaign_email", "rep_email"],
        "valid_from": NOW - dt.timedelta(days=10),
        "valid_until": NOW + dt.timedelta(days=60),
        "approved_at": NOW - dt.timedelta(days=10),
        "approved_hash": "1" * 64,
        "withdrawn_at": None,
        "synthetic": True,
    }
    values.update(changes)
    return ContentItem(**values)


def add_items(container: Container, *items: ContentItem, generation: bool = True) -> list[str]:
    with container.sessions.begin() as session:
        session.add_all(items)
        if generation:
            bump(session)
    return [i.id for i in items]


def change_item(
    container: Container, item_id: str, *, generation: bool = True, **values: Any
) -> None:
    with container.sessions.begin() as session:
        session.execute(update(ContentItem).where(ContentItem.id == item_id).values(**values))
        if generation:
            bump(session)


def make_hcp(
    container: Container,
    npi: str,
    *,
    market: str = "DE",
    territory: str = "T1",
    language: str | None = "de",
    grants: tuple[tuple[ConsentChannel, Purpose], ...] = (
        (ConsentChannel.EMAIL, Purpose.PROMOTIONAL),
    ),
) -> str:
    traits: dict[str, Any] = {"market": market, "territory": territory}
    traits["time_zone"] = "Europe/Berlin"
    if language:
        traits["preferred_language"] = language
    event = LogEvent(
        f"id-{npi}", EventKind.IDENTIFY, f"npi:{npi}", NOW, NOW, "tests", payload={"traits": traits}
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{npi}")
    assert hcp_id is not None
    for channel, purpose in grants:
        container.consents.record(
            hcp_id=hcp_id,
            subject=None,
            scope=ConsentScope(channel, purpose, market),
            state=ConsentState.GRANTED,
            proof=PROOF,
            actor=TEST_ACTOR,
            reason="signed form",
            effective_at=NOW - dt.timedelta(days=30),
        )
    return hcp_id
