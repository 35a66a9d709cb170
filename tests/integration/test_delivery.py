"""The outbox end to end, on both deployments: send through the guard, deliver through an
adapter, record delivery events; retries, dead letters, crashes, and the guard again at
delivery time (each "never" with its negative control)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from sqlalchemy import select, update
from tests.conftest import NOW, TEST_ACTOR

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container
from counterpoint.content.models import ContentGeneration, ContentItem
from counterpoint.delivery.models import OutboxEntry
from counterpoint.delivery.routing import parse_routes
from counterpoint.delivery.service import SendRequest
from counterpoint.delivery.worker import DeliveryWorker
from counterpoint.event.canonical import Channel, EventKind, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.audit import Actor

PROOF = Proof(ConsentSource.API, "tests", wording_version="v1")
SYSTEM = Actor.system("tests")


class Receiver:
    """What a receiving end saw, and what it should answer next."""

    def __init__(self) -> None:
        self.got: list[OutboundMessage] = []
        self.script: list[DeliveryError | None] = []  # per message: None = accept

    def keys(self) -> list[str]:
        return [m.idempotency_key for m in self.got]


class _Config(AdapterConfig):
    pass


def _adapter(receiver: Receiver, *, idempotent: bool) -> type[Any]:
    class Recording:
        name: ClassVar[str] = "recording"
        channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
        Config: ClassVar[type[AdapterConfig]] = _Config

        def __init__(self, config: _Config, context: AdapterContext) -> None:
            pass

        def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
            out: list[Receipt | DeliveryError] = []
            for m in messages:
                answer = receiver.script.pop(0) if receiver.script else None
                if answer is None:
                    receiver.got.append(m)
                    out.append(Receipt(provider_id=f"p-{len(receiver.got)}"))
                else:
                    out.append(answer)
            return out

        def close(self) -> None:
            pass

    Recording.idempotent = idempotent  # type: ignore[attr-defined]
    return Recording


def _use(container: Container, receiver: Receiver, *, idempotent: bool = False) -> None:
    routes = parse_routes(
        {
            "adapters": {"rec": {"adapter": "recording"}},
            "routes": {c.value: "rec" for c in Channel},
        },
        env={},
        classes={"recording": _adapter(receiver, idempotent=idempotent)},
    )
    worker = container.delivery_worker
    worker._routes = routes
    worker._rng = random.Random(7)


def _hcp(container: Container, npi: str, email: str | None = "a.muster@praxis.example") -> str:
    traits: dict[str, Any] = {
        "market": "DE",
        "territory": "T1",
        "time_zone": "Europe/Berlin",
        "first_name": "Anna",
        "last_name": "Muster",
        "title": "Dr.",
        "preferred_language": "de",
    }
    if email:
        traits["email"] = email
    event = LogEvent(
        f"id-{npi}", EventKind.IDENTIFY, f"npi:{npi}", NOW, NOW, "tests", payload={"traits": traits}
    )
    container.log.append([event])
    container.catch_up()
    hcp_id = container.profiles.find_by_identifier(f"npi:{npi}")
    assert hcp_id is not None
    container.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
        state=ConsentState.GRANTED,
        proof=PROOF,
        actor=TEST_ACTOR,
        reason="signed form",
        effective_at=NOW - dt.timedelta(days=30),
    )
    return hcp_id


def approved_asset(container: Container, code: str = "CMX-DE-EM-001", **over: Any) -> str:
    """An approved campaign e-mail, written as the library would leave it."""
    values: dict[str, Any] = {
        "id": f"cnt_{code.lower()}",
        "code": code,
        "kind": "asset",
        "asset_type": "campaign_email",
        "title": "Cardiomax dosing update (synthetic)",
        "brand": "Cardiomax",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "channels": ["campaign_email"],
        "claims": [],
        "minutes": 2.0,
        "body": {
            "subject": "{{ hcp.salutation }} {{ hcp.last_name }}, Neues zu Cardiomax",
            "text": "{{ hcp.salutation }},\nmehr: https://pharma.example/cmx\n"
            "Abmelden: {{ links.unsubscribe }}",
            "html": '<p>{{ hcp.salutation }}</p><a href="https://pharma.example/cmx">mehr</a>'
            '<a href="{{ links.unsubscribe }}">Abmelden</a>',
        },
        "fragment_codes": [],
        "version": 1,
        "content_hash": "0" * 64,
        "state": "approved",
        "author_id": "usr_author",
        "author": "author",
        "created_at": NOW - dt.timedelta(days=10),
        "updated_at": NOW - dt.timedelta(days=10),
        "job_code": f"JOB-{code}",
        "approval_markets": ["DE"],
        "approval_channels": ["campaign_email"],
        "valid_from": NOW - dt.timedelta(days=5),
        "valid_until": NOW + dt.timedelta(days=200),
        "approved_at": NOW - dt.timedelta(days=5),
        "approved_hash": "1" * 64,
        "synthetic": True,
    }
    values.update(over)
    with container.sessions.begin() as session:
        session.add(ContentItem(**values))
        _bump(session)
    return str(values["id"])


def _bump(session: Any) -> None:
    row = session.get(ContentGeneration, 1)
    if row is None:
        session.add(ContentGeneration(id=1, value=1))
    else:
        row.value += 1


def _send(container: Container, asset: str, *hcps: str, key: str = "k1") -> dict[str, Any]:
    report = container.delivery.send(
        SendRequest(content=asset, channel=Channel.CAMPAIGN_EMAIL, hcp_ids=hcps, request_key=key),
        principal=None,
        actor=SYSTEM,
    )
    return report.as_dict()


def _entries(container: Container) -> list[OutboxEntry]:
    with container.sessions() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def _actions(container: Container, npi: str) -> list[str]:
    events = container.log.timeline(TimelineQuery(subjects=[f"npi:{npi}"], limit=100))
    return sorted(str(e.event.action) for e in events if e.event.source == "delivery")


@pytest.fixture
def receiver(container: Container) -> Receiver:
    r = Receiver()
    _use(container, r)
    return r


def test_a_send_is_guarded_queued_rendered_delivered_and_recorded(
    container: Container, receiver: Receiver
) -> None:
    hcp = _hcp(container, "1234567893")
    asset = approved_asset(container)
    report = _send(container, asset, hcp)
    assert report["counts"] == {"queued": 1, "already_queued": 0, "refused": 0, "deferred": 0}
    assert receiver.got == []  # queued, not sent: the worker delivers
    done = container.delivery_worker.drain()
    assert (done.sent, done.refused, done.dead) == (1, 0, 0)
    [message] = receiver.got
    assert message.address == "a.muster@praxis.example"
    assert message.subject == "Guten Tag Dr. Muster, Neues zu Cardiomax"
    assert message.approval_code == "JOB-CMX-DE-EM-001"
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.headers["List-Unsubscribe"].startswith("<http")
    assert message.html is not None
    assert "/t/c/" in message.html
    assert "/consent/unsubscribe" in message.html  # the unsubscribe link is not rewritten
    assert "<" not in message.text.replace("<http", "")  # text part carries no markup
    [entry] = _entries(container)
    assert (entry.status, entry.attempts, entry.provider_id) == ("sent", 1, "p-1")
    assert _actions(container, "1234567893") == ["sent"]
    # the send counts as a touch: the 72 h gap holds a second e-mail (queued, deferred)
    again = _send(container, asset, hcp, key="k2")
    assert again["counts"] == {"queued": 1, "already_queued": 0, "refused": 0, "deferred": 1}
    assert again["deferred"][0]["reasons"] == ["min_gap"]
    assert container.delivery_worker.drain().deferred == 1
    assert len(receiver.got) == 1


def test_the_same_request_key_never_queues_twice(container: Container, receiver: Receiver) -> None:
    hcp = _hcp(container, "1234567893")
    asset = approved_asset(container)
    assert _send(container, asset, hcp)["counts"]["queued"] == 1
    repeat = _send(container, asset, hcp)
    assert repeat["counts"] == {"queued": 0, "already_queued": 1, "refused": 0, "deferred": 0}
    container.delivery_worker.drain()
    assert len(receiver.got) == 1


@pytest.mark.parametrize("protected", [True, False])
def test_consent_withdrawn_after_queueing_is_refused_at_delivery(
    container: Container, receiver: Receiver, protected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    hcp = _hcp(container, "1234567893")
    asset = approved_asset(container)
    _send(container, asset, hcp)
    container.consents.withdraw(
        container.profiles.resolve(hcp),
        ConsentChannel.EMAIL,
        proof=Proof(ConsentSource.ONE_CLICK, "hcp"),
        actor=TEST_ACTOR,
        reason="unsubscribed",
    )
    if not protected:  # negative control: no re-check at delivery
        worker = container.delivery_worker
        monkeypatch.setattr(worker, "_recheck", lambda entries, refs, results: list(entries))
    done = container.delivery_worker.drain()
    if protected:
        assert (done.sent, done.refused) == (0, 1)
        assert receiver.got == []
        [entry] = _entries(container)
        assert entry.status == "refused"
        assert entry.error_code is not None
        assert "consent_revoked" in entry.error_code
    else:
        assert len(receiver.got) == 1  # the harness sees a forbidden send


def test_content_withdrawn_or_expired_after_queueing_is_never_sent(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    other = _hcp(container, "1245319599", email="b.beispiel@klinik.example")
    withdrawn = approved_asset(container, "CMX-DE-EM-002")
    expiring = approved_asset(container, "CMX-DE-EM-003", valid_until=NOW + dt.timedelta(hours=1))
    _send(container, withdrawn, hcp)
    _send(container, expiring, other)
    with container.sessions.begin() as session:
        session.execute(
            update(ContentItem).where(ContentItem.id == withdrawn).values(state="withdrawn")
        )
        _bump(session)
    clock.advance(dt.timedelta(hours=2))  # past valid-until; the state still says approved
    done = container.delivery_worker.drain()
    assert (done.sent, done.refused) == (0, 2)
    assert receiver.got == []
    codes = {e.content_id: e.error_code or "" for e in _entries(container)}
    assert "content_not_approved" in codes[withdrawn]
    assert "content_expired" in codes[expiring]


def test_transient_failures_retry_with_backoff_then_deliver_once(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    receiver.script = [TransientDeliveryError("451 try later", code="451")]
    first = container.delivery_worker.drain()
    assert (first.sent, first.retrying) == (0, 1)
    [entry] = _entries(container)
    assert entry.status == "pending"
    assert entry.next_attempt_at > NOW
    assert entry.error_code == "451"
    assert container.delivery_worker.drain().claimed == 0  # not due yet
    clock.advance(entry.next_attempt_at - NOW)
    assert container.delivery_worker.drain().sent == 1
    assert receiver.keys() == [entry.idempotency_key]
    assert _actions(container, "1234567893") == ["bounced", "sent"]  # a soft bounce, then sent


def test_retries_are_bounded_and_end_in_a_replayable_dead_letter(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    attempts = container.delivery_worker.policy.max_attempts
    receiver.script = [TransientDeliveryError("down", code="connect")] * attempts
    for _ in range(attempts):
        container.delivery_worker.drain()
        [entry] = _entries(container)
        if entry.status == "pending":
            clock.advance(entry.next_attempt_at - clock.now())
    [entry] = _entries(container)
    assert (entry.status, entry.error_code, entry.attempts) == (
        "dead",
        "retries_exhausted",
        attempts,
    )
    dead = container.delivery.outbox(status="dead")
    assert [d["id"] for d in dead] == [entry.id]
    assert dead[0]["last_error"] == "down"
    container.delivery.replay(entry.id, TEST_ACTOR, "gateway fixed")
    assert container.delivery_worker.drain().sent == 1
    assert len(receiver.got) == 1


def test_a_hard_bounce_is_a_dead_letter_and_suppresses_the_address(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    asset = approved_asset(container)
    _send(container, asset, hcp)
    receiver.script = [PermanentDeliveryError("550 no such user", code="550", hard_bounce=True)]
    done = container.delivery_worker.drain()
    assert done.dead == 1
    assert _actions(container, "1234567893") == ["bounced"]
    clock.advance(dt.timedelta(days=5))
    again = _send(container, asset, hcp, key="k2")
    assert again["counts"]["refused"] == 1
    assert "suppressed" in again["refused"][0]["reasons"]


def test_an_hcp_without_an_address_is_refused_when_asked_not_queued(
    container: Container, receiver: Receiver
) -> None:
    hcp = _hcp(container, "1234567893", email=None)
    report = _send(container, approved_asset(container), hcp)
    assert report["counts"] == {"queued": 0, "already_queued": 0, "refused": 1, "deferred": 0}
    assert report["refused"][0]["reasons"] == ["no_address"]
    assert _entries(container) == []


def test_permanent_problems_of_the_message_itself_are_dead_letters(
    container: Container, receiver: Receiver
) -> None:
    hcp = _hcp(container, "1234567893")
    # an automated send of content that needs a rep: the template cannot be filled
    asset = approved_asset(
        container,
        body={"subject": "{{ rep.name }} writes", "text": "{{ rep.signature }}", "html": None},
    )
    _send(container, asset, hcp)
    done = container.delivery_worker.drain()
    assert (done.dead, len(receiver.got)) == (1, 0)
    [entry] = _entries(container)
    assert entry.error_code == "template"
    assert entry.last_error is not None
    assert "rep" in entry.last_error


def _crash_mid_send(container: Container) -> None:
    """A worker claims the entry and stops before recording anything."""
    worker = container.delivery_worker
    claimed = worker._claim(10)
    assert len(claimed) == 1


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_crash_never_sends_twice(
    container: Container, clock: FixedClock, idempotent: bool
) -> None:
    receiver = Receiver()
    _use(container, receiver, idempotent=idempotent)
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    # the first worker sends, then dies before recording the outcome
    worker: DeliveryWorker = container.delivery_worker
    entries = worker._claim(10)
    worker._deliver(entries)
    assert len(receiver.got) == 1
    clock.advance(dt.timedelta(minutes=10))  # the lease runs out
    done = worker.drain()
    assert done.recovered == 1
    [entry] = _entries(container)
    if idempotent:
        # tried again with the same key; the receiver de-duplicates by it
        assert entry.status == "sent"
        assert set(receiver.keys()) == {entry.idempotency_key}
    else:
        assert (entry.status, entry.error_code) == ("dead", "outcome_unknown")
        assert len(receiver.got) == 1


def test_negative_control_a_crash_retried_blindly_would_send_twice(
    container: Container, clock: FixedClock
) -> None:
    receiver = Receiver()
    _use(container, receiver, idempotent=True)  # a lie: this receiver does not de-duplicate
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    worker = container.delivery_worker
    worker._deliver(worker._claim(10))
    clock.advance(dt.timedelta(minutes=10))
    worker.drain()
    assert len(receiver.got) == 2  # what the harness counts when the protection is off


def test_one_entry_per_hcp_per_pass_so_caps_see_the_previous_send(
    container: Container, receiver: Receiver
) -> None:
    hcp = _hcp(container, "1234567893")
    first = approved_asset(container, "CMX-DE-EM-010")
    second = approved_asset(container, "CMX-DE-EM-011")
    _send(container, first, hcp)
    _send(container, second, hcp)  # both allowed now: nothing sent yet
    done = container.delivery_worker.drain()
    assert (done.sent, done.deferred) == (1, 1)  # the second waits for the 72 h gap
    assert len(receiver.got) == 1
    waiting = [e for e in _entries(container) if e.status == "pending"]
    assert len(waiting) == 1
    assert "min_gap" in (waiting[0].error_code or "")


def test_timing_refusals_at_delivery_wait_and_are_asked_again(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    clock.advance(dt.timedelta(hours=8))  # 21:00 in Berlin: quiet hours
    done = container.delivery_worker.drain()
    assert (done.deferred, done.refused, done.sent) == (1, 0, 0)
    [entry] = _entries(container)
    assert (entry.status, entry.attempts) == ("pending", 0)  # a deferral is not an attempt
    assert "quiet_hours" in (entry.error_code or "")
    assert _actions(container, "1234567893") == []  # no refusal recorded for a deferral
    clock.advance(dt.timedelta(hours=12))  # Tuesday 09:00 in Berlin
    assert container.delivery_worker.drain().sent == 1
    assert len(receiver.got) == 1


def test_a_send_during_quiet_hours_is_queued_and_delivered_when_they_end(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    """Refused at send time only for timing: queued and reported as deferred, no refusal
    event; the worker holds it until the guard allows it. A refusal time does not lift (a
    consent it lacks) is still refused at send time."""
    hcp = _hcp(container, "1234567893")
    asset = approved_asset(container)
    clock.advance(dt.timedelta(hours=8))  # 21:00 in Berlin: quiet hours
    report = _send(container, asset, hcp)
    assert report["counts"] == {"queued": 1, "already_queued": 0, "refused": 0, "deferred": 1}
    assert report["deferred"][0]["reasons"] == ["quiet_hours"]
    assert report["deferred"][0]["outbox_id"] == report["queued"][0]["outbox_id"]
    guard_refusals = container.log.timeline(TimelineQuery(subjects=["npi:1234567893"], limit=50))
    assert [e for e in guard_refusals if e.event.source == "guard"] == []
    assert container.delivery_worker.drain().deferred == 1
    assert receiver.got == []
    clock.advance(dt.timedelta(hours=12))  # Tuesday 09:00 in Berlin
    assert container.delivery_worker.drain().sent == 1
    assert len(receiver.got) == 1
    # the negative control: SMS (no consent, content not approved for it) is not a matter of time
    sms = container.delivery.send(
        SendRequest(content=asset, channel=Channel.SMS, hcp_ids=[hcp], request_key="k2"),
        principal=None,
        actor=SYSTEM,
    )
    assert (len(sms.queued), len(sms.deferred), len(sms.refused)) == (0, 0, 1)
    assert "no_consent" in sms.refused[0]["reasons"]


def test_a_deferral_ends_in_a_refusal_after_the_longest_wait(
    container: Container, receiver: Receiver, clock: FixedClock
) -> None:
    hcp = _hcp(container, "1234567893")
    _send(container, approved_asset(container), hcp)
    clock.advance(dt.timedelta(days=8) + dt.timedelta(hours=8))  # quiet, and queued too long
    done = container.delivery_worker.drain()
    assert (done.refused, done.deferred) == (1, 0)
    assert receiver.got == []
