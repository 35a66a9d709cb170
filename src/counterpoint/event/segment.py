"""Segment tracking-spec messages to canonical ``LogEvent`` records. Pure, no I/O.

``map_message`` turns one decoded Segment (or RudderStack) message — what
``msgspec.json.decode`` returned for one element of ``batch`` or for the body of a single call —
into a ``LogEvent``, or into a ``Rejection`` that names the field, the problem and the fix. It
never raises for any JSON value. The rules are documented in docs/events.md.

It runs on the HTTP hot path, so every lookup is a dictionary built once, user ids are parsed
through a cache shared with the bulk importer, and nothing is deep-copied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol, TypeVar

from counterpoint.consent.ledger import ConsentState, Purpose
from counterpoint.consent.schemas import check_consent_event, consent_state_of, read_purpose
from counterpoint.event.canonical import (
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.event.rows import _fast_markets, _RefusedError, _user_subject
from counterpoint.profile.validation import market_fix

__all__ = [
    "CONTEXT_KEPT",
    "EMAIL_EVENTS",
    "MESSAGE_ID_MAX",
    "REASON_CODES",
    "BatchContext",
    "Rejection",
    "map_message",
    "parse_timestamp",
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message was refused: a stable code, the field (a path inside the message), what
    is wrong with the value, and what to send instead."""

    reason_code: str
    field: str | None
    detail: str
    fix: str


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the server knows about the request a message arrived in."""

    received_at: dt.datetime
    """Aware UTC, the server's clock."""
    sent_at: dt.datetime | None
    """The batch-level ``sentAt`` (the client's clock when it sent the batch), if any."""
    source: str
    """Where the events come from, e.g. the write-key id ``wk_…``."""
    max_event_bytes: int = 32 * 1024
    max_future: dt.timedelta = dt.timedelta(days=1)
    """Corrected timestamps later than ``received_at`` plus this are refused."""
    trusted: bool = False
    """Whether the source is a trusted (server-side) one that may send consent grants.
    Unknown means untrusted: a grant from a source not known to be trusted is refused."""


REASON_CODES: Final[Mapping[str, str]] = {
    "not_an_object": "the message is not a JSON object",
    "event_too_large": "the encoded message is larger than the per-event limit",
    "unsupported_type": "the message has no type, or a type other than the six Segment calls",
    "invalid_field": "a field has the wrong JSON type, length or value",
    "missing_identity": "neither userId nor anonymousId is given",
    "invalid_user_id": "userId is not an accepted HCP identifier",
    "invalid_timestamp": "a timestamp is not ISO 8601, or is in the future after correction",
    "missing_event_name": "a track call without event",
    "missing_channel": "a track call that is not a semantic e-mail event has no channel",
    "unknown_channel": "properties.channel is not a channel code",
    "missing_action": "a track call that is not a semantic e-mail event has no action",
    "unknown_action": "properties.action is not an action code",
    "invalid_consent": "a consent event has a missing or invalid channel, purpose, market or proof",
    "untrusted_consent_grant": "a consent grant came from a write key not marked trusted",
}
"""Every ``Rejection.reason_code`` with its meaning (docs/events.md has the fixes)."""

MESSAGE_ID_MAX: Final = 200
_TEXT_MAX: Final = 200
_SHORT_TEXT_MAX: Final = 100
"""``brand`` and ``slide``: the width of their event-log columns."""
_ANON_MAX: Final = 200
_USER_ID_MAX: Final = 260
"""A type prefix and the longest e-mail address (254). Longer ids are refused before they are
parsed: the identifier patterns take quadratic time on long adversarial input."""
_BIG_INT: Final = 10**_TEXT_MAX
"""Integers at least this large are longer than any accepted text (and ``str()`` refuses
integers of more than 4,300 digits)."""

_UTC: Final = dt.UTC
_fromisoformat: Final = dt.datetime.fromisoformat
_E = TypeVar("_E", Channel, Action, ActorType, Function, EventKind)

