"""Transfers of value to HCPs: record, list, and the yearly disclosure files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from counterpoint.api.deps import Allow, Services, actor_of, require_brand
from counterpoint.errors import ValidationFailedError
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.profile.validation import normalise_market

__all__ = ["router"]

router = APIRouter(tags=["transfers of value"])

Reader = Annotated[Principal, Depends(Allow(Resource.TRANSFER_OF_VALUE, Verb.READ))]
Writer = Annotated[Principal, Depends(Allow(Resource.TRANSFER_OF_VALUE, Verb.WRITE))]
Exporter = Annotated[Principal, Depends(Allow(Resource.TRANSFER_OF_VALUE, Verb.EXPORT))]


class TransferRequest(BaseModel):
    amount: str = Field(max_length=20, description='exact amount, e.g. "125.50"')
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. EUR")
    nature: str = Field(max_length=40, description="see docs/transfers-of-value.md")
    form: str = Field("cash", max_length=32)
    date: str = Field(max_length=10, description="YYYY-MM-DD")
    brand: str | None = Field(None, max_length=100)
    product: str | None = Field(None, max_length=200)
    market: str | None = Field(None, max_length=2, description="default: the HCP's market")
    description: str | None = Field(None, max_length=500)
    message_id: str | None = Field(None, max_length=200, description="the related event")
    external_id: str | None = Field(None, max_length=200)
    disclosure_consent: bool = False
    reason: str = Field(max_length=2000)


@router.post("/api/v1/hcps/{hcp_id}/transfers", status_code=201)
def record(
    hcp_id: str, body: TransferRequest, request: Request, container: Services, caller: Writer
) -> dict[str, Any]:
    """Record one transfer of value to an HCP in the caller's scope (audited)."""
    require_brand(caller, body.brand)
    values = body.model_dump(exclude={"reason"})
    return container.transfers.record(
        hcp_id, values, actor_of(request, caller), body.reason, viewer=caller
    )


@router.get("/api/v1/hcps/{hcp_id}/transfers")
def of_hcp(hcp_id: str, container: Services, caller: Reader) -> dict[str, Any]:
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    return {"hcp_id": ref.id, "items": container.transfers.of_hcp(ref)}


@router.get("/api/v1/transfers/export")
def export(
    container: Services,
    caller: Exporter,
    format: Literal["open_payments", "efpia"],
    year: Annotated[int, Query(ge=2000, le=2100)],
    market: str | None = None,
) -> Response:
    """The disclosure file of one year as CSV (Open Payments: US, USD; EFPIA: per market)."""
    code = None
    if market is not None:
        code = normalise_market(market)
        if code is None:
            raise ValidationFailedError(
                f"{market[:10]!r} is not an ISO 3166-1 alpha-2 country code",
                field="market",
                fix="write a two-letter code such as DE",
            )
    body = container.transfers.export(format, year, code)
    name = f"{format}-{year}{'-' + code if code else ''}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
