"""FastAPI application factory. Errors are RFC 9457 problem documents, never bare 500s."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from counterpoint import __version__
from counterpoint.api import admin, consent, hcps, ingest, quarantine
from counterpoint.api import contact_preferences as contact_preferences_api
from counterpoint.api import content as content_api
from counterpoint.api import delivery as delivery_api
from counterpoint.api import eligible as eligible_api
from counterpoint.api import guard as guard_api
from counterpoint.api import journeys as journeys_api
from counterpoint.api import policy as policy_api
from counterpoint.api import privacy as privacy_api
from counterpoint.api import public as consent_pages
from counterpoint.api import rep_inbox as rep_inbox_api
from counterpoint.api import segments as segments_api
from counterpoint.api import tracking as tracking_api
from counterpoint.api import transfers as transfers_api
from counterpoint.api.deps import Public
from counterpoint.container import Container
from counterpoint.errors import CounterpointError
from counterpoint.kit.heap import settle_after_start_up

__all__ = ["PROBLEM", "create_app"]

PROBLEM = "application/problem+json"
_log = logging.getLogger(__name__)


def _problem(status: int, code: str, detail: str, **extra: object) -> JSONResponse:
    body = {
        "type": f"https://counterpoint.invalid/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CounterpointError)
    async def _expected(_: Request, exc: CounterpointError) -> JSONResponse:
        return JSONResponse(exc.to_problem(), status_code=exc.status, media_type=PROBLEM)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "reason": "invalid request"}
        return _problem(
            422,
            "validation_failed",
            f"{first['field']}: {first['reason']}",
            field=first["field"],
            errors=errors,
            fix="correct the named field (see the API reference at /docs)",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error", exc_info=exc)
        return _problem(503, "unavailable", "the request could not be completed; retry later")


def create_app(
    container: Container, *, run_background: bool = True, settle_heap: bool = False
) -> FastAPI:
    """The API over a built ``Container``; the lifespan starts and stops its workers.

    ``settle_heap`` is for a process that serves this app for its whole life (``counterpoint
    serve``, the ASGI factory): once started, what it built is frozen out of garbage
    collection (``kit.heap``). Tests that build many apps in one process leave it off."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_background:
            container.start_background()
        if settle_heap:
            frozen = settle_after_start_up()
            _log.info("start-up heap settled: %d objects frozen out of collection", frozen)
        try:
            yield
        finally:
            if run_background:
                container.close()

    app = FastAPI(
        title="Counterpoint",
        version=__version__,
        summary="Omnichannel engagement between life-sciences companies and HCPs",
        lifespan=lifespan,
    )
    app.state.container = container
    _install_error_handlers(app)

    @app.get("/health", tags=["operations"], dependencies=[Depends(Public("liveness probe"))])
    def health() -> dict[str, str]:
        """Ready: the stores are open and the workers run."""
        return {"status": "ok", "deployment": container.settings.deployment.value}

    app.include_router(ingest.router)
    app.include_router(hcps.router)
    app.include_router(consent.router)
    app.include_router(quarantine.router)
    app.include_router(admin.router)
    app.include_router(consent_pages.router)  # HCP consent pages, SMS webhook
    app.include_router(policy_api.router)
    app.include_router(guard_api.router)
    app.include_router(eligible_api.router)
    app.include_router(content_api.router)
    app.include_router(contact_preferences_api.router)
    app.include_router(privacy_api.router)
    app.include_router(transfers_api.router)
    app.include_router(rep_inbox_api.router)
    app.include_router(delivery_api.router)
    app.include_router(segments_api.router)
    app.include_router(journeys_api.router)
    app.include_router(tracking_api.router)  # open pixel, click redirect (signed links)
    return app
