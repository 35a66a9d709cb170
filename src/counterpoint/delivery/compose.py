"""From an outbox entry to the message an adapter sends: the HCP's details, the approved
content, its fragments, the rep's and the event's details, signed unsubscribe, preference
and tracking links, rendered in the sandbox (``content.render``).

Everything for a batch of entries is loaded in a few queries. A problem that no retry can fix
(the content or the HCP is gone, the template needs a token the context lacks, no address on
the channel) becomes a ``PermanentDeliveryError`` for that entry alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.channel.base import OutboundMessage, PermanentDeliveryError
from counterpoint.consent.ledger import ConsentChannel, Purpose, consent_channel
from counterpoint.consent.links import ConsentLinks
from counterpoint.content.models import ContentItem
from counterpoint.content.render import (
    Fragment,
    LinkTracker,
    RenderContext,
    Rendered,
    TemplateError,
    render,
)
from counterpoint.delivery.models import Outbound
from counterpoint.delivery.tracking import TrackingLinks
from counterpoint.event.canonical import Channel
from counterpoint.profile.service import HcpRef, ProfileService, Recipient

__all__ = ["Composer", "ContentBody", "hcp_tokens", "postal_block"]

_EMAIL = frozenset({Channel.CAMPAIGN_EMAIL, Channel.REP_EMAIL})
_PHONE = frozenset({Channel.SMS, Channel.MESSAGING})
_GREETING = {
    "en": "Dear",
    "de": "Guten Tag",
    "fr": "Bonjour",
    "es": "Estimado/a",
    "it": "Gentile",
    "nl": "Beste",
    "pt": "Caro/a",
}


@dataclass(frozen=True, slots=True)
class ContentBody:
    """What rendering needs of one content item."""

    id: str
    code: str
    title: str
    body: Mapping[str, Any]
    fragment_codes: tuple[str, ...]
    job_code: str | None
    brand: str | None
    market: str | None = None


def hcp_tokens(recipient: Recipient) -> dict[str, str]:
    """The ``hcp.*`` tokens of one HCP (empty strings where the record has nothing).

    ``salutation`` is the greeting in the HCP's language with the title ("Guten Tag Dr.",
    "Dear Prof."), to be followed by the name in the template: ``{{ hcp.salutation }}
    {{ hcp.last_name }}``. Without a title it is the greeting and the first name.
    """
    first = recipient.first_name or ""
    last = recipient.last_name or ""
    title = recipient.title or ""
    greeting = _GREETING.get((recipient.ref.language or "en")[:2], _GREETING["en"])
    return {
        "salutation": f"{greeting} {title or first}".strip(),
        "title": title,
        "first_name": first,
        "last_name": last,
        "full_name": " ".join(p for p in (title, first, last) if p),
        "specialty": recipient.specialty or "",
    }


def postal_block(recipient: Recipient) -> str | None:
    """Name, organisation and city, one per line; None without an organisation."""
    if recipient.organisation is None:
        return None
    name = " ".join(p for p in (recipient.title, recipient.first_name, recipient.last_name) if p)
    lines = [name, recipient.organisation, recipient.city or ""]
    return "\n".join(line for line in lines if line)


def _texts(item: ContentBody) -> tuple[str | None, str, str | None]:
    """Subject, text and html templates of an item, whatever its type."""
    body = item.body
    subject = body.get("subject")
    text = body.get("text")
    if text is None and body.get("slides"):
        text = "\n".join(
            f"{s.get('title', '')}: {s.get('key_message', '')}" for s in body["slides"]
        )
    if text is None and body.get("url"):
        text = f"{item.title}: {body['url']}"
    return (
        str(subject) if subject is not None else item.title,
        str(text if text is not None else item.title),
        str(body["html"]) if body.get("html") else None,
    )


class Composer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        links: ConsentLinks,
        tracking: TrackingLinks,
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._links = links
        self._tracking = tracking

    # --- loading ------------------------------------------------------------------------
    def content(self, ids: Iterable[str]) -> tuple[dict[str, ContentBody], dict[str, Fragment]]:
        """Content items by id and every fragment they include, by code."""
        wanted = sorted(set(ids))
        items: dict[str, ContentBody] = {}
        fragments: dict[str, Fragment] = {}
        if not wanted:
            return items, fragments
        with self._sessions() as session:
            rows = session.scalars(select(ContentItem).where(ContentItem.id.in_(wanted))).all()
            codes = sorted({c for r in rows for c in r.fragment_codes})
            frags = (
                session.scalars(
                    select(ContentItem).where(
                        ContentItem.code.in_(codes), ContentItem.kind == "fragment"
                    )
                ).all()
                if codes
                else []
            )
        for r in rows:
            items[r.id] = ContentBody(
                r.id, r.code, r.title, r.body, tuple(r.fragment_codes), r.job_code, r.brand
            )
        for f in frags:
            fragments[f.code] = Fragment(text=str(f.body.get("text", "")), html=f.body.get("html"))
        return items, fragments

    # --- composing ----------------------------------------------------------------------
    def compose_many(
        self, entries: Sequence[Outbound], refs: Mapping[str, HcpRef] | None = None
    ) -> tuple[dict[str, OutboundMessage | PermanentDeliveryError], dict[str, Recipient]]:
        """Each entry's message (or why it cannot have one), and the recipients by the
        entries' HCP ids (``refs``: those ids resolved already, if the caller has them)."""
        recipients = self._profiles.recipients((e.hcp_id for e in entries), refs)
        items, fragments = self.content(e.content_id for e in entries if e.content_id)
        out: dict[str, OutboundMessage | PermanentDeliveryError] = {}
        for entry in entries:
            try:
                out[entry.id] = self.compose(entry, recipients, items, fragments)
            except PermanentDeliveryError as exc:
                out[entry.id] = exc
        return out, recipients

    def compose(
        self,
        entry: Outbound,
        recipients: Mapping[str, Recipient],
        items: Mapping[str, ContentBody],
        fragments: Mapping[str, Fragment],
        *,
        track: bool = True,
    ) -> OutboundMessage:
        recipient = recipients.get(entry.hcp_id)
        if recipient is None:
            raise PermanentDeliveryError("the HCP is unknown or was erased", code="no_hcp")
        channel = Channel(entry.channel)
        item = items.get(entry.content_id) if entry.content_id else None
        if entry.content_id and item is None:
            raise PermanentDeliveryError("the content no longer exists", code="no_content")
        address = self._address(channel, recipient)
        links: dict[str, str] = {}
        headers: dict[str, str] = {}
        if channel in _EMAIL or channel in _PHONE or channel is Channel.DIRECT_MAIL:
            links, headers = self._links_for(entry, recipient, channel)  # the HCP's own links
        context = RenderContext(
            hcp=hcp_tokens(recipient),
            rep=self._rep_tokens(entry.context),
            event=_mapping(entry.context.get("event")),
            links=links,
        )
        rendered = self._render(entry, item, fragments, context, channel, recipient, track)
        return OutboundMessage(
            outbox_id=entry.id,
            idempotency_key=entry.idempotency_key,
            channel=channel,
            hcp_id=recipient.ref.id,
            address=address,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            sender=_text(entry.context.get("sender")),
            headers=headers,
            content_id=entry.content_id,
            approval_code=item.job_code if item else None,
            brand=entry.brand or (item.brand if item else None),
            market=recipient.ref.market,
            metadata={
                k: v
                for k, v in {
                    "rep": entry.context.get("rep"),
                    "purpose": entry.purpose,
                    "requested_by": entry.requested_by,
                    "journey": entry.context.get("journey"),
                    # a rep task's why and by when (the rep inbox and the CRM export show them)
                    "reason": entry.context.get("reason"),
                    "due_at": entry.context.get("due_at"),
                    "synthetic": recipient.synthetic or None,
                }.items()
                if v is not None
            },
            created_at=entry.created_at,
        )

    def _render(
        self,
        entry: Outbound,
        item: ContentBody | None,
        fragments: Mapping[str, Fragment],
        context: RenderContext,
        channel: Channel,
        recipient: Recipient,
        track: bool,
    ) -> Rendered:
        if item is None:
            text = _text(entry.context.get("text"))
            if not text:
                raise PermanentDeliveryError("nothing to send: no content and no text")
            return Rendered(_text(entry.context.get("subject")), text, None)
        subject, text, html = _texts(item)
        tracker: LinkTracker | None = None
        if track and html is not None and channel in _EMAIL:
            tracker = self._tracking.for_message(
                outbox_id=entry.id,
                hcp_id=recipient.ref.id,
                channel=channel.value,
                content_id=item.id,
            )
        try:
            rendered = render(
                subject=subject,
                text=text,
                html=html if channel in _EMAIL else None,
                context=context,
                fragments=fragments,
                tracker=tracker,
            )
        except TemplateError as exc:
            raise PermanentDeliveryError(
                f"the content cannot be rendered: {exc.detail}", code="template"
            ) from None
        if channel in _PHONE:
            return Rendered(None, rendered.text, None)
        return rendered

    def address_problems(
        self, hcp_ids: Sequence[str], channel: Channel
    ) -> dict[str, PermanentDeliveryError]:
        """HCPs that cannot be reached on ``channel`` (no e-mail address, phone number or
        postal address), with why: a send can say so at once instead of a dead letter."""
        if not (channel in _EMAIL or channel in _PHONE or channel is Channel.DIRECT_MAIL):
            return {}
        recipients = self._profiles.recipients(hcp_ids)
        out: dict[str, PermanentDeliveryError] = {}
        for hcp_id in hcp_ids:
            recipient = recipients.get(hcp_id)
            if recipient is None:
                out[hcp_id] = PermanentDeliveryError("the HCP is unknown", code="no_hcp")
                continue
            try:
                self._address(channel, recipient)
            except PermanentDeliveryError as exc:
                out[hcp_id] = exc
        return out

    @staticmethod
    def _address(channel: Channel, recipient: Recipient) -> str | None:
        if channel in _EMAIL:
            if not recipient.emails:
                raise PermanentDeliveryError("the HCP has no e-mail address", code="no_address")
            return recipient.emails[0]
        if channel in _PHONE:
            if not recipient.phones:
                raise PermanentDeliveryError("the HCP has no phone number", code="no_address")
            return recipient.phones[0]
        if channel is Channel.DIRECT_MAIL:
            block = postal_block(recipient)
            if block is None:
                raise PermanentDeliveryError("the HCP has no postal address", code="no_address")
            return block
        return None

    def _links_for(
        self, entry: Outbound, recipient: Recipient, channel: Channel
    ) -> tuple[dict[str, str], dict[str, str]]:
        market = recipient.ref.market
        needed = consent_channel(channel) or ConsentChannel.EMAIL
        unsubscribe = self._links.unsubscribe(
            recipient.ref.id, needed, purposes=[Purpose(entry.purpose)], market=market
        )
        preferences = self._links.preferences(recipient.ref.id, market=market)
        links = {"unsubscribe": unsubscribe.url, "preferences": preferences.url}
        headers: dict[str, str] = {}
        if channel in _EMAIL:
            headers = {
                "List-Unsubscribe": f"<{unsubscribe.url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        return links, headers

    @staticmethod
    def _rep_tokens(context: Mapping[str, Any]) -> dict[str, str] | None:
        rep = context.get("rep")
        if not rep:
            return None
        return {
            "name": str(context.get("rep_display_name") or rep),
            "email": str(context.get("rep_email") or ""),
            "phone": str(context.get("rep_phone") or ""),
            "signature": str(
                context.get("rep_signature") or context.get("rep_display_name") or rep
            ),
        }


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _mapping(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(k): str(v) for k, v in value.items()}
