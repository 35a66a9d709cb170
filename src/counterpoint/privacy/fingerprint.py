"""Keyed fingerprints of erased identifiers, pseudonyms, and scrubbing of erased events.

Pure, no I/O. A fingerprint is HMAC-SHA256 of a canonical identifier key (``npi:…``,
``email:…``, ``phone:…``, or ``hcp:<profile id>``) under the deployment's secret key: it
recognises the identifier when it comes back without storing it, and cannot be reversed or
tested by anyone without the key. See docs/privacy.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable

from counterpoint.event.canonical import LogEvent

__all__ = [
    "ERASED_PREFIX",
    "fingerprint",
    "pseudonym_for",
    "pseudonymise_key",
    "scrub_event",
    "scrub_text",
]

ERASED_PREFIX = "erased:"
_SHORT = 16


def fingerprint(key: str, secret: str) -> str:
    """HMAC-SHA256 (hex) of a canonical identifier key."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def pseudonym_for(fingerprints: Iterable[str]) -> str:
    """The pseudonym that replaces an erased person: ``erased:<short fingerprint>``.

    Derived from the smallest fingerprint, so the same identifiers give the same pseudonym."""
    ordered = sorted(fingerprints)
    if not ordered:
        raise ValueError("a pseudonym needs at least one fingerprint")
    return f"{ERASED_PREFIX}{ordered[0][:_SHORT]}"


def pseudonymise_key(key: str, secret: str) -> str:
    """An identifier key as audit records may hold it: its type and a keyed digest.

    ``npi:1234567893`` becomes ``npi:#3fa9…`` (20 hex digits): the same identifier always
    gives the same text, so audit records stay comparable, but the value is not readable."""
    kind, sep, _ = key.partition(":")
    prefix = kind if sep else "id"
    return f"{prefix}:#{fingerprint(key, secret)[:20]}"


def scrub_text(text: str | None, needles: Iterable[str]) -> str | None:
    """``text`` with every occurrence of the needles (case-insensitive) replaced."""
    if text is None:
        return None
    out = text
    for needle in sorted({n for n in needles if len(n) >= 3}, key=len, reverse=True):
        lowered, target = out.lower(), needle.lower()
        parts: list[str] = []
        start = 0
        while (at := lowered.find(target, start)) >= 0:
            parts.append(out[start:at])
            parts.append("[erased]")
            start = at + len(target)
        parts.append(out[start:])
        out = "".join(parts)
    return out


def scrub_event(event: LogEvent, pseudonym: str) -> LogEvent:
    """An event of an erased person as the log keeps it: the aggregates, not the person.

    Kept: kind, time, source, channel, action, brand, content id, slide, actor type, function,
    market, synthetic. Removed: the subject (replaced by the pseudonym), the anonymous id, the
    event name, the acting user's id and the payload (traits, properties, context)."""
    return dataclasses.replace(
        event,
        subject=pseudonym,
        anonymous_id=None,
        event_name=None,
        actor_id=None,
        payload={},
    )
