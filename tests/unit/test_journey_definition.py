"""Reading journey documents (``journey.loader``): every problem with its code, node and
line; YAML 1.2 scalars; the samples; dump → load gives the same document."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.journey.definition import Duration, JourneyDocument, WaitNode
from counterpoint.journey.loader import (
    MAX_SOURCE_CHARS,
    JourneyInvalidError,
    Problem,
    dump_document,
    load_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"
SAMPLES = sorted(EXAMPLES.glob("*.yaml"))

BASE = """\
journey: test-journey
title: Test journey (synthetic)
brand: Cardiomax
markets: [DE, AT]
planned_end: 2027-06-30
map:
  stages: [awareness, consideration]
  touchpoints:
    - id: tp-mail
      stage: awareness
      name: Mail
      customer_goal: Learn about the study
      business_reason: Reach the audience
      owner:
        responsible: marketing_ops
        accountable: brand_manager
      channels: [campaign_email]
      content: [CMX-1]
    - id: tp-rep
      stage: consideration
      name: Rep visit
      customer_goal: Ask my questions
      business_reason: Convert interest
      owner: {responsible: sales_rep, accountable: brand_manager}
      channels: [f2f_call]
      content: [CMX-CLM]
flow:
  nodes:
    - id: start
      type: entry
      touchpoint: tp-mail
      trigger:
        condition:
          all:
            - attribute: {name: market, op: in, value: [DE, AT]}
            - attribute: {name: potential_decile, op: gte, value: 5}
      next: slot
    - id: slot
      type: wait
      touchpoint: tp-mail
      until: {weekdays: [tue, thu], time: 10:30}
      next: mail
    - id: mail
      type: send
      touchpoint: tp-mail
      channel: campaign_email
      content: CMX-1
      next: opened
    - id: opened
      type: wait_for_event
      touchpoint: tp-rep
      event: {channel: campaign_email, action: opened}
      timeout: {days: 7}
      next: rep
      timeout_next: done
    - id: rep
      type: rep_task
      touchpoint: tp-rep
      content: CMX-CLM
      reason: Opened the study e-mail
      due: {days: 5}
      next: done
    - id: done
      type: exit
      reason: end
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line containing ``needle``."""
    found = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) >= occurrence, f"{needle!r} not in the text"
    return found[occurrence - 1]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} is not unique"
    return text.replace(old, new)


def only(text: str) -> Problem:
    loaded = load_document(text, source="j.yaml")
    assert loaded.document is None
    assert len(loaded.problems) == 1, [p.render() for p in loaded.problems]
    return loaded.problems[0]


def test_the_base_document_loads() -> None:
    loaded = load_document(BASE, source="j.yaml")
    assert loaded.problems == []
    assert loaded.ok
    doc = loaded.require()
    assert [n.id for n in doc.flow.nodes] == ["start", "slot", "mail", "opened", "rep", "done"]
    assert loaded.lines.line("flow.nodes.2") == line_of(BASE, "- id: mail")
    assert loaded.lines.line("flow.nodes.2.content") == line_of(BASE, "content: CMX-1")
    assert loaded.lines.node_of("flow.nodes.4.due.days") == "rep"


def test_yaml_1_2_scalars_times_and_country_codes() -> None:
    """``10:30`` is a time, not the base-60 number 630; ``NO`` is Norway, not false."""
    doc = load_document(edit("markets: [DE, AT]", "markets: [DE, NO]"), source="j").require()
    slot = doc.flow.node("slot")
    assert isinstance(slot, WaitNode)
    assert slot.until is not None
    assert slot.until.time == dt.time(10, 30)
    assert doc.markets == ["DE", "NO"]
    assert doc.planned_end == dt.date(2027, 6, 30)


def test_a_yaml_syntax_error_names_its_line() -> None:
    text = edit("      next: opened\n", "      next: [opened\n")
    problem = only(text)
    assert problem.code == "yaml_syntax"
    assert problem.severity == "error"
    assert problem.line == line_of(text, "- id: opened")  # where the parser noticed
    assert f"starts at line {line_of(text, 'next: [opened')}" in problem.message
    bad_indent = edit("      channel: campaign_email\n", "     channel: campaign_email\n")
    assert only(bad_indent).code == "yaml_syntax"
    assert only(bad_indent).line == line_of(bad_indent, "     channel: campaign_email")


def test_a_schema_error_in_node_3_names_the_node_and_its_line() -> None:
    text = edit("timeout: {days: 7}", "timeout: {days: -7}")
    problem = only(text)
    assert (problem.code, problem.node, problem.path) == (
        "schema",
        "opened",
        "flow.nodes.3.timeout.days",
    )
    assert problem.line == line_of(text, "timeout: {days: -7}")
    assert "greater than or equal to 0" in problem.message


def test_the_node_type_tag_is_not_part_of_the_path() -> None:
    text = edit(
        "channel: campaign_email\n      content: CMX-1",
        "channel: carrier_pigeon\n      content: CMX-1",
    )
    problem = only(text)
    assert problem.path == "flow.nodes.2.channel"
    assert problem.node == "mail"
    assert problem.line == line_of(text, "carrier_pigeon")
    assert "'campaign_email'" in problem.message


def test_an_error_inside_a_condition_points_at_the_leaf() -> None:
    text = edit(
        "{name: potential_decile, op: gte, value: 5}",
        "{name: potential_decile, op: gte, value: five}",
    )
    problem = only(text)
    assert problem.path == "flow.nodes.0.trigger.condition.all.1.attribute"
    assert problem.node == "start"
    assert problem.line == line_of(text, "value: five")


def test_unknown_next_is_unknown_node_at_the_next_line() -> None:
    text = edit(
        "      due: {days: 5}\n      next: done", "      due: {days: 5}\n      next: nowhere"
    )
    problem = only(text)
    assert problem.code == "unknown_node"
    assert problem.node == "rep"
    assert problem.path == "flow.nodes.4.next"
    assert problem.line == line_of(text, "next: nowhere")
    assert "'nowhere'" in problem.message
    rendered = problem.render()
    assert rendered.startswith(f"j.yaml:{problem.line}: [unknown_node] node rep: goes to 'nowhere'")
    assert "(fix: point to the id of a node" in rendered


def test_unknown_timeout_branch_and_arm_target_point_at_their_field() -> None:
    text = edit("timeout_next: done", "timeout_next: gone")
    assert only(text).path == "flow.nodes.3.timeout_next"
    assert only(text).line == line_of(text, "timeout_next: gone")
    arms = edit(
        "    - id: done\n",
        "    - id: split\n      type: random\n      touchpoint: tp-rep\n      arms:\n"
        "        - {name: a, weight: 1, next: done}\n        - {name: b, weight: 1, next: void}\n"
        "    - id: done\n",
    )
    problem = only(arms)
    assert (problem.code, problem.node, problem.path) == (
        "unknown_node",
        "split",
        "flow.nodes.5.arms.1.next",
    )
    assert problem.line == line_of(arms, "next: void")


def test_a_step_back_to_the_entry_points_at_the_field() -> None:
    text = edit("      due: {days: 5}\n      next: done", "      due: {days: 5}\n      next: start")
    problem = only(text)
    assert problem.path == "flow.nodes.4.next"
    assert problem.line == line_of(text, "next: start")
    assert "re_entry" in problem.fix


def test_a_missing_accountable_role_is_missing_owner_at_the_owner() -> None:
    text = edit("        accountable: brand_manager\n", "")
    problem = only(text)
    assert problem.code == "missing_owner"
    assert problem.path == "map.touchpoints.0.owner.accountable"
    assert problem.line == line_of(text, "owner:")
    assert problem.message == "touchpoint tp-mail: its owner has no accountable role"
    assert problem.node is None


def test_a_touchpoint_without_owner_is_missing_owner_at_the_touchpoint() -> None:
    text = edit("      owner: {responsible: sales_rep, accountable: brand_manager}\n", "")
    problem = only(text)
    assert (problem.code, problem.path) == ("missing_owner", "map.touchpoints.1.owner")
    assert problem.line == line_of(text, "- id: tp-rep")
    assert "tp-rep" in problem.message
    empty_role = edit("responsible: sales_rep,", "responsible: null,")
    assert only(empty_role).code == "missing_owner"
    assert only(empty_role).line == line_of(empty_role, "responsible: null")


def test_an_unknown_role_is_a_schema_error() -> None:
    text = edit("responsible: sales_rep,", "responsible: intern,")
    assert only(text).code == "schema"
    assert only(text).line == line_of(text, "responsible: intern")


def test_a_duplicate_node_id_points_at_the_second_id() -> None:
    text = edit("    - id: rep\n", "    - id: mail\n")
    problem = only(text)
    assert problem.code == "duplicate_id"
    assert problem.path == "flow.nodes.4.id"
    assert problem.line == line_of(text, "- id: mail", 2)


def test_an_unknown_touchpoint_and_a_missing_one() -> None:
    text = edit(
        "      touchpoint: tp-rep\n      content: CMX-CLM",
        "      touchpoint: tp-x\n      content: CMX-CLM",
    )
    problem = only(text)
    assert (problem.code, problem.node, problem.path) == (
        "unknown_touchpoint",
        "rep",
        "flow.nodes.4.touchpoint",
    )
    assert problem.line == line_of(text, "touchpoint: tp-x")
    missing = edit("      touchpoint: tp-rep\n      content: CMX-CLM", "      content: CMX-CLM")
    problem = only(missing)
    assert (problem.code, problem.node) == ("missing_touchpoint", "rep")
    assert problem.line == line_of(missing, "- id: rep")


def test_an_unknown_stage_points_at_the_stage() -> None:
    text = edit("      stage: consideration\n", "      stage: trial\n")
    problem = only(text)
    assert (problem.code, problem.path) == ("unknown_stage", "map.touchpoints.1.stage")
    assert problem.line == line_of(text, "stage: trial")
    assert problem.message.startswith("touchpoint tp-rep: ")


def test_unknown_node_type_and_unknown_field() -> None:
    text = edit("      type: exit\n", "      type: teleport\n")
    problem = only(text)
    assert (problem.code, problem.node, problem.path) == ("schema", "done", "flow.nodes.5")
    assert "wait_for_event" in problem.message
    assert problem.line == line_of(text, "- id: done")
    extra = edit("      reason: end\n", "      reason: end\n      colour: blue\n")
    problem = only(extra)
    assert (problem.path, problem.line) == ("flow.nodes.5.colour", line_of(extra, "colour: blue"))
    assert problem.message == "'colour' is not a field here"


def test_several_errors_are_all_reported_with_their_lines() -> None:
    text = edit("timeout: {days: 7}", "timeout: {days: x}")
    text = edit(
        "channel: campaign_email\n      content: CMX-1", "channel: fax\n      content: CMX-1", text
    )
    loaded = load_document(text, source="j.yaml")
    assert [(p.node, p.line) for p in loaded.problems] == [
        ("mail", line_of(text, "channel: fax")),
        ("opened", line_of(text, "timeout: {days: x}")),
    ]


def test_a_key_written_twice_is_an_error() -> None:
    text = edit("      reason: end\n", "      reason: end\n      reason: again\n")
    loaded = load_document(text, source="j.yaml")
    assert loaded.document is not None  # the model saw the last value
    assert not loaded.ok
    [problem] = loaded.problems
    assert (problem.code, problem.node, problem.line) == (
        "duplicate_key",
        "done",
        line_of(text, "reason: again"),
    )
    with pytest.raises(JourneyInvalidError) as caught:
        loaded.require()
    assert caught.value.extra["problems"][0]["code"] == "duplicate_key"


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("", "schema", None),
        ("# only a comment\n", "schema", None),
        ("- a\n- b\n", "schema", 1),
        ("journey: a\n---\njourney: b\n", "yaml_syntax", 2),
        ("x: !!python/object:os.system {}\n", "yaml_syntax", 1),
        ("a: 'unclosed\n", "yaml_syntax", 2),
        ("\t- tab\n", "yaml_syntax", 1),
    ],
)
def test_bad_input_is_a_problem_never_a_crash(text: str, code: str, line: int | None) -> None:
    loaded = load_document(text, source="bad.yaml")
    assert loaded.document is None
    assert loaded.problems[0].code == code
    assert loaded.problems[0].line == line
    with pytest.raises(JourneyInvalidError):
        loaded.require()


def test_too_large_sources_are_refused() -> None:
    assert only("a: " + "x" * MAX_SOURCE_CHARS).code == "too_large"
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        bomb += f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]\n"
    assert only(bomb).code == "too_large"


def test_deep_nesting_is_a_problem_never_a_crash() -> None:
    problem = only("a: " + "[" * 5000 + "]" * 5000)
    assert (problem.code, problem.message) == (
        "too_large",
        "the document is nested too deeply to read",
    )
    deep = "{not: " * 400 + "{consent: {channel: email, purpose: promotional}}" + "}" * 400
    text = edit(
        "        condition:\n          all:\n"
        "            - attribute: {name: market, op: in, value: [DE, AT]}\n"
        "            - attribute: {name: potential_decile, op: gte, value: 5}\n",
        f"        condition: {deep}\n",
    )
    problem = only(text)
    assert (problem.code, problem.node) == ("schema", "start")
    assert problem.line == line_of(text, "condition: {not:")


def test_problems_render_as_file_line_code_node_message_fix() -> None:
    problem = Problem(
        "loop_without_wait", "a loop", "flow.nodes.2", "mail", 12, "error", "add a wait", "x.yaml"
    )
    assert problem.render() == "x.yaml:12: [loop_without_wait] node mail: a loop (fix: add a wait)"
    warning = Problem(
        "stage_empty",
        "stage x has no touchpoint",
        "map.stages.1",
        None,
        None,
        "warning",
        "add one",
        "x.yaml",
    )
    assert (
        warning.render()
        == "x.yaml: [stage_empty, warning] stage x has no touchpoint (fix: add one)"
    )
    assert warning.as_dict()["severity"] == "warning"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_samples_load_and_are_labelled_as_examples(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    loaded = load_document(text, source=path.name)
    assert loaded.problems == []
    doc = loaded.require()
    assert doc.example is True
    assert doc.brand == "Cardiomax"
    assert "SYNTHETIC" in text.split("\n\n", 1)[0]
    assert text.startswith("# yaml-language-server: $schema=../../docs/journey.schema.json")
    assert load_document(dump_document(doc), source="again").require() == doc


def test_two_samples_are_shipped() -> None:
    assert [p.name for p in SAMPLES] == ["launch-new-indication.yaml", "webinar-invitation.yaml"]


# --- dump → load gives the same document ---------------------------------------------------------
OWNER = {"responsible": "marketing_ops", "accountable": "brand_manager"}
KINDS = ("wait", "wait_for_event", "condition", "random", "send", "rep_task",
         "update_attribute", "goal", "exit")  # fmt: skip
CONDITIONS = st.sampled_from(
    [
        {"attribute": {"name": "market", "op": "eq", "value": "NO"}},
        {"not": {"consent": {"channel": "email", "purpose": "promotional"}}},
        {"any": [{"events": {"channel": "campaign_email", "action": ["opened", "clicked"],
                             "within_days": 30, "op": "gte", "count": 2}},
                 {"feature": {"name": "response_rate", "window_days": 90, "op": "gte",
                              "value": 0.25}}]},
    ]
)  # fmt: skip
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    ids = [f"n{i}" for i in range(n + 1)]  # n0 is the entry; targets are n1..n<n>

    def target() -> str:
        return draw(st.sampled_from(ids[1:]))

    nodes: list[dict[str, Any]] = [
        {"id": "n0", "type": "entry", "touchpoint": "tp",
         "trigger": draw(st.sampled_from([{"condition": draw(CONDITIONS)}, {"segment": "hf-de"},
                                          {"event": {"action": ["visited"], "brand": "X"}}])),
         "re_entry": {"policy": "after_exit", "min_days": draw(st.integers(0, 90))},
         "next": target()}
    ]  # fmt: skip
    for i in range(1, n + 1):
        kind = draw(st.sampled_from(KINDS))
        node: dict[str, Any] = {"id": ids[i], "type": kind, "touchpoint": "tp"}
        if draw(st.booleans()):
            node["name"] = draw(TEXT)
        if kind == "wait":
            waits = [{"duration": {"days": 2, "hours": 3}},
                     {"until": {"weekdays": "fri", "time": "10:30:00"}}]  # fmt: skip
            node |= draw(st.sampled_from(waits))
            node["next"] = target()
        elif kind == "wait_for_event":
            node |= {"event": {"channel": ["webinar"], "action": ["attended"]},
                     "timeout": {"minutes": 90}, "next": target(),
                     "timeout_next": target()}  # fmt: skip
        elif kind == "condition":
            node |= {"condition": draw(CONDITIONS), "then": target(), "else": target()}
        elif kind == "random":
            node["arms"] = [{"name": "a", "weight": draw(st.floats(0.5, 99)), "next": target()},
                            {"name": "h", "weight": 10.0, "next": target(),
                             "holdout": True}]  # fmt: skip
        elif kind == "send":
            node |= {"channel": "sms", "content": "CMX-DE-SMS-001", "next": target()}
            if draw(st.booleans()):
                node["refused_next"] = target()
        elif kind == "rep_task":
            node |= {
                "channel": "remote_call",
                "reason": draw(TEXT),
                "due": {"days": 3},
                "next": target(),
            }
        elif kind == "update_attribute":
            node |= {"attribute": "adoption_stage", "value": "trial", "next": target()}
        elif kind == "goal":
            node["goal"] = draw(TEXT)
            if draw(st.booleans()):
                node["next"] = target()
        else:
            node = {"id": ids[i], "type": "exit", "reason": draw(TEXT)}
        nodes.append(node)
    touchpoint = {"id": "tp", "stage": "awareness", "name": draw(TEXT), "customer_goal": draw(TEXT),
                  "business_reason": draw(TEXT), "owner": OWNER, "channels": ["sms"],
                  "kpi": {"measure": "reach", "target": draw(st.floats(0, 1))}}  # fmt: skip
    return {
        "journey": "generated",
        "title": draw(TEXT),
        "brand": "Cardiomax",
        "markets": draw(
            st.lists(st.sampled_from(["DE", "AT", "NO", "ON", "YE"]), min_size=1, unique=True)
        ),
        "purpose": draw(st.sampled_from(["promotional", "educational"])),
        "planned_end": draw(
            st.one_of(st.none(), st.dates(dt.date(2026, 1, 1), dt.date(2030, 12, 31)))
        ),
        "map": {"touchpoints": [touchpoint]},
        "flow": {"nodes": nodes},
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_dump_then_load_gives_the_same_document(data: dict[str, Any]) -> None:
    doc = JourneyDocument.model_validate(data)
    text = dump_document(doc)
    again = load_document(text, source="dumped.yaml")
    assert again.problems == []
    assert again.require() == doc
    assert yaml.safe_load(text)["journey"] == "generated"


def test_a_copy_with_changes_recomputes_the_cached_views() -> None:
    """Node maps and durations are computed once per model; a copy with changes must not
    keep the original's."""
    duration = Duration(hours=1)
    assert duration.delta == dt.timedelta(hours=1)
    assert duration.model_copy(update={"hours": 2}).delta == dt.timedelta(hours=2)
    text = (EXAMPLES / "webinar-invitation.yaml").read_text()
    flow = JourneyDocument.model_validate(yaml.safe_load(text)).flow
    assert flow.by_id  # computed
    fewer = flow.model_copy(update={"nodes": flow.nodes[:2]})
    assert set(fewer.by_id) == {n.id for n in flow.nodes[:2]}
