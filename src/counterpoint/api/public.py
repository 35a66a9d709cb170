"""The HCP's own consent pages (signed links), the SMS keyword webhook, and the double opt-in
start. See docs/consent-links.md.

Pages opened with GET never change anything (mail scanners open links); changes happen on a
POST from the page's button, or on an RFC 8058 one-click POST. Bad or expired links render an
HTML error page (400) and record nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from counterpoint.api.deps import Allow, ForbiddenError, Public, Services, actor_of, origin_of
from counterpoint.consent.ledger import ConsentChannel, ConsentScope, ConsentSource, Purpose
from counterpoint.consent.links import (
    CONFIRM_TTL,
    FREQUENCY_CHOICES,
    ConsentLinks,
    Requester,
    SelfService,
)
from counterpoint.consent.service import record_dict
from counterpoint.container import Container
from counterpoint.delivery.receipts import ReceiptStatus
from counterpoint.errors import (
    CounterpointError,
    PayloadTooLargeError,
    UnauthorizedError,
    ValidationFailedError,
)
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Principal, Resource, Verb
from counterpoint.web import PAGE_HEADERS, render

__all__ = ["router"]

MAX_FORM_BYTES = 64 * 1024
MAX_SMS_BYTES = 16 * 1024
SIGNATURE_HEADER = "X-Counterpoint-Signature"

T = TypeVar("T")

_LINK = Public("signed, expiring, purpose-bound link token")
_SMS = Public("HMAC-SHA256 signature of the SMS gateway")

router = APIRouter()
api = APIRouter(prefix="/api/v1/hcps", tags=["consent"])
pages = APIRouter(prefix="/consent", tags=["consent pages"], dependencies=[Depends(_LINK)])
hooks = APIRouter(prefix="/hooks", tags=["webhooks"], dependencies=[Depends(_SMS)])

ConsentWriter = Annotated[Principal, Depends(Allow(Resource.CONSENT, Verb.WRITE))]


def self_service(container: Container) -> SelfService:
    settings = container.settings
    return SelfService(
        ConsentLinks.from_settings(settings, container.clock),
        sessions=container.sessions,
        consents=container.consents,
        profiles=container.profiles,
        audit=container.audit,
        contact=container.contact,
        preference_wording=settings.preference_wording,
        preference_wording_version=settings.preference_wording_version,
        log=container.log,
        wake=container.wake_consumers,
    )


def _requester(request: Request) -> Requester:
    agent = request.headers.get("user-agent")
    return Requester(
        ip=request.client.host[:64] if request.client else None,
        user_agent=agent[:300] if agent else None,
        origin=origin_of(request),
    )


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **context), status_code=status, headers=PAGE_HEADERS)


def _error_page(exc: CounterpointError) -> HTMLResponse:
    headings = {
        "expired_link": "This link has expired",
        "invalid_link": "This link is not valid",
        "not_found": "This link is no longer valid",
        "conflict": "Please review the page again",
    }
    return _page(
        "error.html",
        exc.status,
        heading=headings.get(exc.code, "This request could not be completed"),
        detail=exc.detail,
        fix=exc.fix,
        code=exc.code,
        field=exc.field,
    )


async def _run(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(call, *args, **kwargs)


async def _form(request: Request) -> FormData:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLargeError(
            "the form is too large", field="body", fix="submit the form as the page shows it"
        )
    if len(await request.body()) > MAX_FORM_BYTES:
        raise PayloadTooLargeError(
            "the form is too large", field="body", fix="submit the form as the page shows it"
        )
    return await request.form(max_files=0, max_fields=500)


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _fields(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]


def _words(value: str) -> str:
    return value.replace("_", " ")


# --- double opt-in: start (staff, bearer token) ---------------------------------------------
class DoubleOptInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: ConsentChannel
    purpose: Purpose
    market: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    brand: str | None = Field(None, max_length=64, description="narrow to one brand")
    wording_version: str = Field(min_length=1, max_length=64, pattern=r"^[\w.\-]+$")
    wording_hash: str | None = Field(
        None, description="SHA-256 (hex) of the wording the HCP saw; computed from wording"
    )
    wording: str | None = Field(
        None,
        min_length=1,
        max_length=1500,
        description="the consent text; shown again on the confirmation page",
    )
    source: Literal["web_form", "api"] = "api"
    reason: str = Field(min_length=3, max_length=2000)
    expires_in_days: int = Field(
        CONFIRM_TTL.days, ge=1, le=30, description="how long the link works"
    )


@api.post("/{hcp_id}/consents/double-opt-in", status_code=201)
def start_double_opt_in(
    hcp_id: str,
    body: DoubleOptInRequest,
    request: Request,
    container: Services,
    caller: ConsentWriter,
) -> dict[str, Any]:
    """Record a pending consent and return the confirmation link and message to send."""
    ref = container.profiles.resolve(hcp_id, viewer=caller)
    market = body.market.strip().upper()
    if caller.markets and market not in caller.markets:
        raise ForbiddenError(
            f"the market {market} is outside your markets",
            field="market",
            fix="ask for consent in one of your markets",
        )
    record, link, message = self_service(container).start_double_opt_in(
        ref,
        ConsentScope(body.channel, body.purpose, market, body.brand),
        wording_version=body.wording_version,
        wording_hash=body.wording_hash,
        wording=body.wording,
        source=ConsentSource(body.source),
        actor=actor_of(request, caller),
        reason=body.reason,
        ttl=dt.timedelta(days=body.expires_in_days),
    )
    return {
        "record": record_dict(record),
        "confirmation_url": link.url,
        "expires_at": link.expires_at,
        "message": message,
    }


# --- double opt-in: confirm (the HCP, signed link) ------------------------------------------
@pages.get("/confirm", response_class=HTMLResponse)
async def confirm_page(request: Request, container: Services, token: str | None = None) -> Response:
    """Shows the wording and a button. Changes nothing (link scanners open URLs)."""
    try:
        claims = await _run(self_service(container).confirm_page, token)
    except CounterpointError as exc:
        return _error_page(exc)
    return _page(
        "confirm.html",
        token=token,
        purpose=_words(claims.scope.purpose.value),
        channel=_words(claims.scope.channel.value),
        market=claims.scope.market,
        brand=claims.scope.brand,
        wording=claims.wording,
        wording_version=claims.wording_version,
        expires_at=f"{claims.expires_at:%Y-%m-%d %H:%M}",
    )


@pages.post("/confirm", response_class=HTMLResponse)
async def confirm(request: Request, container: Services) -> Response:
    """Records the grant (source email_link, with the request's address and agent)."""
    try:
        form = await _form(request)
        claims, recorded = await _run(
            self_service(container).confirm, _field(form, "token"), _requester(request)
        )
    except CounterpointError as exc:
        return _error_page(exc)
    return _page(
        "confirmed.html",
        recorded=recorded,
        purpose=_words(claims.scope.purpose.value),
        channel=_words(claims.scope.channel.value),
        brand=claims.scope.brand,
    )


# --- unsubscribe ----------------------------------------------------------------------
def _purposes_text(purposes: tuple[Purpose, ...] | None) -> str:
    if not purposes:
        return "any"
    return " and ".join(_words(p.value) for p in purposes)


@pages.get("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(
    request: Request, container: Services, token: str | None = None
) -> Response:
    """Shows a button. Changes nothing."""
    try:
        claims = await _run(self_service(container).unsubscribe_page, token)
    except CounterpointError as exc:
        return _error_page(exc)
    return _page(
        "unsubscribe.html",
        token=token,
        channel=_words(claims.channel.value),
        purposes=_purposes_text(claims.purposes),
    )


@pages.post("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request, container: Services, token: str | None = None) -> Response:
    """The page's button (form ``token``), or RFC 8058 one-click: the token in the query and
    the body ``List-Unsubscribe=One-Click``. Replays record nothing and still answer 200."""
    one_click = False
    try:
        form = await _form(request)
        one_click = _field(form, "List-Unsubscribe") == "One-Click"
        claims, recorded = await _run(
            self_service(container).unsubscribe,
            _field(form, "token") or token,
            _requester(request),
            one_click=one_click,
        )
    except CounterpointError as exc:
        if one_click:
            return PlainTextResponse(f"{exc.code}: {exc.detail}", status_code=exc.status)
        return _error_page(exc)
    if one_click:
        return PlainTextResponse("unsubscribed", headers={"Cache-Control": "no-store"})
    return _page(
        "unsubscribed.html",
        recorded=recorded > 0,
        channel=_words(claims.channel.value),
        purposes=_purposes_text(claims.purposes),
    )


# --- preference centre ------------------------------------------------------------------
def _preferences_page(
    view: Any, token: str | None, *, status: int = 200, notice: str | None = None
) -> HTMLResponse:
    rows = [
        (channel.value, list(cells))
        for channel, cells in itertools.groupby(view.choices, key=lambda c: c.channel)
    ]
    return _page(
        "preferences.html",
        status,
        view=view,
        token=token,
        rows=rows,
        purposes=[p.value for p in Purpose],
        frequencies=FREQUENCY_CHOICES,
        notice=notice,
    )


@pages.get("/preferences", response_class=HTMLResponse)
async def preferences_page(
    request: Request, container: Services, token: str | None = None
) -> Response:
    """The HCP's state per channel and purpose, with the wording and its version."""
    try:
        view = await _run(self_service(container).preferences, token)
    except CounterpointError as exc:
        return _error_page(exc)
    return _preferences_page(view, token)


@pages.post("/preferences", response_class=HTMLResponse)
async def save_preferences(request: Request, container: Services) -> Response:
    """Records grants and revocations for what changed only, and the frequency cap."""
    try:
        form = await _form(request)
        token = _field(form, "token")
        saved = await _run(
            self_service(container).save_preferences,
            token,
            shown=_fields(form, "shown"),
            chosen=_fields(form, "consent"),
            frequency=_field(form, "frequency"),
            wording_hash_shown=_field(form, "wording_hash"),
            requester=_requester(request),
        )
    except CounterpointError as exc:
        return _error_page(exc)
    return _page("preferences_saved.html", saved=saved, token=token)


# --- SMS keywords ---------------------------------------------------------------------
class SmsInbound(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from", min_length=2, max_length=32)
    to: str = Field(max_length=32)
    text: str = Field(max_length=2000)
    message_id: str = Field(min_length=1, max_length=200, pattern=r"^[\w.\-:@+/=]+$")


def _check_signature(secret: str | None, body: bytes, header: str | None) -> None:
    if not secret:
        raise UnauthorizedError(
            "inbound SMS is switched off: no webhook secret is configured",
            field=SIGNATURE_HEADER,
            fix="set COUNTERPOINT_SMS_WEBHOOK_SECRET and configure the same secret at the gateway",
        )
    given = (header or "").strip()
    if not given.startswith("sha256="):
        raise UnauthorizedError(
            "the request is not signed",
            field=SIGNATURE_HEADER,
            fix="send X-Counterpoint-Signature: sha256=<hex HMAC-SHA256 of the raw body>",
        )
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given[7:].lower().encode()):
        raise UnauthorizedError(
            "the signature does not match the body",
            field=SIGNATURE_HEADER,
            fix="sign the exact raw body with the shared secret (HMAC-SHA256, hex)",
        )


async def signed_sms_body(request: Request, container: Container) -> bytes:
    """The raw body of a call from the SMS gateway, bounded in size and checked against the
    shared secret (``COUNTERPOINT_SMS_WEBHOOK_SECRET``, HMAC-SHA256)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_SMS_BYTES:
        raise PayloadTooLargeError(
            "the webhook body is too large", field="body", fix="send one message per call"
        )
    body = await request.body()
    if len(body) > MAX_SMS_BYTES:
        raise PayloadTooLargeError(
            "the webhook body is too large", field="body", fix="send one message per call"
        )
    secret = container.settings.sms_webhook_secret
    _check_signature(
        secret.get_secret_value() if secret else None, body, request.headers.get(SIGNATURE_HEADER)
    )
    return body


@hooks.post("/sms/inbound")
async def sms_inbound(request: Request, container: Services) -> dict[str, Any]:
    """An inbound SMS from the gateway. STOP (and the other opt-out keywords) withdraws SMS
    consent for every purpose; other texts are acknowledged and ignored."""
    body = await signed_sms_body(request, container)
    try:
        message = SmsInbound.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationFailedError(
            f"{where}: {first['msg']}",
            field=where,
            fix='send JSON {"from", "to", "text", "message_id"}',
        ) from None
    outcome = await _run(
        self_service(container).sms_inbound,
        message.sender,
        message.text,
        message.message_id,
        _requester(request),
    )
    return {
        "status": "ok",
        "action": outcome.action,
        "keyword": outcome.keyword,
        "recorded": outcome.recorded,
    }


class SmsStatus(BaseModel):
    id: str = Field(min_length=1, max_length=300, description="the gateway's message id")
    status: ReceiptStatus
    error: str | None = Field(None, max_length=64, description="e.g. invalid_number")
    at: dt.datetime | None = None


@hooks.post("/sms/status")
async def sms_status(request: Request, container: Services) -> dict[str, Any]:
    """A delivery receipt from the SMS gateway for a message it accepted: ``delivered``, or
    ``failed`` / ``undeliverable`` (a bounce; hard when the number is bad, which suppresses
    SMS for the HCP). Signed like inbound SMS; docs/channels.md documents the body."""
    body = await signed_sms_body(request, container)
    try:
        receipt = SmsStatus.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationFailedError(
            f"{where}: {first['msg']}",
            field=where,
            fix='send JSON {"id", "status": "delivered" | "failed" | "undeliverable", "error"}',
        ) from None
    if receipt.at is not None and receipt.at.tzinfo is None:
        raise ValidationFailedError(
            "at needs a time zone", field="at", fix="e.g. 2026-11-23T12:00:00Z"
        )
    outcome = await _run(
        container.receipts.record,
        receipt.id,
        receipt.status,
        channel=Channel.SMS,
        error=receipt.error,
        at=receipt.at,
    )
    return {
        "status": "ok",
        "outbox_id": outcome.outbox_id,
        "event": outcome.event,
        "bounce_type": outcome.bounce_type,
        "recorded": outcome.recorded,
    }


router.include_router(api)
router.include_router(pages)
router.include_router(hooks)