EMAIL_EVENTS: Final[Mapping[str, Action]] = {
    "Email Sent": Action.SENT,
    "Email Delivered": Action.DELIVERED,
    "Email Opened": Action.OPENED,
    "Email Link Clicked": Action.CLICKED,
    "Email Bounced": Action.BOUNCED,
    "Email Marked as Spam": Action.UNSUBSCRIBED,
    "Unsubscribed": Action.UNSUBSCRIBED,
}
"""Segment's semantic e-mail events: the name fixes the action, the channel is an e-mail one."""
_EMAIL_EVENTS_FOLDED: Final = {name.lower(): name for name in EMAIL_EVENTS}
"""For a hint when a name differs from a semantic event's only by case."""
_EMAIL_CHANNELS: Final = frozenset({Channel.CAMPAIGN_EMAIL, Channel.REP_EMAIL})
_BOUNCE_TYPES: Final = {"hard": "hard", "soft": "soft"}

CONTEXT_KEPT: Final = frozenset(
    {
        "ip",
        "userAgent",
        "page",
        "campaign",
        "library",
        "locale",
        "timezone",
        "app",
        "device",
        "os",
        "referrer",
        "location",
    }
)
"""Keys of ``context`` kept in the payload of track, page and screen events."""

_CONSUMED: Final = frozenset(
    {
        "channel",
        "action",
        "brand",
        "content_id",
        "slide",
        "actor_type",
        "actor_id",
        "function",
        "market",
        "synthetic",
    }
)
"""Keys of ``properties`` that become columns of the event (and leave ``payload.properties``)."""
_CONSUMED_CONSENT: Final = _CONSUMED - {"channel"}
"""Consent events keep ``properties.channel`` (a consent channel, not an interaction one)."""
_CONSUMED_PAGE: Final = _CONSUMED - {"action"}
"""Pages and screens are always ``visited``: their ``properties.action`` is not interpreted."""


def _codes(enum_type: type[_E]) -> dict[str, _E]:
    return {member.value: member for member in enum_type}


_KINDS: Final = _codes(EventKind)
_CHANNELS: Final = _codes(Channel)
_ACTIONS: Final = _codes(Action)
_ACTOR_TYPES: Final = _codes(ActorType)
_FUNCTIONS: Final = _codes(Function)
_MEDICAL_ACTORS: Final = frozenset({ActorType.MSL, ActorType.MEDICAL_AFFAIRS})

# Enum members as module constants: reading ``EventKind.TRACK`` costs ~100 ns on Python 3.11.
_TRACK: Final = EventKind.TRACK
_IDENTIFY: Final = EventKind.IDENTIFY
_GROUP: Final = EventKind.GROUP
_ALIAS: Final = EventKind.ALIAS
_VISITED: Final = Action.VISITED
_BOUNCED: Final = Action.BOUNCED
_UNSUBSCRIBED: Final = Action.UNSUBSCRIBED
_CAMPAIGN_EMAIL: Final = Channel.CAMPAIGN_EMAIL
_MEDICAL_INQUIRY: Final = Channel.MEDICAL_INQUIRY
_MEDICAL: Final = Function.MEDICAL
_COMMERCIAL: Final = Function.COMMERCIAL
_PROFILE_KINDS: Final = frozenset({_IDENTIFY, _GROUP, _ALIAS})
_PAGE_CHANNELS: Final = {
    EventKind.PAGE: (Channel.WEBSITE, Channel.HCP_PORTAL),
    EventKind.SCREEN: (Channel.HCP_PORTAL, Channel.EVENT_APP),
}
"""Page and screen: the default channel first, then the other channel allowed."""


def _listing(codes: Mapping[str, object]) -> str:
    return "use one of: " + ", ".join(codes) + " (docs/events.md)"


_STAMP_FIX: Final = "send ISO 8601, e.g. 2026-03-01T09:30:00Z or 2026-03-01T10:30:00+01:00"
_GROUP_FIX: Final = "send groupId, the HCO's id, as a string of at most 200 characters"
_IDENTITY_FIX: Final = (
    "send userId (an HCP identifier, e.g. npi:1234567893 or jane.doe@clinic.org) "
    "or anonymousId (the id the SDK assigned)"
)


