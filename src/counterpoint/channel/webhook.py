"""Signed outbound webhooks: one HTTP POST of the message as JSON per message.

The body is ``message_payload`` (documented in docs/channels.md); the request carries
``Idempotency-Key`` and ``X-Counterpoint-Signature: t=<unix time>,v1=<hex>``, where the hex is
HMAC-SHA256 under the shared secret of ``f"{t}.{body}"``. Receivers check it with
``verify_signature``. The same signing scheme, the HTTP client settings and the mapping of
HTTP outcomes to delivery errors are shared with the SMS gateway adapter (``sms_http``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
from pydantic import Field, FilePath, SecretStr, field_validator

from counterpoint import __version__
from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.event.canonical import Channel

__all__ = [
    "SIGNATURE_HEADER",
    "HttpTargetConfig",
    "WebhookAdapter",
    "WebhookConfig",
    "encode_payload",
    "http_client",
    "http_failure",
    "message_payload",
    "not_attempted",
    "sign",
    "signature_header",
    "transport_failure",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Counterpoint-Signature"
_MAX_HEADER = 1024
_BAD_ADDRESS = frozenset({"invalid_number", "invalid_address"})
_TRANSIENT_STATUS = frozenset({408, 425, 429})
_ERROR_TEXT = re.compile(r"^[\w.\-]{1,64}$")


# --- signing ---------------------------------------------------------------------------------


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def _bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(secret: str | bytes | SecretStr, body: bytes | str, timestamp: int) -> str:
    """Hex HMAC-SHA256 under ``secret`` of ``f"{timestamp}.{body}"``."""
    signed = str(timestamp).encode() + b"." + _bytes(body)
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes | SecretStr, body: bytes | str, timestamp: int) -> str:
    """The value of ``X-Counterpoint-Signature`` for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify_signature(
    secret: str | bytes | SecretStr,
    header: str | None,
    body: bytes | str,
    now: dt.datetime | float,
    tolerance_s: float = 300,
) -> bool:
    """Whether ``header`` is a valid ``X-Counterpoint-Signature`` of the raw ``body``.

    True only when the header holds a timestamp within ``tolerance_s`` of ``now`` (a
    datetime or Unix seconds) and one ``v1`` HMAC that matches (several ``v1`` values are
    allowed while a secret is being rotated). Never raises on malformed input.
    """
    if not header or len(header) > _MAX_HEADER:
        return False
    stamps: list[str] = []
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value.strip())
        elif name == "v1":
            given.append(value.strip().lower())
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not given:
        return False
    timestamp = int(stamps[0])
    current = now.timestamp() if isinstance(now, dt.datetime) else float(now)
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).encode()
    return any(hmac.compare_digest(expected, v.encode("ascii", "replace")) for v in given)


# --- the message as JSON ---------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not JSON")


