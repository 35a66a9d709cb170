"""Sending and delivery end to end against a real SMTP server on loopback (aiosmtpd), on both
deployments: content approved through the library (three MLR signatures), a channels
document routing e-mail to the smtp adapter, ``delivery.send`` then the worker. What the
server receives is parsed and checked; a server that is down, a 550 for the recipient, a 451
(greylisting) and content withdrawn after queueing each end as the rules say. Every HCP,
address and message is synthetic.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import NOW, TEST_ACTOR
from tests.contract.receivers import Mail, SmtpReceiver

from counterpoint.channel.smtp import message_id
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.content.schemas import parse_documents
from counterpoint.content.workflow import ApprovalTerms
from counterpoint.delivery.models import OutboxEntry
from counterpoint.delivery.routing import load_routes
from counterpoint.delivery.service import SendRequest
from counterpoint.event.canonical import Channel, EventKind, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.audit import Actor
from counterpoint.profile.identifiers import npi_is_valid

SENDER = "Cardiomax (synthetic) <news@pharma.example>"
PASSWORD = "correct horse battery staple"
DISCIPLINES = ("medical", "legal", "regulatory")
ARTICLE = "https://pharma.example/cardiomax/dosing"
SYSTEM = Actor.system("tests")

FOOTER: dict[str, Any] = {
    "kind": "fragment",
    "code": "footer-de",
    "title": "Footer (synthetic)",
    "function": "promotional",
    "markets": ["DE"],
    "languages": ["de"],
    "synthetic": True,
    "body": {
        "text": "Abmelden: {{ links.unsubscribe }}",
        "html": '<p><a href="{{ links.unsubscribe }}">Abmelden</a></p>',
    },
}
EMAIL: dict[str, Any] = {
    "code": "CMX-DE-EM-001",
    "asset_type": "campaign_email",
    "title": "Cardiomax dosing update (synthetic)",
    "brand": "Cardiomax",
    "therapeutic_area": "cardiology",
    "topics": ["dosing"],
    "journey_stage": "consideration",
    "function": "promotional",
    "markets": ["DE"],
    "languages": ["de"],
    "channels": ["campaign_email"],
    "claims": [{"text": "Works (synthetic)", "references": ["Synthetic 2026;1:1"]}],
    "minutes": 2,
    "synthetic": True,
    "body": {
        "subject": "{{ hcp.salutation }} {{ hcp.last_name }}, neue Daten zu Cardiomax",
        "text": "{{ hcp.salutation }} {{ hcp.last_name }},\n"
        f"mehr: {ARTICLE}\n"
        '{% include "footer-de" %}',
        "html": "<p>{{ hcp.salutation }} {{ hcp.last_name }}</p>"
        f'<p><a href="{ARTICLE}">Neue Daten</a></p>'
        '{% include "footer-de" %}',
    },
}


def npi(n: int) -> str:
    """The ``n``-th synthetic NPI with a valid check digit."""
    base = f"{123450000 + n:09d}"
    return next(base + d for d in "0123456789" if npi_is_valid(base + d))


def hcp(
    container: Container,
    n: int,
    address: str | None = None,
    last_name: str = "Muster",
    *,
    territory: str = "T1",
    consent: bool = True,
) -> str:
    """A synthetic HCP in DE (Berlin time) with, when given, an e-mail address and, unless
    told otherwise, promotional e-mail consent."""
    traits = {
        "market": "DE",
        "territory": territory,
        "time_zone": "Europe/Berlin",
        "preferred_language": "de",
        "title": "Dr.",
        "first_name": "Anna",
        "last_name": last_name,
    }
    if address is not None:
        traits["email"] = address
    subject = f"npi:{npi(n)}"
    event = LogEvent(
        f"id-{n}", EventKind.IDENTIFY, subject, NOW, NOW, "tests", payload={"traits": traits}
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(subject)
    assert hcp_id is not None
    if consent:
        container.consents.record(
            hcp_id=hcp_id,
            subject=None,
            scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
            state=ConsentState.GRANTED,
            proof=Proof(ConsentSource.API, "tests", wording_version="v1"),
            actor=TEST_ACTOR,
            reason="signed form (synthetic)",
            effective_at=NOW - dt.timedelta(days=30),
        )
    return hcp_id


def approve_through_the_library(container: Container) -> str:
    """The footer and the e-mail created by an author, submitted, signed by three MLR
    reviewers who re-enter their passwords; returns the e-mail's id."""
    users = container.users
    users.create("author", "brand_manager", TEST_ACTOR, brands=["Cardiomax"])
    for discipline in DISCIPLINES:
        users.create(f"rev-{discipline}", "mlr_reviewer", TEST_ACTOR)
        users.set_password(f"rev-{discipline}", PASSWORD, TEST_ACTOR)
    author = users.principal("author")
    footer, mail = container.content.create_many(
        parse_documents([FOOTER, EMAIL]), author, Actor.of(author, "tests")
    )
    for item, channels in ((footer, ()), (mail, ("campaign_email",))):
        terms = ApprovalTerms(
            job_code=f"JOB-{item['code']}",
            markets=("DE",),
            channels=channels,
            valid_from=NOW,
            valid_until=NOW + dt.timedelta(days=365),
        )
        container.content.submit(item["id"], terms, author, Actor.of(author, "tests"))
        for discipline in DISCIPLINES:
            reviewer = users.principal(f"rev-{discipline}")
            result = container.content.review(
                item["id"], discipline, "approved", None, reviewer, Actor.of(reviewer, "tests"),
                password=PASSWORD, meaning=f"approved as {discipline} reviewer",
                manifest_hash=container.content.get(item["id"])["manifest_hash"],
            )  # fmt: skip
        assert result["item"]["state"] == "approved", result
    return str(mail["id"])


