"""Validation before publishing (``journey.validation``): graph checks on the flow, checks
against the system through a plain fake ``ValidationContext``, and properties over random
flows checked against brute force."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.test_journey_definition import BASE, SAMPLES, edit, line_of

from counterpoint.consent.ledger import Purpose
from counterpoint.content.eligibility import ContentRef
from counterpoint.event.canonical import Channel
from counterpoint.journey.definition import (
    EntryTrigger,
    JourneyDocument,
    WaitForEventNode,
    WaitNode,
    successors,
)
from counterpoint.journey.loader import load_document
from counterpoint.journey.validation import (
    ValidationReport,
    graph_problems,
    system_problems,
    validate,
)

TODAY = dt.date(2026, 11, 23)
EMAIL = Channel.CAMPAIGN_EMAIL
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ref(
    code: str,
    markets: Sequence[str],
    channels: Sequence[str],
    *,
    state: str = "approved",
    until: dt.datetime | None = dt.datetime(2028, 1, 1, tzinfo=dt.UTC),
    parent: str | None = None,
    function: str = "promotional",
    brand: str | None = "Cardiomax",
) -> ContentRef:
    return ContentRef(
        id=f"id-{code}", code=code, kind="asset", asset_type="campaign_email", title=code,
        brand=brand, function=function, languages=frozenset({"de"}), channels=frozenset(channels),
        markets=frozenset(markets), persona=None, parent_id=parent, state=state, job_code=None,
        valid_from=LONG_AGO, valid_until=until, minutes=3.0, journey_stage=None,
        approved_at=LONG_AGO if state == "approved" else None,
    )  # fmt: skip


@dataclass
class FakeContext:
    """The system as plain data: a library by code (item and variants), segment names and
    the coverage figures to report."""

    library: dict[str, list[ContentRef]] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)
    coverage: dict[Channel, float] | None = None
    asked: list[tuple[EntryTrigger, tuple[Channel, ...], Purpose, str]] = field(
        default_factory=list
    )

    def content(self, code: str) -> Sequence[ContentRef]:
        return self.library.get(code, [])

    def segment_exists(self, name: str) -> bool:
        return name in self.segments

    def consent_coverage(
        self, entry: EntryTrigger, channels: Sequence[Channel], purpose: Purpose, brand: str
    ) -> Mapping[Channel, float] | None:
        self.asked.append((entry, tuple(channels), purpose, brand))
        return self.coverage


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def at_variant(code: str = "CMX-1-AT", **kw: Any) -> ContentRef:
    return ref(code, ["AT"], ["campaign_email"], parent="id-CMX-1", **kw)


def deck(**kw: Any) -> ContentRef:
    return ref("CMX-CLM", ["DE", "AT"], ["f2f_call"], **kw)


def good_library() -> dict[str, list[ContentRef]]:
    """CMX-1 approved for DE, its AT variant approved for AT; the deck for DE and AT."""
    return {
        "CMX-1": [
            ref("CMX-1", ["DE"], ["campaign_email"]),
            at_variant(),
        ],
        "CMX-CLM": [ref("CMX-CLM", ["DE", "AT"], ["f2f_call", "remote_call"])],
    }


def run(text: str = BASE, context: FakeContext | None = None) -> ValidationReport:
    return validate(text, "j.yaml", context or FakeContext(good_library()), TODAY)


def codes(report: ValidationReport) -> list[str]:
    return [p.code for p in report.problems]


def loaded(text: str) -> tuple[JourneyDocument, Any]:
    result = load_document(text, source="j.yaml")
    return result.require(), result.lines


# --- graph ----------------------------------------------------------------------------------------
def test_the_base_document_is_valid_against_a_good_library() -> None:
    report = run()
    assert report.problems == []
    assert report.ok
    assert report.coverage is None  # the fake has no figures


def test_an_unreachable_node_is_named_with_its_line() -> None:
    lost = "    - id: lost\n      type: goal\n      touchpoint: tp-rep\n      goal: never\n"
    text = edit("    - id: done\n", lost + "    - id: done\n")
    doc, lines = loaded(text)
    [problem] = graph_problems(doc, lines)
    assert (problem.code, problem.node, problem.severity) == ("unreachable_node", "lost", "error")
    assert problem.line == line_of(text, "- id: lost")
    assert not run(text).ok


def test_a_loop_without_a_wait_is_named_with_its_line_and_the_loop() -> None:
    text = edit(
        "      due: {days: 5}\n      next: done\n",
        "      due: {days: 5}\n      next: check\n    - id: check\n      type: condition\n"
        "      touchpoint: tp-rep\n"
        "      condition: {consent: {channel: email, purpose: promotional}}\n"
        "      then: rep\n      else: done\n",
    )
    doc, lines = loaded(text)
    [problem] = graph_problems(doc, lines)
    assert (problem.code, problem.node) == ("loop_without_wait", "rep")
    assert problem.line == line_of(text, "- id: rep")
    assert "rep → check → rep" in problem.message
    rendered = problem.render()
    assert rendered.startswith(f"j.yaml:{problem.line}: [loop_without_wait] node rep: the loop")


def test_a_loop_through_a_wait_is_fine() -> None:
    text = edit(
        "      due: {days: 5}\n      next: done\n", "      due: {days: 5}\n      next: opened\n"
    )
    doc, lines = loaded(text)
    assert graph_problems(doc, lines) == []


def test_a_loop_with_no_way_out_is_reported() -> None:
    text = edit("      timeout_next: done\n", "      timeout_next: rep\n")
    text = edit("due: {days: 5}\n      next: done\n", "due: {days: 5}\n      next: opened\n", text)
    text = edit("    - id: done\n      type: exit\n      reason: end\n", "", text)
    doc, lines = loaded(text)
    [problem] = graph_problems(doc, lines)
    assert (problem.code, problem.node) == ("no_way_out", "start")
    assert "opened, rep" in problem.message
    assert problem.line == line_of(text, "- id: start")


def test_unused_touchpoints_and_empty_stages_are_warnings() -> None:
    text = edit("consideration]", "consideration, advocacy]")
    text = edit(
        "flow:\n",
        "    - id: tp-spare\n      stage: consideration\n      name: Spare\n"
        "      customer_goal: g\n      business_reason: r\n"
        "      owner: {responsible: kam, accountable: brand_manager}\n"
        "flow:\n",
        text,
    )
    report = run(text)
    assert report.ok  # warnings only
    assert [(p.code, p.severity, p.line) for p in report.problems] == [
        ("stage_empty", "warning", line_of(text, "stages: [")),
        ("touchpoint_unused", "warning", line_of(text, "- id: tp-spare")),
    ]
    assert report.problems[1].message == "touchpoint tp-spare: no node of the flow serves it"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_samples_pass_the_graph_checks(path: Path) -> None:
    doc, lines = loaded(path.read_text(encoding="utf-8"))
    assert graph_problems(doc, lines) == []


# --- graph properties over random flows ---------------------------------------------------------
KINDS = ("wait", "wait_for_event", "condition", "random", "send", "goal", "exit")


@st.composite
def flows(draw: st.DrawFn) -> JourneyDocument:
    """Any flow: n nodes of random kinds with edges to any node but the entry."""
    n = draw(st.integers(1, 7))
    ids = [f"n{i}" for i in range(1, n + 1)]

    def to() -> str:
        return draw(st.sampled_from(ids))

    nodes: list[dict[str, Any]] = [
        {"id": "n0", "type": "entry", "touchpoint": "tp", "trigger": {"segment": "s"}, "next": to()}
    ]
    for node_id in ids:
        kind = draw(st.sampled_from(KINDS))
        node: dict[str, Any] = {"id": node_id, "type": kind, "touchpoint": "tp"}
        if kind == "wait":
            node |= {"duration": {"days": 1}, "next": to()}
        elif kind == "wait_for_event":
            node |= {"event": {"action": "opened"}, "timeout": {"days": 1}, "next": to(),
                     "timeout_next": to()}  # fmt: skip
        elif kind == "condition":
            node |= {"condition": {"consent": {"channel": "sms", "purpose": "promotional"}},
                     "then": to(), "else": to()}  # fmt: skip
        elif kind == "random":
            node["arms"] = [{"name": "a", "weight": 1, "next": to()},
                            {"name": "b", "weight": 1, "next": to()}]  # fmt: skip
        elif kind == "send":
            node |= {"channel": "sms", "content": "C", "next": to()}
        elif kind == "goal":
            node |= {"goal": "g"} | ({"next": to()} if draw(st.booleans()) else {})
        nodes.append(node)
    owner = {"responsible": "kam", "accountable": "kam"}
    tp = {"id": "tp", "stage": "awareness", "name": "t", "customer_goal": "g",
          "business_reason": "r", "owner": owner}  # fmt: skip
    return JourneyDocument.model_validate(
        {"journey": "g", "title": "g", "brand": "B", "markets": ["DE"],
         "map": {"stages": ["awareness"], "touchpoints": [tp]}, "flow": {"nodes": nodes}}
    )  # fmt: skip


def brute_force_cycles(doc: JourneyDocument) -> list[list[str]]:
    """Every simple cycle, by depth-first search from every node (small graphs only)."""
    edges = {n.id: successors(n) for n in doc.flow.nodes}
    found: list[list[str]] = []

    def walk(start: str, at: str, path: list[str]) -> None:
        for nxt in edges[at]:
            if nxt == start:
                found.append([*path])
            elif nxt not in path and nxt > start:  # each cycle once, from its least node
                walk(start, nxt, [*path, nxt])

    for node_id in edges:
        walk(node_id, node_id, [node_id])
    return found


def brute_force_reachable(doc: JourneyDocument) -> set[str]:
    edges = {n.id: successors(n) for n in doc.flow.nodes}
    seen: set[str] = set()
    stack = [doc.flow.entry.id]
    while stack:
        at = stack.pop()
        if at not in seen:
            seen.add(at)
            stack.extend(edges[at])
    return seen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows())
def test_loop_without_wait_is_reported_exactly_when_such_a_cycle_exists(
    doc: JourneyDocument,
) -> None:
    waits = {n.id for n in doc.flow.nodes if isinstance(n, WaitNode | WaitForEventNode)}
    bad_cycles = [c for c in brute_force_cycles(doc) if not waits & set(c)]
    problems = graph_problems(doc)
    loops = [p for p in problems if p.code == "loop_without_wait"]
    assert bool(loops) == bool(bad_cycles)
    on_bad_cycles = {v for c in bad_cycles for v in c}
    for problem in loops:  # each names a node of such a cycle; the loop it shows has no wait
        assert problem.node in on_bad_cycles
        shown = problem.message.split("the loop ", 1)[1].split(" has no wait", 1)[0].split(" → ")
        assert shown[0] == shown[-1] == problem.node
        assert not waits & set(shown)
    unreachable = {p.node for p in problems if p.code == "unreachable_node"}
    assert unreachable == {n.id for n in doc.flow.nodes} - brute_force_reachable(doc)


# --- the system ---------------------------------------------------------------------------------
def test_unknown_content_is_named_at_the_content_line() -> None:
    library = good_library()
    del library["CMX-CLM"]
    report = run(context=FakeContext(library))
    [problem] = report.problems
    assert (problem.code, problem.node, problem.path) == (
        "content_unknown",
        "rep",
        "flow.nodes.4.content",
    )
    assert problem.line == line_of(BASE, "content: CMX-CLM")
    assert not report.ok


def test_content_not_approved_for_a_market_names_the_market() -> None:
    library = good_library()
    library["CMX-1"][1] = at_variant(state="in_review")
    report = run(context=FakeContext(library))
    [problem] = report.problems
    assert (problem.code, problem.node) == ("content_not_approved", "mail")
    assert (
        problem.message
        == "CMX-1 (or a local variant of it) is not approved for campaign_email in AT"
    )
    assert problem.line == line_of(BASE, "content: CMX-1")


def test_content_approved_for_another_channel_only_is_not_approved() -> None:
    library = good_library()
    library["CMX-CLM"] = [ref("CMX-CLM", ["DE", "AT"], ["remote_call"])]
    [problem] = run(context=FakeContext(library)).problems
    assert problem.code == "content_not_approved"
    assert "f2f_call in DE, AT" in problem.message


def test_content_expiring_before_the_planned_end_is_an_error() -> None:
    library = good_library()
    library["CMX-1"][1] = at_variant(until=utc(2027, 3, 31, 12))
    report = run(context=FakeContext(library))
    [problem] = report.problems
    assert (problem.code, problem.severity, problem.node) == ("content_expires", "error", "mail")
    assert problem.message == (
        "CMX-1 expires on 2027-03-31 in AT, before the journey's planned end 2027-06-30"
    )
    assert problem.line == line_of(BASE, "content: CMX-1")


def test_content_valid_through_the_planned_end_day_is_fine_and_a_second_approval_extends_it() -> (
    None
):
    library = good_library()
    library["CMX-1"][1] = at_variant(until=utc(2027, 7, 1))
    assert run(context=FakeContext(library)).problems == []
    one_day_short = edit("planned_end: 2027-06-30", "planned_end: 2027-07-01")
    assert codes(run(one_day_short, FakeContext(library))) == ["content_expires"]
    library["CMX-1"].append(at_variant("CMX-1-AT2", until=None))
    assert run(one_day_short, FakeContext(library)).problems == []


def test_without_planned_end_expiry_within_30_days_is_a_warning() -> None:
    text = edit("planned_end: 2027-06-30\n", "")
    library = good_library()
    library["CMX-CLM"] = [deck(until=utc(2026, 12, 13))]
    report = run(text, FakeContext(library))
    [problem] = report.problems
    assert (problem.code, problem.severity, problem.node) == ("content_expires", "warning", "rep")
    assert "expires on 2026-12-13 in AT, DE, within 30 days" in problem.message
    assert report.ok
    library["CMX-CLM"] = [deck(until=utc(2027, 1, 13))]
    assert run(text, FakeContext(library)).problems == []


def test_expired_content_still_marked_approved_is_an_error() -> None:
    library = good_library()
    library["CMX-CLM"] = [deck(until=utc(2026, 11, 1))]
    problems = run(context=FakeContext(library)).problems
    assert [(p.code, p.severity) for p in problems] == [("content_expires", "error")]
    assert problems[0].message == "CMX-CLM expired on 2026-11-01 in AT, DE"


def test_content_of_another_purpose_or_brand_would_be_refused() -> None:
    library = good_library()
    library["CMX-CLM"] = [deck(function="medical", brand="Othermab")]
    problems = run(context=FakeContext(library)).problems
    assert [(p.code, p.node) for p in problems] == [
        ("content_purpose", "rep"),
        ("content_brand", "rep"),
    ]
    assert "medical content; the journey's purpose is promotional" in problems[0].message
    assert "for Othermab, not Cardiomax" in problems[1].message


def test_a_node_using_a_channel_or_content_its_touchpoint_does_not_list_is_a_warning() -> None:
    text = edit("      content: [CMX-CLM]\n", "      content: []\n")
    report = run(text)
    [problem] = report.problems
    assert (problem.code, problem.severity, problem.node) == (
        "touchpoint_mismatch",
        "warning",
        "rep",
    )
    assert problem.message == "touchpoint tp-rep does not list the content CMX-CLM this node uses"
    assert problem.line == line_of(text, "- id: rep")
    assert report.ok


def test_an_unknown_segment_is_an_error_at_the_segment() -> None:
    text = edit(
        "        condition:\n          all:\n"
        "            - attribute: {name: market, op: in, value: [DE, AT]}\n"
        "            - attribute: {name: potential_decile, op: gte, value: 5}\n",
        "        segment: hf-cardiologists\n",
    )
    context = FakeContext(good_library(), coverage={Channel.CAMPAIGN_EMAIL: 0.9})
    report = run(text, context)
    [problem] = report.problems
    assert (problem.code, problem.node, problem.path) == (
        "segment_unknown",
        "start",
        "flow.nodes.0.trigger.segment",
    )
    assert problem.line == line_of(text, "segment: hf-cardiologists")
    assert context.asked == []  # no audience to measure
    context.segments.add("hf-cardiologists")
    assert run(text, context).ok


def test_low_consent_coverage_is_a_warning_carrying_the_figure() -> None:
    context = FakeContext(good_library(), coverage={EMAIL: 0.38, Channel.F2F_CALL: 0.9})
    report = run(context=context)
    [problem] = report.problems
    assert (problem.code, problem.severity, problem.node) == (
        "low_consent_coverage",
        "warning",
        "mail",
    )
    assert problem.message.startswith("campaign_email: 38 % of the audience has e-mail consent")
    assert "below 50 %" in problem.message
    assert problem.line == line_of(BASE, "channel: campaign_email")
    assert report.ok
    assert report.coverage == {EMAIL: 0.38, Channel.F2F_CALL: 0.9}
    [(entry, channels, purpose, brand)] = context.asked
    assert entry.condition is not None
    assert channels == (EMAIL, Channel.F2F_CALL)
    assert (purpose, brand) == (Purpose.PROMOTIONAL, "Cardiomax")
    body = report.as_dict()
    assert body["coverage"] == {"campaign_email": 0.38, "f2f_call": 0.9}
    assert body["problems"][0]["line"] == problem.line
    json.dumps(body)  # JSON-ready


def test_the_coverage_threshold_is_a_parameter() -> None:
    doc, lines = loaded(BASE)
    context = FakeContext(good_library(), coverage={EMAIL: 0.6, Channel.F2F_CALL: 0.6})
    strict = system_problems(doc, lines, context, today=TODAY, min_coverage=0.75)
    assert [p.code for p in strict.problems] == ["low_consent_coverage"] * 2
    assert system_problems(doc, lines, context, today=TODAY).problems == []


def test_an_audience_that_cannot_be_computed_has_no_figures() -> None:
    report = run(context=FakeContext(good_library(), coverage=None))
    assert report.coverage is None
    assert report.as_dict()["coverage"] is None


def test_a_report_of_an_unreadable_source_is_not_ok_and_renders() -> None:
    report = run("journey: [\n")
    assert not report.ok
    assert codes(report) == ["yaml_syntax"]
    assert report.document is None
    text = report.render()
    assert text.splitlines()[-1] == "j.yaml: not valid (1 errors, 0 warnings)"
    assert report.as_dict()["journey"] is None


def test_problems_come_in_the_order_of_their_lines() -> None:
    library = good_library()
    del library["CMX-1"]
    del library["CMX-CLM"]
    text = edit("consideration]", "consideration, advocacy]")
    report = run(text, FakeContext(library))
    assert codes(report) == ["stage_empty", "content_unknown", "content_unknown"]
    lines = [p.line or 0 for p in report.problems]
    assert lines == sorted(lines)
