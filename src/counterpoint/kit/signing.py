"""Signed, expiring, purpose-bound tokens for links sent to HCPs (confirm, unsubscribe,
preferences, open and click tracking).

A token is an ``itsdangerous`` URL-safe timed signature (HMAC-SHA256, keyed with the
``secret_key`` setting) over a small JSON payload. Each purpose signs with its own salt, so a
token made for one purpose never loads as another. The signing time comes from the injected
``Clock`` (not the system time), and the payload carries its lifetime, so expiry is tested
with a fixed clock. Every token holds a random nonce: callers use it as an idempotency key so
that a second click on the same link changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr

from counterpoint.errors import CounterpointError
from counterpoint.kit.clock import Clock

__all__ = [
    "ExpiredLinkError",
    "InvalidLinkError",
    "LinkPurpose",
    "LinkSigner",
    "SignedClaims",
]

MAX_TOKEN_CHARS = 4096
"""Longer tokens are refused before any decoding (no work for oversized input)."""

_CLOCK_SKEW = dt.timedelta(minutes=5)
_RESERVED = frozenset({"n", "e"})


class InvalidLinkError(CounterpointError):
    status = 400
    code = "invalid_link"


class ExpiredLinkError(CounterpointError):
    status = 400
    code = "expired_link"


class LinkPurpose(enum.StrEnum):
    """What a token may be used for; each is its own signing salt."""

    CONFIRM = "consent-confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    TRACK_OPEN = "track-open"
    TRACK_CLICK = "track-click"


@dataclass(frozen=True, slots=True)
class SignedClaims:
    """A verified token: its claims, nonce, and when it was issued and expires."""

    purpose: LinkPurpose
    claims: Mapping[str, Any]
    nonce: str
    issued_at: dt.datetime
    expires_at: dt.datetime


class _ClockSigner(TimestampSigner):
    """A timestamp signer whose time is the injected clock's."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock.now().timestamp())


def _invalid(detail: str) -> InvalidLinkError:
    return InvalidLinkError(
        detail,
        field="token",
        fix="open the link exactly as it was sent to you, or ask for a new message",
    )


class LinkSigner:
    def __init__(self, secret_key: SecretStr | str, clock: Clock) -> None:
        secret = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
        if not secret:
            raise ValueError("the secret key for signed links is empty")
        self._clock = clock
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                secret,
                salt=purpose.value,
                signer=_ClockSigner,
                signer_kwargs={"clock": clock, "digest_method": hashlib.sha256},
            )
            for purpose in LinkPurpose
        }

    def dump(
        self,
        purpose: LinkPurpose,
        claims: Mapping[str, Any],
        *,
        ttl: dt.timedelta,
        nonce: str | None = None,
    ) -> str:
        """A token for ``purpose`` carrying ``claims`` (JSON values), valid for ``ttl``."""
        if ttl <= dt.timedelta(0):
            raise ValueError("a link's lifetime must be positive")
        clash = _RESERVED & set(claims)
        if clash:
            raise ValueError(f"claims may not use the reserved names {sorted(clash)}")
        payload = {**claims, "n": nonce or secrets.token_urlsafe(12), "e": int(ttl.total_seconds())}
        token: str = self._serializers[purpose].dumps(payload)
        return token

    def load(self, purpose: LinkPurpose, token: str | None) -> SignedClaims:
        """Verify a token made for ``purpose``.

        Raises InvalidLinkError (forged, tampered, truncated, made for another purpose, or
        malformed) or ExpiredLinkError (past its lifetime), both naming the field ``token``.
        """
        text = (token or "").strip()
        if not text:
            raise _invalid("the link has no token")
        if len(text) > MAX_TOKEN_CHARS:
            raise _invalid("the link's token is too long to be one we sent")
        try:
            payload, issued = self._serializers[purpose].loads(text, return_timestamp=True)
        except BadData:
            raise _invalid(
                "the link is not valid: it was changed, cut short, or not made by us"
            ) from None
        except (ValueError, TypeError, OverflowError):
            raise _invalid("the link is not valid: its content cannot be read") from None
        if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
            raise _invalid("the link is not valid: its content cannot be read")
        nonce, lifetime = payload.get("n"), payload.get("e")
        if not isinstance(nonce, str) or not nonce or not isinstance(lifetime, int):
            raise _invalid("the link is not valid: its content cannot be read")
        now = self._clock.now()
        if issued > now + _CLOCK_SKEW:
            raise _invalid("the link is not valid: it was issued in the future")
        expires = issued + dt.timedelta(seconds=lifetime)
        if now >= expires:
            raise ExpiredLinkError(
                f"the link expired on {expires:%Y-%m-%d %H:%M} UTC",
                field="token",
                fix="ask for a new message with a fresh link",
                extra={"expired_at": expires.isoformat()},
            )
        claims = {k: v for k, v in payload.items() if k not in _RESERVED}
        return SignedClaims(purpose, claims, nonce, issued, expires)
