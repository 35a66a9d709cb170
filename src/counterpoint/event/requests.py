"""A Segment HTTP request, as received, to canonical events and quarantine entries. No I/O.

``map_request`` checks the body's size and encoding, decodes it and maps every message with
``segment.map_message``; a refused message becomes a quarantine entry and an entry of the
response's ``errors``. It needs nothing but its arguments, so it runs alike in the API process
and in the ingestion's mapping processes (``event.mappers``), which return the events as the
log's Arrow table (``map_request_arrow``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa

from counterpoint.errors import PayloadTooLargeError, ValidationFailedError
from counterpoint.event.arrow import events_to_arrow
from counterpoint.event.canonical import LogEvent
from counterpoint.event.keys import KeyInfo
from counterpoint.event.log import QuarantineEntry
from counterpoint.event.segment import BatchContext, Rejection, map_message, parse_timestamp

__all__ = [
    "ArrowRequest",
    "MalformedBodyError",
    "MappedRequest",
    "RequestLimits",
    "RequestToMap",
    "basic_user",
    "check_body_size",
    "decode_request",
    "map_messages",
    "map_request",
    "map_request_arrow",
]


class MalformedBodyError(ValidationFailedError):
    code = "malformed_json"


class _Envelope(msgspec.Struct):
    batch: list[msgspec.Raw] = []
    sentAt: str | None = None  # noqa: N815 - Segment's field name
    writeKey: str | None = None  # noqa: N815


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_event_bytes: int
    max_batch_bytes: int


@dataclass(frozen=True, slots=True)
class RequestToMap:
    """A tracking request as the API process received it, with what it knows about it."""

    body: bytes
    content_encoding: str | None
    implied_type: str | None
    """``None`` for /v1/batch; the call's type for /v1/track, /v1/identify, …"""
    key: KeyInfo
    """The write key, authenticated from the ``Authorization`` header."""
    received_at: dt.datetime
    """The API process's clock."""
    limits: RequestLimits


@dataclass(frozen=True, slots=True)
class MappedRequest:
    events: list[LogEvent]
    quarantine: list[QuarantineEntry]
    errors: list[dict[str, Any]]
    """The response's ``errors``: one per refused message, with its index in the batch."""


@dataclass(frozen=True, slots=True)
class ArrowRequest:
    """``MappedRequest`` with the events as the log's Arrow table (``LOG_SCHEMA``)."""

    events: pa.Table
    quarantine: list[QuarantineEntry]
    errors: list[dict[str, Any]]


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (where SDKs put the write key)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def check_body_size(body: bytes, limits: RequestLimits) -> None:
    if len(body) > limits.max_batch_bytes:
        raise PayloadTooLargeError(
            f"the request body is {len(body)} bytes; the limit is {limits.max_batch_bytes}",
            field="body",
            fix="send at most 500 KB per batch (split it) and 32 KB per event",
        )


def _plain_body(body: bytes, content_encoding: str | None, limits: RequestLimits) -> bytes:
    check_body_size(body, limits)
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ValidationFailedError(
            f"unsupported Content-Encoding {encoding!r}",
            field="Content-Encoding",
            fix="send the body plain or gzip-compressed",
        )
    limit = limits.max_batch_bytes
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip, size-bounded
        plain = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedBodyError(
            "the body is not valid gzip", field="body", fix="compress the body with gzip"
        ) from None
    if len(plain) <= limit and not inflater.unconsumed_tail and not inflater.eof:
        raise MalformedBodyError(
            "the gzip body is truncated (its end and checksum are missing)",
            field="body",
            fix="send the whole gzip stream",
        )
    if len(plain) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(
            f"the decompressed body exceeds {limit} bytes",
            field="body",
            fix="send at most 500 KB per batch (after decompression)",
        )
    return plain