def route_email_to(container: Container, port: int, directory: Path) -> None:
    """A channels document sending both kinds of e-mail to the server on ``port``."""
    document = directory / "channels.yaml"
    document.write_text(
        "adapters:\n"
        "  mail:\n"
        "    adapter: smtp\n"
        f"    config: {{host: 127.0.0.1, port: {port}, security: none, timeout_s: 5,\n"
        f'             from_address: "{SENDER}"}}\n'
        "routes:\n"
        "  campaign_email: mail\n"
        "  rep_email: mail\n",
        encoding="utf-8",
    )
    routes = load_routes(document, env={})
    assert routes.instance_of(Channel.CAMPAIGN_EMAIL).adapter == "smtp"
    container.delivery_worker._routes = routes
    container.routes = routes


def send(container: Container, asset: str, *hcps: str, key: str = "k1") -> dict[str, Any]:
    request = SendRequest(
        content=asset, channel=Channel.CAMPAIGN_EMAIL, hcp_ids=hcps, request_key=key
    )
    return container.delivery.send(request, principal=None, actor=SYSTEM).as_dict()


def entries(container: Container) -> dict[str, OutboxEntry]:
    """Outbox entries by HCP id."""
    with container.sessions() as session:
        return {e.hcp_id: e for e in session.scalars(select(OutboxEntry))}


def delivery_events(container: Container, n: int) -> list[LogEvent]:
    found = container.log.timeline(TimelineQuery(subjects=[f"npi:{npi(n)}"], limit=100))
    return [e.event for e in sorted(found, key=lambda e: e.seq) if e.event.source == "delivery"]


def actions(container: Container, n: int) -> list[str]:
    return [str(e.action) for e in delivery_events(container, n)]


def parse(mail: Mail) -> EmailMessage:
    message = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None, message
    assert body.get_content_subtype() == subtype, message
    return str(body.get_content())


@pytest.fixture
def server() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def asset(container: Container) -> str:
    return approve_through_the_library(container)


# --- the whole path ---------------------------------------------------------------------------


