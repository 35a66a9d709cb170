"""The published JSON Schema of the journey document, for editors. Pure.

``json_schema()`` derives it from the model (``journey.definition.JourneyDocument``, fields by
their written names) and adjusts two things the model accepts that a plain derivation would
refuse: a single value where a list is expected (``action: opened`` for ``[opened]``, as the
model's ``_listify`` validators allow) and a wall time written ``09:00`` (JSON Schema's
``time`` format asks for seconds and a zone). ``docs/journey.schema.json`` is this schema;
``tests/unit/test_journey_schema.py`` fails when the file is stale, and
``python -m counterpoint.journey.schema > docs/journey.schema.json`` rewrites it.

An editor with the YAML language server validates and completes a journey given a first
line ``# yaml-language-server: $schema=../../docs/journey.schema.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from counterpoint.journey import definition
from counterpoint.journey.definition import JourneyDocument
from counterpoint.segment import conditions

__all__ = ["SCHEMA_ID", "json_schema", "render"]

SCHEMA_ID = "https://counterpoint.invalid/schemas/journey.schema.json"
_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for module in (definition, conditions):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value not in found:
                found.append(value)
    return found


def _listified() -> dict[str, set[str]]:
    """Fields that also take a single value, by model name: those with a ``before``
    validator named ``_listify``."""
    out: dict[str, set[str]] = {}
    for model in _models():
        for decorator in model.__pydantic_decorators__.field_validators.values():
            if decorator.cls_var_name == "_listify" and decorator.info.mode == "before":
                out.setdefault(model.__name__, set()).update(decorator.info.fields)
    return out


def _one_or_many(prop: dict[str, Any]) -> dict[str, Any]:
    """``{type: array, items: X}`` (or that or null) as "X, or an array of X"."""
    options = prop.get("anyOf")
    if options is None:
        options = [{k: v for k, v in prop.items() if k not in ("title", "description")}]
        meta = {k: v for k, v in prop.items() if k in ("title", "description")}
    else:
        meta = {k: v for k, v in prop.items() if k != "anyOf"}
    widened: list[dict[str, Any]] = []
    for option in options:
        if option.get("type") == "array" and "items" in option:
            widened.append(option["items"])
        widened.append(option)
    return {**meta, "anyOf": widened}


def _times(node: Any) -> None:
    """Replace ``format: time`` by a pattern for ``HH:MM`` or ``HH:MM:SS``, in place."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") == "time":
            del node["format"]
            node["pattern"] = _TIME
        for value in node.values():
            _times(value)
    elif isinstance(node, list):
        for value in node:
            _times(value)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a journey document as written in YAML."""
    schema = JourneyDocument.model_json_schema(by_alias=True)
    for name, fields in _listified().items():
        for field in fields:
            props = schema.get("$defs", {}).get(name, {}).get("properties", {})
            if field in props:
                props[field] = _one_or_many(props[field])
    _times(schema)
    schema.pop("title", None)
    schema.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Counterpoint journey",
        "description": (
            "A journey for one brand and one or more markets: the map (stages and touchpoints "
            "with customer goal, business reason, RACI owner, channels, content and KPI) and "
            "the flow (typed nodes, each tied to a touchpoint). See docs/journeys.md."
        ),
        **schema,
    }


def render() -> str:
    """The schema as the text of ``docs/journey.schema.json`` (stable key order)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover - python -m counterpoint.journey.schema
    sys.stdout.write(render())
