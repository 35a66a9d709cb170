"""The guard's content checks through GuardService, on both deployments: withdrawal and expiry
take effect at once, the catalog reloads exactly when the library's generation moves, and the
batch form agrees with the single check. Content rows are written directly, as the library
service would (a row change and a generation bump in one transaction). All data synthetic."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import NOW
from tests.content_rows import ZEN, add_items, bump, change_item, content_row, make_hcp

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.container import Container
from counterpoint.content.models import ContentGeneration, ContentItem
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.access import Role
from counterpoint.policy.guard import Decision
from counterpoint.policy.guard_service import CheckRequest


@pytest.fixture
def hcp(container: Container) -> str:
    return make_hcp(container, "1234567893")


def _send(container: Container, hcp_id: str, content_id: str | None, **kw: Any) -> Decision:
    request = CheckRequest(
        hcp_id,
        kw.pop("channel", Channel.CAMPAIGN_EMAIL),
        kw.pop("purpose", Purpose.PROMOTIONAL),
        kw.pop("brand", ZEN),
        content_id=content_id,
    )
    return container.guard.check(request, role=kw.pop("role", None), **kw)


def test_the_catalog_is_registered_as_a_content_check(container: Container) -> None:
    assert container.catalog.check in container.guard.content_checks


def test_an_approved_item_may_go_and_a_missing_one_may_not(container: Container, hcp: str) -> None:
    (item,) = add_items(container, content_row("ZEN-1"))
    assert _send(container, hcp, item).allowed
    assert _send(container, hcp, None).allowed  # no content: nothing to judge
    missing = _send(container, hcp, "cnt_missing")
    assert missing.codes == ["content_unknown"]
    fragment = content_row("ISI-1", kind="fragment", asset_type=None)
    (fragment_id,) = add_items(container, fragment)
    assert _send(container, hcp, fragment_id).codes == ["content_unknown"]


def test_withdrawal_takes_effect_at_once(container: Container, hcp: str) -> None:
    (item,) = add_items(container, content_row("ZEN-W"))
    assert _send(container, hcp, item).allowed
    loads = container.catalog.loads
    for _ in range(5):  # an unchanged library is not reloaded
        assert _send(container, hcp, item).allowed
    assert container.catalog.loads == loads
    change_item(container, item, state="withdrawn", withdrawn_at=NOW)
    refused = _send(container, hcp, item)
    assert refused.codes == ["content_not_approved"]
    assert "withdrawn" in refused.refusals[0].detail
    assert container.catalog.loads == loads + 1


def test_without_a_generation_bump_the_catalog_would_be_stale(
    container: Container, hcp: str
) -> None:
    """Negative control: the generation counter is what keeps the check exact. A change
    written without it goes unseen; the bump makes the very next check see it."""
    (item,) = add_items(container, content_row("ZEN-S"))
    assert _send(container, hcp, item).allowed
    change_item(container, item, state="withdrawn", generation=False)
    assert _send(container, hcp, item).allowed  # stale: the harness can tell
    with container.sessions.begin() as session:
        bump(session)
    assert _send(container, hcp, item).codes == ["content_not_approved"]


def test_expiry_takes_effect_at_once_while_the_state_still_says_approved(
    container: Container, clock: FixedClock, hcp: str
) -> None:
    (item,) = add_items(container, content_row("ZEN-E", valid_until=NOW + dt.timedelta(hours=1)))
    assert _send(container, hcp, item).allowed
    loads = container.catalog.loads
    clock.advance(dt.timedelta(hours=1))
    expired = _send(container, hcp, item)
    assert expired.codes == ["content_expired"]
    assert container.catalog.loads == loads  # no sweeper, no reload: the time decides
    with container.sessions() as session:
        assert session.scalar(select(ContentItem.state).where(ContentItem.id == item)) == (
            "approved"
        )


def test_not_yet_valid(container: Container, clock: FixedClock, hcp: str) -> None:
    (item,) = add_items(container, content_row("ZEN-F", valid_from=NOW + dt.timedelta(days=1)))
    assert _send(container, hcp, item).codes == ["content_not_yet_valid"]
    clock.advance(dt.timedelta(days=1))
    assert _send(container, hcp, item).allowed


def test_market_channel_language_purpose_and_brand(container: Container) -> None:
    hcp = make_hcp(
        container,
        "1245319599",
        grants=(
            (ConsentChannel.EMAIL, Purpose.PROMOTIONAL),
            (ConsentChannel.SMS, Purpose.PROMOTIONAL),
            (ConsentChannel.EMAIL, Purpose.MEDICAL),
        ),
    )
    french = make_hcp(container, "1003000126", language="fr")
    fr_only, de_item, medical = add_items(
        container,
        content_row("FR-1", approval_markets=["FR"], markets=["FR"]),
        content_row("DE-1"),
        content_row("MED-1", function="medical"),
    )
    assert _send(container, hcp, fr_only).codes == ["content_market"]
    assert _send(container, hcp, de_item, channel=Channel.SMS).codes == ["content_channel"]
    assert _send(container, french, de_item).codes == ["content_language"]
    assert _send(container, hcp, medical).codes == ["content_purpose"]
    assert _send(container, hcp, de_item, brand="CARDIOMAX").codes == ["content_brand"]
    # HCP-level reasons and content reasons come together
    both = _send(container, hcp, fr_only, channel=Channel.SMS, purpose=Purpose.MEDICAL)
    assert {"no_consent", "content_market", "content_channel", "content_purpose"} <= set(both.codes)


def test_a_rep_sending_content_is_judged_on_the_content_too(container: Container, hcp: str) -> None:
    (item,) = add_items(container, content_row("ZEN-R"))
    rep = _send(container, hcp, item, channel=Channel.REP_EMAIL, role=Role.SALES_REP)
    assert rep.allowed
    change_item(container, item, state="expired")
    refused = _send(container, hcp, item, channel=Channel.REP_EMAIL, role=Role.SALES_REP)
    assert refused.codes == ["content_not_approved"]
    assert "expired" in refused.refusals[0].detail


def test_refusals_for_content_are_recorded_with_the_content_id(
    container: Container, hcp: str
) -> None:
    (item,) = add_items(container, content_row("ZEN-X", state="withdrawn"))
    decision = _send(container, hcp, item, record_refusal=True, actor="tests")
    assert decision.codes == ["content_not_approved"]
    table = container.log.read_after(0, 1000).to_pylist()
    refused = [r for r in table if r["action"] == "refused" and r["content_id"] == item]
    assert len(refused) == 1
    assert '"content_not_approved"' in refused[0]["payload"]


def test_check_many_agrees_with_check(container: Container, clock: FixedClock) -> None:
    de = make_hcp(container, "1234567893")
    fr_reader = make_hcp(container, "1003000126", language="fr")
    nowhere = make_hcp(container, "1245319599", grants=())
    items = add_items(
        container,
        content_row("A-1"),
        content_row("A-2", state="withdrawn"),
        content_row("A-3", valid_until=NOW + dt.timedelta(minutes=30)),
        content_row("A-4", approval_channels=["sms"]),
        content_row("A-5", function="educational", brand=None),
        content_row("A-6", approval_markets=["FR"]),
    )
    clock.advance(dt.timedelta(hours=1))
    requests = [
        CheckRequest(h, channel, purpose, brand, content_id=c)
        for h in (de, fr_reader, nowhere, "hcp_unknown")
        for c in [*items, None, "cnt_missing"]
        for channel in (Channel.CAMPAIGN_EMAIL, Channel.SMS)
        for purpose in (Purpose.PROMOTIONAL, Purpose.EDUCATIONAL)
        for brand in (ZEN, None)
    ]
    many = container.guard.check_many(requests, role=None)
    single = [container.guard.check(r, role=None) for r in requests]
    assert [d.codes for d in many] == [d.codes for d in single]
    assert any(d.allowed for d in many)
    assert any("content_expired" in d.codes for d in many)
    assert any("content_language" in d.codes for d in many)


def test_concurrent_checks_see_a_consistent_catalog(container: Container, hcp: str) -> None:
    """Readers in threads while the library changes: no errors, and the last answer is fresh."""
    (item,) = add_items(container, content_row("ZEN-T"))
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                decision = _send(container, hcp, item)
                assert decision.codes in ([], ["content_not_approved"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            change_item(container, item, state="withdrawn" if i % 2 == 0 else "approved")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert _send(container, hcp, item).allowed  # the last change (i = 9) approved it


def test_an_empty_library_without_a_generation_row(container: Container, hcp: str) -> None:
    with container.sessions() as session:
        assert session.get(ContentGeneration, 1) is None
    assert container.catalog.refresh_if_stale().generation == 0
    assert _send(container, hcp, "cnt_any").codes == ["content_unknown"]
    (item,) = add_items(container, content_row("ZEN-0"))
    assert _send(container, hcp, item).allowed
