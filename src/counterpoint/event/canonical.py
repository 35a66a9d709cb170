"""The canonical interaction model: every channel's events, in one shape.

Pure definitions, no I/O. The event log stores exactly ``LogEvent`` records; the HTTP API,
bulk imports and the synthetic market generator all produce them. See docs/events.md.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENGAGEMENT_ACTIONS",
    "LOG_COLUMNS",
    "TOUCH_ACTIONS",
    "Action",
    "ActorType",
    "Channel",
    "EventKind",
    "Function",
    "LogEvent",
]


class EventKind(enum.StrEnum):
    """The Segment call an event arrived as (bulk imports use ``track`` or ``identify``)."""

    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class Channel(enum.StrEnum):
    """Every interaction source in DOMAIN.md."""

    F2F_CALL = "f2f_call"
    REMOTE_CALL = "remote_call"
    PHONE = "phone"
    REP_EMAIL = "rep_email"
    CAMPAIGN_EMAIL = "campaign_email"
    SMS = "sms"
    MESSAGING = "messaging"
    WEBSITE = "website"
    HCP_PORTAL = "hcp_portal"
    WEBINAR = "webinar"
    EVENT = "event"
    CONGRESS = "congress"
    EVENT_APP = "event_app"
    ADVISORY_BOARD = "advisory_board"
    DIRECT_MAIL = "direct_mail"
    SOCIAL_MEDIA = "social_media"
    SAMPLES = "samples"
    MEDICAL_INQUIRY = "medical_inquiry"
    SURVEY = "survey"


class Action(enum.StrEnum):
    """What happened on a channel."""

    PLANNED = "planned"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    REPLIED = "replied"
    VISITED = "visited"
    REGISTERED = "registered"
    ATTENDED = "attended"
    NO_SHOW = "no_show"
    CALL_COMPLETED = "call_completed"
    CONTENT_VIEWED = "content_viewed"
    SAMPLE_DROPPED = "sample_dropped"
    INQUIRY_RECEIVED = "inquiry_received"
    INQUIRY_ANSWERED = "inquiry_answered"
    SURVEY_ANSWERED = "survey_answered"
    SHARED = "shared"
    DOWNLOADED = "downloaded"
    REFUSED = "refused"  # the guard refused a contact (payload: the reasons)
    SEGMENT_ENTERED = "segment_entered"  # the HCP entered a segment (no channel; not a touch)
    SEGMENT_LEFT = "segment_left"  # the HCP left a segment (no channel; not a touch)


class ActorType(enum.StrEnum):
    REP = "rep"
    KAM = "kam"
    MSL = "msl"
    MEDICAL_AFFAIRS = "medical_affairs"
    MARKETING = "marketing"
    SYSTEM = "system"
    HCP = "hcp"


class Function(enum.StrEnum):
    """Commercial and medical interactions are kept apart (DOMAIN.md)."""

    COMMERCIAL = "commercial"
    MEDICAL = "medical"


TOUCH_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.SENT,
        Action.CALL_COMPLETED,
        Action.SAMPLE_DROPPED,
        Action.INQUIRY_ANSWERED,
        Action.ATTENDED,
    }
)
"""Actions that spend the HCP's attention: the touches counted for fatigue and contact policy."""

ENGAGEMENT_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.OPENED,
        Action.CLICKED,
        Action.REPLIED,
        Action.VISITED,
        Action.REGISTERED,
        Action.ATTENDED,
        Action.CONTENT_VIEWED,
        Action.INQUIRY_RECEIVED,
        Action.SURVEY_ANSWERED,
        Action.DOWNLOADED,
        Action.SHARED,
    }
)
"""Actions that show the HCP responding: the numerator of response rates."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One entry of the event log, before the log gives it a sequence number.

    ``subject`` is the canonical identifier the event is about (``npi:1234567893``,
    ``email:a@b.org``, ``anon:…``): events attach to identifiers, not to HCP rows, so merges
    and unmerges move events by moving identifiers.
    """

    message_id: str
    kind: EventKind
    subject: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    source: str
    channel: Channel | None = None
    action: Action | None = None
    event_name: str | None = None
    anonymous_id: str | None = None
    brand: str | None = None
    content_id: str | None = None
    slide: str | None = None
    actor_type: ActorType | None = None
    actor_id: str | None = None
    function: Function | None = None
    market: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False


LOG_COLUMNS: tuple[str, ...] = (
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
"""Column order of the event log (after ``seq``) and of bulk interaction files."""
