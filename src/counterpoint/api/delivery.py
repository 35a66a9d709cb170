"""Sending approved content, previewing it for one HCP, and the outbox's operations view."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.delivery.service import SendRequest
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.profile.service import SegmentFilter

__all__ = ["router"]

router = APIRouter(tags=["delivery"])

Sender = Annotated[Principal, Depends(Allow(Resource.SEND, Verb.WRITE))]
ContentReader = Annotated[Principal, Depends(Allow(Resource.CONTENT, Verb.READ))]
OutboxReader = Annotated[Principal, Depends(Allow(Resource.OUTBOX, Verb.READ))]
OutboxWriter = Annotated[Principal, Depends(Allow(Resource.OUTBOX, Verb.WRITE))]


def _channel(value: str, field: str = "channel") -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise ValidationFailedError(
            f"{value[:40]!r} is not a channel",
            field=field,
            fix="one of " + ", ".join(c.value for c in Channel),
        ) from None


class Segment(BaseModel):
    market: str | None = Field(None, max_length=2)
    territory: str | None = Field(None, max_length=64)
    specialty: str | None = Field(None, max_length=64)
    segment: str | None = Field(None, max_length=64)
    persona: str | None = Field(None, max_length=64)
    min_decile: int | None = Field(None, ge=1, le=10)


class EventDetails(BaseModel):
    title: str = Field(max_length=300)
    starts_at: str | None = Field(None, max_length=100)
    location: str | None = Field(None, max_length=300)
    join_url: str | None = Field(None, max_length=2000)
    register_url: str | None = Field(None, max_length=2000)


class SendBody(BaseModel):
    content: str = Field(max_length=100, description="asset id or code (approved)")
    channel: str = Field(max_length=32)
    hcp_ids: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=10_000
    )
    segment: Segment | None = None
    not_before: dt.datetime | None = Field(None, description="send no earlier than this")
    event: EventDetails | None = None


@router.post("/api/v1/sends", status_code=202)
def send(
    body: SendBody,
    request: Request,
    container: Services,
    caller: Sender,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> dict[str, Any]:
    """Send an approved asset to HCPs or a segment: the guard decides each HCP now (refusals
    come back with their reasons) and again at delivery. Repeating a request with the same
    ``Idempotency-Key`` header queues nothing twice."""
    if body.not_before is not None and body.not_before.tzinfo is None:
        raise ValidationFailedError(
            "not_before needs a time zone", field="not_before", fix="e.g. 2026-12-01T09:00:00Z"
        )
    context: dict[str, Any] = {}
    if body.event is not None:
        context["event"] = body.event.model_dump(exclude_none=True)
    report = container.delivery.send(
        SendRequest(
            content=body.content,
            channel=_channel(body.channel),
            hcp_ids=body.hcp_ids,
            segment=SegmentFilter(**body.segment.model_dump()) if body.segment else None,
            request_key=idempotency_key,
            not_before=body.not_before,
            context=context,
        ),
        principal=caller,
        actor=actor_of(request, caller),
    )
    return report.as_dict()


@router.get("/api/v1/content/{content_id}/preview")
def preview(
    content_id: str,
    container: Services,
    caller: ContentReader,
    hcp_id: Annotated[str, Query(max_length=100)],
    channel: Annotated[str, Query(max_length=32)],
) -> dict[str, Any]:
    """The asset rendered for one HCP in the caller's scope, exactly as it would be sent
    (tracking links left out), with the guard's decision for sending it now."""
    return container.delivery.preview(content_id, hcp_id, _channel(channel), principal=caller)


@router.get("/api/v1/outbox")
def outbox(
    container: Services,
    caller: OutboxReader,
    status: Annotated[str | None, Query(max_length=16)] = None,
    hcp_id: Annotated[str | None, Query(max_length=100)] = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Outbox entries, newest first (``status=dead``: the dead letters, with reasons)."""
    if channel is not None:
        _channel(channel)
    items = container.delivery.outbox(
        status=status, hcp_id=hcp_id, channel=channel, before=before, limit=limit
    )
    return {
        "items": items,
        "counts": container.delivery.counts(),
        "next": items[-1]["id"] if len(items) == limit else None,
    }


class Reason(BaseModel):
    reason: str = Field(max_length=2000)


@router.post("/api/v1/outbox/{entry_id}/replay")
def replay(
    entry_id: str, body: Reason, request: Request, container: Services, caller: OutboxWriter
) -> dict[str, Any]:
    """Put a dead letter back in line; the guard decides again at delivery (audited)."""
    return container.delivery.replay(entry_id, actor_of(request, caller), body.reason)


@router.post("/api/v1/outbox/{entry_id}/cancel")
def cancel(
    entry_id: str, body: Reason, request: Request, container: Services, caller: OutboxWriter
) -> dict[str, Any]:
    """Cancel an entry not yet sent (audited)."""
    return container.delivery.cancel(entry_id, actor_of(request, caller), body.reason)
