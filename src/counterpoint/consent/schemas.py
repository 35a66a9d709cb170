"""Consent arriving as events: which track events are consent records, how their properties
are read and checked, and who may send a grant. Pure, no I/O. See docs/consent.md.

Ingestion (``counterpoint.event.segment``) calls ``check_consent_event`` and quarantines what
it refuses; the consent consumer calls ``read_consent_event`` on what the log holds, so both
apply the same rules. ``grant_trusted`` is the one rule deciding whether a source may grant:
a write key used in browsers is public, so only sources marked trusted may.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentState,
    Purpose,
    consent_channel,
)
from counterpoint.event.canonical import Channel

__all__ = [
    "CONSENT_EVENTS",
    "GRANT_STATES",
    "UNSUBSCRIBE_SOURCE",
    "ConsentEventProblem",
    "ConsentEventSpec",
    "check_consent_event",
    "consent_state_of",
    "grant_trusted",
    "read_consent_event",
    "read_purpose",
]

UNSUBSCRIBE_SOURCE = "consent-links"
"""The source of ``unsubscribed`` events written by the HCP's own pages and SMS keywords,
after the withdrawal is in the ledger (ingestion never gives an event this source: write keys
and import files have their own), so the consent consumer does not record it twice."""

CONSENT_EVENTS: Final[Mapping[str, ConsentState]] = {
    "consent granted": ConsentState.GRANTED,
    "consent pending": ConsentState.PENDING,
    "consent denied": ConsentState.DENIED,
    "consent revoked": ConsentState.REVOKED,
}
"""Track event names (compared case-insensitively) that are consent records."""

GRANT_STATES: Final = frozenset({ConsentState.GRANTED, ConsentState.PENDING})
"""States that open a channel (or start to): only trusted sources may send them as events."""

_CODE: Final = re.compile(r"^[\w.\-]{1,64}$")
_HASH: Final = re.compile(r"^[0-9a-f]{64}$")
_CONSENT_CHANNELS: Final = {c.value: c for c in ConsentChannel}
_CHANNELS: Final = {c.value: c for c in Channel}
_PURPOSES: Final = {p.value: p for p in Purpose}
_LIMITS: Final = {"wording_version": 64, "captured_by": 200, "evidence": 2000}
_CHANNEL_FIX: Final = "send properties.channel: one of " + ", ".join(_CONSENT_CHANNELS)
_PURPOSE_FIX: Final = "send properties.purpose: one of " + ", ".join(_PURPOSES)
_STAMP_FIX: Final = "send ISO 8601, e.g. 2027-11-23T00:00:00Z"


@dataclass(frozen=True, slots=True)
class ConsentEventProblem:
    """Why a consent event cannot become a ledger record (a quarantine reason)."""

    code: str
    field: str
    detail: str
    fix: str


@dataclass(frozen=True, slots=True)
class ConsentEventSpec:
    """A consent event read as the ledger record it becomes."""

    state: ConsentState
    scope: ConsentScope
    wording_version: str | None
    wording_hash: str | None
    expires_at: dt.datetime | None
    captured_by: str | None
    evidence: str | None


def consent_state_of(event_name: str | None) -> ConsentState | None:
    """The state a track event name records, or None when it is not a consent event."""
    if not event_name:
        return None
    return CONSENT_EVENTS.get(event_name.strip().lower())


def grant_trusted(trusted: bool | None) -> bool:
    """Whether a source may send consent grants: only one marked trusted. Fails closed:
    anything but ``True`` (not trusted, or unknown) is untrusted."""
    return trusted is True


def _untrusted(state: ConsentState) -> ConsentEventProblem:
    return ConsentEventProblem(
        "untrusted_consent_grant",
        "event",
        f"a consent {state.value} event came from a write key that is not trusted "
        "(browser keys are public: anyone could grant consent with them)",
        "send grants from a trusted server-side source "
        "(`counterpoint keys create NAME --trusted`), or record them through the consent API",
    )


def _bad(field: str, detail: str, fix: str) -> ConsentEventProblem:
    return ConsentEventProblem("invalid_consent", field, detail, fix)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _text(props: Mapping[str, object], name: str) -> str | ConsentEventProblem | None:
    value = props.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        return _bad(f"properties.{name}", f"properties.{name} is not text", f"send {name} as text")
    text = value.strip()
    limit = _LIMITS.get(name, 200)
    if len(text) > limit:
        return _bad(
            f"properties.{name}",
            f"properties.{name} is longer than {limit} characters",
            f"shorten {name} to at most {limit} characters",
        )
    return text or None


def _channel(value: object, fallback: Channel | None) -> ConsentChannel | ConsentEventProblem:
    if value is None and fallback is not None:
        mapped = consent_channel(fallback)
        if mapped is not None:
            return mapped
    if not isinstance(value, str) or not value.strip():
        return _bad("properties.channel", "a consent event has no channel", _CHANNEL_FIX)
    code = value.strip().lower()
    found = _CONSENT_CHANNELS.get(code)
    if found is not None:
        return found
    interaction = _CHANNELS.get(code)
    mapped = consent_channel(interaction) if interaction is not None else None
    if mapped is None:
        return _bad(
            "properties.channel",
            f"properties.channel {_shown(value)} is not a channel consent is given for",
            _CHANNEL_FIX,
        )
    return mapped


def read_purpose(value: object, *, required: bool) -> Purpose | ConsentEventProblem | None:
    """``properties.purpose`` as a ``Purpose`` (any case); None when absent and optional."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            return _bad("properties.purpose", "a consent event has no purpose", _PURPOSE_FIX)
        return None
    found = _PURPOSES.get(value.strip().lower()) if isinstance(value, str) else None
    if found is None:
        return _bad(
            "properties.purpose",
            f"properties.purpose {_shown(value)} is not a consent purpose",
            _PURPOSE_FIX,
        )
    return found


