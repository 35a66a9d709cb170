"""The consent ledger of one HCP: record a consent, read its state at any time, withdraw."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from counterpoint.api.deps import Allow, ForbiddenError, Services, actor_of, require_brand
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.consent.service import record_dict, status_dict
from counterpoint.errors import ValidationFailedError
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.profile.validation import normalise_market

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/hcps/{hcp_id}/consents", tags=["consent"])

ConsentReader = Annotated[Principal, Depends(Allow(Resource.CONSENT, Verb.READ))]
ConsentWriter = Annotated[Principal, Depends(Allow(Resource.CONSENT, Verb.WRITE))]

_CODE = r"^[\w.\-]{1,64}$"
_HASH = r"^[0-9a-f]{64}$"
_WEB = frozenset({ConsentSource.WEB_FORM, ConsentSource.PREFERENCE_CENTRE})


class RecordedState(enum.StrEnum):
    """States a caller may record (``expired`` follows from ``expires_at``)."""

    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"
    PENDING = "pending"


class CallerSource(enum.StrEnum):
    """Where a consent recorded through the API was captured (``event`` and ``delivery``
    records come only through ingestion)."""

    WEB_FORM = "web_form"
    REP_CAPTURE = "rep_capture"
    IMPORT = "import"
    EMAIL_LINK = "email_link"
    ONE_CLICK = "one_click"
    SMS_KEYWORD = "sms_keyword"
    PREFERENCE_CENTRE = "preference_centre"
    API = "api"


Market = Annotated[str, Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: ConsentChannel
    purpose: Purpose
    market: Market
    brand: str | None = Field(None, pattern=_CODE, description="leave out for all brands")
    content_type: str | None = Field(None, pattern=_CODE, description="leave out for all")
    state: RecordedState
    effective_at: AwareDatetime | None = Field(None, description="when given (default: now)")
    expires_at: AwareDatetime | None = None
    source: CallerSource
    captured_by: str | None = Field(None, min_length=1, max_length=200)
    wording_version: str | None = Field(None, min_length=1, max_length=64)
    wording_hash: str | None = Field(None, pattern=_HASH, description="SHA-256 of the wording")
    evidence: str | None = Field(None, min_length=1, max_length=2000)
    reason: str = Field(min_length=3, max_length=2000, description="why (kept in the audit)")


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: ConsentChannel
    purposes: list[Purpose] | None = Field(
        None, min_length=1, max_length=len(Purpose), description="default: every purpose"
    )
    markets: list[Market] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="default: the HCP's market and every market it holds records for",
    )
    source: CallerSource = CallerSource.API
    evidence: str | None = Field(None, min_length=1, max_length=2000)
    reason: str = Field(min_length=3, max_length=2000)


def _market(code: str, caller: Principal, field: str) -> str:
    market = normalise_market(code)
    if market is None:
        raise ValidationFailedError(
            f"{code!r} is not an ISO 3166-1 alpha-2 country code",
            field=field,
            fix="write a two-letter code such as DE or US",
        )
    if caller.markets and market not in caller.markets:
        raise ForbiddenError(
            f"the market {market} is outside your markets",
            field=field,
            fix="record consent only in the markets you are responsible for",
        )
    return market


def _client(request: Request, source: ConsentSource) -> tuple[str | None, str | None]:
    """The address and agent of a web capture (the HCP's browser, as the request shows it)."""
    if source not in _WEB:
        return None, None
    host = request.client.host if request.client else None
    agent = request.headers.get("user-agent")
    return (host[:64] if host else None), (agent[:300] if agent else None)


@router.post("", status_code=201)
def record_consent(
    hcp_id: str,
    body: ConsentIn,
    request: Request,
    container: Services,
    caller: ConsentWriter,
) -> dict[str, Any]:
    """Append one consent record, with its proof, for an HCP in your scope."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    market = _market(body.market, caller, "market")
    require_brand(caller, body.brand)
    source = ConsentSource(body.source.value)
    ip, agent = _client(request, source)
    record = container.consents.record(
        hcp_id=ref.id,
        subject=None,
        scope=ConsentScope(body.channel, body.purpose, market, body.brand, body.content_type),
        state=ConsentState(body.state.value),
        proof=Proof(
            source=source,
            captured_by=body.captured_by or caller.label,
            wording_version=body.wording_version,
            wording_hash=body.wording_hash,
            ip=ip,
            user_agent=agent,
            evidence=body.evidence,
        ),
        actor=actor_of(request, caller),
        reason=body.reason,
        effective_at=body.effective_at,
        expires_at=body.expires_at,
    )
    assert record is not None  # no dedupe key: always recorded
    return record_dict(record)


def _known(record: ConsentRecord, at: dt.datetime) -> bool:
    return record.recorded_at <= at and record.effective_at <= at


@router.get("")
def read_consent(
    hcp_id: str,
    container: Services,
    viewer: ConsentReader,
    at: Annotated[
        AwareDatetime | None,
        Query(description="ISO 8601 time with offset: the consent as it stood then"),
    ] = None,
) -> dict[str, Any]:
    """The state of every scope (at ``at``, default now) and the records known then."""
    ref = container.profiles.resolve(hcp_id, viewer=viewer)
    when = (at or container.clock.now()).astimezone(dt.UTC)
    return {
        "hcp_id": ref.id,
        "at": when,
        "state": [status_dict(s) for s in container.consents.state(ref, when)],
        "records": [record_dict(r) for r in container.consents.records(ref) if _known(r, when)],
    }


@router.post("/withdraw")
def withdraw_consent(
    hcp_id: str,
    body: WithdrawIn,
    request: Request,
    container: Services,
    caller: ConsentWriter,
) -> dict[str, Any]:
    """Revoke a channel for the purposes and markets named (default: all); at once."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    markets = (
        sorted({_market(m, caller, "markets") for m in body.markets}) if body.markets else None
    )
    records = container.consents.withdraw(
        ref,
        body.channel,
        proof=Proof(
            source=ConsentSource(body.source.value),
            captured_by=caller.label,
            evidence=body.evidence,
        ),
        actor=actor_of(request, caller),
        reason=body.reason,
        purposes=sorted(set(body.purposes), key=list(Purpose).index) if body.purposes else None,
        markets=markets,
    )
    return {"hcp_id": ref.id, "records": [record_dict(r) for r in records]}