def test_each_hcp_receives_one_rendered_tracked_unsubscribable_message(
    container: Container, client: TestClient, server: SmtpReceiver, asset: str, tmp_path: Path
) -> None:
    route_email_to(container, server.port, tmp_path)
    names = {1: "Muster", 2: "Beispiel", 3: "Probe"}
    addresses = {
        1: "a.muster@praxis.example",
        2: "b.beispiel@klinik.example",
        3: "c.probe@x.example",
    }
    people = {hcp(container, n, addresses[n], names[n]): (addresses[n], n) for n in names}
    report = send(container, asset, *people)
    assert report["counts"] == {"queued": 3, "already_queued": 0, "refused": 0, "deferred": 0}
    assert server.mails == []  # queued, not sent: the worker delivers

    done = container.delivery_worker.drain()
    assert (done.sent, done.retrying, done.dead, done.refused) == (3, 0, 0, 0)
    assert sorted(r for m in server.mails for r in m.rcpt_tos) == sorted(
        a for a, _ in people.values()
    )  # exactly one message per HCP
    by_address = {m.rcpt_tos[0]: m for m in server.mails}
    outbox = entries(container)
    for hcp_id, (address, n) in people.items():
        mail = by_address[address]
        assert mail.mail_from == "news@pharma.example"
        message = parse(mail)
        last_name = names[n]
        assert message["Subject"] == f"Guten Tag Dr. {last_name}, neue Daten zu Cardiomax"
        assert message["To"] == address
        [sender] = message["From"].addresses
        assert (sender.display_name, sender.addr_spec) == (
            "Cardiomax (synthetic)",
            "news@pharma.example",
        )
        assert message.get_content_type() == "multipart/alternative"
        entry = outbox[hcp_id]
        assert message["Message-ID"] == message_id(entry.idempotency_key, SENDER)
        assert (entry.status, entry.attempts, entry.adapter) == ("sent", 1, "mail")
        assert entry.provider_id == message["Message-ID"]
        unsubscribe = str(message["List-Unsubscribe"]).strip()  # folded: a long line
        assert unsubscribe.startswith("<http://127.0.0.1:8000/consent/unsubscribe")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = part(message, "plain"), part(message, "html")
        assert text.startswith(f"Guten Tag Dr. {last_name},")
        assert unsubscribe.strip("<>") in text  # the same signed link in the body
        assert unsubscribe.strip("<>").replace("&", "&amp;") in html
        assert "<p>" not in text
        assert f'href="{ARTICLE}"' not in html  # the article link is tracked …
        tracked = [u for u in _hrefs(html) if "/t/c/" in u]
        assert len(tracked) == 1
        assert "/t/o/" in html  # … and an open pixel is in
        assert actions(container, n) == ["sent"]
        [sent] = delivery_events(container, n)
        assert sent.payload["properties"]["provider_id"] == message["Message-ID"]
        # the tracked link, followed, leads to the article
        followed = client.get(urlsplit(tracked[0]).path, follow_redirects=False)
        assert followed.status_code == 303, followed.text
        assert followed.headers["location"] == ARTICLE
    assert container.delivery_worker.drain().claimed == 0
    assert len(server.mails) == 3  # nothing twice


def _hrefs(html: str) -> list[str]:
    return [chunk.split('"', 1)[0].replace("&amp;", "&") for chunk in html.split('href="')[1:]]


# --- failures --------------------------------------------------------------------------------


def test_a_server_that_is_down_keeps_the_entry_then_delivers_it_once(
    container: Container, asset: str, clock: FixedClock, tmp_path: Path
) -> None:
    down = SmtpReceiver()  # its port is reserved, nothing listens yet
    route_email_to(container, down.port, tmp_path)
    try:
        hcp_id = hcp(container, 1, "a.muster@praxis.example", "Muster")
        send(container, asset, hcp_id)
        first = container.delivery_worker.drain()
        assert (first.claimed, first.sent, first.retrying, first.dead) == (1, 0, 1, 0)
        entry = entries(container)[hcp_id]
        assert (entry.status, entry.attempts, entry.error_code) == ("pending", 1, "connection")
        assert entry.last_error is not None
        assert f"could not connect to 127.0.0.1:{down.port}" in entry.last_error
        assert entry.next_attempt_at > NOW
        assert actions(container, 1) == []  # a connection problem is no bounce

        down.start()
        assert container.delivery_worker.drain().claimed == 0  # not due yet
        assert down.mails == []
        clock.advance(entry.next_attempt_at - NOW)
        second = container.delivery_worker.drain()
        assert (second.sent, second.retrying) == (1, 0)
        [mail] = down.mails
        assert mail.rcpt_tos == ["a.muster@praxis.example"]
        entry = entries(container)[hcp_id]
        assert (entry.status, entry.attempts, entry.last_error) == ("sent", 2, None)
        assert parse(mail)["Message-ID"] == message_id(entry.idempotency_key, SENDER)
        clock.advance(dt.timedelta(hours=1))
        assert container.delivery_worker.drain().claimed == 0
        assert len(down.mails) == 1
        assert actions(container, 1) == ["sent"]
    finally:
        down.stop()


