"""Segment-compatible tracking API: existing Segment and RudderStack SDKs work unchanged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from counterpoint.api.deps import Public, Services
from counterpoint.event.service import SegmentCall

__all__ = ["router"]

router = APIRouter(
    tags=["ingestion"], dependencies=[Depends(Public("write key as HTTP Basic user name"))]
)


async def _ingest(request: Request, container: Services, implied: str | None) -> dict[str, Any]:
    call = SegmentCall(
        body=await request.body(),
        content_encoding=request.headers.get("content-encoding"),
        authorization=request.headers.get("authorization"),
        implied_type=implied,
    )
    result = await container.ingest.ingest(call)
    return {
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "quarantined": result.quarantined,
        "errors": result.errors,
    }


@router.post("/v1/batch")
async def batch(request: Request, container: Services) -> dict[str, Any]:
    """Many calls at once: ``{"batch": [...], "sentAt": ...}``; write key as Basic user."""
    return await _ingest(request, container, None)


@router.post("/v1/track")
async def track(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "track")


@router.post("/v1/identify")
async def identify(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "identify")


@router.post("/v1/page")
async def page(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "page")


@router.post("/v1/screen")
async def screen(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "screen")


@router.post("/v1/group")
async def group(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "group")


@router.post("/v1/alias")
async def alias(request: Request, container: Services) -> dict[str, Any]:
    return await _ingest(request, container, "alias")
