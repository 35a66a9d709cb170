"""The sample journeys against the demo library, through the real system on both
deployments: the content catalog (approved through the real workflow, as ``counterpoint
demo`` does), the segment service and the consent ledger (``journey.context``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import NOW, TEST_ACTOR
from tests.unit.test_journey_definition import EXAMPLES, SAMPLES, edit, line_of

from counterpoint.cli.demo_content import prepare_content
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.event.canonical import Channel, EventKind, LogEvent
from counterpoint.journey.context import SystemContext
from counterpoint.journey.validation import ValidationReport, validate
from counterpoint.policy.audit import Actor
from counterpoint.profile.identifiers import npi_is_valid
from counterpoint.segment.service import parse_segment

LAUNCH = (EXAMPLES / "launch-new-indication.yaml").read_text(encoding="utf-8")


@pytest.fixture
def demo(container: Container) -> Container:
    """The container with the demo library loaded and approved (valid for a year)."""
    prepared = prepare_content(container)
    assert prepared.skipped is None
    assert {"CMX-DE-EM-001", "CMX-AT-EM-001", "CMX-DE-CLM-001"} <= set(prepared.approved)
    return container


def check(container: Container, text: str, source: str = "j.yaml") -> ValidationReport:
    context = SystemContext(container.catalog, container.segments, container.clock)
    return validate(text, source, context, container.clock.now().date())


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_samples_validate_against_the_demo_library(demo: Container, path: Path) -> None:
    report = check(demo, path.read_text(encoding="utf-8"), path.name)
    assert [p.render() for p in report.problems] == []
    assert report.ok
    assert report.coverage is None  # no HCP yet (launch); an event entry (webinar)


def test_a_market_without_approved_content_or_variant_is_named(demo: Container) -> None:
    """CMX-DE-EM-001 has an approved AT variant, the deck has none."""
    text = edit("markets: [DE]", "markets: [DE, AT]", LAUNCH)
    report = check(demo, text)
    found = [(p.code, p.node, p.line) for p in report.problems]
    assert found == [
        ("content_not_approved", "rep-visit", line_of(text, "content: CMX-DE-CLM-001", 1)),
        ("content_not_approved", "rep-remote", line_of(text, "content: CMX-DE-CLM-001", 2)),
    ]
    assert report.problems[0].message.endswith("not approved for f2f_call in AT")


def test_content_expiring_before_the_planned_end_is_named(demo: Container) -> None:
    text = edit("planned_end: 2027-06-30", "planned_end: 2030-12-31", LAUNCH)
    report = check(demo, text)
    assert {p.code for p in report.problems} == {"content_expires"}
    assert [p.node for p in report.problems] == ["send-intro", "rep-visit", "rep-remote"]
    expires = (NOW + dt.timedelta(days=365)).date().isoformat()
    assert f"CMX-DE-EM-001 expires on {expires} in DE, before" in report.problems[0].message


def test_unknown_content_is_named(demo: Container) -> None:
    old, new = "CMX-DE-CLM-001\n      reason: New", "CMX-DE-CLM-009\n      reason: New"
    text = edit(old, new, LAUNCH)
    unlisted, problem = check(demo, text).problems  # in the order of their lines
    assert (problem.code, problem.node) == ("content_unknown", "rep-remote")
    assert problem.line == line_of(text, "content: CMX-DE-CLM-009")
    assert (unlisted.code, unlisted.severity) == ("touchpoint_mismatch", "warning")
    assert "content CMX-DE-CLM-009" in unlisted.message


def test_a_segment_entry_needs_a_stored_segment(demo: Container) -> None:
    condition = LAUNCH.split("      trigger:\n", 1)[1].split("      re_entry:", 1)[0]
    text = edit(condition, "        segment: hf-launch-de\n", LAUNCH)
    [problem] = check(demo, text).problems
    assert (problem.code, problem.node) == ("segment_unknown", "entry")
    assert problem.line == line_of(text, "segment: hf-launch-de")
    in_de = {"attribute": {"name": "market", "op": "eq", "value": "DE"}}
    document = {"name": "hf-launch-de", "condition": in_de}
    demo.segments.create(parse_segment(document), Actor.cli())
    assert check(demo, text).problems == []


# --- consent coverage from the ledger -----------------------------------------------------------
PROOF = Proof(ConsentSource.API, "tests (synthetic)", wording_version="v1")


def _npi(n: int) -> str:
    base = f"{987650000 + n:09d}"
    return next(base + d for d in "0123456789" if npi_is_valid(base + d))


def _hcp(container: Container, npi: str, **traits: Any) -> str:
    """A synthetic HCP in DE with the traits given."""
    body = {"market": "DE", "time_zone": "Europe/Berlin", "last_name": "Muster", **traits}
    payload = {"traits": body}
    event = LogEvent(
        f"id-{npi}", EventKind.IDENTIFY, f"npi:{npi}", NOW, NOW, "tests", payload=payload
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{npi}")
    assert hcp_id is not None
    return hcp_id


def _grant(container: Container, hcp_id: str, channel: ConsentChannel, brand: str | None) -> None:
    container.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(channel, Purpose.PROMOTIONAL, "DE", brand=brand),
        state=ConsentState.GRANTED,
        proof=PROOF,
        actor=TEST_ACTOR,
        reason="signed form (synthetic)",
        effective_at=NOW - dt.timedelta(days=30),
    )


def test_low_consent_coverage_is_measured_on_the_entry_audience(demo: Container) -> None:
    audience = [_hcp(demo, _npi(i), specialty="cardiology", potential_decile=8) for i in range(4)]
    outside = _hcp(demo, _npi(9), specialty="dermatology", potential_decile=9)
    _grant(demo, audience[0], ConsentChannel.EMAIL, None)
    _grant(demo, audience[1], ConsentChannel.EMAIL, "Othermab")  # another brand's: not ours
    _grant(demo, outside, ConsentChannel.EMAIL, None)  # not in the audience
    for hcp_id in audience[:3]:
        _grant(demo, hcp_id, ConsentChannel.F2F_CALL, "Cardiomax")
    report = check(demo, LAUNCH, "launch.yaml")
    assert report.ok  # warnings only
    assert report.coverage == {
        Channel.CAMPAIGN_EMAIL: 0.25,
        Channel.F2F_CALL: 0.75,
        Channel.REMOTE_CALL: 0.0,
    }
    warned = {p.message.split(":", 1)[0]: p for p in report.problems}
    assert set(warned) == {"campaign_email", "remote_call"}
    email = warned["campaign_email"]
    assert email.code == "low_consent_coverage"
    assert email.severity == "warning"
    assert email.node == "send-intro"
    assert email.message.startswith("campaign_email: 25 % of the audience has e-mail consent")
    assert email.line == line_of(LAUNCH, "channel: campaign_email", 1)
    figures = {"campaign_email": 0.25, "f2f_call": 0.75, "remote_call": 0.0}
    assert report.as_dict()["coverage"] == figures
