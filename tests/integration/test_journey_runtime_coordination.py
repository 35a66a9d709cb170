"""Cross-journey coordination through the contact policy: one HCP in two journeys of two
brands receives no more than the policy allows, and the conflict is visible in the second
journey's status (a ``refused`` transition naming the guard's code)."""

from __future__ import annotations

import datetime as dt

from tests.conftest import TEST_ACTOR
from tests.integration.test_journey_runtime import (
    JOURNEY,
    ORIGIN,
    add_content,
    add_hcps,
    manager,
    outbox,
    transitions,
)

from counterpoint.container import Container
from counterpoint.kit.clock import FixedClock

OTHER = (
    JOURNEY.replace("journey: zen-intro", "journey: cmx-intro")
    .replace("brand: ZENTROVA", "brand: CARDIOMAX")
    .replace("ZEN-EM-1", "CMX-EM-1")
    .replace("Zentrova", "Cardiomax")
)
ONE_PER_WEEK = {"caps": [{"scope": "all", "period_days": 7, "max_touches": 1}]}


def test_the_second_brand_is_refused_by_the_cap_and_says_so(
    container: Container, clock: FixedClock
) -> None:
    container.contact.set_policy("DE", ONE_PER_WEEK, TEST_ACTOR, "one touch per week")
    add_content(container)
    add_content(container, "CMX-EM-1", brand="CARDIOMAX")
    container.users.create("rep-t1", "sales_rep", TEST_ACTOR, territories=["T1"])
    [hcp] = add_hcps(container, 1)
    zen = manager(container)
    container.users.create("bm-cmx", "brand_manager", TEST_ACTOR, brands=["CARDIOMAX"])
    cmx = container.users.principal("bm-cmx")

    container.journeys.publish(JOURNEY, zen, ORIGIN)
    container.journey_runtime.drain()
    assert container.delivery_worker.drain().sent == 1  # the touch is counted on delivery
    container.catch_up()

    clock.advance(dt.timedelta(hours=1))
    container.journeys.publish(OTHER, cmx, ORIGIN)
    container.journey_runtime.drain()

    sent = [e for e in outbox(container) if e.hcp_id == hcp]
    assert [e.brand for e in sent] == ["ZENTROVA"]
    [refused] = [t for t in transitions(container, "refused") if t.journey_id == "cmx-intro"]
    assert refused.node == "send-intro"
    assert "over_cap" in refused.detail["codes"]
    status = container.journeys.status("cmx-intro")
    assert status["totals"]["refused"] == 1
    assert status["totals"]["refusals"] == {"over_cap": 1}
    assert status["totals"]["sent"] == 0


def test_without_the_cap_both_brands_reach_the_hcp(container: Container, clock: FixedClock) -> None:
    """The negative control: the same two journeys under a policy without that cap."""
    container.contact.set_policy("DE", {"caps": []}, TEST_ACTOR, "no caps")
    add_content(container)
    add_content(container, "CMX-EM-1", brand="CARDIOMAX")
    [hcp] = add_hcps(container, 1)
    zen = manager(container)
    container.users.create("bm-cmx", "brand_manager", TEST_ACTOR, brands=["CARDIOMAX"])
    container.journeys.publish(JOURNEY, zen, ORIGIN)
    container.journey_runtime.drain()
    container.delivery_worker.drain()
    container.catch_up()
    clock.advance(dt.timedelta(hours=1))
    container.journeys.publish(OTHER, container.users.principal("bm-cmx"), ORIGIN)
    container.journey_runtime.drain()
    assert sorted(e.brand or "" for e in outbox(container) if e.hcp_id == hcp) == [
        "CARDIOMAX",
        "ZENTROVA",
    ]
    assert transitions(container, "refused") == []
