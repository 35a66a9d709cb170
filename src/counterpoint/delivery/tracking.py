"""Open and click tracking: signed pixel and redirect links, and the events they record.

- open pixel: ``{base}/t/o/{token}.gif``; click: ``{base}/t/c/{token}`` → 303 to the URL
  signed in the token (only http/https URLs are ever signed or followed, so the redirect is
  never an open one);
- tokens are signed by ``kit.signing`` (purposes TRACK_OPEN and TRACK_CLICK, separate salts)
  and live long (365 days by default): messages are opened months later;
- each hit appends an ``opened``/``clicked`` track event to the log, under the HCP's subject.
  Mail scanners open a link several times in a second: the message id holds the minute, so
  a burst records one event. Nothing is recorded for an unknown or erased HCP (the answer
  is the same). See docs/rendering.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.kit.signing import MAX_TOKEN_CHARS, InvalidLinkError, LinkPurpose, LinkSigner
from counterpoint.profile.service import ErasedError, HcpRef, ProfileService
from counterpoint.settings import Settings

__all__ = [
    "CLICK_PATH",
    "OPEN_PATH",
    "PIXEL_GIF",
    "TRACKING_TTL",
    "ClickClaims",
    "MessageTracker",
    "OpenClaims",
    "TrackingLinks",
    "TrackingRecorder",
    "is_trackable_url",
    "tracking_event",
    "tracking_message_id",
]

TRACKING_TTL = dt.timedelta(days=365)
OPEN_PATH = "/t/o"
CLICK_PATH = "/t/c"
SOURCE = "tracking"

PIXEL_GIF: bytes = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
"""A transparent 1×1 GIF, always the same bytes."""


def _channel(value: str) -> Channel | None:
    try:
        return Channel(value)
    except ValueError:
        return None


def is_trackable_url(url: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace or control characters."""
    if not url.lower().startswith(("http://", "https://")):
        return False
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True, slots=True)
class OpenClaims:
    outbox_id: str
    hcp_id: str
    channel: Channel
    content_id: str | None
    issued_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ClickClaims:
    outbox_id: str
    hcp_id: str
    channel: Channel
    content_id: str | None
    url: str
    issued_at: dt.datetime


class MessageTracker:
    """The tracked links of one message (a ``content.render.LinkTracker``)."""

    def __init__(
        self, signer: LinkSigner, base: str, claims: dict[str, Any], ttl: dt.timedelta
    ) -> None:
        self._signer = signer
        self._base = base
        self._claims = claims
        self._ttl = ttl
        self._clicks: dict[str, str] = {}
        self._pixel: str | None = None

    def click(self, url: str) -> str:
        """The tracked URL for ``url``; a URL too long to sign is left as it is."""
        tracked = self._clicks.get(url)
        if tracked is None:
            if not is_trackable_url(url):
                raise ValidationFailedError(
                    f"only absolute http(s) links can be tracked, not {url[:60]!r}",
                    field="url",
                    fix="write the link as https://host/path",
                )
            token = self._signer.dump(
                LinkPurpose.TRACK_CLICK, {**self._claims, "u": url}, ttl=self._ttl
            )
            tracked = url if len(token) > MAX_TOKEN_CHARS else f"{self._base}{CLICK_PATH}/{token}"
            self._clicks[url] = tracked
        return tracked

    def open_pixel(self) -> str:
        if self._pixel is None:
            token = self._signer.dump(LinkPurpose.TRACK_OPEN, self._claims, ttl=self._ttl)
            self._pixel = f"{self._base}{OPEN_PATH}/{token}.gif"
        return self._pixel


def _bad_claims() -> InvalidLinkError:
    return InvalidLinkError(
        "the link is not valid: its content cannot be read",
        field="token",
        fix="open the link exactly as it was sent to you",
    )


def _text(claims: Any, key: str, *, optional: bool = False) -> str | None:
    value = claims.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _bad_claims()
    return value


