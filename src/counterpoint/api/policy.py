"""Contact policy per market, do-not-contact entries and hard-bounce suppressions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from counterpoint.api.deps import Allow, ForbiddenError, Services, actor_of
from counterpoint.consent.ledger import ConsentChannel
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Verb

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["contact policy"])

PolicyReader = Annotated[Principal, Depends(Allow(Resource.CONTACT_POLICY, Verb.READ))]
PolicyWriter = Annotated[Principal, Depends(Allow(Resource.CONTACT_POLICY, Verb.WRITE))]
Reason = Annotated[str, Field(min_length=3, max_length=2000, description="why (audited)")]


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any] = Field(description="the policy document (docs/contact-policy.md)")
    reason: Reason


class DncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel | None = Field(None, description="one channel; leave out for every channel")
    reason: Reason


def _in_markets(caller: Principal, market: str) -> None:
    if caller.markets and market.strip().upper() not in caller.markets:
        raise ForbiddenError(
            f"the market {market[:10]!r} is outside your markets",
            field="market",
            fix="ask an administrator for a user scoped to this market",
        )


@router.get("/policies")
def list_policies(container: Services, caller: PolicyReader) -> dict[str, Any]:
    """Markets with a policy of their own (the others use the built-in one)."""
    return {"markets": container.contact.markets()}


@router.get("/policies/{market}")
def get_policy(market: str, container: Services, caller: PolicyReader) -> dict[str, Any]:
    """The policy in force in the market, with its version history."""
    current = container.contact.show(market)
    return {**current, "history": container.contact.history(market)}


@router.put("/policies/{market}")
def put_policy(
    market: str, body: PolicyIn, request: Request, container: Services, caller: PolicyWriter
) -> dict[str, Any]:
    """Store a new version of the market's policy (kept with the old ones, audited)."""
    _in_markets(caller, market)
    return container.contact.set_policy(
        market, body.document, actor_of(request, caller), body.reason
    )


@router.post("/hcps/{hcp_id}/do-not-contact", status_code=201)
def add_dnc(
    hcp_id: str, body: DncIn, request: Request, container: Services, caller: PolicyWriter
) -> dict[str, Any]:
    """Never contact this HCP on the channel (or any channel) until the entry is removed."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    return container.contact.add_dnc(ref, body.channel, body.reason, actor_of(request, caller))


@router.get("/hcps/{hcp_id}/do-not-contact")
def list_dnc(hcp_id: str, container: Services, caller: PolicyReader) -> dict[str, Any]:
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    return {"hcp_id": ref.id, "items": container.contact.list_dnc(ref)}


@router.delete("/hcps/{hcp_id}/do-not-contact")
def remove_dnc(
    hcp_id: str,
    reason: Annotated[str, Query(min_length=3, max_length=2000, description="why (audited)")],
    request: Request,
    container: Services,
    caller: PolicyWriter,
    channel: Annotated[
        Channel | None, Query(description="leave out for the all-channel entry")
    ] = None,
) -> dict[str, Any]:
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    return container.contact.remove_dnc(ref, channel, reason, actor_of(request, caller))


@router.get("/hcps/{hcp_id}/suppressions")
def list_suppressions(
    hcp_id: str, container: Services, caller: PolicyReader, include_lifted: bool = False
) -> dict[str, Any]:
    """Channels suppressed for the HCP's identifiers after hard bounces."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    items = container.contact.suppressions(ref, include_lifted=include_lifted)
    return {"hcp_id": ref.id, "items": items}


@router.delete("/hcps/{hcp_id}/suppressions/{channel}")
def lift_suppression(
    hcp_id: str,
    channel: ConsentChannel,
    reason: Annotated[str, Query(min_length=3, max_length=2000, description="why (audited)")],
    request: Request,
    container: Services,
    caller: PolicyWriter,
) -> dict[str, Any]:
    """Lift the suppression (e.g. the address was corrected); audited."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    lifted = container.contact.lift(ref, channel, reason, actor_of(request, caller))
    return {"hcp_id": ref.id, "lifted": lifted}
