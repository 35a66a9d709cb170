"""Validation of a journey before it is published: the checks beyond the model.

``graph_problems`` is pure and reads the flow as a graph: nodes no HCP can reach, loops in
which no node waits (an HCP caught in one would spin), nodes from which no exit or final goal
can be reached (an HCP there would never finish), touchpoints no node serves and stages
without touchpoints.

``system_problems`` asks the rest of the system through ``ValidationContext`` (a small port:
the real one is ``journey.context.SystemContext``, tests pass plain objects): every piece of
content exists, is approved for every market of the journey on the node's channel (the item
or one of its local variants), for the journey's purpose and brand, and stays valid until the
planned end; a ``segment:`` entry names a stored segment; and the share of the audience
whose consent allows each contact channel, reported as a figure and as a warning when low.

``validate`` runs the loader (``journey.loader``) and both. Every problem names the node and
the line; ``ValidationReport.ok`` is true when no problem is an error. Codes and rules are
listed in docs/journeys.md.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from counterpoint.consent.ledger import Purpose, consent_channel
from counterpoint.content.eligibility import APPROVED, ContentRef, purpose_of
from counterpoint.event.canonical import Channel
from counterpoint.journey.definition import (
    EntryTrigger,
    ExitNode,
    GoalNode,
    JourneyDocument,
    RepTaskNode,
    SendNode,
    WaitForEventNode,
    WaitNode,
    successors,
)
from counterpoint.journey.loader import LineIndex, Problem, Severity, load_document

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "MIN_COVERAGE",
    "SystemFindings",
    "ValidationContext",
    "ValidationReport",
    "graph_problems",
    "system_problems",
    "validate",
    "validate_document",
]

MIN_COVERAGE = 0.5
"""Below this share of the audience with consent for a channel, validation warns."""
EXPIRY_WARNING_DAYS = 30
"""A journey without a planned end is warned about content expiring within these days."""


class ValidationContext(Protocol):
    """What validation asks the running system."""

    def content(self, code: str) -> Sequence[ContentRef]:
        """The asset with this code and its local variants (children by ``parent_id``), in
        any state; empty when there is no such asset."""
        ...

    def segment_exists(self, name: str) -> bool:
        """Is there a stored segment of this name?"""
        ...

    def consent_coverage(
        self, entry: EntryTrigger, channels: Sequence[Channel], purpose: Purpose, brand: str
    ) -> Mapping[Channel, float] | None:
        """The share (0 to 1) of the entry's audience whose consent allows each channel for
        the purpose and brand now; None when the audience cannot be computed in advance (an
        event-triggered entry)."""
        ...


# --- the graph ------------------------------------------------------------------------------------
def _reach(start: Sequence[str], edges: Mapping[str, Sequence[str]]) -> set[str]:
    seen = set(start)
    queue = deque(start)
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _cycle_through(first: str, edges: Mapping[str, Sequence[str]], within: set[str]) -> list[str]:
    """A shortest cycle from ``first`` back to itself using only nodes of ``within``."""
    parent: dict[str, str] = {}
    queue = deque([first])
    while queue:
        at = queue.popleft()
        for nxt in edges.get(at, ()):
            if nxt not in within:
                continue
            if nxt == first:
                path = [at]
                while path[-1] != first:
                    path.append(parent[path[-1]])
                return [*reversed(path), first]
            if nxt not in parent:
                parent[nxt] = at
                queue.append(nxt)
    return [first]  # pragma: no cover - only called for nodes on a cycle


def _instant_loops(doc: JourneyDocument) -> list[list[str]]:
    """Groups of nodes that lie on a common cycle of nodes that take no time, in document
    order (each group is one strongly connected part of the flow without waits)."""
    waits = {n.id for n in doc.flow.nodes if isinstance(n, WaitNode | WaitForEventNode)}
    edges = {
        n.id: [t for t in successors(n) if t not in waits]
        for n in doc.flow.nodes
        if n.id not in waits
    }
    onward = {v: _reach(list(edges[v]), edges) for v in edges}
    groups: list[list[str]] = []
    placed: set[str] = set()
    for node in doc.flow.nodes:
        v = node.id
        if v in waits or v in placed or v not in onward[v]:
            continue
        group = [n.id for n in doc.flow.nodes if n.id in onward[v] and v in onward.get(n.id, ())]
        placed.update(group)
        groups.append(group)
    return groups


def graph_problems(doc: JourneyDocument, lines: LineIndex | None = None) -> list[Problem]:
    """Reachability, loops without a wait, nodes with no way out, unused touchpoints and
    empty stages (pure)."""
    lines = lines or LineIndex()
    at = {n.id: f"flow.nodes.{i}" for i, n in enumerate(doc.flow.nodes)}
    edges = {n.id: successors(n) for n in doc.flow.nodes}
    out: list[Problem] = []
    reached = _reach([doc.flow.entry.id], edges)
    for node in doc.flow.nodes:
        if node.id not in reached:
            out.append(
                lines.problem(
                    "unreachable_node",
                    "no path from the entry leads to this node",
                    at[node.id],
                    "point a next (then, else, an arm, a timeout or refusal branch) of a "
                    "reachable node to it, or remove it",
                    node=node.id,
                )
            )
    for group in _instant_loops(doc):
        cycle = _cycle_through(group[0], edges, set(group))
        out.append(
            lines.problem(
                "loop_without_wait",
                f"the loop {' → '.join(cycle)} has no wait or wait_for_event node: an HCP "
                "in it would move round it without end",
                at[group[0]],
                "put a wait (or wait_for_event) node in the loop, or break the loop",
                node=group[0],
            )
        )
    out.extend(_trapped(doc, edges, reached, at, lines))
    out.extend(_map_problems(doc, lines))
    return out


def _trapped(
    doc: JourneyDocument,
    edges: Mapping[str, Sequence[str]],
    reached: set[str],
    at: Mapping[str, str],
    lines: LineIndex,
) -> list[Problem]:
    """Reachable nodes from which no exit and no final goal can be reached, as one problem
    at the first of them."""
    ends = [
        n.id
        for n in doc.flow.nodes
        if isinstance(n, ExitNode) or (isinstance(n, GoalNode) and n.next is None)
    ]
    back: dict[str, list[str]] = {}
    for source, targets in edges.items():
        for target in targets:
            back.setdefault(target, []).append(source)
    finishing = _reach(ends, back)
    stuck = [n.id for n in doc.flow.nodes if n.id in reached and n.id not in finishing]
    if not stuck:
        return []
    return [
        lines.problem(
            "no_way_out",
            f"no exit and no goal without next can be reached from {', '.join(stuck)}: an HCP "
            "there would never finish the journey",
            at[stuck[0]],
            "give the loop a way out: a branch (timeout, else, an arm) to an exit or a goal",
            node=stuck[0],
        )
    ]


def _map_problems(doc: JourneyDocument, lines: LineIndex) -> list[Problem]:
    served = {n.touchpoint for n in doc.flow.nodes if n.touchpoint is not None}
    out: list[Problem] = []
    for i, tp in enumerate(doc.map.touchpoints):
        if tp.id not in served:
            out.append(
                lines.problem(
                    "touchpoint_unused",
                    f"touchpoint {tp.id}: no node of the flow serves it",
                    f"map.touchpoints.{i}",
                    "tie a node to it (touchpoint: …) or remove it from the map",
                    severity="warning",
                )
            )
    staged = {tp.stage for tp in doc.map.touchpoints}
    for i, stage in enumerate(doc.map.stages):
        if stage not in staged:
            out.append(
                lines.problem(
                    "stage_empty",
                    f"stage {stage} has no touchpoint",
                    f"map.stages.{i}",
                    "add a touchpoint in this stage, or remove the stage",
                    severity="warning",
                )
            )
    return out


# --- the system -----------------------------------------------------------------------------------
class SystemFindings(NamedTuple):
    problems: list[Problem]
    coverage: dict[Channel, float] | None


def _day(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).date().isoformat()


def _latest(refs: Sequence[ContentRef]) -> dt.datetime | None:
    """The latest ``valid_until`` of ``refs`` (None: one of them has no end)."""
    ends = [r.valid_until for r in refs]
    return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


def _content_problems(
    doc: JourneyDocument,
    node: SendNode | RepTaskNode,
    path: str,
    refs: Sequence[ContentRef],
    lines: LineIndex,
    today: dt.date,
) -> list[Problem]:
    code, channel = node.content, node.channel.value
    assert code is not None
    where = f"{path}.content"
    if not refs:
        fix = "use the code of an asset of the content library (counterpoint content list)"
        return [
            lines.problem("content_unknown", f"no asset {code} in the content library", where, fix)
        ]
    out: list[Problem] = []
    covering = {
        m: [r for r in refs if r.state == APPROVED and m in r.markets and channel in r.channels]
        for m in doc.markets
    }
    missing = [m for m, found in covering.items() if not found]
    if missing:
        out.append(
            lines.problem(
                "content_not_approved",
                f"{code} (or a local variant of it) is not approved for {channel} in "
                f"{', '.join(missing)}",
                where,
                f"have {code} or a local variant approved for {channel} in those markets, or "
                "take the markets out of the journey",
            )
        )
    out.extend(_expiry(doc, code, where, covering, lines, today))
    approved = [r for found in covering.values() for r in found]
    purposes = sorted({r.function for r in approved if purpose_of(r) is not doc.purpose})
    if purposes:
        out.append(
            lines.problem(
                "content_purpose",
                f"{code} is {' and '.join(purposes)} content; the journey's purpose is "
                f"{doc.purpose.value}, so the guard would refuse every send",
                where,
                "use content of the journey's purpose, or change the journey's purpose",
            )
        )
    brands = sorted({r.brand or "no brand" for r in approved if r.brand != doc.brand})
    if brands:
        out.append(
            lines.problem(
                "content_brand",
                f"{code} is for {' and '.join(brands)}, not {doc.brand}, so the guard would "
                "refuse every send",
                where,
                f"use content of {doc.brand}",
            )
        )
    return out


def _expiry(
    doc: JourneyDocument,
    code: str,
    where: str,
    covering: Mapping[str, Sequence[ContentRef]],
    lines: LineIndex,
    today: dt.date,
) -> list[Problem]:
    """Content must stay valid to the end of the planned last day (UTC); without a planned
    end, expiry within ``EXPIRY_WARNING_DAYS`` is a warning; expired content is an error."""
    start = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
    ends: dict[str, dt.datetime] = {}
    for market, found in covering.items():
        end = _latest(found) if found else None
        if end is not None:
            ends[market] = end
    out: list[Problem] = []
    expired = sorted(m for m, end in ends.items() if end <= start)
    if expired:
        out.append(
            lines.problem(
                "content_expires",
                f"{code} expired on {_day(min(ends[m] for m in expired))} in {', '.join(expired)}",
                where,
                f"have {code} approved again with a later valid-until, or use other content",
            )
        )
    severity: Severity = "error"
    if doc.planned_end is not None:
        limit = dt.datetime.combine(doc.planned_end + dt.timedelta(days=1), dt.time(), dt.UTC)
        why = f"before the journey's planned end {doc.planned_end.isoformat()}"
    else:
        limit = start + dt.timedelta(days=EXPIRY_WARNING_DAYS)
        severity = "warning"
        why = f"within {EXPIRY_WARNING_DAYS} days, and the journey has no planned_end"
    early = sorted(m for m, end in ends.items() if start < end < limit)
    if early:
        out.append(
            lines.problem(
                "content_expires",
                f"{code} expires on {_day(min(ends[m] for m in early))} in "
                f"{', '.join(early)}, {why}",
                where,
                f"have {code} approved until after the journey's end, or set an earlier "
                "planned_end",
                severity=severity,
            )
        )
    return out


def _touchpoint_problems(
    doc: JourneyDocument, node: SendNode | RepTaskNode, path: str, lines: LineIndex
) -> list[Problem]:
    """The node's touchpoint should list the channel and content the node uses (the map
    is what people read; it should not hide a channel)."""
    if node.touchpoint is None:  # pragma: no cover - the model requires it on contacts
        return []
    tp = doc.map.touchpoint(node.touchpoint)
    unlisted = []
    if node.channel not in tp.channels:
        unlisted.append(f"channel {node.channel.value}")
    if node.content is not None and node.content not in tp.content:
        unlisted.append(f"content {node.content}")
    if not unlisted:
        return []
    return [
        lines.problem(
            "touchpoint_mismatch",
            f"touchpoint {tp.id} does not list the {' and the '.join(unlisted)} this node uses",
            path,
            f"add them to the channels and content of touchpoint {tp.id} in the map",
            severity="warning",
        )
    ]


def _consent_label(channel: Channel) -> str:
    wanted = consent_channel(channel)
    if wanted is None:  # pragma: no cover - only channels that need consent are asked
        return channel.value
    return "e-mail" if wanted.value == "email" else wanted.value.replace("_", " ")


def _coverage_problems(
    doc: JourneyDocument,
    contacts: Sequence[tuple[int, SendNode | RepTaskNode]],
    coverage: Mapping[Channel, float],
    lines: LineIndex,
    min_coverage: float,
) -> list[Problem]:
    out: list[Problem] = []
    warned: set[Channel] = set()
    for i, node in contacts:
        share = coverage.get(node.channel)
        if share is None or share >= min_coverage or node.channel in warned:
            continue
        warned.add(node.channel)
        out.append(
            lines.problem(
                "low_consent_coverage",
                f"{node.channel.value}: {_percent(share)} of the audience has "
                f"{_consent_label(node.channel)} consent for {doc.purpose.value} contact "
                f"(below {_percent(min_coverage)})",
                f"flow.nodes.{i}.channel",
                "collect consent for this channel first, add a branch on consent "
                "(condition: consent) to another channel, or narrow the entry",
                severity="warning",
            )
        )
    return out


def _percent(share: float) -> str:
    return f"{round(share * 100)} %"


def system_problems(
    doc: JourneyDocument,
    lines: LineIndex | None,
    context: ValidationContext,
    *,
    today: dt.date,
    min_coverage: float = MIN_COVERAGE,
) -> SystemFindings:
    """Content, segment and consent checks against the running system (``context``)."""
    lines = lines or LineIndex()
    out: list[Problem] = []
    contacts = [
        (i, n) for i, n in enumerate(doc.flow.nodes) if isinstance(n, SendNode | RepTaskNode)
    ]
    refs: dict[str, Sequence[ContentRef]] = {}
    for i, node in contacts:
        path = f"flow.nodes.{i}"
        if node.content is not None:
            if node.content not in refs:
                refs[node.content] = context.content(node.content)
            out.extend(_content_problems(doc, node, path, refs[node.content], lines, today))
        out.extend(_touchpoint_problems(doc, node, path, lines))
    entry = doc.flow.entry
    segment = entry.trigger.segment
    if segment is not None and not context.segment_exists(segment):
        position = doc.flow.nodes.index(entry)
        out.append(
            lines.problem(
                "segment_unknown",
                f"no segment named {segment}",
                f"flow.nodes.{position}.trigger.segment",
                "create the segment first (counterpoint segment create) or use its exact name",
            )
        )
        return SystemFindings(out, None)
    channels = list(
        dict.fromkeys(n.channel for _, n in contacts if consent_channel(n.channel) is not None)
    )
    coverage = None
    if channels:
        found = context.consent_coverage(entry.trigger, channels, doc.purpose, doc.brand)
        if found is not None:
            coverage = {c: float(found[c]) for c in channels if c in found}
            out.extend(_coverage_problems(doc, contacts, coverage, lines, min_coverage))
    return SystemFindings(out, coverage)


# --- the whole validation -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every problem of one journey source, and the consent coverage per contact channel."""

    source: str
    document: JourneyDocument | None
    problems: list[Problem]
    coverage: dict[Channel, float] | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.error]

    @property
    def ok(self) -> bool:
        """No error (warnings allowed): the journey may be published."""
        return self.document is not None and not self.errors

    def render(self) -> str:
        """One line per problem, then a summary line."""
        out = [p.render() for p in self.problems]
        verdict = "valid" if self.ok else "not valid"
        out.append(
            f"{self.source}: {verdict} ({len(self.errors)} errors, {len(self.warnings)} warnings)"
        )
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the API and ``counterpoint journey validate --json``."""
        doc = self.document
        return {
            "source": self.source,
            "ok": self.ok,
            "journey": doc.journey if doc is not None else None,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.as_dict() for p in self.problems],
            "coverage": None
            if self.coverage is None
            else {c.value: round(share, 4) for c, share in self.coverage.items()},
        }


def _by_line(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def validate_document(
    doc: JourneyDocument,
    context: ValidationContext,
    *,
    today: dt.date,
    lines: LineIndex | None = None,
    min_coverage: float = MIN_COVERAGE,
) -> ValidationReport:
    """Graph and system checks of a document already read (e.g. a stored version)."""
    lines = lines or LineIndex()
    found = system_problems(doc, lines, context, today=today, min_coverage=min_coverage)
    problems = _by_line([*graph_problems(doc, lines), *found.problems])
    return ValidationReport(lines.source, doc, problems, found.coverage)


def validate(
    text: str,
    source: str,
    context: ValidationContext,
    today: dt.date,
    *,
    min_coverage: float = MIN_COVERAGE,
) -> ValidationReport:
    """Read the YAML and run every check; problems in the order of their lines."""
    loaded = load_document(text, source=source)
    if loaded.document is None:
        return ValidationReport(source, None, loaded.problems)
    report = validate_document(
        loaded.document, context, today=today, lines=loaded.lines, min_coverage=min_coverage
    )
    problems = _by_line([*loaded.problems, *report.problems])
    return ValidationReport(source, loaded.document, problems, report.coverage)
