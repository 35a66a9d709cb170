"""Segments over HTTP: definitions, previews and counts of conditions, membership refreshes.
See docs/segments.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.segment.conditions import parse_condition
from counterpoint.segment.service import parse_segment

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/segments", tags=["segments"])

Reader = Annotated[Principal, Depends(Allow(Resource.SEGMENT, Verb.READ))]
Writer = Annotated[Principal, Depends(Allow(Resource.SEGMENT, Verb.WRITE))]

_CONDITION_EXAMPLE = {
    "all": [
        {"attribute": {"name": "specialty", "op": "in", "value": ["cardiology"]}},
        {"consent": {"channel": "email", "purpose": "promotional"}},
        {"events": {"channel": "campaign_email", "action": "opened", "within_days": 30}},
    ]
}
ConditionBody = Annotated[
    Any,
    Body(
        description="A condition (docs/segments.md): an object with exactly one of the keys "
        "all, any, not, attribute, events, feature, consent.",
        examples=[_CONDITION_EXAMPLE],
    ),
]
DocumentBody = Annotated[
    Any,
    Body(
        description="A segment: name (lower-case letters, digits, _ and -), description, "
        "condition.",
        examples=[
            {"name": "cardio-email-openers", "description": "", "condition": _CONDITION_EXAMPLE}
        ],
    ),
]


@router.get("")
def list_segments(container: Services, caller: Reader) -> dict[str, Any]:
    """Every segment by name, with its version and number of members."""
    return {"items": container.segments.list()}


@router.post("", status_code=201)
def create(
    document: DocumentBody, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Create a segment (version 1; members come with its first refresh)."""
    return container.segments.create(parse_segment(document), actor_of(request, caller))


@router.post("/preview")
def preview_condition(
    condition: ConditionBody, container: Services, caller: Reader
) -> dict[str, Any]:
    """What a condition selects now among the HCPs you may see: size, size per market,
    consent coverage per channel (promotional purpose) and a sample of member ids."""
    return container.segments.preview(parse_condition(condition), viewer=caller)


@router.post("/count")
def count_condition(
    condition: ConditionBody, container: Services, caller: Reader
) -> dict[str, Any]:
    """How many HCPs you may see meet a condition now."""
    return {"count": container.segments.count(parse_condition(condition), viewer=caller)}


@router.get("/{name}")
def get(name: str, container: Services, caller: Reader) -> dict[str, Any]:
    """One segment: its condition, version and number of members."""
    return container.segments.get(name)


@router.put("/{name}")
def update(
    name: str, document: DocumentBody, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """A new version of the segment's description and condition (``changed`` false when both
    are as stored). Members follow at the next refresh."""
    parsed = parse_segment(document, name=name)
    return container.segments.update(parsed, actor_of(request, caller))


@router.delete("/{name}")
def delete(name: str, request: Request, container: Services, caller: Writer) -> dict[str, Any]:
    """Delete a segment; each member leaves it (a ``segment_left`` event)."""
    return container.segments.delete(name, actor_of(request, caller))


@router.get("/{name}/preview")
def preview(name: str, container: Services, caller: Reader) -> dict[str, Any]:
    """The segment's condition previewed now (as ``POST /preview``)."""
    return container.segments.preview(container.segments.condition_of(name), viewer=caller)


@router.get("/{name}/count")
def count(name: str, container: Services, caller: Reader) -> dict[str, Any]:
    """How many HCPs you may see meet the segment's condition now."""
    condition = container.segments.condition_of(name)
    return {"name": name, "count": container.segments.count(condition, viewer=caller)}


@router.post("/{name}/refresh")
def refresh(name: str, container: Services, caller: Writer) -> dict[str, Any]:
    """Evaluate the segment for every HCP now and update its members; each entry and exit is
    an event in the log (``segment_entered`` / ``segment_left``)."""
    return container.segments.refresh(name)
