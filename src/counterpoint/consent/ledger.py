"""The consent ledger's rules: append-only records, folded into the state at any time. Pure.

A record says: for this HCP, on this channel, for this purpose, in this market (optionally
narrowed to a brand and a content type), consent was granted, denied, revoked, is pending
confirmation (double opt-in) or expired, with its proof. Nothing is ever updated: the state
at time T is a fold over the records known at T, so "what was the consent on date D" is the
same fold with ``at=D``. See docs/consent.md.

Deciding a contact: every scope that covers the contact (same channel, purpose and market;
brand and content type equal or unrestricted) is folded; among those whose state is decisive
(granted and in date, denied, revoked) the most recent one wins. So a withdrawal for all
brands overrides an older brand grant, and a newer brand grant overrides an older general
withdrawal. Without a decisive scope, the contact is refused: pending, expired, or no consent.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from counterpoint.event.canonical import Channel

__all__ = [
    "ConsentChannel",
    "ConsentDecision",
    "ConsentRecord",
    "ConsentScope",
    "ConsentSource",
    "ConsentState",
    "Proof",
    "Purpose",
    "ScopeStatus",
    "consent_channel",
    "decide",
    "fold",
]


class Purpose(enum.StrEnum):
    PROMOTIONAL = "promotional"
    MEDICAL = "medical"  # medical / scientific information
    EDUCATIONAL = "educational"
    MARKET_RESEARCH = "market_research"


class ConsentState(enum.StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"
    PENDING = "pending"  # awaiting double opt-in confirmation
    EXPIRED = "expired"


class ConsentSource(enum.StrEnum):
    """Where the record came from (part of its proof)."""

    WEB_FORM = "web_form"
    REP_CAPTURE = "rep_capture"  # captured by a rep, with the HCP's signature
    IMPORT = "import"
    EMAIL_LINK = "email_link"  # confirmation or unsubscribe link in an e-mail
    ONE_CLICK = "one_click"  # RFC 8058 List-Unsubscribe-Post
    SMS_KEYWORD = "sms_keyword"
    PREFERENCE_CENTRE = "preference_centre"
    API = "api"
    EVENT = "event"  # a consent event through ingestion
    DELIVERY = "delivery"  # an unsubscribe or spam complaint reported by a channel


class ConsentChannel(enum.StrEnum):
    """Channels consent is given for. Both kinds of e-mail share ``email``."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    MESSAGING = "messaging"
    F2F_CALL = "f2f_call"
    REMOTE_CALL = "remote_call"
    DIRECT_MAIL = "direct_mail"
    WEBINAR = "webinar"
    EVENT = "event"
    SURVEY = "survey"
    SOCIAL_MEDIA = "social_media"
    HCP_PORTAL = "hcp_portal"


_CHANNELS: dict[Channel, ConsentChannel | None] = {
    Channel.F2F_CALL: ConsentChannel.F2F_CALL,
    Channel.REMOTE_CALL: ConsentChannel.REMOTE_CALL,
    Channel.PHONE: ConsentChannel.PHONE,
    Channel.REP_EMAIL: ConsentChannel.EMAIL,
    Channel.CAMPAIGN_EMAIL: ConsentChannel.EMAIL,
    Channel.SMS: ConsentChannel.SMS,
    Channel.MESSAGING: ConsentChannel.MESSAGING,
    Channel.WEBSITE: None,  # the HCP comes to us
    Channel.HCP_PORTAL: ConsentChannel.HCP_PORTAL,
    Channel.WEBINAR: ConsentChannel.WEBINAR,
    Channel.EVENT: ConsentChannel.EVENT,
    Channel.CONGRESS: ConsentChannel.EVENT,
    Channel.EVENT_APP: ConsentChannel.EVENT,
    Channel.ADVISORY_BOARD: ConsentChannel.EVENT,
    Channel.DIRECT_MAIL: ConsentChannel.DIRECT_MAIL,
    Channel.SOCIAL_MEDIA: ConsentChannel.SOCIAL_MEDIA,
    Channel.SAMPLES: ConsentChannel.F2F_CALL,
    Channel.MEDICAL_INQUIRY: None,  # answering the HCP's own request
    Channel.SURVEY: ConsentChannel.SURVEY,
}


def consent_channel(channel: Channel) -> ConsentChannel | None:
    """The consent channel a contact on ``channel`` needs; None: the HCP asked for it."""
    return _CHANNELS[channel]