class TrackingLinks:
    """Builds and reads tracking links; the base URL is ``public_base_url``."""

    def __init__(
        self, signer: LinkSigner, base_url: str, *, ttl: dt.timedelta = TRACKING_TTL
    ) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")
        self._ttl = ttl

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Clock, *, ttl: dt.timedelta = TRACKING_TTL
    ) -> TrackingLinks:
        return cls(LinkSigner(settings.secret_key, clock), settings.public_base_url, ttl=ttl)

    def for_message(
        self, *, outbox_id: str, hcp_id: str, channel: str, content_id: str | None
    ) -> MessageTracker:
        """A tracker for one outgoing message (pass it to ``content.render.render``)."""
        for name, value in (("outbox_id", outbox_id), ("hcp_id", hcp_id)):
            if not value or not value.strip():
                raise ValidationFailedError(
                    f"{name} is empty", field=name, fix=f"give the message's {name}"
                )
        if _channel(channel) is None:
            raise ValidationFailedError(
                f"{channel[:40]!r} is not a channel",
                field="channel",
                fix="use one of " + ", ".join(c.value for c in Channel),
            )
        claims = {"o": outbox_id, "h": hcp_id, "c": channel, "x": content_id}
        return MessageTracker(self._signer, self._base, claims, self._ttl)

    def _read(self, purpose: LinkPurpose, token: str | None) -> tuple[dict[str, Any], Any]:
        signed = self._signer.load(purpose, token)
        claims = signed.claims
        channel = _channel(_text(claims, "c") or "")
        if channel is None:
            raise _bad_claims()
        values = {
            "outbox_id": _text(claims, "o"),
            "hcp_id": _text(claims, "h"),
            "channel": channel,
            "content_id": _text(claims, "x", optional=True),
            "issued_at": signed.issued_at,
        }
        return values, claims

    def read_open(self, token: str | None) -> OpenClaims:
        """Raises InvalidLinkError / ExpiredLinkError (field ``token``)."""
        values, _ = self._read(LinkPurpose.TRACK_OPEN, token)
        return OpenClaims(**values)

    def read_click(self, token: str | None) -> ClickClaims:
        """Raises InvalidLinkError / ExpiredLinkError; the URL is always http(s)."""
        values, claims = self._read(LinkPurpose.TRACK_CLICK, token)
        url = _text(claims, "u")
        if url is None or not is_trackable_url(url):
            raise _bad_claims()
        return ClickClaims(**values, url=url)


def tracking_message_id(action: Action, outbox_id: str, url: str, at: dt.datetime) -> str:
    """Equal for hits on the same link of the same message within one minute."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return f"track:{action.value}:{outbox_id}:{digest}:{at:%Y%m%dT%H%M}"


def tracking_event(
    action: Action, claims: OpenClaims | ClickClaims, ref: HcpRef, subject: str, at: dt.datetime
) -> LogEvent:
    """The ``opened``/``clicked`` event of one hit (pure)."""
    url = claims.url if isinstance(claims, ClickClaims) else ""
    properties: dict[str, Any] = {"outbox_id": claims.outbox_id}
    if url:
        properties["url"] = url
    return LogEvent(
        message_id=tracking_message_id(action, claims.outbox_id, url, at),
        kind=EventKind.TRACK,
        subject=subject,
        occurred_at=at,
        received_at=at,
        source=SOURCE,
        channel=claims.channel,
        action=action,
        event_name=f"{claims.channel.value} {action.value}",
        content_id=claims.content_id,
        actor_type=ActorType.HCP,
        function=Function.COMMERCIAL,
        market=ref.market,
        payload={"properties": properties},
    )


class TrackingRecorder:
    """Reads a hit's token and appends its event (nothing for an unknown or erased HCP)."""

    def __init__(
        self,
        links: TrackingLinks,
        profiles: ProfileService,
        log: EventLog,
        clock: Clock,
        *,
        wake: Callable[[int], None] | None = None,
    ) -> None:
        self.links = links
        self._profiles = profiles
        self._log = log
        self._clock = clock
        self._wake = wake

    def opened(self, token: str | None) -> OpenClaims:
        claims = self.links.read_open(token)
        self._record(Action.OPENED, claims)
        return claims

    def clicked(self, token: str | None) -> ClickClaims:
        claims = self.links.read_click(token)
        self._record(Action.CLICKED, claims)
        return claims

    def _record(self, action: Action, claims: OpenClaims | ClickClaims) -> bool:
        try:
            ref = self._profiles.resolve(claims.hcp_id)
        except (NotFoundError, ErasedError):
            return False
        subject = ref.subject
        if subject is None:
            return False
        result = self._log.append([tracking_event(action, claims, ref, subject, self._clock.now())])
        if result.accepted and self._wake is not None:
            self._wake(result.last_seq)
        return result.accepted > 0
