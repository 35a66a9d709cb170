"""HCP 360: one record per HCP, looked up by id or by any identifier, with its timeline."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel, Function
from counterpoint.event.log import StoredEvent
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/hcps", tags=["hcp"])

HcpReader = Annotated[Principal, Depends(Allow(Resource.HCP, Verb.READ))]
IdentityWriter = Annotated[Principal, Depends(Allow(Resource.IDENTITY, Verb.WRITE))]


def _cursor(event: StoredEvent) -> str:
    raw = f"{event.event.occurred_at.isoformat()}|{event.seq}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        at_text, _, seq_text = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        at, seq = dt.datetime.fromisoformat(at_text), int(seq_text)
        if at.tzinfo is None or not 0 <= seq < 2**63:
            raise ValueError("cursor out of range")
        return at.astimezone(dt.UTC), seq
    except (ValueError, OverflowError, UnicodeDecodeError):
        raise ValidationFailedError(
            "the cursor is not one this API returned",
            field="cursor",
            fix="pass next_cursor from the previous page unchanged",
        ) from None


def _event(item: StoredEvent) -> dict[str, Any]:
    e = item.event
    return {
        "seq": item.seq,
        "message_id": e.message_id,
        "kind": e.kind.value,
        "identifier": e.subject,
        "occurred_at": e.occurred_at,
        "channel": e.channel,
        "action": e.action,
        "event_name": e.event_name,
        "brand": e.brand,
        "content_id": e.content_id,
        "slide": e.slide,
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "function": e.function,
        "market": e.market,
        "payload": e.payload,
        "redacted": bool(e.payload.get("redacted")) and e.function == Function.MEDICAL,
        "synthetic": e.synthetic,
    }


@router.get("")
def lookup(
    identifier: Annotated[str, Query(description="type:value, e.g. npi:1234567893")],
    container: Services,
    viewer: HcpReader,
) -> dict[str, Any]:
    """The HCP holding this identifier (within the caller's markets and territories)."""
    return container.profiles.get_by_identifier(identifier, viewer=viewer)


@router.get("/{hcp_id}")
def get_hcp(hcp_id: str, container: Services, viewer: HcpReader) -> dict[str, Any]:
    """The HCP 360 profile: attributes, identifiers, affiliations, engagement features."""
    return container.profiles.get_hcp(hcp_id, viewer=viewer)


class UnmergeRequest(BaseModel):
    identifiers: list[str] = Field(min_length=1, description="type:value identifiers to split off")
    reason: str = Field(min_length=3, max_length=500, description="why (kept in the record)")


@router.post("/{hcp_id}/unmerge")
def unmerge(
    hcp_id: str,
    body: UnmergeRequest,
    request: Request,
    container: Services,
    caller: IdentityWriter,
) -> dict[str, Any]:
    """Split identifiers (and their events) off an HCP into a record of their own, for good."""
    container.profiles.get_hcp(hcp_id, viewer=caller)  # in the caller's scope
    return container.profiles.unmerge(
        hcp_id, body.identifiers, body.reason, actor_of(request, caller)
    )


@router.get("/{hcp_id}/timeline")
def timeline(
    hcp_id: str,
    container: Services,
    viewer: HcpReader,
    channel: Channel | None = None,
    brand: str | None = None,
    function: Function | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Every event of the HCP across identifiers, newest first (keyset pagination)."""
    profile_id, items = container.profiles.timeline(
        hcp_id,
        channel=channel.value if channel else None,
        brand=brand,
        function=function.value if function else None,
        before=_parse_cursor(cursor) if cursor else None,
        limit=limit,
        viewer=viewer,
    )
    return {
        "hcp_id": profile_id,
        "items": [_event(i) for i in items],
        "next_cursor": _cursor(items[-1]) if len(items) == limit else None,
    }