@dataclass(frozen=True, slots=True)
class ConsentScope:
    channel: ConsentChannel
    purpose: Purpose
    market: str
    brand: str | None = None
    content_type: str | None = None

    def covers(
        self,
        channel: ConsentChannel,
        purpose: Purpose,
        market: str,
        brand: str | None,
        content_type: str | None,
    ) -> bool:
        return (
            self.channel == channel
            and self.purpose == purpose
            and self.market == market
            and (self.brand is None or self.brand == brand)
            and (self.content_type is None or self.content_type == content_type)
        )


@dataclass(frozen=True, slots=True)
class Proof:
    """Evidence kept with every record."""

    source: ConsentSource
    captured_by: str
    wording_version: str | None = None
    wording_hash: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    evidence: str | None = None  # e.g. the signature reference, the SMS keyword, a message id


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    seq: int
    hcp_id: str
    scope: ConsentScope
    state: ConsentState
    effective_at: dt.datetime
    recorded_at: dt.datetime
    proof: Proof
    expires_at: dt.datetime | None = None
    reason: str | None = None
    synthetic: bool = False  # generated data (the synthetic market), never a real HCP's


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    scope: ConsentScope
    state: ConsentState
    since: dt.datetime
    seq: int
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    allowed: bool
    reason: str | None  # no_consent, consent_pending, consent_expired, consent_denied, …
    scope: ConsentScope | None = None
    since: dt.datetime | None = None
    seq: int | None = None


def _known(record: ConsentRecord, at: dt.datetime) -> bool:
    return record.recorded_at <= at and record.effective_at <= at


def _decisive_at(current: ScopeStatus, pending: ConsentRecord) -> bool:
    if current.state is ConsentState.GRANTED:
        return current.expires_at is None or current.expires_at > pending.effective_at
    return current.state in (ConsentState.DENIED, ConsentState.REVOKED)


def fold(records: Iterable[ConsentRecord], at: dt.datetime) -> dict[ConsentScope, ScopeStatus]:
    """The state of every scope at ``at``, from the records known then.

    Per scope the most recent record (by effective time, then sequence) holds, except that a
    pending confirmation never displaces a decisive state (a grant still in date, a denial, a
    revocation): asking again does not re-open what the HCP closed. A grant past its expiry
    reads as expired.
    """
    ordered = sorted((r for r in records if _known(r, at)), key=lambda r: (r.effective_at, r.seq))
    status: dict[ConsentScope, ScopeStatus] = {}
    for r in ordered:
        current = status.get(r.scope)
        if r.state is ConsentState.PENDING and current is not None and _decisive_at(current, r):
            continue
        status[r.scope] = ScopeStatus(r.scope, r.state, r.effective_at, r.seq, r.expires_at)
    for scope, s in status.items():
        if s.state is ConsentState.GRANTED and s.expires_at is not None and s.expires_at <= at:
            status[scope] = ScopeStatus(scope, ConsentState.EXPIRED, s.expires_at, s.seq, None)
    return status


_DECISIVE = frozenset({ConsentState.GRANTED, ConsentState.DENIED, ConsentState.REVOKED})


def decide(
    records: Iterable[ConsentRecord],
    *,
    channel: ConsentChannel,
    purpose: Purpose,
    market: str,
    brand: str | None,
    content_type: str | None,
    at: dt.datetime,
) -> ConsentDecision:
    """May this HCP be contacted on ``channel`` for ``purpose`` at ``at``? (see module doc)"""
    applicable = [
        s
        for s in fold(records, at).values()
        if s.scope.covers(channel, purpose, market, brand, content_type)
    ]
    decisive = [s for s in applicable if s.state in _DECISIVE]
    if decisive:
        latest = max(decisive, key=lambda s: (s.since, s.seq))
        if latest.state is ConsentState.GRANTED:
            return ConsentDecision(True, None, latest.scope, latest.since, latest.seq)
        return ConsentDecision(
            False, f"consent_{latest.state.value}", latest.scope, latest.since, latest.seq
        )
    states = {s.state for s in applicable}
    if ConsentState.PENDING in states:
        return ConsentDecision(False, "consent_pending")
    if ConsentState.EXPIRED in states:
        return ConsentDecision(False, "consent_expired")
    return ConsentDecision(False, "no_consent")