def message_payload(message: OutboundMessage) -> dict[str, Any]:
    """The message as the JSON object webhooks (and the console file) carry."""
    return {
        "idempotency_key": message.idempotency_key,
        "outbox_id": message.outbox_id,
        "channel": message.channel.value,
        "hcp_id": message.hcp_id,
        "address": message.address,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "sender": message.sender,
        "headers": dict(message.headers),
        "content_id": message.content_id,
        "approval_code": message.approval_code,
        "brand": message.brand,
        "market": message.market,
        "metadata": dict(message.metadata),
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; PermanentDeliveryError when a value (in metadata) is not JSON."""
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_value)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise PermanentDeliveryError(
            f"the message cannot be written as JSON ({str(exc)[:120]})", code="bad_message"
        ) from None


# --- HTTP ------------------------------------------------------------------------------------


class HttpTargetConfig(AdapterConfig):
    """Where an HTTP adapter posts, and how it trusts the server."""

    url: str = Field(
        description="http(s) URL the adapter POSTs to; no credentials in it", max_length=2000
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="connect, read and write timeout")
    verify: bool = Field(True, description="verify the server's TLS certificate")
    ca_file: FilePath | None = Field(
        None, description="PEM file of the CA(s) to trust instead of the system's"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ValueError(
                "not a URL; write e.g. https://hooks.example.com/counterpoint"
            ) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("use an http:// or https:// URL with a host")
        if url.userinfo:
            raise ValueError("put no credentials in the URL; use the secret settings instead")
        return value


def _tls(config: HttpTargetConfig) -> ssl.SSLContext | bool:
    if config.ca_file is None:
        return config.verify
    context = ssl.create_default_context(cafile=str(config.ca_file))
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def http_client(config: HttpTargetConfig) -> httpx.Client:
    """A client kept for the adapter's life (connection reuse); no redirects followed."""
    return httpx.Client(
        timeout=httpx.Timeout(config.timeout_s),
        verify=_tls(config),
        follow_redirects=False,
        headers={"User-Agent": f"counterpoint/{__version__}"},
    )


def _error_code(response: httpx.Response) -> str | None:
    """The ``error`` member of a small JSON error body, when it is a plain word."""
    if len(response.content) > 4096:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and _ERROR_TEXT.match(error) else None


def http_failure(response: httpx.Response) -> DeliveryError | None:
    """None for a 2xx answer, else the delivery error it means.

    408, 425, 429 and 5xx are transient; any other status is permanent, and a hard bounce
    when the receiver answers 400 or 422 with ``{"error": "invalid_number"}`` or
    ``{"error": "invalid_address"}``.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    code = f"http_{status}"
    if status in _TRANSIENT_STATUS or status >= 500:
        wait = response.headers.get("retry-after", "")
        hint = f", retry after {wait[:20]}" if wait else ""
        return TransientDeliveryError(f"the receiver answered {status}{hint}", code=code)
    error = _error_code(response)
    return PermanentDeliveryError(
        f"the receiver refused the message ({status}{': ' + error if error else ''})",
        code=code,
        hard_bounce=status in (400, 422) and error in _BAD_ADDRESS,
    )


def transport_failure(exc: httpx.HTTPError, url: str) -> TransientDeliveryError:
    """A network failure (refused, reset, timed out, TLS): the attempt may be repeated."""
    host = httpx.URL(url).host
    if isinstance(exc, httpx.TimeoutException):
        return TransientDeliveryError(f"{host} did not answer in time", code="timeout")
    if isinstance(exc, httpx.ConnectError):
        detail = str(exc)[:160] or type(exc).__name__
        return TransientDeliveryError(f"could not connect to {host}: {detail}", code="connection")
    return TransientDeliveryError(
        f"the exchange with {host} failed: {type(exc).__name__}", code="network"
    )


def not_attempted(cause: DeliveryError) -> TransientDeliveryError:
    """For the rest of a batch once the receiver is unreachable: not tried, try later."""
    return TransientDeliveryError(f"not attempted: {cause.reason}", code=cause.code)


# --- the adapter -----------------------------------------------------------------------------


class WebhookConfig(HttpTargetConfig):
    secret: SecretStr = Field(description="shared HMAC-SHA256 key, at least 16 characters")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the secret must be at least 16 characters long")
        return value


class WebhookAdapter:
    """POSTs each message, signed, to one URL; the receiver de-duplicates by the key."""

    name: ClassVar[str] = "webhook"
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    idempotent: ClassVar[bool] = True
    Config: ClassVar[type[AdapterConfig]] = WebhookConfig

    def __init__(self, config: WebhookConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context
        self._client = http_client(config)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookAdapter(url={self.config.url!r})"

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        results: list[Receipt | DeliveryError] = []
        down: DeliveryError | None = None
        with self._lock:
            for message in messages:
                if down is not None:
                    results.append(not_attempted(down))
                    continue
                result = self._send(message)
                if isinstance(result, TransientDeliveryError) and result.code in (
                    "connection",
                    "timeout",
                    "network",
                ):
                    down = result
                results.append(result)
        return results

    def _send(self, message: OutboundMessage) -> Receipt | DeliveryError:
        try:
            body = encode_payload(message_payload(message))
        except DeliveryError as exc:
            return exc
        timestamp = int(self._context.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: signature_header(self.config.secret, body, timestamp),
        }
        try:
            response = self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_failure(exc, self.config.url)
        failure = http_failure(response)
        if failure is not None:
            return failure
        return Receipt(provider_id=_answered_id(response) or message.idempotency_key)

    def close(self) -> None:
        self._client.close()


def _answered_id(response: httpx.Response) -> str | None:
    """The receiver's ``id`` for the message, when it answered one."""
    if not response.content or len(response.content) > 4096:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    found = body.get("id") if isinstance(body, dict) else None
    return str(found)[:300] if isinstance(found, str | int) and str(found) else None
