"""A field user's own inbox: tasks and messages the rep inbox channel delivered to them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.channel.rep_inbox import RepInbox, Status
from counterpoint.container import Container
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/rep-inbox", tags=["rep inbox"])

InboxReader = Annotated[Principal, Depends(Allow(Resource.REP_INBOX, Verb.READ))]
InboxWriter = Annotated[Principal, Depends(Allow(Resource.REP_INBOX, Verb.WRITE))]


def _inbox(container: Container) -> RepInbox:
    return RepInbox(container.sessions, container.clock, container.audit)


@router.get("")
def own_items(
    container: Services,
    caller: InboxReader,
    status: Status = "all",
    cursor: Annotated[str | None, Query(max_length=600)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The caller's own items, newest first (keyset pagination with next_cursor)."""
    page = _inbox(container).items(caller.name, status=status, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.post("/{item_id}/done")
def mark_done(
    item_id: str, request: Request, container: Services, caller: InboxWriter
) -> dict[str, Any]:
    """Mark one of the caller's items done (audited; another user's item is 404)."""
    return _inbox(container).mark_done(caller.name, item_id, actor_of(request, caller))