def _expiry(value: object, occurred_at: dt.datetime) -> dt.datetime | ConsentEventProblem | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return _bad("properties.expires_at", "properties.expires_at is not a timestamp", _STAMP_FIX)
    try:
        stamp = dt.datetime.fromisoformat(value.strip())
        stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return _bad(
            "properties.expires_at",
            f"properties.expires_at {_shown(value)} is not ISO 8601",
            _STAMP_FIX,
        )
    if stamp <= occurred_at:
        return _bad(
            "properties.expires_at",
            "properties.expires_at is not after the time the consent was given",
            "give an expiry after the event's timestamp, or leave it out",
        )
    return stamp


def read_consent_event(
    state: ConsentState,
    properties: Mapping[str, object],
    *,
    market: str | None,
    brand: str | None,
    occurred_at: dt.datetime,
    channel: Channel | None = None,
) -> ConsentEventSpec | ConsentEventProblem:
    """The ledger record a consent event stands for, or its first problem.

    ``market`` and ``brand`` are the event's columns (already checked by ingestion);
    ``channel`` is the event's interaction channel, used when ``properties.channel`` is absent.
    """
    found = _channel(properties.get("channel"), channel)
    if isinstance(found, ConsentEventProblem):
        return found
    purpose = read_purpose(properties.get("purpose"), required=True)
    if purpose is None or isinstance(purpose, ConsentEventProblem):
        return purpose or _bad("properties.purpose", "no purpose", _PURPOSE_FIX)
    if market is None:
        return _bad(
            "properties.market",
            "a consent event has no market",
            "send properties.market, the ISO 3166-1 alpha-2 code the consent is for (e.g. DE)",
        )
    if brand is not None and not _CODE.fullmatch(brand):
        return _bad(
            "properties.brand",
            f"properties.brand {_shown(brand)} is not a brand code",
            "use 1-64 letters, digits, . _ - (or leave it out for all brands)",
        )
    texts: dict[str, str | None] = {}
    for name in ("content_type", "wording_version", "wording_hash", "captured_by", "evidence"):
        value = _text(properties, name)
        if isinstance(value, ConsentEventProblem):
            return value
        texts[name] = value
    content_type = texts["content_type"]
    if content_type is not None and not _CODE.fullmatch(content_type):
        return _bad(
            "properties.content_type",
            f"properties.content_type {_shown(content_type)} is not a content type code",
            "use 1-64 letters, digits, . _ - (or leave it out for all content types)",
        )
    wording_hash = texts["wording_hash"]
    if wording_hash is not None:
        wording_hash = wording_hash.lower()
        if not _HASH.fullmatch(wording_hash):
            return _bad(
                "properties.wording_hash",
                "properties.wording_hash is not a SHA-256 hex digest",
                "send the SHA-256 (64 hex digits) of the exact wording shown",
            )
    if state in GRANT_STATES and not texts["wording_version"]:
        return _bad(
            "properties.wording_version",
            "a grant needs the version of the wording the HCP agreed to",
            "send properties.wording_version (and wording_hash) of the consent text shown",
        )
    expires_at = _expiry(properties.get("expires_at"), occurred_at)
    if isinstance(expires_at, ConsentEventProblem):
        return expires_at
    return ConsentEventSpec(
        state=state,
        scope=ConsentScope(found, purpose, market, brand, content_type),
        wording_version=texts["wording_version"],
        wording_hash=wording_hash,
        expires_at=expires_at,
        captured_by=texts["captured_by"],
        evidence=texts["evidence"],
    )


def check_consent_event(
    state: ConsentState,
    properties: Mapping[str, object],
    *,
    trusted: bool | None,
    market: str | None,
    brand: str | None,
    occurred_at: dt.datetime,
) -> ConsentEventProblem | None:
    """Ingestion's check of a consent event: a grant from an untrusted source is refused
    before anything else; then the properties must make a valid ledger record."""
    if state in GRANT_STATES and not grant_trusted(trusted):
        return _untrusted(state)
    found = read_consent_event(
        state, properties, market=market, brand=brand, occurred_at=occurred_at
    )
    return found if isinstance(found, ConsentEventProblem) else None