class _RejectedError(Exception):
    """Raised inside the mapping, turned into the returned ``Rejection``."""

    def __init__(self, code: str, field: str | None, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(code, field, detail, fix)


def _refuse(code: str, field: str | None, detail: str, fix: str) -> NoReturn:
    raise _RejectedError(code, field, detail, fix)


def _shown(value: object) -> str:
    """A value, named in a message: scalars as written (shortened), containers by kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int) and not -_BIG_INT < value < _BIG_INT:
        return "a very large number"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _text(value: object, field: str, max_len: int = _TEXT_MAX) -> str | None:
    """A stripped string, or None when missing or blank. Integers are accepted as text."""
    if type(value) is str:
        text = value.strip()
    elif value is None:
        return None
    elif type(value) is int and -_BIG_INT < value < _BIG_INT:
        text = str(value)
    else:
        _refuse(
            "invalid_field", field, f"{field} is {_shown(value)}, not text", f"send {field} as text"
        )
    if len(text) > max_len:
        _refuse(
            "invalid_field",
            field,
            f"{field} is {len(text)} characters long, more than {max_len}",
            f"shorten {field} to at most {max_len} characters",
        )
    return text or None


def _object(value: object, field: str) -> dict[str, Any]:
    """A JSON object, or an empty one when missing."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    _refuse(
        "invalid_field",
        field,
        f"{field} is {_shown(value)}, not an object",
        f'send {field} as a JSON object, e.g. {{"key": "value"}}',
    )


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if value is True or value is False:
        return value
    _refuse(
        "invalid_field", field, f"{field} is {_shown(value)}, not a boolean", "send true or false"
    )


def _code(
    value: object, codes: Mapping[str, _E], field: str, reason: str = "invalid_field"
) -> _E | None:
    """An enum member by its code (any case), None when missing; ``reason`` when unknown."""
    if type(value) is str:
        found = codes.get(value)
        if found is not None:
            return found
    text = _text(value, field)
    if text is None:
        return None
    found = codes.get(text.lower())
    if found is None:
        _refuse(reason, field, f"{field} {_shown(value)} is not a known code", _listing(codes))
    return found


def parse_timestamp(value: object, field: str = "timestamp") -> dt.datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; naive timestamps are read as UTC.

    Raises ``ValueError`` (with the field and the value named) for anything else; the HTTP layer
    uses it for the batch-level ``sentAt``.
    """
    try:
        return _timestamp(value, field)
    except _RejectedError as exc:
        raise ValueError(exc.rejection.detail) from None


def _timestamp(value: object, field: str) -> dt.datetime:
    if type(value) is not str:
        _refuse(
            "invalid_timestamp",
            field,
            f"{field} is {_shown(value)}, not an ISO 8601 timestamp",
            _STAMP_FIX,
        )
    try:
        stamp = _fromisoformat(value)
    except ValueError:
        _refuse("invalid_timestamp", field, f"{field} {_shown(value)} is not ISO 8601", _STAMP_FIX)
    zone = stamp.tzinfo
    if zone is _UTC:
        return stamp
    if zone is None:
        return stamp.replace(tzinfo=_UTC)
    try:
        return stamp.astimezone(_UTC)
    except OverflowError:
        _refuse("invalid_timestamp", field, f"{field} {_shown(value)} is out of range", _STAMP_FIX)


def _occurred_at(
    raw: Mapping[str, object], ctx: BatchContext, received_at: dt.datetime
) -> dt.datetime:
    """When the event happened, corrected for the client's clock skew as Segment does."""
    field = "timestamp"
    value = raw.get("timestamp")
    if value is None:
        field = "originalTimestamp"
        value = raw.get("originalTimestamp")
        if value is None:
            return received_at
    if type(value) is str:  # the common case inline: ISO 8601 in UTC
        try:
            stamp = _fromisoformat(value)
        except ValueError:
            stamp = _timestamp(value, field)  # refuses it
        if stamp.tzinfo is not _UTC:
            stamp = _timestamp(value, field)
    else:
        stamp = _timestamp(value, field)
    sent_value = raw.get("sentAt")
    if sent_value is not None:
        sent_at: dt.datetime | None = _timestamp(sent_value, "sentAt")
    else:
        sent_at = ctx.sent_at
        if sent_at is not None and sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=_UTC)
    try:
        occurred = stamp if sent_at is None else received_at - (sent_at - stamp)
    except OverflowError:
        _refuse(
            "invalid_timestamp",
            field,
            f"{field} {_shown(value)} is out of range after clock-skew correction",
            "check the clock of the sending device and the sentAt value",
        )
    if occurred > received_at and occurred - received_at > ctx.max_future:
        _refuse(
            "invalid_timestamp",
            field,
            f"{field} {_shown(value)} is in the future: {occurred.isoformat()} after "
            "clock-skew correction, received at " + received_at.isoformat(),
            "check the clock of the sending device; send when the event happened",
        )
    return occurred


