"""The guard over HTTP: may these contacts reach these HCPs now, and if not, why."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from counterpoint.api.deps import Allow, ForbiddenError, Services, require_brand
from counterpoint.consent.ledger import Purpose
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Role, Verb
from counterpoint.policy.guard import Decision
from counterpoint.policy.guard_service import CheckRequest

__all__ = ["MAX_CANDIDATES", "router"]

router = APIRouter(prefix="/api/v1/guard", tags=["guard"])

GuardReader = Annotated[Principal, Depends(Allow(Resource.GUARD, Verb.READ))]
MAX_CANDIDATES = 10_000
ORCHESTRATORS = frozenset({Role.ADMIN, Role.MARKETING_OPS, Role.BRAND_MANAGER})
Code = Annotated[str, Field(pattern=r"^[\w.\-]{1,64}$")]


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hcp_id: str = Field(min_length=1, max_length=100)
    channel: Channel
    purpose: Purpose
    brand: Code | None = None
    content_id: str | None = Field(None, max_length=200)
    content_type: Code | None = None
    at: AwareDatetime | None = Field(None, description="when the contact would happen; now")


class _Options(BaseModel):
    automated: bool = Field(
        False, description="check for automated orchestration (acting as the system)"
    )
    record_refusal: bool = Field(False, description="append a refused event for refusals")


class CheckOne(CandidateIn, _Options):
    model_config = ConfigDict(extra="forbid")


class CheckMany(_Options):
    model_config = ConfigDict(extra="forbid")
    candidates: list[CandidateIn] = Field(min_length=1, max_length=MAX_CANDIDATES)


def _request(c: CandidateIn) -> CheckRequest:
    return CheckRequest(
        hcp_id=c.hcp_id,
        channel=c.channel,
        purpose=c.purpose,
        brand=c.brand,
        content_id=c.content_id,
        content_type=c.content_type,
        at=c.at.astimezone(dt.UTC) if c.at else None,
    )


def _decision(hcp_id: str, d: Decision) -> dict[str, Any]:
    return {
        "hcp_id": hcp_id,
        "allowed": d.allowed,
        "reasons": [{"code": str(r.code), "detail": r.detail} for r in d.refusals],
    }


def _acting_role(caller: Principal, automated: bool) -> Role | None:
    if not automated:
        return caller.role
    if caller.role not in ORCHESTRATORS:
        raise ForbiddenError(
            f"the role {caller.role.value} does not run automated orchestration",
            field="automated",
            fix="leave automated out: the check is then made for your own role",
        )
    return None


@router.post("/check")
def check(body: CheckOne | CheckMany, container: Services, caller: GuardReader) -> dict[str, Any]:
    """One candidate, or ``candidates`` (up to 10,000): allowed, or refused with reasons.
    HCPs outside the caller's markets or territories are refused as ``unknown_hcp``."""
    role = _acting_role(caller, body.automated)
    for i, candidate in enumerate([body] if isinstance(body, CheckOne) else body.candidates):
        field = "brand" if isinstance(body, CheckOne) else f"candidates[{i}].brand"
        require_brand(caller, candidate.brand, field)
    if isinstance(body, CheckOne):
        decision = container.guard.check(
            _request(body),
            role=role,
            viewer=caller,
            actor=caller.name,
            record_refusal=body.record_refusal,
        )
        return _decision(body.hcp_id, decision)
    decisions = container.guard.check_many(
        [_request(c) for c in body.candidates],
        role=role,
        viewer=caller,
        actor=caller.name,
        record_refusal=body.record_refusal,
    )
    allowed = sum(d.allowed for d in decisions)
    return {
        "count": len(decisions),
        "allowed": allowed,
        "refused": len(decisions) - allowed,
        "decisions": [
            _decision(c.hcp_id, d) for c, d in zip(body.candidates, decisions, strict=True)
        ],
    }
