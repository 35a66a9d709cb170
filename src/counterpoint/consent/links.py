"""The links an HCP receives to manage their own consent, and reading them back.

- confirmation link (double opt-in): ``{base}/consent/confirm?token=…``, default 7 days;
- unsubscribe link, per HCP × channel × purposes: ``{base}/consent/unsubscribe?token=…``,
  also the RFC 8058 one-click target (``List-Unsubscribe`` / ``List-Unsubscribe-Post``);
- preference-centre link: ``{base}/consent/preferences?token=…``.

Tokens are signed by ``kit.signing`` (one salt per purpose) and carry a nonce: the pages use
it as the consent record's dedupe key, so opening or posting a link twice records nothing new.
``SelfService`` holds the use cases behind the pages (confirm, unsubscribe, preference
centre) and the SMS keyword webhook. See docs/consent-links.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import phonenumbers
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
    ScopeStatus,
)
from counterpoint.consent.schemas import UNSUBSCRIBE_SOURCE
from counterpoint.consent.service import ConsentService
from counterpoint.errors import ConflictError, ValidationFailedError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.kit.signing import (
    MAX_TOKEN_CHARS,
    InvalidLinkError,
    LinkPurpose,
    LinkSigner,
    SignedClaims,
)
from counterpoint.policy.audit import Actor, AuditTrail
from counterpoint.policy.contact_service import PREFERENCE_ACTION, ContactService, PreferenceSource
from counterpoint.profile.identifiers import parse_identifier
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.profile.validation import country_codes, normalise_market
from counterpoint.settings import Settings

__all__ = [
    "CONFIRM_TTL",
    "PREFERENCES_TTL",
    "UNSUBSCRIBE_TTL",
    "ConfirmClaims",
    "ConsentLinks",
    "Link",
    "PreferencesClaims",
    "UnsubscribeClaims",
    "confirmation_message",
    "hash_wording",
]

CONFIRM_TTL = dt.timedelta(days=7)
UNSUBSCRIBE_TTL = dt.timedelta(days=400)
"""Unsubscribe links must keep working long after the message was sent."""
PREFERENCES_TTL = dt.timedelta(days=400)

CONFIRM_PATH = "/consent/confirm"
UNSUBSCRIBE_PATH = "/consent/unsubscribe"
PREFERENCES_PATH = "/consent/preferences"


_EVENT_CHANNEL: Mapping[ConsentChannel, Channel] = {
    ConsentChannel.EMAIL: Channel.CAMPAIGN_EMAIL,
    ConsentChannel.SMS: Channel.SMS,
}


def hash_wording(text: str) -> str:
    """SHA-256 (hex) of the exact wording shown to the HCP."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    token: str
    nonce: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ConfirmClaims:
    hcp_id: str
    scope: ConsentScope
    wording_version: str
    wording_hash: str | None
    wording: str | None
    nonce: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class UnsubscribeClaims:
    hcp_id: str
    channel: ConsentChannel
    purposes: tuple[Purpose, ...] | None  # None: every purpose
    market: str | None
    nonce: str


@dataclass(frozen=True, slots=True)
class PreferencesClaims:
    hcp_id: str
    market: str | None
    nonce: str
    expires_at: dt.datetime


def _bad_claims() -> InvalidLinkError:
    return InvalidLinkError(
        "the link is not valid: its content cannot be read",
        field="token",
        fix="open the link exactly as it was sent to you, or ask for a new message",
    )


def _text(claims: SignedClaims, key: str, *, optional: bool = False) -> str | None:
    value = claims.claims.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _bad_claims()
    return value


def _required(claims: SignedClaims, key: str) -> str:
    value = _text(claims, key)
    if value is None:
        raise _bad_claims()
    return value


