"""The HCP's own contact preferences (at most N promotional messages per month), read and
recorded by operations (a preference given by phone or letter); the guard enforces them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from counterpoint.api.deps import Allow, ForbiddenError, Services, actor_of
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.policy.contact_service import MAX_PROMOTIONAL_PER_MONTH, PreferenceSource
from counterpoint.profile.service import HcpRef

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/hcps/{hcp_id}/contact-preferences", tags=["consent"])

ConsentReader = Annotated[Principal, Depends(Allow(Resource.CONSENT, Verb.READ))]
ConsentWriter = Annotated[Principal, Depends(Allow(Resource.CONSENT, Verb.WRITE))]
_MARKET = r"^[A-Za-z]{2}$"


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_promotional_per_month: int | None = Field(
        description="at most this many promotional messages per month (the last 30 days,"
        " every channel and brand); null: no limit of the HCP's own",
        ge=1,
        le=MAX_PROMOTIONAL_PER_MONTH,
        strict=True,
    )
    market: str | None = Field(
        None, pattern=_MARKET, description="the market it applies to; default the HCP's market"
    )
    reason: str = Field(
        min_length=3, max_length=2000, description="why, e.g. how the HCP said it (audited)"
    )


def _market(caller: Principal, ref: HcpRef, market: str | None) -> str:
    chosen = (market or ref.market or "").upper()
    if chosen and caller.markets and chosen not in caller.markets:
        raise ForbiddenError(
            f"the market {chosen!r} is outside your markets",
            field="market",
            fix="ask an administrator for a user scoped to this market",
        )
    return chosen


@router.get("")
def get_preferences(
    hcp_id: str,
    container: Services,
    caller: ConsentReader,
    market: Annotated[
        str | None, Query(pattern=_MARKET, description="default: the HCP's market")
    ] = None,
) -> dict[str, Any]:
    """The HCP's own limit in the market and the promotional touches of the last 30 days."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    return container.contact.preference(ref, _market(caller, ref, market))


@router.put("")
def put_preferences(
    hcp_id: str,
    body: PreferenceIn,
    request: Request,
    container: Services,
    caller: ConsentWriter,
) -> dict[str, Any]:
    """Record the HCP's limit (audited with the reason); the guard applies it at once."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    stored = container.contact.set_preference(
        ref,
        _market(caller, ref, body.market),
        body.max_promotional_per_month,
        source=PreferenceSource.API,
        actor=actor_of(request, caller),
        reason=body.reason,
    )
    return {**container.contact.preference(ref, stored["market"]), "changed": stored["changed"]}