def _user_id_text(
    value: object, field: str, fix: str = "send the HCP identifier as a string, e.g. npi:1234567893"
) -> str | None:
    """An id (``userId``, ``previousId``, ``groupId``) as text: strings, and integral numbers
    as their digits."""
    if type(value) is str:
        return value.strip() or None
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and -_BIG_INT < value < _BIG_INT:
        return str(value)
    _refuse(
        "invalid_field",
        field,
        f"{field} is {_shown(value)}, not a string or a number",
        fix,
    )


def _user_key(text: str, field: str) -> str:
    if len(text) > _USER_ID_MAX:
        _refuse(
            "invalid_user_id",
            field,
            f"{field} is {len(text)} characters long, more than {_USER_ID_MAX}",
            "send an HCP identifier, e.g. npi:1234567893 or jane.doe@clinic.org (docs/identity.md)",
        )
    found = _user_subject(text)
    if isinstance(found, _RefusedError):
        _refuse("invalid_user_id", field, f"{field}: {found.reason}", found.fix)
    return found


def _anonymous_id(raw: Mapping[str, object]) -> str | None:
    value = raw.get("anonymousId")
    if type(value) is str:
        text = value.strip()
    elif value is None:
        return None
    else:
        _refuse(
            "invalid_field",
            "anonymousId",
            f"anonymousId is {_shown(value)}, not a string",
            "send the anonymous id the SDK assigned, as a string",
        )
    if len(text) > _ANON_MAX:
        _refuse(
            "invalid_field",
            "anonymousId",
            f"anonymousId is {len(text)} characters long, more than {_ANON_MAX}",
            f"send an anonymous id of at most {_ANON_MAX} characters",
        )
    return text or None


def _message_id(raw: Mapping[str, object]) -> str:
    value = raw.get("messageId")
    if type(value) is str:
        text = value.strip()
        if text and len(text) <= MESSAGE_ID_MAX:
            return text
        if text:
            _refuse(
                "invalid_field",
                "messageId",
                f"messageId is {len(text)} characters long, more than {MESSAGE_ID_MAX}",
                f"send a unique id of at most {MESSAGE_ID_MAX} characters, e.g. a UUID",
            )
    elif value is not None:
        _refuse(
            "invalid_field",
            "messageId",
            f"messageId is {_shown(value)}, not a string",
            "send a unique string id, e.g. a UUID",
        )
    return "gen-" + uuid.uuid4().hex


def _kind(raw: Mapping[str, object], implied_type: str | None) -> EventKind:
    value = raw.get("type")
    if value is None:
        value = implied_type
    if type(value) is str:
        found = _KINDS.get(value) or _KINDS.get(value.strip().lower())
        if found is not None:
            return found
        _refuse(
            "unsupported_type",
            "type",
            f"type {_shown(value)} is not supported",
            _listing(_KINDS),
        )
    if value is None:
        _refuse("unsupported_type", "type", "the message has no type", _listing(_KINDS))
    _refuse("invalid_field", "type", f"type is {_shown(value)}, not a string", _listing(_KINDS))


def _market(value: object) -> str | None:
    if type(value) is str:
        found = _fast_markets().get(value)
        if found is not None or not value:
            return found
    text = _text(value, "properties.market")
    if text is None:
        return None
    found = _fast_markets().get(text.upper())
    if found is None:
        _refuse(
            "invalid_field",
            "properties.market",
            f"properties.market {_shown(value)} is not an ISO 3166-1 alpha-2 country code",
            market_fix(text),
        )
    return found


def _traits(raw: Mapping[str, object], context: Mapping[str, object]) -> dict[str, Any]:
    """``traits`` merged over ``context.traits`` (where RudderStack puts identify traits)."""
    traits = _object(raw.get("traits"), "traits")
    nested = context.get("traits")
    if nested is None:
        return traits
    nested = _object(nested, "context.traits")
    if not traits:
        return nested
    return nested | traits