def confirmation_message(link: Link, scope: ConsentScope, wording: str | None) -> dict[str, str]:
    """The subject and plain text of the double opt-in message (sent by delivery)."""
    what = scope.purpose.value.replace("_", " ")
    brand = f" about {scope.brand}" if scope.brand else ""
    lines = [
        f"Please confirm that you want to receive {what} information{brand} "
        f"by {scope.channel.value.replace('_', ' ')}.",
        "",
    ]
    if wording:
        lines += ["What you agree to:", wording, ""]
    lines += [
        "To confirm, open this link and press the button:",
        link.url,
        "",
        f"The link works until {link.expires_at:%Y-%m-%d %H:%M} UTC. If you did not ask for "
        "this, ignore this message: nothing will be sent to you.",
    ]
    return {"subject": "Please confirm your subscription", "text": "\n".join(lines)}


class ConsentLinks:
    """Builds and reads the self-service links; the base URL is ``public_base_url``."""

    def __init__(self, signer: LinkSigner, base_url: str, clock: Clock) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock.now()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> ConsentLinks:
        return cls(LinkSigner(settings.secret_key, clock), settings.public_base_url, clock)

    def _link(
        self, purpose: LinkPurpose, path: str, claims: dict[str, Any], ttl: dt.timedelta
    ) -> Link:
        nonce = secrets.token_urlsafe(12)
        token = self._signer.dump(purpose, claims, ttl=ttl, nonce=nonce)
        if len(token) > MAX_TOKEN_CHARS:
            raise ValidationFailedError(
                "the link would be too long",
                field="wording",
                fix="shorten the consent wording carried in the link",
            )
        issued = dt.datetime.fromtimestamp(int(self._clock.now().timestamp()), dt.UTC)
        return Link(f"{self._base}{path}?{urlencode({'token': token})}", token, nonce, issued + ttl)

    # --- building ---------------------------------------------------------------------
    def confirmation(
        self,
        hcp_id: str,
        scope: ConsentScope,
        *,
        wording_version: str,
        wording_hash: str | None,
        wording: str | None = None,
        ttl: dt.timedelta = CONFIRM_TTL,
    ) -> Link:
        claims = {
            "h": hcp_id,
            "c": scope.channel.value,
            "p": scope.purpose.value,
            "m": scope.market,
            "b": scope.brand,
            "t": scope.content_type,
            "v": wording_version,
            "x": wording_hash,
            "w": wording,
        }
        return self._link(LinkPurpose.CONFIRM, CONFIRM_PATH, claims, ttl)

    def unsubscribe(
        self,
        hcp_id: str,
        channel: ConsentChannel,
        *,
        purposes: Sequence[Purpose] | None = None,
        market: str | None = None,
        ttl: dt.timedelta = UNSUBSCRIBE_TTL,
    ) -> Link:
        claims = {
            "h": hcp_id,
            "c": channel.value,
            "p": sorted(p.value for p in purposes) if purposes else None,
            "m": market,
        }
        return self._link(LinkPurpose.UNSUBSCRIBE, UNSUBSCRIBE_PATH, claims, ttl)

    def preferences(
        self, hcp_id: str, *, market: str | None = None, ttl: dt.timedelta = PREFERENCES_TTL
    ) -> Link:
        return self._link(
            LinkPurpose.PREFERENCES, PREFERENCES_PATH, {"h": hcp_id, "m": market}, ttl
        )

    def list_unsubscribe_headers(
        self,
        hcp_id: str,
        *,
        purposes: Sequence[Purpose] | None = None,
        market: str | None = None,
    ) -> dict[str, str]:
        """The RFC 8058 headers for one promotional e-mail to one HCP."""
        link = self.unsubscribe(hcp_id, ConsentChannel.EMAIL, purposes=purposes, market=market)
        return {
            "List-Unsubscribe": f"<{link.url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    # --- reading ----------------------------------------------------------------------
    def read_confirmation(self, token: str | None) -> ConfirmClaims:
        signed = self._signer.load(LinkPurpose.CONFIRM, token)
        try:
            scope = ConsentScope(
                ConsentChannel(_required(signed, "c")),
                Purpose(_required(signed, "p")),
                _required(signed, "m"),
                _text(signed, "b", optional=True),
                _text(signed, "t", optional=True),
            )
        except ValueError:
            raise _bad_claims() from None
        return ConfirmClaims(
            hcp_id=_required(signed, "h"),
            scope=scope,
            wording_version=_required(signed, "v"),
            wording_hash=_text(signed, "x", optional=True),
            wording=_text(signed, "w", optional=True),
            nonce=signed.nonce,
            expires_at=signed.expires_at,
        )

    def read_unsubscribe(self, token: str | None) -> UnsubscribeClaims:
        signed = self._signer.load(LinkPurpose.UNSUBSCRIBE, token)
        raw = signed.claims.get("p")
        try:
            channel = ConsentChannel(_required(signed, "c"))
            if raw is None:
                purposes = None
            elif isinstance(raw, list) and raw:
                purposes = tuple(Purpose(p) for p in raw)
            else:
                raise ValueError("purposes")
        except ValueError:
            raise _bad_claims() from None
        return UnsubscribeClaims(
            hcp_id=_required(signed, "h"),
            channel=channel,
            purposes=purposes,
            market=_text(signed, "m", optional=True),
            nonce=signed.nonce,
        )

    def read_preferences(self, token: str | None) -> PreferencesClaims:
        signed = self._signer.load(LinkPurpose.PREFERENCES, token)
        return PreferencesClaims(
            hcp_id=_required(signed, "h"),
            market=_text(signed, "m", optional=True),
            nonce=signed.nonce,
            expires_at=signed.expires_at,
        )


# --- the HCP's own pages: use cases ------------------------------------------------------

STOP_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
"""An SMS whose whole text (trimmed, any case) is one of these withdraws SMS consent."""

PREFERENCE_CHANNELS: tuple[ConsentChannel, ...] = (
    ConsentChannel.EMAIL,
    ConsentChannel.SMS,
    ConsentChannel.PHONE,
    ConsentChannel.MESSAGING,
    ConsentChannel.REMOTE_CALL,
    ConsentChannel.F2F_CALL,
    ConsentChannel.DIRECT_MAIL,
)
"""Channels always offered in the preference centre (others appear once they hold records)."""

FREQUENCY_CHOICES: tuple[int, ...] = (1, 2, 4, 8)
"""Offered caps on promotional messages per month (none chosen: no cap of the HCP's own)."""

FREQUENCY_ACTION = PREFERENCE_ACTION
"""Audit action of a change of the HCP's chosen cap (stored in ``contact_preference``, which
the guard enforces): after = {"max_promotional_per_month": N|None, "market": …, …}."""

PREFERENCE_REASON = "changed by the HCP in the preference centre"


def stop_keyword(text: str) -> str | None:
    """The opt-out keyword an SMS consists of, or None. Pure."""
    word = text.strip().upper()
    return word if word in STOP_KEYWORDS else None


def parse_choice(value: str, *, field: str) -> tuple[ConsentChannel, Purpose]:
    """A preference-centre form value ``channel:purpose``. Pure."""
    channel, sep, purpose = value.partition(":")
    try:
        if not sep:
            raise ValueError(value)
        return ConsentChannel(channel), Purpose(purpose)
    except ValueError:
        raise ValidationFailedError(
            f"{value[:40]!r} is not a channel and purpose of this page",
            field=field,
            fix="submit the form as the page shows it",
        ) from None


Key = tuple[ConsentChannel, Purpose]


def preference_changes(
    current: Mapping[Key, bool], shown: Set[Key], chosen: Set[Key]
) -> tuple[list[Key], list[Key]]:
    """What a preference-centre form changes: (to grant, to revoke). Pure.

    ``current``: whether each offered choice is granted now; ``shown``: the choices the page
    showed; ``chosen``: those ticked. Only a shown choice whose tick differs from its current
    state changes; a choice the page did not show never changes.
    """
    grant = sorted(k for k in shown & chosen if not current.get(k, False))
    revoke = sorted(k for k in shown - chosen if current.get(k, False))
    return grant, revoke


@dataclass(frozen=True, slots=True)
class Requester:
    """Where a page request came from (kept as proof)."""

    ip: str | None
    user_agent: str | None
    origin: str


@dataclass(frozen=True, slots=True)
class Choice:
    channel: ConsentChannel
    purpose: Purpose
    state: str  # granted, denied, revoked, pending, expired, none
    checked: bool

    @property
    def key(self) -> str:
        return f"{self.channel.value}:{self.purpose.value}"


@dataclass(frozen=True, slots=True)
class PreferencesView:
    hcp_id: str
    market: str
    choices: tuple[Choice, ...]  # channel-major, in enum order
    others: tuple[ScopeStatus, ...]  # brand-specific or other markets: shown, not editable
    wording: str
    wording_version: str
    wording_hash: str
    frequency: int | None


@dataclass(frozen=True, slots=True)
class PreferencesSaved:
    granted: tuple[ConsentRecord, ...]
    revoked: tuple[ConsentRecord, ...]
    frequency: int | None
    frequency_changed: bool


@dataclass(frozen=True, slots=True)
class SmsOutcome:
    action: str  # withdrawn, recorded_by_subject, duplicate, ignored
    keyword: str | None
    recorded: int
    hcp_id: str | None


def _hcp_actor(hcp_id: str, requester: Requester) -> Actor:
    return Actor(f"hcp:{hcp_id}", None, requester.origin)


class SelfService:
    """What the HCP does on their own pages: confirm, unsubscribe, preferences, SMS STOP."""

    def __init__(
        self,
        links: ConsentLinks,
        *,
        sessions: sessionmaker[Session],
        consents: ConsentService,
        profiles: ProfileService,
        audit: AuditTrail,
        contact: ContactService,
        preference_wording: str,
        preference_wording_version: str,
        log: EventLog | None = None,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self.links = links
        self._log = log
        self._wake = wake
        self._sessions = sessions
        self._consents = consents
        self._profiles = profiles
        self._audit = audit
        self._contact = contact
        self._wording = preference_wording
        self._wording_version = preference_wording_version

    # --- double opt-in ----------------------------------------------------------------
    def start_double_opt_in(
        self,
        ref: HcpRef,
        scope: ConsentScope,
        *,
        wording_version: str,
        wording_hash: str | None,
        wording: str | None,
        source: ConsentSource,
        actor: Actor,
        reason: str,
        ttl: dt.timedelta = CONFIRM_TTL,
    ) -> tuple[ConsentRecord, Link, dict[str, str]]:
        """Record a pending consent and make the confirmation link and message."""
        if wording is not None:
            digest = hash_wording(wording)
            if wording_hash is not None and wording_hash != digest:
                raise ValidationFailedError(
                    "wording_hash is not the SHA-256 of wording",
                    field="wording_hash",
                    fix="send the SHA-256 of exactly the wording text, or leave it out",
                )
            wording_hash = digest
        if wording_hash is None:
            raise ValidationFailedError(
                "the proof needs the wording or its SHA-256",
                field="wording_hash",
                fix="send wording (the text shown to the HCP) or wording_hash",
            )
        market = normalise_market(scope.market)
        if market is None:
            raise ValidationFailedError(
                f"{scope.market[:10]!r} is not an ISO 3166-1 alpha-2 country code",
                field="market",
                fix="write a two-letter code such as DE or US",
            )
        scope = dataclasses.replace(scope, market=market)
        link = self.links.confirmation(
            ref.id,
            scope,
            wording_version=wording_version,
            wording_hash=wording_hash,
            wording=wording,
            ttl=ttl,
        )
        record = self._consents.record(
            hcp_id=ref.id,
            subject=None,
            scope=scope,
            state=ConsentState.PENDING,
            proof=Proof(
                source=source,
                captured_by=actor.name,
                wording_version=wording_version,
                wording_hash=wording_hash,
                evidence=f"confirmation link sent, valid until {link.expires_at.isoformat()}",
            ),
            actor=actor,
            reason=reason,
            dedupe_key=f"doi-pending:{link.nonce}",
        )
        assert record is not None  # a fresh nonce is never a duplicate
        return record, link, confirmation_message(link, scope, wording)

    def confirm_page(self, token: str | None) -> ConfirmClaims:
        """Check a confirmation link (and that its HCP exists); records nothing."""
        claims = self.links.read_confirmation(token)
        self._profiles.resolve(claims.hcp_id)
        return claims

    def confirm(self, token: str | None, requester: Requester) -> tuple[ConfirmClaims, bool]:
        """Record the grant the link stands for; (claims, False) when already confirmed."""
        claims = self.links.read_confirmation(token)
        ref = self._profiles.resolve(claims.hcp_id)
        record = self._consents.record(
            hcp_id=ref.id,
            subject=None,
            scope=claims.scope,
            state=ConsentState.GRANTED,
            proof=Proof(
                source=ConsentSource.EMAIL_LINK,
                captured_by="hcp (double opt-in link)",
                wording_version=claims.wording_version,
                wording_hash=claims.wording_hash,
                ip=requester.ip,
                user_agent=requester.user_agent,
                evidence="double opt-in confirmed",
            ),
            actor=_hcp_actor(ref.id, requester),
            reason="confirmed by the HCP through the double opt-in link",
            dedupe_key=f"confirm:{claims.nonce}",
        )
        return claims, record is not None

    # --- unsubscribe ------------------------------------------------------------------
    def _markets(self, ref: HcpRef, channel: ConsentChannel, *extra: str | None) -> list[str]:
        held = {r.scope.market for r in self._consents.records(ref) if r.scope.channel == channel}
        wanted = held | {m for m in (ref.market, *extra) if m}
        return sorted(m for m in wanted if m in country_codes())

    def unsubscribe_page(self, token: str | None) -> UnsubscribeClaims:
        claims = self.links.read_unsubscribe(token)
        self._profiles.resolve(claims.hcp_id)
        return claims

    def unsubscribe(
        self, token: str | None, requester: Requester, *, one_click: bool
    ) -> tuple[UnsubscribeClaims, int]:
        """Withdraw the link's channel for its purposes; returns records written (0: replay)."""
        claims = self.links.read_unsubscribe(token)
        ref = self._profiles.resolve(claims.hcp_id)
        source = ConsentSource.ONE_CLICK if one_click else ConsentSource.EMAIL_LINK
        records = self._consents.withdraw(
            ref,
            claims.channel,
            proof=Proof(
                source=source,
                captured_by="hcp (one-click unsubscribe)"
                if one_click
                else "hcp (unsubscribe link)",
                ip=requester.ip,
                user_agent=requester.user_agent,
                evidence="List-Unsubscribe=One-Click" if one_click else "unsubscribe page",
            ),
            actor=_hcp_actor(ref.id, requester),
            reason="one-click unsubscribe (RFC 8058) from a message"
            if one_click
            else "unsubscribed by the HCP through the link in a message",
            purposes=list(claims.purposes) if claims.purposes else None,
            markets=self._markets(ref, claims.channel, claims.market),
            dedupe_key=f"unsub:{claims.nonce}",
        )
        if records:
            self._unsubscribed(ref, claims.channel, f"unsub:{claims.nonce}", one_click=one_click)
        return claims, len(records)

    def _unsubscribed(
        self, ref: HcpRef, channel: ConsentChannel, key: str, *, one_click: bool = False
    ) -> None:
        """The ``unsubscribed`` delivery result in the event log (the withdrawal itself is
        already in the ledger: the consent consumer skips events of this source)."""
        if self._log is None or ref.subject is None:
            return
        now = self._clock_now()
        event = LogEvent(
            message_id=f"unsubscribed:{key}",
            kind=EventKind.TRACK,
            subject=ref.subject,
            occurred_at=now,
            received_at=now,
            source=UNSUBSCRIBE_SOURCE,
            channel=_EVENT_CHANNEL.get(channel),
            action=Action.UNSUBSCRIBED,
            event_name="Unsubscribed",
            actor_type=ActorType.HCP,
            market=ref.market,
            payload={"properties": {"hcp_id": ref.id, "one_click": one_click}},
        )
        self._log.append([event])
        if self._wake is not None:
            self._wake()

    def _clock_now(self) -> dt.datetime:
        return self.links.now()

    # --- SMS keywords -----------------------------------------------------------------
    def sms_inbound(
        self, sender: str, text: str, message_id: str, requester: Requester
    ) -> SmsOutcome:
        keyword = stop_keyword(text)
        if keyword is None:
            return SmsOutcome("ignored", None, 0, None)
        phone = parse_identifier("phone", sender, field="from")
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone.value, None))
        market = region if region and region in country_codes() else None
        proof = Proof(
            source=ConsentSource.SMS_KEYWORD,
            captured_by=f"sms from {phone.value}",
            evidence=f"keyword {keyword}; message {message_id}",
        )
        actor = Actor(f"sms:{phone.value}", None, requester.origin)
        reason = f"the HCP texted {keyword}"
        ref = self._profiles.resolve_identifier(phone.key)
        key = f"sms:{message_id}"
        if ref is not None:
            markets = self._markets(ref, ConsentChannel.SMS, market)
            records = self._consents.withdraw(
                ref,
                ConsentChannel.SMS,
                proof=proof,
                actor=actor,
                reason=reason,
                markets=markets,
                dedupe_key=key,
            )
            action = "withdrawn" if records else "duplicate"
            if records:
                self._unsubscribed(ref, ConsentChannel.SMS, key)
            return SmsOutcome(action, keyword, len(records), ref.id)
        if market is None:
            raise ValidationFailedError(
                f"the country of {phone.value} cannot be told, so the opt-out has no market",
                field="from",
                fix="send the sender's number in E.164 form with its country code",
            )
        written = 0
        try:
            with self._sessions.begin() as session:
                for purpose in Purpose:
                    rec = self._consents.record_in(
                        session,
                        hcp_id=None,
                        subject=phone.key,
                        scope=ConsentScope(ConsentChannel.SMS, purpose, market),
                        state=ConsentState.REVOKED,
                        proof=proof,
                        actor=actor,
                        reason=reason,
                        dedupe_key=f"{key}:{market}:{purpose.value}",
                    )
                    written += rec is not None
        except IntegrityError:  # the same message delivered twice at once
            written = 0
        return SmsOutcome("recorded_by_subject" if written else "duplicate", keyword, written, None)

    # --- preference centre --------------------------------------------------------------
    def _latest_frequency(self, ref: HcpRef, market: str) -> int | None:
        with self._sessions() as session:
            return self._contact.preference_in(session, ref, market)

    def _market_of(self, ref: HcpRef, claims: PreferencesClaims) -> str:
        market = claims.market or ref.market
        if not market:
            raise ValidationFailedError(
                "this link does not say which country your preferences are for",
                field="market",
                fix="use the preference link of a more recent message",
            )
        return market

    def preferences(self, token: str | None) -> PreferencesView:
        claims = self.links.read_preferences(token)
        ref = self._profiles.resolve(claims.hcp_id)
        market = self._market_of(ref, claims)
        statuses = self._consents.state(ref)
        general = {
            (s.scope.channel, s.scope.purpose): s
            for s in statuses
            if s.scope.market == market and s.scope.brand is None and s.scope.content_type is None
        }
        channels = set(PREFERENCE_CHANNELS) | {c for c, _ in general}
        choices = []
        for channel in ConsentChannel:
            if channel not in channels:
                continue
            for purpose in Purpose:
                status = general.get((channel, purpose))
                state = status.state.value if status else "none"
                choices.append(Choice(channel, purpose, state, state == ConsentState.GRANTED.value))
        shown = set(general.values())
        others = tuple(s for s in statuses if s not in shown)
        return PreferencesView(
            hcp_id=ref.id,
            market=market,
            choices=tuple(choices),
            others=others,
            wording=self._wording,
            wording_version=self._wording_version,
            wording_hash=hash_wording(self._wording),
            frequency=self._latest_frequency(ref, market),
        )

    def save_preferences(
        self,
        token: str | None,
        *,
        shown: Sequence[str],
        chosen: Sequence[str],
        frequency: str | None,
        wording_hash_shown: str | None,
        requester: Requester,
    ) -> PreferencesSaved:
        """Record grants and revocations for what changed only, and the frequency cap."""
        view = self.preferences(token)
        if wording_hash_shown != view.wording_hash:
            raise ConflictError(
                "the consent wording changed since the page was shown",
                field="wording_hash",
                fix="open the page again, read the wording, and save again",
            )
        shown_set = {parse_choice(v, field="shown") for v in shown}
        chosen_set = {parse_choice(v, field="consent") for v in chosen}
        offered = {(c.channel, c.purpose) for c in view.choices}
        if not chosen_set <= shown_set or not shown_set <= offered:
            raise ValidationFailedError(
                "the form names choices this page did not offer",
                field="consent",
                fix="submit the form as the page shows it",
            )
        cap = _parse_frequency(frequency)
        current = {(c.channel, c.purpose): c.checked for c in view.choices}
        to_grant, to_revoke = preference_changes(current, shown_set, chosen_set)
        freq_note = (
            f"frequency: at most {cap} promotional messages per month"
            if cap
            else "frequency: no cap chosen"
        )
        actor = _hcp_actor(view.hcp_id, requester)
        ref_id = view.hcp_id
        ref = self._profiles.resolve(ref_id)
        granted: list[ConsentRecord] = []
        revoked: list[ConsentRecord] = []
        with self._sessions.begin() as session:
            for (channel, purpose), state, out in [
                *((k, ConsentState.GRANTED, granted) for k in to_grant),
                *((k, ConsentState.REVOKED, revoked) for k in to_revoke),
            ]:
                grant = state is ConsentState.GRANTED
                rec = self._consents.record_in(
                    session,
                    hcp_id=ref_id,
                    subject=None,
                    scope=ConsentScope(channel, purpose, view.market),
                    state=state,
                    proof=Proof(
                        source=ConsentSource.PREFERENCE_CENTRE,
                        captured_by="hcp (preference centre)",
                        wording_version=view.wording_version if grant else None,
                        wording_hash=view.wording_hash if grant else None,
                        ip=requester.ip,
                        user_agent=requester.user_agent,
                        evidence=freq_note,
                    ),
                    actor=actor,
                    reason=PREFERENCE_REASON,
                )
                if rec is not None:
                    out.append(rec)
            # stored (and audited) with the consent records: the guard enforces it
            _, changed = self._contact.set_preference_in(
                session,
                ref,
                view.market,
                cap,
                source=PreferenceSource.PREFERENCE_CENTRE,
                actor=actor,
                reason=PREFERENCE_REASON,
            )
        return PreferencesSaved(tuple(granted), tuple(revoked), cap, changed)


def _parse_frequency(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit() and int(text) in FREQUENCY_CHOICES:
        return int(text)
    raise ValidationFailedError(
        f"{text[:20]!r} is not one of the offered frequencies",
        field="frequency",
        fix="choose one of the frequencies on the page",
    )