def decode_request(
    body: bytes, content_encoding: str | None, implied_type: str | None, limits: RequestLimits
) -> tuple[list[msgspec.Raw], str | None, str | None]:
    """The messages of a request body, its ``sentAt`` and the write key it names, if any.

    ``implied_type`` is ``None`` for /v1/batch, else the call's type (/v1/track, …)."""
    plain = _plain_body(body, content_encoding, limits)
    try:
        if implied_type is None:
            envelope = msgspec.json.decode(plain, type=_Envelope)
            return envelope.batch, envelope.sentAt, envelope.writeKey
        single = msgspec.json.decode(plain, type=dict[str, Any])
    except msgspec.ValidationError as exc:
        raise MalformedBodyError(
            f"the body does not have the expected shape: {exc}",
            field="batch" if implied_type is None else "body",
            fix='send {"batch": [ … events … ]}'
            if implied_type is None
            else "send one JSON object (the event)",
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBodyError(
            f"the body is not valid JSON: {exc}", field="body", fix="send UTF-8 JSON"
        ) from None
    sent_at = single.get("sentAt")
    write_key = single.get("writeKey")
    return (
        [msgspec.Raw(plain)],
        sent_at if isinstance(sent_at, str) else None,
        write_key if isinstance(write_key, str) else None,
    )


def _parse_time(value: str | None) -> dt.datetime | None:
    """The batch-level ``sentAt``; an unreadable one is ignored (no skew correction)."""
    if value is None:
        return None
    try:
        return parse_timestamp(value, "sentAt")
    except ValueError:
        return None


def map_messages(
    messages: list[msgspec.Raw],
    *,
    implied_type: str | None,
    sent_at: str | None,
    key: KeyInfo,
    received_at: dt.datetime,
    limits: RequestLimits,
) -> MappedRequest:
    ctx = BatchContext(
        received_at=received_at,
        sent_at=_parse_time(sent_at),
        source=key.id,
        max_event_bytes=limits.max_event_bytes,
        trusted=key.trusted,  # consent grants only from trusted keys (docs/consent.md)
    )
    events: list[LogEvent] = []
    quarantine: list[QuarantineEntry] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(messages):
        data = bytes(raw)
        mapped: LogEvent | Rejection
        try:
            decoded: object = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            mapped = Rejection(
                "malformed_json", None, "the event is not valid UTF-8 JSON", "send UTF-8 JSON"
            )
        else:
            mapped = map_message(decoded, len(data), ctx, implied_type)
        if isinstance(mapped, Rejection):
            where = f"batch[{index}]" if implied_type is None else ""
            path = ".".join(p for p in (where, mapped.field or "") if p)
            quarantine.append(
                QuarantineEntry(
                    received_at=received_at,
                    source=key.id,
                    reason_code=mapped.reason_code,
                    field=path or None,
                    detail=mapped.detail,
                    fix=mapped.fix,
                    raw=data.decode("utf-8", "replace"),
                )
            )
            errors.append(
                {
                    "index": index,
                    "code": mapped.reason_code,
                    "field": path or None,
                    "detail": mapped.detail,
                    "fix": mapped.fix,
                }
            )
        else:
            events.append(mapped)
    return MappedRequest(events, quarantine, errors)


def map_request(request: RequestToMap) -> MappedRequest:
    """A request whose write key is known (from its ``Authorization`` header) to events."""
    messages, sent_at, _ = decode_request(
        request.body, request.content_encoding, request.implied_type, request.limits
    )
    return map_messages(
        messages,
        implied_type=request.implied_type,
        sent_at=sent_at,
        key=request.key,
        received_at=request.received_at,
        limits=request.limits,
    )


def map_request_arrow(request: RequestToMap) -> ArrowRequest:
    """``map_request`` with the events built into the log's Arrow table (a mapping process's
    work: the table crosses back to the API process as a few buffers, not one object per
    value)."""
    mapped = map_request(request)
    return ArrowRequest(events_to_arrow(mapped.events), mapped.quarantine, mapped.errors)