def _function(value: object, channel: Channel | None, actor_type: ActorType | None) -> Function:
    medical = channel is _MEDICAL_INQUIRY or actor_type in _MEDICAL_ACTORS
    if value is None:
        return _MEDICAL if medical else _COMMERCIAL
    function = _code(value, _FUNCTIONS, "properties.function")
    if function is None:
        return _MEDICAL if medical else _COMMERCIAL
    if medical and function is _COMMERCIAL:
        _refuse(
            "invalid_field",
            "properties.function",
            "properties.function is commercial, but medical inquiries and MSL or medical "
            "affairs interactions are always medical",
            "send function medical, or leave it out",
        )
    return function


def _track_channel_action(name: str, props: Mapping[str, object]) -> tuple[Channel, Action]:
    email_action = EMAIL_EVENTS.get(name)
    channel_value = props.get("channel")
    action_value = props.get("action")
    if email_action is not None:
        channel = _code(channel_value, _CHANNELS, "properties.channel", "unknown_channel")
        if channel is None:
            channel = _CAMPAIGN_EMAIL
        elif channel not in _EMAIL_CHANNELS:
            _refuse(
                "invalid_field",
                "properties.channel",
                f"{name!r} is an e-mail event, but properties.channel is {channel.value}",
                "send properties.channel campaign_email or rep_email, or leave it out",
            )
        action = _code(action_value, _ACTIONS, "properties.action", "unknown_action")
        if action is not None and action is not email_action:
            _refuse(
                "invalid_field",
                "properties.action",
                f"{name!r} means {email_action.value}, but properties.action is {action.value}",
                f"leave properties.action out, or send {email_action.value}",
            )
        return channel, email_action
    channel = _code(channel_value, _CHANNELS, "properties.channel", "unknown_channel")
    if channel is None:
        near = _EMAIL_EVENTS_FOLDED.get(name.lower().strip())
        _refuse(
            "missing_channel",
            "properties.channel",
            f"track event {name!r} has no properties.channel and is not a semantic e-mail event",
            (f"did you mean the e-mail event {near!r}? Otherwise s" if near else "s")
            + "end properties.channel: "
            + _listing(_CHANNELS),
        )
    action = _code(action_value, _ACTIONS, "properties.action", "unknown_action")
    if action is None:
        _refuse(
            "missing_action",
            "properties.action",
            f"track event {name!r} has no properties.action and is not a semantic e-mail event",
            "send properties.action: " + _listing(_ACTIONS),
        )
    return channel, action


def _page_channel(kind: EventKind, value: object) -> Channel:
    default, other = _PAGE_CHANNELS[kind]
    channel = _code(value, _CHANNELS, "properties.channel", "unknown_channel")
    if channel is None or channel is default:
        return default
    if channel is other:
        return other
    _refuse(
        "invalid_field",
        "properties.channel",
        f"a {kind.value} is on {default.value} or {other.value}, not {channel.value}",
        f"send properties.channel {other.value}, or leave it out for {default.value}",
    )


def _identity(raw: Mapping[str, object], kind: EventKind) -> tuple[str, str | None]:
    """The subject key and the anonymous id."""
    anonymous_id = _anonymous_id(raw)
    user_id = _user_id_text(raw.get("userId"), "userId")
    if user_id is not None:
        return _user_key(user_id, "userId"), anonymous_id
    if kind is _ALIAS:
        _refuse(
            "missing_identity",
            "userId",
            "an alias call has no userId",
            "send userId (the id the HCP is known by now) and previousId (the former id)",
        )
    if anonymous_id is not None:
        return "anon:" + anonymous_id, anonymous_id
    _refuse("missing_identity", None, "neither userId nor anonymousId is given", _IDENTITY_FIX)


def _previous_key(raw: Mapping[str, object]) -> str:
    text = _user_id_text(raw.get("previousId"), "previousId")
    if text is None:
        _refuse(
            "invalid_field",
            "previousId",
            "an alias call has no previousId",
            "send previousId, the former id (e.g. anon:<anonymousId> or crm:A-1)",
        )
    found = _user_subject(text) if len(text) <= _USER_ID_MAX else None
    if type(found) is str:
        return found
    if text[:5].lower() == "anon:":
        text = text[5:].strip()
    if not text or len(text) > _ANON_MAX:
        _refuse(
            "invalid_field",
            "previousId",
            f"previousId is {len(text)} characters long: not 1 to {_ANON_MAX}",
            f"send an id of 1 to {_ANON_MAX} characters",
        )
    return "anon:" + text


