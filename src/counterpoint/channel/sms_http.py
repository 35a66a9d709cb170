"""SMS through an HTTP gateway: one signed JSON POST per message.

The request (documented exactly in docs/channels.md)::

    POST <url>
    Authorization: Bearer <api_token>
    Content-Type: application/json
    Idempotency-Key: <idempotency_key>
    X-Counterpoint-Signature: t=<unix time>,v1=<hex HMAC-SHA256(signing_secret, "<t>.<body>")>

    {"to": "+4915123456789", "from": "<sender_id>", "text": "…", "client_reference": "<key>"}

A 2xx answer with ``{"id": "…"}`` is a receipt; the gateway de-duplicates by
``client_reference``, so the adapter is idempotent. Inbound STOP webhooks from the gateway
are verified by the public API (``/hooks/sms/inbound``), not here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.channel.webhook import (
    SIGNATURE_HEADER,
    HttpTargetConfig,
    encode_payload,
    http_client,
    http_failure,
    not_attempted,
    signature_header,
    transport_failure,
)
from counterpoint.event.canonical import Channel

__all__ = ["SmsHttpAdapter", "SmsHttpConfig", "sms_request_body"]

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SENDER = re.compile(r"^(\+[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11})$")
_UNREACHABLE = frozenset({"connection", "timeout", "network"})


class SmsHttpConfig(HttpTargetConfig):
    api_token: SecretStr = Field(description="sent as Authorization: Bearer <api_token>")
    signing_secret: SecretStr = Field(
        description="HMAC-SHA256 key of X-Counterpoint-Signature, at least 16 characters"
    )
    sender_id: str = Field(
        description="E.164 number or alphanumeric sender id (at most 11 letters and digits)"
    )

    @field_validator("api_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the API token is empty")
        return value

    @field_validator("signing_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the signing secret must be at least 16 characters long")
        return value

    @field_validator("sender_id")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _SENDER.match(value):
            raise ValueError("write an E.164 number (+4915…) or up to 11 letters and digits")
        return value


def sms_request_body(message: OutboundMessage, sender_id: str) -> dict[str, str]:
    """The JSON body of the gateway request; PermanentDeliveryError for a bad message."""
    number = (message.address or "").strip()
    if not number:
        raise PermanentDeliveryError("no phone number", code="no_address")
    if not E164.match(number):
        raise PermanentDeliveryError(
            "the phone number is not in E.164 form (+ country code and number)",
            code="invalid_number",
            hard_bounce=True,
        )
    if not message.text.strip():
        raise PermanentDeliveryError("the message has no text", code="bad_message")
    return {
        "to": number,
        "from": sender_id,
        "text": message.text,
        "client_reference": message.idempotency_key,
    }


class SmsHttpAdapter:
    """Sends SMS through one gateway over a reused HTTP connection."""

    name: ClassVar[str] = "sms_http"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.SMS})
    idempotent: ClassVar[bool] = True
    Config: ClassVar[type[AdapterConfig]] = SmsHttpConfig

    def __init__(self, config: SmsHttpConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context
        self._client = http_client(config)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmsHttpAdapter(url={self.config.url!r})"

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        results: list[Receipt | DeliveryError] = []
        down: DeliveryError | None = None
        with self._lock:
            for message in messages:
                if message.channel not in self.channels:
                    results.append(
                        PermanentDeliveryError(
                            f"the sms_http adapter does not carry {message.channel}",
                            code="channel",
                        )
                    )
                    continue
                if down is not None:
                    results.append(not_attempted(down))
                    continue
                result = self._send(message)
                if isinstance(result, TransientDeliveryError) and result.code in _UNREACHABLE:
                    down = result
                results.append(result)
        return results

    def _send(self, message: OutboundMessage) -> Receipt | DeliveryError:
        try:
            body = encode_payload(sms_request_body(message, self.config.sender_id))
        except DeliveryError as exc:
            return exc
        timestamp = int(self._context.clock.now().timestamp())
        headers = {
            "Authorization": f"Bearer {self.config.api_token.get_secret_value()}",
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: signature_header(self.config.signing_secret, body, timestamp),
        }
        try:
            response = self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_failure(exc, self.config.url)
        failure = http_failure(response)
        if failure is not None:
            return failure
        return _receipt(response)

    def close(self) -> None:
        self._client.close()


def _receipt(response: httpx.Response) -> Receipt:
    """The gateway's message id; a 2xx without one is still accepted (noted in detail)."""
    try:
        body = response.json() if len(response.content) <= 4096 else None
    except ValueError:
        body = None
    found = body.get("id") if isinstance(body, dict) else None
    if isinstance(found, str | int) and str(found):
        return Receipt(provider_id=str(found)[:300])
    return Receipt(detail=f"the gateway answered {response.status_code} without an id")
