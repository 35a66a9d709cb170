"""Journey analytics: live figures on every stage, touchpoint and node of the map. Pure.

The runtime records what happens to each enrollment as transitions (``entered`` a node,
``sent``, ``task``, ``refused``, ``goal``, ``updated``, ``exited``, ``completed``). From
those rows, the enrollments' current state and the HCPs' responses to what was sent,
``map_figures`` computes:

* per node, touchpoint and stage: **entered** (distinct enrollments that reached it),
  **active** (waiting there now), **exited** (left the journey there without completing it:
  where HCPs leak out), **completed** (entered and moved on, or completed the journey there),
  **refused** (contacts the guard refused there), **sent** and **tasks**, **goals**;
* per stage: **conversion** to the next stage (share of the enrollments that entered the
  stage and later entered the next one) and **time in stage** (hours from first entering
  the stage to first entering a later one, or to leaving the journey, or to now while still
  in it: median and 90th percentile);
* **leaks**: the touchpoints where most enrollments exited, largest first;
* each touchpoint's **KPI** against its target, from the figures above and the responses:
  reach (sent / entered), open, click and response rates (HCPs who opened / clicked / did
  any engagement action after a send, per HCP sent to), attendance rate (attended per
  registered-or-invited), completion rate, conversion (of its stage) and goal rate.

A rate with no denominator is None (not zero): "no data" is not "failed".
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from counterpoint.journey.definition import JourneyDocument, KpiMeasure

__all__ = [
    "EnrollmentRow",
    "Figures",
    "MapFigures",
    "ResponseKey",
    "TransitionRow",
    "map_figures",
]

ResponseKey = tuple[str, int]
"""(enrollment id, visit) of a send: the responses map says what the HCP did after it."""


@dataclass(frozen=True, slots=True)
class TransitionRow:
    enrollment_id: str
    visit: int
    kind: str
    node: str
    touchpoint: str | None
    stage: str | None
    at: dt.datetime
    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentRow:
    id: str
    status: str  # waiting | completed | exited (engine.EnrollmentStatus)
    node: str
    touchpoint: str | None
    stage: str | None


@dataclass
class Figures:
    entered: int = 0
    active: int = 0
    completed: int = 0
    exited: int = 0
    refused: int = 0
    sent: int = 0
    tasks: int = 0
    goals: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    """Refusals by the guard's reason code."""
    exits: dict[str, int] = field(default_factory=dict)
    """Exits by reason."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "active": self.active,
            "completed": self.completed,
            "exited": self.exited,
            "refused": self.refused,
            "sent": self.sent,
            "tasks": self.tasks,
            "goals": self.goals,
            "refusals": dict(sorted(self.refusals.items())),
            "exits": dict(sorted(self.exits.items())),
        }


@dataclass(frozen=True, slots=True)
class MapFigures:
    journey: str
    stages: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    leaks: list[dict[str, Any]]
    totals: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "totals": self.totals,
            "stages": self.stages,
            "touchpoints": self.touchpoints,
            "nodes": self.nodes,
            "leaks": self.leaks,
        }


def _rate(top: int, bottom: int) -> float | None:
    return round(top / bottom, 4) if bottom else None


def _hours(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median_hours": None, "p90_hours": None, "n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * (len(ordered) - 1) + 0.5))]
    return {
        "median_hours": round(statistics.median(ordered), 2),
        "p90_hours": round(p90, 2),
        "n": len(ordered),
    }


class _Tally:
    """Figures for one key (a node, a touchpoint or a stage) from the rows."""

    def __init__(self) -> None:
        self.figures: dict[str, Figures] = defaultdict(Figures)
        self.entered: dict[str, set[str]] = defaultdict(set)

    def add(self, key: str | None, row: TransitionRow) -> None:
        if key is None:
            return
        f = self.figures[key]
        if row.kind == "entered":
            self.entered[key].add(row.enrollment_id)
        elif row.kind == "sent":
            f.sent += 1
        elif row.kind == "task":
            f.tasks += 1
        elif row.kind == "refused":
            f.refused += 1
            for code in (row.detail or {}).get("codes", []) or ["unknown"]:
                f.refusals[str(code)] = f.refusals.get(str(code), 0) + 1
        elif row.kind == "goal":
            f.goals += 1
        elif row.kind == "exited":
            f.exited += 1
            reason = str((row.detail or {}).get("reason") or "exit")
            f.exits[reason] = f.exits.get(reason, 0) + 1

    def finish(self, active: Mapping[str, int]) -> dict[str, Figures]:
        for key, ids in self.entered.items():
            f = self.figures[key]
            f.entered = len(ids)
        for key, n in active.items():
            self.figures[key].active = n
        for f in self.figures.values():
            f.completed = max(0, f.entered - f.active - f.exited)
        return self.figures


def map_figures(
    document: JourneyDocument,
    transitions: Iterable[TransitionRow],
    enrollments: Iterable[EnrollmentRow],
    responses: Mapping[ResponseKey, frozenset[str]],
    now: dt.datetime,
) -> MapFigures:
    """The map with live figures (see the module doc). ``responses`` maps each send (its
    enrollment and visit) to the actions the HCP took after it (opened, clicked, …)."""
    rows = sorted(transitions, key=lambda r: (r.enrollment_id, r.at, r.visit, r.kind))
    by_node, by_touchpoint, by_stage = _Tally(), _Tally(), _Tally()
    stage_order = {s: i for i, s in enumerate(document.map.stages)}
    first_in_stage: dict[tuple[str, str], dt.datetime] = {}
    left_at: dict[str, dt.datetime] = {}
    sends_by_touchpoint: dict[str, list[ResponseKey]] = defaultdict(list)
    all_enrollments: set[str] = set()
    for row in rows:
        all_enrollments.add(row.enrollment_id)
        by_node.add(row.node, row)
        by_touchpoint.add(row.touchpoint, row)
        by_stage.add(row.stage, row)
        if row.kind == "entered" and row.stage is not None:
            first_in_stage.setdefault((row.enrollment_id, row.stage), row.at)
        if row.kind in ("exited", "completed"):
            left_at[row.enrollment_id] = row.at
        if row.kind == "sent" and row.touchpoint is not None:
            sends_by_touchpoint[row.touchpoint].append((row.enrollment_id, row.visit))

    active_node: dict[str, int] = defaultdict(int)
    active_tp: dict[str, int] = defaultdict(int)
    active_stage: dict[str, int] = defaultdict(int)
    status_counts: dict[str, int] = defaultdict(int)
    for e in enrollments:
        status_counts[e.status] += 1
        if e.status == "waiting":
            active_node[e.node] += 1
            if e.touchpoint:
                active_tp[e.touchpoint] += 1
            if e.stage:
                active_stage[e.stage] += 1
    nodes = by_node.finish(active_node)
    touchpoints = by_touchpoint.finish(active_tp)
    stages = by_stage.finish(active_stage)

    # conversion and time in stage
    entered_stage: dict[str, set[str]] = defaultdict(set)
    for enrollment, stage in first_in_stage:
        entered_stage[stage].add(enrollment)
    stage_rows: list[dict[str, Any]] = []
    conversion: dict[str, float | None] = {}
    for i, stage in enumerate(document.map.stages):
        here = entered_stage.get(stage, set())
        later = document.map.stages[i + 1 :]
        nxt = document.map.stages[i + 1] if later else None
        converted = here & entered_stage.get(nxt, set()) if nxt else set()
        conversion[stage] = _rate(len(converted), len(here)) if nxt else None
        durations: list[float] = []
        for enrollment in here:
            start = first_in_stage[(enrollment, stage)]
            ends = [
                first_in_stage[(enrollment, s)]
                for s in later
                if (enrollment, s) in first_in_stage and first_in_stage[(enrollment, s)] >= start
            ]
            end = min(ends) if ends else left_at.get(enrollment, now)
            durations.append(max(0.0, (end - start).total_seconds() / 3600))
        f = stages.get(stage, Figures())
        stage_rows.append(
            {
                "stage": stage,
                "order": stage_order[stage],
                **f.as_dict(),
                "conversion_to_next": conversion[stage],
                "next_stage": nxt,
                "time_in_stage": _hours(durations),
            }
        )

    tp_rows: list[dict[str, Any]] = []
    for tp in document.map.touchpoints:
        f = touchpoints.get(tp.id, Figures())
        sends = sends_by_touchpoint.get(tp.id, [])
        kpi: dict[str, Any] | None = None
        if tp.kpi is not None:
            actual = _kpi(tp.kpi.measure, f, sends, responses, conversion.get(tp.stage))
            kpi = {
                "measure": tp.kpi.measure.value,
                "target": tp.kpi.target,
                "actual": actual,
                "met": None if actual is None else actual >= tp.kpi.target,
            }
        tp_rows.append(
            {
                "id": tp.id,
                "stage": tp.stage,
                "name": tp.name,
                "customer_goal": tp.customer_goal,
                "business_reason": tp.business_reason,
                "owner": tp.owner.model_dump(mode="json"),
                "channels": [c.value for c in tp.channels],
                "content": list(tp.content),
                "figures": f.as_dict(),
                "kpi": kpi,
            }
        )
    node_rows = [
        {
            "id": node.id,
            "type": node.type,
            "touchpoint": node.touchpoint,
            "stage": document.stage_of(node),
            "figures": nodes.get(node.id, Figures()).as_dict(),
        }
        for node in document.flow.nodes
    ]
    leaks = sorted(
        (
            {
                "touchpoint": r["id"],
                "stage": r["stage"],
                "exited": r["figures"]["exited"],
                "share_of_entered": _rate(r["figures"]["exited"], r["figures"]["entered"]),
                "reasons": r["figures"]["exits"],
            }
            for r in tp_rows
            if r["figures"]["exited"]
        ),
        key=lambda r: (-r["exited"], r["touchpoint"]),
    )
    totals = {
        "enrollments": len(all_enrollments),
        "waiting": status_counts.get("waiting", 0),
        "completed": status_counts.get("completed", 0),
        "exited": status_counts.get("exited", 0),
        "sent": sum(f.sent for f in nodes.values()),
        "refused": sum(f.refused for f in nodes.values()),
        "goals": sum(f.goals for f in nodes.values()),
    }
    return MapFigures(document.journey, stage_rows, tp_rows, node_rows, leaks, totals)


_RESPONSES = frozenset(
    {
        "opened",
        "clicked",
        "replied",
        "visited",
        "registered",
        "attended",
        "content_viewed",
        "inquiry_received",
        "survey_answered",
        "downloaded",
        "shared",
    }
)


def _kpi(
    measure: KpiMeasure,
    f: Figures,
    sends: Sequence[ResponseKey],
    responses: Mapping[ResponseKey, frozenset[str]],
    stage_conversion: float | None,
) -> float | None:
    def share(actions: frozenset[str]) -> float | None:
        hit = sum(1 for key in sends if responses.get(key, frozenset()) & actions)
        return _rate(hit, len(sends))

    if measure is KpiMeasure.REACH:
        return _rate(f.sent, f.entered)
    if measure is KpiMeasure.OPEN_RATE:
        return share(frozenset({"opened", "clicked"}))  # a click implies an open
    if measure is KpiMeasure.CLICK_RATE:
        return share(frozenset({"clicked"}))
    if measure is KpiMeasure.RESPONSE_RATE:
        return share(_RESPONSES)
    if measure is KpiMeasure.ATTENDANCE_RATE:
        attended = sum(1 for k in sends if "attended" in responses.get(k, frozenset()))
        return _rate(attended, len(sends))  # per invitation sent
    if measure is KpiMeasure.COMPLETION_RATE:
        return _rate(f.completed, f.entered)
    if measure is KpiMeasure.CONVERSION:
        return stage_conversion
    return _rate(f.goals, f.entered)
