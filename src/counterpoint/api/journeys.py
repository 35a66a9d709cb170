"""Journeys over HTTP: validate, publish, pause, resume, stop, move; list, read, status and
the map with live figures. See docs/journeys.md.

A journey document is sent as YAML (``Content-Type: application/yaml`` or ``text/yaml``, or
any text type) or as JSON ``{"source": "<the YAML>", "name": "file.yaml"}``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from counterpoint.api.deps import Allow, Services, origin_of
from counterpoint.errors import ValidationFailedError
from counterpoint.journey.loader import MAX_SOURCE_CHARS
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/journeys", tags=["journeys"])

Reader = Annotated[Principal, Depends(Allow(Resource.JOURNEY, Verb.READ))]
Writer = Annotated[Principal, Depends(Allow(Resource.JOURNEY, Verb.WRITE))]

_DOCUMENT = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["source"],
                    "properties": {
                        "source": {"type": "string", "description": "The journey as YAML."},
                        "name": {"type": "string", "description": "A file name for problems."},
                    },
                }
            },
        },
    }
}
_FIX = 'send the YAML as the body, or JSON {"source": "<the YAML>"}'


async def _source(request: Request) -> tuple[str, str]:
    """The journey text and the name its problems are reported under."""
    raw = await request.body()
    if len(raw) > 4 * MAX_SOURCE_CHARS:
        raise ValidationFailedError("the document is too large", field="body", fix=_FIX)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailedError("the body is not UTF-8", field="body", fix=_FIX) from None
    if "json" not in request.headers.get("content-type", ""):
        return text, "<body>"
    try:
        data = json.loads(text)
    except ValueError:
        raise ValidationFailedError("the body is not JSON", field="body", fix=_FIX) from None
    if not isinstance(data, dict) or not isinstance(data.get("source"), str):
        raise ValidationFailedError("the JSON has no text field source", field="source", fix=_FIX)
    name = data.get("name")
    return data["source"], name if isinstance(name, str) and name else "<body>"


@router.post("/validate", openapi_extra=_DOCUMENT)
async def validate(request: Request, container: Services, caller: Reader) -> dict[str, Any]:
    """Every problem of a journey document (errors and warnings, each naming its node and
    line) and the consent coverage per contact channel. Nothing is stored."""
    text, name = await _source(request)
    report = await run_in_threadpool(container.journeys.validate, text, name)
    return report.as_dict()


@router.post("", status_code=201, openapi_extra=_DOCUMENT)
async def publish(request: Request, container: Services, caller: Writer) -> dict[str, Any]:
    """Validate and publish the document as the journey's next version (400 with every
    problem when it has an error). HCPs already in the journey stay on their version."""
    text, name = await _source(request)
    return await run_in_threadpool(
        container.journeys.publish, text, caller, origin_of(request), source=name
    )


@router.get("")
def list_journeys(container: Services, caller: Reader) -> dict[str, Any]:
    """Every journey with its status and current version."""
    return {"items": container.journeys.all()}


@router.get("/{journey_id}")
def get(journey_id: str, container: Services, caller: Reader) -> dict[str, Any]:
    """One journey: its versions and the current version's document."""
    return container.journeys.get(journey_id)


@router.get("/{journey_id}/status")
def status(journey_id: str, container: Services, caller: Reader) -> dict[str, Any]:
    """Per node, touchpoint and stage: HCPs waiting, completed, exited; contacts refused
    (by the guard's code), sends and tasks."""
    return container.journeys.status(journey_id)


@router.get("/{journey_id}/map")
def journey_map(journey_id: str, container: Services, caller: Reader) -> dict[str, Any]:
    """The map with live figures on every stage, touchpoint and node (entered, active,
    completed, exited, refused, conversion, time in stage, leaks, KPI against target)."""
    return container.journey_analytics.map(journey_id)


@router.post("/{journey_id}/pause")
def pause(journey_id: str, request: Request, container: Services, caller: Writer) -> dict[str, Any]:
    """Timers and events wait, no HCP enters; resume to go on."""
    return container.journeys.pause(journey_id, caller, origin_of(request))


@router.post("/{journey_id}/resume")
def resume(
    journey_id: str, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Active again: due timers fire (late), events that arrived meanwhile are taken."""
    return container.journeys.resume(journey_id, caller, origin_of(request))


@router.post("/{journey_id}/stop")
def stop(journey_id: str, request: Request, container: Services, caller: Writer) -> dict[str, Any]:
    """Final: every waiting HCP exits (``journey_stopped``)."""
    return container.journeys.stop(journey_id, caller, origin_of(request))


class MoveRequest(BaseModel):
    from_version: int = Field(ge=1, description="The version whose waiting HCPs move.")
    to_version: int | None = Field(
        default=None, ge=1, description="The version they move to (default: the current one)."
    )


@router.post("/{journey_id}/move")
def move(
    journey_id: str,
    body: Annotated[MoveRequest, Body()],
    request: Request,
    container: Services,
    caller: Writer,
) -> dict[str, Any]:
    """Move waiting HCPs to another version: those waiting at a node that exists (and waits)
    in the new version move, timers kept; the others stay and are listed."""
    return container.journeys.move(
        journey_id,
        caller,
        origin_of(request),
        from_version=body.from_version,
        to_version=body.to_version,
    )
