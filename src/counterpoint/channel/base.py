"""One interface for every way a message leaves Counterpoint: the channel adapter.

An adapter turns an ``OutboundMessage`` (already rendered, already allowed by the guard) into
a delivery on its medium: an SMTP transaction, an SMS gateway request, a signed webhook, a rep
inbox row, a line in an export file. The delivery worker (``counterpoint.delivery``) owns
retries, dead letters and idempotency bookkeeping; an adapter only says what happened:

- it returns a ``Receipt`` when the medium accepted the message;
- it raises ``TransientDeliveryError`` when the medium certainly did *not* take the message
  and a later attempt may succeed (connection refused, SMTP 4xx, HTTP 429/5xx before a body
  was accepted);
- it raises ``PermanentDeliveryError`` when no retry can succeed (SMTP 5xx on the recipient,
  HTTP 4xx, no address); ``hard_bounce=True`` when the address itself is bad, which
  suppresses it.

Adapters are registered through the ``counterpoint.channels`` entry-point group and
configured by a typed pydantic model (``Config``); secrets are ``SecretStr`` and never
appear in logs, errors or ``repr``. The adapters shipped with Counterpoint, their settings
and what each sends are in docs/channels.md; the worker that drives them in docs/delivery.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import CounterpointError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterConfig",
    "AdapterContext",
    "ChannelAdapter",
    "DeliveryError",
    "OutboundMessage",
    "PermanentDeliveryError",
    "Receipt",
    "TransientDeliveryError",
    "UnknownAdapterError",
    "adapter_classes",
]

ENTRY_POINT_GROUP = "counterpoint.channels"


class AdapterConfig(BaseModel):
    """Base of every adapter's configuration: typed, immutable, unknown keys refused.

    Validation errors never echo the input (which may hold a secret): they name the key and
    say what is wrong with it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the running platform lends an adapter: the operational database (internal
    channels such as the rep inbox write there), the data directory (export files), the
    clock."""

    sessions: sessionmaker[Session]
    data_dir: Path
    clock: Clock


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One rendered message for one HCP on one channel.

    ``idempotency_key`` is stable across retries of the same outbox entry: adapters pass it
    on wherever the medium supports one (``Idempotency-Key`` header, the SMTP ``Message-ID``,
    the primary key of an internal row), so a receiver that de-duplicates never sees two.
    ``address`` is the e-mail address, E.164 phone number or postal block the medium needs
    (None for internal channels that address the HCP by id).
    """

    outbox_id: str
    idempotency_key: str
    channel: Channel
    hcp_id: str
    address: str | None
    subject: str | None = None
    text: str = ""
    html: str | None = None
    sender: str | None = None  # display name and address, e.g. "Dr Rep <rep@pharma.example>"
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    content_id: str | None = None  # the approved variant sent
    approval_code: str | None = None  # the MLR job code the piece carries
    brand: str | None = None
    market: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)  # rep, journey, campaign …
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The medium accepted the message. ``provider_id`` is its id there (SMTP Message-ID,
    gateway message id, inbox row id); ``delivered`` is True when acceptance *is* delivery
    (internal channels), so the worker also records a ``delivered`` event."""

    provider_id: str | None = None
    delivered: bool = False
    detail: str | None = None


class DeliveryError(Exception):
    """Base of adapter failures. ``reason`` is short, safe to store and show (no secrets)."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # the medium's own status, e.g. "550", "http_503"


class TransientDeliveryError(DeliveryError):
    """Not delivered; a later attempt may succeed (retried with backoff and jitter)."""


class PermanentDeliveryError(DeliveryError):
    """Not delivered and never will be (dead letter). ``hard_bounce``: the address is bad."""

    def __init__(self, reason: str, *, code: str | None = None, hard_bounce: bool = False) -> None:
        super().__init__(reason, code=code)
        self.hard_bounce = hard_bounce


class UnknownAdapterError(CounterpointError):
    status = 400
    code = "unknown_channel_adapter"


@runtime_checkable
class ChannelAdapter(Protocol):
    """What the delivery worker needs of an adapter.

    ``name`` is the entry-point name; ``channels`` the Counterpoint channels it can carry;
    ``idempotent`` is True when the receiving side de-duplicates by ``idempotency_key``
    (then the worker may retry an attempt whose outcome is unknown after a crash; otherwise
    such an attempt goes to the dead letters for a person to decide, and is never re-sent
    automatically). Adapters are built as ``cls(config, context)`` with a validated
    ``Config`` instance and an ``AdapterContext``. ``send_many`` delivers a batch over one
    connection where the medium allows it and returns, per message, a ``Receipt`` or the
    ``DeliveryError`` it met.
    """

    name: ClassVar[str]
    channels: ClassVar[frozenset[Channel]]
    idempotent: ClassVar[bool]
    Config: ClassVar[type[AdapterConfig]]

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]: ...

    def close(self) -> None: ...


def adapter_classes() -> dict[str, type[ChannelAdapter]]:
    """Every adapter installed, by entry-point name (ours and third parties')."""
    found: dict[str, type[ChannelAdapter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found
