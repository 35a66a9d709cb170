"""Journey analytics on the map (``journey.figures.map_figures``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from counterpoint.journey.definition import JourneyDocument
from counterpoint.journey.figures import EnrollmentRow, TransitionRow, map_figures

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
OWNER = {"responsible": "marketing_ops", "accountable": "brand_manager"}


def tp(tp_id: str, stage: str, kpi: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"id": tp_id, "stage": stage, "name": tp_id, "customer_goal": "g",
           "business_reason": "r", "owner": OWNER}  # fmt: skip
    if kpi:
        out["kpi"] = kpi
    return out


DOC = JourneyDocument.model_validate(
    {
        "journey": "launch",
        "title": "Launch (synthetic example)",
        "brand": "Cardiomax",
        "markets": ["DE"],
        "map": {
            "stages": ["awareness", "consideration", "trial"],
            "touchpoints": [
                tp("intro", "awareness", {"measure": "open_rate", "target": 0.5}),
                tp("study", "consideration", {"measure": "conversion", "target": 0.5}),
                tp("visit", "trial", {"measure": "goal_rate", "target": 0.3}),
            ],
        },
        "flow": {
            "nodes": [
                {"id": "in", "type": "entry", "touchpoint": "intro",
                 "trigger": {"segment": "hf"}, "next": "mail"},
                {"id": "mail", "type": "send", "touchpoint": "intro",
                 "channel": "campaign_email", "content": "CMX-1", "next": "wait"},
                {"id": "wait", "type": "wait_for_event", "touchpoint": "study",
                 "event": {"action": "opened"}, "timeout": {"days": 7}, "next": "task",
                 "timeout_next": "out"},
                {"id": "task", "type": "rep_task", "touchpoint": "visit", "reason": "r",
                 "due": {"days": 3}, "next": "goal"},
                {"id": "goal", "type": "goal", "touchpoint": "visit", "goal": "visit"},
                {"id": "out", "type": "exit", "reason": "no_response"},
            ]
        },
    }
)  # fmt: skip
STAGE = {"in": "awareness", "mail": "awareness", "wait": "consideration", "task": "trial",
         "goal": "trial", "out": None}  # fmt: skip
TP = {"in": "intro", "mail": "intro", "wait": "study", "task": "visit", "goal": "visit",
      "out": None}  # fmt: skip


def rows(enrollment: str, path: list[tuple[str, str, float]]) -> list[TransitionRow]:
    """(kind, node, hours after T0) → rows, visits counted per ``entered``."""
    out: list[TransitionRow] = []
    visit = 0
    for kind, node, hours in path:
        if kind == "entered":
            visit += 1
        detail: dict[str, Any] | None = None
        if kind == "refused":
            detail = {"codes": ["contact_cap"]}
        if kind == "exited":
            detail = {"reason": "no_response"}
        at = T0 + dt.timedelta(hours=hours)
        out.append(TransitionRow(enrollment, visit, kind, node, TP[node], STAGE[node], at, detail))
    return out


def test_figures_on_the_map() -> None:
    a = rows(
        "a",
        [
            ("entered", "in", 0),
            ("entered", "mail", 0),
            ("sent", "mail", 0),
            ("entered", "wait", 0),
            ("entered", "task", 10),
            ("task", "task", 10),
            ("entered", "goal", 10),
            ("goal", "goal", 10),
            ("completed", "goal", 10),
        ],
    )
    b = rows(
        "b",
        [
            ("entered", "in", 0),
            ("entered", "mail", 0),
            ("sent", "mail", 0),
            ("entered", "wait", 0),
            ("entered", "out", 168),
            ("exited", "out", 168),
        ],
    )
    c = rows("c", [("entered", "in", 1), ("entered", "mail", 1), ("refused", "mail", 1),
                   ("entered", "wait", 1)])  # fmt: skip
    enrollments = [
        EnrollmentRow("a", "completed", "goal", "visit", "trial"),
        EnrollmentRow("b", "exited", "out", None, None),
        EnrollmentRow("c", "waiting", "wait", "study", "consideration"),
    ]
    responses = {("a", 2): frozenset({"opened"}), ("b", 2): frozenset()}
    now = T0 + dt.timedelta(hours=200)
    figures = map_figures(DOC, a + b + c, enrollments, responses, now).as_dict()

    assert figures["totals"] == {"enrollments": 3, "waiting": 1, "completed": 1, "exited": 1,
                                 "sent": 2, "refused": 1, "goals": 1}  # fmt: skip
    intro, study, visit = figures["touchpoints"]
    assert intro["figures"]["entered"] == 3
    assert intro["figures"]["refusals"] == {"contact_cap": 1}
    assert intro["kpi"] == {"measure": "open_rate", "target": 0.5, "actual": 0.5, "met": True}
    assert study["figures"]["active"] == 1
    assert visit["kpi"]["actual"] == 1.0  # one goal per HCP that reached the touchpoint

    awareness, consideration, trial = figures["stages"]
    assert awareness["conversion_to_next"] == 1.0
    assert consideration["conversion_to_next"] == round(1 / 3, 4)  # only a reached trial
    assert trial["conversion_to_next"] is None
    assert study["kpi"]["actual"] == consideration["conversion_to_next"]
    assert study["kpi"]["met"] is False
    # a: 10 h in consideration; b: left after 168 h; c: still there after 199 h
    assert consideration["time_in_stage"] == {"median_hours": 168.0, "p90_hours": 199.0, "n": 3}
    nodes = {n["id"]: n["figures"] for n in figures["nodes"]}
    assert nodes["out"]["exited"] == 1
    assert nodes["wait"] == nodes["wait"] | {"entered": 3, "active": 1, "completed": 2}


def test_no_data_is_not_a_failure() -> None:
    figures = map_figures(DOC, [], [], {}, T0).as_dict()
    assert all(t["kpi"]["actual"] is None and t["kpi"]["met"] is None
               for t in figures["touchpoints"])  # fmt: skip
    assert figures["leaks"] == []
    assert figures["stages"][0]["time_in_stage"]["n"] == 0