_EVENT_FIELDS: Final = (
    "message_id",
    "kind",
    "subject",
    "occurred_at",
    "received_at",
    "source",
    "channel",
    "action",
    "event_name",
    "anonymous_id",
    "brand",
    "content_id",
    "slide",
    "actor_type",
    "actor_id",
    "function",
    "market",
    "payload",
    "synthetic",
)


class _EventBuilder(Protocol):
    def __call__(
        self,
        message_id: str,
        kind: EventKind,
        subject: str,
        occurred_at: dt.datetime,
        received_at: dt.datetime,
        source: str,
        channel: Channel | None,
        action: Action | None,
        event_name: str | None,
        anonymous_id: str | None,
        brand: str | None,
        content_id: str | None,
        slide: str | None,
        actor_type: ActorType | None,
        actor_id: str | None,
        function: Function | None,
        market: str | None,
        payload: dict[str, Any],
        synthetic: bool,
        /,
    ) -> LogEvent: ...


class _UnfrozenLogEvent:
    """The slots of ``LogEvent``, set by plain assignment; the object then becomes a ``LogEvent``.

    A frozen dataclass sets each of its 19 fields through ``object.__setattr__``: about 2.7 µs
    a record on the reference machine, half the budget of a message. Plain slot assignment
    followed by a ``__class__`` switch (allowed between classes of identical layout) builds the
    same object in 0.4 µs. ``_event_builder`` uses it only after checking that the result is a
    ``LogEvent`` equal to what ``LogEvent(...)`` builds.
    """

    __slots__ = _EVENT_FIELDS

    def __init__(
        self,
        message_id: str,
        kind: EventKind,
        subject: str,
        occurred_at: dt.datetime,
        received_at: dt.datetime,
        source: str,
        channel: Channel | None,
        action: Action | None,
        event_name: str | None,
        anonymous_id: str | None,
        brand: str | None,
        content_id: str | None,
        slide: str | None,
        actor_type: ActorType | None,
        actor_id: str | None,
        function: Function | None,
        market: str | None,
        payload: dict[str, Any],
        synthetic: bool,
        /,
    ) -> None:
        self.message_id = message_id
        self.kind = kind
        self.subject = subject
        self.occurred_at = occurred_at
        self.received_at = received_at
        self.source = source
        self.channel = channel
        self.action = action
        self.event_name = event_name
        self.anonymous_id = anonymous_id
        self.brand = brand
        self.content_id = content_id
        self.slide = slide
        self.actor_type = actor_type
        self.actor_id = actor_id
        self.function = function
        self.market = market
        self.payload = payload
        self.synthetic = synthetic
        self.__class__ = LogEvent  # type: ignore[assignment]


def _event_builder() -> _EventBuilder:
    """The fast constructor when ``LogEvent`` still has the expected shape, else ``LogEvent``."""
    names = tuple(f.name for f in dataclasses.fields(LogEvent))
    if (
        names != _EVENT_FIELDS
        or getattr(LogEvent, "__slots__", None) != _EVENT_FIELDS
        or hasattr(LogEvent, "__post_init__")
    ):
        return LogEvent
    now = dt.datetime.now(_UTC)
    sample: tuple[Any, ...] = ("m", _TRACK, "s", now, now, "w", None, None, "e", None)
    sample += ("b", "c", None, None, None, _COMMERCIAL, "US", {"k": 1}, True)
    try:
        built: object = _UnfrozenLogEvent(*sample)
    except TypeError:  # the layouts differ after all
        return LogEvent
    if type(built) is not LogEvent or built != LogEvent(*sample):
        return LogEvent
    return _UnfrozenLogEvent  # type: ignore[return-value]


_new_event: Final = _event_builder()


def map_message(
    raw: object, size: int, ctx: BatchContext, implied_type: str | None = None
) -> LogEvent | Rejection:
    """One decoded Segment message as a ``LogEvent``, or the ``Rejection`` of its first problem.

    ``size`` is the encoded size of the message in bytes; ``implied_type`` is the type a
    single-call endpoint implies (``/v1/track`` → ``"track"``) when the body has none. Field
    paths in rejections are relative to the message. Never raises.
    """
    if type(raw) is not dict:
        return Rejection(
            "not_an_object",
            None,
            f"the message is {_shown(raw)}, not a JSON object",
            'send each event as an object, e.g. {"type": "track", "event": …}',
        )
    if size > ctx.max_event_bytes:
        return Rejection(
            "event_too_large",
            None,
            f"the message is {size} bytes, more than the limit of {ctx.max_event_bytes} bytes "
            f"({ctx.max_event_bytes // 1024} KB)",
            "send fewer or shorter properties (large content belongs in the content library)",
        )
    try:
        return _map(raw, ctx, implied_type)
    except _RejectedError as exc:
        return exc.rejection


