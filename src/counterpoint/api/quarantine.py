"""The quarantine: refused events with their reasons, to fix and replay, or discard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.event.log import QuarantinedEvent, QuarantineStatus
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/quarantine", tags=["ingestion"])

Reader = Annotated[Principal, Depends(Allow(Resource.QUARANTINE, Verb.READ))]
Writer = Annotated[Principal, Depends(Allow(Resource.QUARANTINE, Verb.WRITE))]


def _item(q: QuarantinedEvent) -> dict[str, Any]:
    e = q.entry
    return {
        "id": q.id,
        "status": q.status.value,
        "received_at": e.received_at,
        "source": e.source,
        "reason_code": e.reason_code,
        "field": e.field,
        "detail": e.detail,
        "fix": e.fix,
        "raw": e.raw,
        "resolved_at": q.resolved_at,
        "note": q.note,
    }


@router.get("")
def list_quarantine(
    container: Services,
    _: Reader,
    status: QuarantineStatus | None = QuarantineStatus.OPEN,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    items = container.ingest.quarantined(status, after_id, limit)
    return {
        "items": [_item(q) for q in items],
        "next_after_id": items[-1].id if len(items) == limit else None,
    }


@router.post("/{entry_id}/replay")
def replay(
    entry_id: int,
    container: Services,
    _: Writer,
    corrected: Annotated[dict[str, Any] | None, Body(description="the fixed event")] = None,
) -> dict[str, Any]:
    """Validate the event again (as stored, or as corrected) and append it if it passes."""
    result = container.ingest.replay(entry_id, corrected)
    container.wake_consumers()
    return {"accepted": result.accepted, "duplicates": result.duplicates}


@router.post("/{entry_id}/discard")
def discard(
    entry_id: int,
    request: Request,
    container: Services,
    caller: Writer,
    note: Annotated[str, Body(embed=True, min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Drop a quarantined event for good, with a note (kept in the audit trail)."""
    discarded = container.ingest.discard([entry_id], note)
    with container.sessions.begin() as session:
        container.audit.record(
            session,
            actor_of(request, caller),
            "quarantine.discard",
            "quarantine",
            str(entry_id),
            after={"discarded": discarded},
            reason=note,
        )
    return {"discarded": discarded}
