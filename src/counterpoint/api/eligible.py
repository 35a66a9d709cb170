"""Eligible content over HTTP: which approved assets may the caller send to this HCP on this
channel now (and, when asked, why the others may not)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from counterpoint.api.deps import Allow, ForbiddenError, Services
from counterpoint.api.guard import ORCHESTRATORS
from counterpoint.content.eligibility import ContentRef
from counterpoint.content.eligible_service import EligibleResult
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.policy.guard import Refusal

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/hcps", tags=["content"])

ContentReader = Annotated[Principal, Depends(Allow(Resource.CONTENT, Verb.READ))]
_CHANNELS = ", ".join(c.value for c in Channel)


def _channel(text: str | None) -> Channel:
    try:
        return Channel((text or "").strip())
    except ValueError:
        raise ValidationFailedError(
            f"{(text or '')[:40]!r} is not a channel" if text else "channel is required",
            field="channel",
            fix=f"give channel=… as one of {_CHANNELS}",
        ) from None


def _at(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationFailedError(
            f"{text[:40]!r} is not a time with a time zone",
            field="at",
            fix="write an ISO 8601 time with a zone, e.g. 2026-11-24T09:00:00Z, or leave it out",
        )
    return value.astimezone(dt.UTC)


def _automated(caller: Principal, automated: bool) -> bool:
    if automated and caller.role not in ORCHESTRATORS:
        raise ForbiddenError(
            f"the role {caller.role.value} does not run automated orchestration",
            field="automated",
            fix="leave automated out: eligibility is then computed for your own role",
        )
    return automated


def _reasons(refusals: tuple[Refusal, ...]) -> list[dict[str, str]]:
    return [{"code": str(r.code), "detail": r.detail} for r in refusals]


def _item(ref: ContentRef) -> dict[str, Any]:
    return {
        "id": ref.id,
        "code": ref.code,
        "title": ref.title,
        "asset_type": ref.asset_type,
        "brand": ref.brand,
        "function": ref.function,
        "languages": sorted(ref.languages),
        "persona": ref.persona,
        "journey_stage": ref.journey_stage,
        "job_code": ref.job_code,
        "valid_until": ref.valid_until,
        "minutes": ref.minutes,
        "parent_id": ref.parent_id,
    }


def _body(result: EligibleResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hcp_id": result.hcp_id,
        "channel": result.channel.value,
        "at": result.at,
        "count": len(result.items),
        "items": [_item(i) for i in result.items],
    }
    if result.refused is not None:
        body["refused"] = [
            {**_item(r.item), "reasons": _reasons(r.refusals)} for r in result.refused
        ]
    if result.groups is not None:
        body["groups"] = [
            {
                "purpose": g.purpose.value,
                "brand": g.brand,
                "allowed": g.allowed,
                "reasons": _reasons(g.refusals),
            }
            for g in result.groups
        ]
    return body


@router.get("/{hcp_id}/eligible-content")
def eligible_content(
    hcp_id: str,
    container: Services,
    caller: ContentReader,
    channel: Annotated[str | None, Query(description="the channel, e.g. rep_email")] = None,
    at: Annotated[str | None, Query(description="ISO 8601 time with a zone; default now")] = None,
    include_refused: Annotated[
        bool, Query(description="also list the items that may not go, with every reason")
    ] = False,
    automated: Annotated[
        bool, Query(description="act as automated orchestration (admin, marketing, brand)")
    ] = False,
) -> dict[str, Any]:
    """The approved assets and variants the caller may send to the HCP on ``channel`` now:
    content approved and in date for the HCP's market, channel and language, within the
    caller's brands and role, and allowed by the guard (consent, caps, quiet hours…).
    HCPs outside the caller's markets or territories are 404, as if absent."""
    result = container.eligible.query(
        hcp_id,
        _channel(channel),
        caller,
        _at(at),
        include_refused,
        automated=_automated(caller, automated),
    )
    return _body(result)
