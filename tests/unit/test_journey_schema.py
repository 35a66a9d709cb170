"""The published JSON Schema of journeys (``docs/journey.schema.json``): current, and
accepting what the model accepts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.test_journey_definition import BASE, SAMPLES

from counterpoint.journey.schema import SCHEMA_ID, json_schema, render

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "journey.schema.json"


def test_the_published_schema_is_current() -> None:
    """Fails when the model changed and the file did not: rewrite it with
    ``python -m counterpoint.journey.schema > docs/journey.schema.json``."""
    assert PUBLISHED.read_text(encoding="utf-8") == render(), (
        "docs/journey.schema.json is stale: run "
        "`python -m counterpoint.journey.schema > docs/journey.schema.json`"
    )


def test_the_schema_names_itself_and_uses_written_names() -> None:
    schema = json_schema()
    assert schema["$id"] == SCHEMA_ID
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Counterpoint journey"
    assert "docs/journeys.md" in schema["description"]
    assert set(schema["required"]) == {"journey", "title", "brand", "markets", "map", "flow"}
    condition = schema["$defs"]["ConditionNode"]["properties"]
    assert "else" in condition
    assert "else_" not in condition
    assert (
        schema["$defs"]["Flow"]["properties"]["nodes"]["items"]["discriminator"]["propertyName"]
        == "type"
    )


def test_single_values_and_short_times_are_allowed_as_the_model_allows_them() -> None:
    defs = json_schema()["$defs"]
    action = defs["EventTrigger"]["properties"]["action"]["anyOf"]
    assert {"$ref": "#/$defs/Action"} in action
    assert any(option.get("type") == "array" for option in action)
    weekdays = defs["WaitUntil"]["properties"]["weekdays"]["anyOf"]
    assert {"$ref": "#/$defs/Weekday"} in weekdays
    time = defs["WaitUntil"]["properties"]["time"]
    assert "format" not in time
    assert time["pattern"].startswith("^([01][0-9]|2[0-3])")


def _as_editor_sees_it(value: Any) -> Any:
    """Dates as text, as a YAML 1.2 editor reads them."""
    if isinstance(value, dict):
        return {k: _as_editor_sees_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_editor_sees_it(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@pytest.mark.parametrize("text", [BASE, *(p.read_text(encoding="utf-8") for p in SAMPLES)])
def test_documents_the_model_accepts_pass_the_schema(text: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        json.loads(render()), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    data = _as_editor_sees_it(yaml.safe_load(text.replace("time: 10:30", 'time: "10:30"')))
    assert [error.message for error in validator.iter_errors(data)] == []
    data["flow"]["nodes"][0]["colour"] = "blue"
    assert list(validator.iter_errors(data))