def test_a_550_for_the_recipient_is_a_dead_letter_a_hard_bounce_and_a_suppression(
    container: Container, server: SmtpReceiver, asset: str, clock: FixedClock, tmp_path: Path
) -> None:
    route_email_to(container, server.port, tmp_path)
    bad = hcp(container, 1, "bounce.muster@praxis.example", "Muster")
    good = hcp(container, 2, "b.beispiel@klinik.example", "Beispiel")
    send(container, asset, bad, good)
    done = container.delivery_worker.drain()
    assert (done.sent, done.dead, done.retrying) == (1, 1, 0)
    assert [m.rcpt_tos for m in server.mails] == [["b.beispiel@klinik.example"]]
    entry = entries(container)[bad]
    assert (entry.status, entry.error_code) == ("dead", "550")
    assert entry.last_error == "the server refused the recipient with 550"
    [dead] = container.delivery.outbox(status="dead")
    assert (dead["id"], dead["last_error"]) == (entry.id, entry.last_error)
    [bounced] = delivery_events(container, 1)
    assert str(bounced.action) == "bounced"
    props = bounced.payload["properties"]
    assert (props["bounce_type"], props["code"]) == ("hard", "550")
    assert actions(container, 2) == ["sent"]

    clock.advance(dt.timedelta(days=7))  # Monday again, past any gap: only the suppression
    again = send(container, asset, bad, good, key="k2")
    assert again["counts"] == {"queued": 1, "already_queued": 0, "refused": 1, "deferred": 0}
    [refused] = again["refused"]
    assert refused["hcp_id"] == bad
    assert "suppressed" in refused["reasons"]
    container.delivery_worker.drain()
    assert [m.rcpt_tos for m in server.mails] == [["b.beispiel@klinik.example"]] * 2


class Greylisting:
    """Answers the first RCPT of each address with 451, as a greylisting server does, then
    hands over to the recording handler."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: set[str] = set()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address not in self.seen:
            self.seen.add(address)
            return "451 4.7.1 greylisted, try again later"
        answer: str = await self.inner.handle_RCPT(server, session, envelope, address, options)
        return answer

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        answer: str = await self.inner.handle_DATA(server, session, envelope)
        return answer


def test_a_451_is_a_soft_bounce_retried_later_and_delivered_once(
    container: Container, asset: str, clock: FixedClock, tmp_path: Path
) -> None:
    server = SmtpReceiver()
    server.controller.handler = Greylisting(server.controller.handler)
    server.start()
    try:
        route_email_to(container, server.port, tmp_path)
        hcp_id = hcp(container, 1, "a.muster@praxis.example", "Muster")
        send(container, asset, hcp_id)
        first = container.delivery_worker.drain()
        assert (first.sent, first.retrying, first.dead) == (0, 1, 0)
        assert server.mails == []
        entry = entries(container)[hcp_id]
        assert (entry.status, entry.attempts, entry.error_code) == ("pending", 1, "451")
        assert entry.last_error == "the server refused RCPT with 451"
        assert entry.next_attempt_at > NOW
        assert container.delivery_worker.drain().claimed == 0  # waits for the backoff
        clock.advance(entry.next_attempt_at - NOW)
        second = container.delivery_worker.drain()
        assert (second.sent, second.retrying) == (1, 0)
        [mail] = server.mails
        assert mail.rcpt_tos == ["a.muster@praxis.example"]
        assert entries(container)[hcp_id].status == "sent"
        assert actions(container, 1) == ["bounced", "sent"]
        soft = delivery_events(container, 1)[0]
        assert soft.payload["properties"]["bounce_type"] == "soft"
    finally:
        server.stop()


# --- the guard again at delivery --------------------------------------------------------------


@pytest.mark.parametrize("protected", [True, False])
def test_content_withdrawn_after_queueing_never_reaches_the_server(
    container: Container,
    server: SmtpReceiver,
    asset: str,
    tmp_path: Path,
    protected: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route_email_to(container, server.port, tmp_path)
    hcp_id = hcp(container, 1, "a.muster@praxis.example", "Muster")
    assert send(container, asset, hcp_id)["counts"]["queued"] == 1
    reviewer = container.users.principal("rev-regulatory")
    withdrawn = container.content.withdraw(
        asset, "safety update (synthetic)", reviewer, Actor.of(reviewer, "tests")
    )
    assert withdrawn["state"] == "withdrawn"
    worker = container.delivery_worker
    if not protected:  # negative control: the worker's re-check bypassed
        monkeypatch.setattr(worker, "_recheck", lambda queued, refs, results: list(queued))
    done = worker.drain()
    if protected:
        assert (done.sent, done.refused) == (0, 1)
        assert server.mails == []
        assert server.connections == 0  # not even a connection was opened
        entry = entries(container)[hcp_id]
        assert entry.status == "refused"
        assert "content_not_approved" in (entry.error_code or "")
        found = container.log.timeline(TimelineQuery(subjects=[f"npi:{npi(1)}"], limit=100))
        assert "refused" in [str(e.event.action) for e in found]
    else:
        assert done.sent == 1
        assert len(server.mails) == 1  # the harness sees the forbidden send