def _map(raw: dict[str, Any], ctx: BatchContext, implied_type: str | None) -> LogEvent:
    # The common case of each field is read inline (a string that is already valid); anything
    # else goes through the helper that checks it fully. Function calls are most of the cost.
    get = raw.get
    value = get("type")
    kind = _KINDS.get(value) if type(value) is str else None
    if kind is None:
        kind = _kind(raw, implied_type)
    value = get("messageId")
    if type(value) is str and 0 < len(value) <= MESSAGE_ID_MAX and not value[0].isspace():
        message_id: str = value.rstrip()
    else:
        message_id = _message_id(raw)
    value, other = get("userId"), get("anonymousId")
    found = _user_subject(value) if type(value) is str and len(value) <= _USER_ID_MAX else None
    if type(found) is str and (
        other is None
        or (
            type(other) is str
            and 0 < len(other) <= _ANON_MAX
            and not other[0].isspace()
            and not other[-1].isspace()
        )
    ):
        subject, anonymous_id = found, other
    else:
        subject, anonymous_id = _identity(raw, kind)
    received_at = ctx.received_at
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=_UTC)
    occurred_at = _occurred_at(raw, ctx, received_at)
    context = get("context")
    if type(context) is not dict:
        context = _object(context, "context")
    synthetic = False
    if "synthetic" in context:
        synthetic = _flag(context["synthetic"], "context.synthetic")

    if kind is not _TRACK and kind in _PROFILE_KINDS:
        return _profile_event(
            raw, kind, message_id, subject, anonymous_id, occurred_at, received_at, ctx, synthetic
        )

    props = get("properties")
    if type(props) is not dict:
        props = _object(props, "properties")
    pget = props.get
    if kind is _TRACK:
        value = get("event")
        event_name = value if type(value) is str and 0 < len(value) <= _TEXT_MAX else None
        if event_name is None or event_name[0].isspace() or event_name[-1].isspace():
            event_name = _text(value, "event")
            if event_name is None:
                _refuse(
                    "missing_event_name",
                    "event",
                    "a track call has no event name",
                    'send event, the name of what happened, e.g. "Email Opened"',
                )
        email_action = EMAIL_EVENTS.get(event_name)
        value, other = pget("channel"), pget("action")
        consent = None if event_name[0] not in "cC" else consent_state_of(event_name)
        if consent is not None:
            channel, action = None, None
        elif email_action is None and type(value) is str and type(other) is str:
            channel = _CHANNELS.get(value)
            action = _ACTIONS.get(other)
            if channel is None or action is None:
                channel, action = _track_channel_action(event_name, props)
        elif email_action is not None and value is None and other is None:
            channel, action = _CAMPAIGN_EMAIL, email_action
        else:
            channel, action = _track_channel_action(event_name, props)
        consumed = _CONSUMED if consent is None else _CONSUMED_CONSENT
    else:
        consent = None
        event_name = _text(get("name"), "name")
        channel = _page_channel(kind, pget("channel"))
        action = _VISITED
        consumed = _CONSUMED_PAGE
    value = pget("actor_type")
    actor_type = None if value is None else _code(value, _ACTOR_TYPES, "properties.actor_type")
    rest = (
        props
        if consumed.isdisjoint(props)
        else {key: value for key, value in props.items() if key not in consumed}
    )
    if action is _BOUNCED and "bounce_type" in rest:
        rest = _bounce_type(rest)
    if not CONTEXT_KEPT.issuperset(context):
        context = {key: value for key, value in context.items() if key in CONTEXT_KEPT}
    payload: dict[str, Any] = {"properties": rest, "context": context}
    if kind is not _TRACK:
        category = _text(get("category"), "category")
        if category is not None:
            payload["category"] = category
    value = pget("function")
    if value is None and actor_type is None and channel is not _MEDICAL_INQUIRY:
        function = _COMMERCIAL
    else:
        function = _function(value, channel, actor_type)
    value = pget("synthetic")
    if value is not None:
        synthetic = _flag(value, "properties.synthetic") or synthetic
    # Positional, in field order: keyword arguments cost a microsecond more per event.
    event = _new_event(
        message_id,
        kind,
        subject,
        occurred_at,
        received_at,
        ctx.source,
        channel,
        action,
        event_name,
        anonymous_id,
        None
        if (value := pget("brand")) is None
        else _text(value, "properties.brand", _SHORT_TEXT_MAX),
        None if (value := pget("content_id")) is None else _text(value, "properties.content_id"),
        None
        if (value := pget("slide")) is None
        else _text(value, "properties.slide", _SHORT_TEXT_MAX),
        actor_type,
        None if (value := pget("actor_id")) is None else _text(value, "properties.actor_id"),
        function,
        None if (value := pget("market")) is None else _market(value),
        payload,
        synthetic,
    )
    if consent is not None or action is _UNSUBSCRIBED:
        _check_consent(event, consent, props, ctx)
    return event


