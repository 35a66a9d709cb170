"""Open pixel and click redirect of tracked messages (signed links). See docs/rendering.md.

A forged, tampered or expired token answers 400 (problem+json) and records nothing; a click
never redirects anywhere but to the http(s) URL signed in its token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from counterpoint.api.deps import Public, Services
from counterpoint.container import Container
from counterpoint.delivery.tracking import PIXEL_GIF, TrackingRecorder

__all__ = ["router"]

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the destination never sees the tracking link
    "X-Robots-Tag": "noindex, nofollow",
}
_BAD_LINK: dict[int | str, dict[str, Any]] = {
    400: {"description": "forged, tampered or expired link (invalid_link, expired_link)"}
}

router = APIRouter(
    prefix="/t", tags=["tracking"], dependencies=[Depends(Public("signed tracking link"))]
)


def recorder(container: Container) -> TrackingRecorder:
    return TrackingRecorder(
        container.tracking,
        container.profiles,
        container.log,
        container.clock,
        wake=container.wake_consumers,
    )


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, **_BAD_LINK},
)
def open_pixel(token: str, container: Services) -> Response:
    """A 1×1 GIF; records that the message was opened."""
    recorder(container).opened(token)
    return Response(PIXEL_GIF, media_type="image/gif", headers=_HEADERS)


@router.get("/c/{token}", status_code=303, response_class=RedirectResponse, responses=_BAD_LINK)
def click(token: str, container: Services) -> RedirectResponse:
    """303 to the link's URL; records that it was clicked."""
    claims = recorder(container).clicked(token)
    return RedirectResponse(claims.url, status_code=303, headers=_HEADERS)
