"""Privacy requests of one HCP: export everything held about them, or erase them (GDPR)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from counterpoint.api.deps import Allow, Services, actor_of
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/hcps", tags=["privacy"])

Exporter = Annotated[Principal, Depends(Allow(Resource.PRIVACY, Verb.EXPORT))]
Eraser = Annotated[Principal, Depends(Allow(Resource.PRIVACY, Verb.ERASE))]


@router.get("/{hcp_id}/export")
def export(
    hcp_id: str, reason: str, request: Request, container: Services, caller: Exporter
) -> dict[str, Any]:
    """Everything held about the HCP as one JSON document (the export is audited)."""
    return container.privacy.export(hcp_id, actor_of(request, caller), reason)


class EraseRequest(BaseModel):
    reason: str = Field(description="why, without naming the person (kept in the audit trail)")


@router.post("/{hcp_id}/erase")
def erase(
    hcp_id: str, body: EraseRequest, request: Request, container: Services, caller: Eraser
) -> dict[str, Any]:
    """Erase the HCP: personal data removed, aggregates kept under a pseudonym, and the
    person's identifiers fingerprinted so they are never re-imported or re-contacted."""
    return container.privacy.erase(hcp_id, actor_of(request, caller), body.reason).as_dict()