def _check_consent(
    event: LogEvent, consent: ConsentState | None, props: Mapping[str, object], ctx: BatchContext
) -> None:
    """Consent events become ledger records: refuse here what the ledger could not record,
    and grants from sources not trusted (docs/consent.md)."""
    if consent is None:  # an unsubscribe: a revocation for one purpose, or all of them
        purpose = read_purpose(props.get("purpose"), required=False)
        if purpose is None or isinstance(purpose, Purpose):
            return
        _refuse(purpose.code, purpose.field, purpose.detail, purpose.fix)
    problem = check_consent_event(
        consent,
        props,
        trusted=ctx.trusted,
        market=event.market,
        brand=event.brand,
        occurred_at=event.occurred_at,
    )
    if problem is not None:
        _refuse(problem.code, problem.field, problem.detail, problem.fix)


def _bounce_type(properties: dict[str, Any]) -> dict[str, Any]:
    """``properties`` with ``bounce_type`` lower-cased; it must be hard or soft."""
    bounce = _text(properties["bounce_type"], "properties.bounce_type")
    if bounce is None:
        return properties
    normal = _BOUNCE_TYPES.get(bounce) or _BOUNCE_TYPES.get(bounce.lower())
    if normal is None:
        _refuse(
            "invalid_field",
            "properties.bounce_type",
            f"properties.bounce_type {_shown(bounce)} is neither hard nor soft",
            "send hard (permanent) or soft (temporary), or leave it out",
        )
    if normal == properties["bounce_type"]:
        return properties
    return properties | {"bounce_type": normal}


def _profile_event(
    raw: Mapping[str, object],
    kind: EventKind,
    message_id: str,
    subject: str,
    anonymous_id: str | None,
    occurred_at: dt.datetime,
    received_at: dt.datetime,
    ctx: BatchContext,
    synthetic: bool,
) -> LogEvent:
    """Identify, group and alias: no channel, action or properties."""
    context = raw.get("context")
    context = {} if type(context) is not dict else context
    traits: dict[str, Any]
    if kind is _IDENTIFY:
        traits = _traits(raw, context)
        payload: dict[str, Any] = {"traits": traits}
    elif kind is _GROUP:
        group_id = _user_id_text(raw.get("groupId"), "groupId", _GROUP_FIX)
        if group_id is None or len(group_id) > _TEXT_MAX:
            _refuse(
                "invalid_field",
                "groupId",
                "a group call has no groupId"
                if group_id is None
                else f"groupId is more than {_TEXT_MAX} characters long",
                _GROUP_FIX,
            )
        traits = _object(raw.get("traits"), "traits")
        payload = {"group_id": group_id, "traits": traits}
    else:
        traits = {}
        payload = {"previous_id": _previous_key(raw)}
    if not synthetic and "synthetic" in traits:
        synthetic = _flag(traits["synthetic"], "traits.synthetic")
    return _new_event(
        message_id,
        kind,
        subject,
        occurred_at,
        received_at,
        ctx.source,
        None,  # channel
        None,  # action
        None,  # event_name
        anonymous_id,
        None,  # brand
        None,  # content_id
        None,  # slide
        None,  # actor_type
        None,  # actor_id
        None,  # function
        None,  # market
        payload,
        synthetic,
    )
