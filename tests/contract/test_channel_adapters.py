"""One contract, every channel adapter, each against a real receiver.

Every adapter found through the ``counterpoint.channels`` entry points runs the same cases:
a batch arrives exactly once with its content intact; the same idempotency key again is
de-duplicated (or, for SMTP, carries the same Message-ID); per-message results come back in
order for a mixed batch; a receiver that is down gives transient errors, never an exception;
configuration never shows a secret. Receivers: aiosmtpd on 127.0.0.1 (plain, STARTTLS with
AUTH, implicit TLS), a loopback HTTP server, the SQLite (or PostgreSQL) database of the
``container`` fixture, and files in a temporary directory. All messages are synthetic.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import json
import logging
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import sessionmaker
from tests.contract.receivers import (
    BAD_ADDRESS,
    BAD_NUMBER,
    HttpReceiver,
    SmtpReceiver,
    make_certificate,
)

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    ChannelAdapter,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
    UnknownAdapterError,
    adapter_classes,
)
from counterpoint.channel.models import RepInboxItem
from counterpoint.channel.registry import build_adapter, parse_config
from counterpoint.channel.smtp import message_id
from counterpoint.channel.webhook import signature_header, verify_signature
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit import migrate
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.db import make_engine, make_sessionmaker

ADAPTERS = ["console", "smtp", "sms_http", "webhook", "rep_inbox", "crm_export", "print_export"]
SENDER = "Zentrova Medical <news@pharma.example>"
WEBHOOK_SECRET = "whsec-0123456789abcdef-test"
SMS_TOKEN = "sms-api-token-do-not-log-42"
SMS_SIGNING = "sms-signing-secret-0123456789"
TEXT = "Dear Dr Example,\n\nthe dosing guide is ready. Grüße — naïve café ✓ 🙂\n.\n..leading dots\n"
POSTAL = "Dr A. Example (synthetic)\nKlinikum Nord\nHauptstraße 1\n10115 Berlin\nDE"


def make_message(
    i: int, channel: Channel = Channel.CAMPAIGN_EMAIL, address: str | None = None, **over: Any
) -> OutboundMessage:
    values: dict[str, Any] = {
        "outbox_id": f"obx_{i:04d}",
        "idempotency_key": f"key-{i:04d}",
        "channel": channel,
        "hcp_id": f"hcp_syn_{i:04d}",
        "address": address,
        "subject": f"Dosing guide {i} — synthetic",
        "text": f"{TEXT}message {i}",
        "html": f"<p>Dosing guide {i} — Grüße ✓</p>",
        "headers": {
            "List-Unsubscribe": f"<https://cp.example/consent/unsubscribe?t=tok{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "content_id": "var_syn_1",
        "approval_code": "ZEN-DE-0042",
        "brand": "ZENTROVA",
        "market": "DE",
        "metadata": {"rep": "rep-anna", "journey": "launch", "synthetic": True},
    }
    values.update(over)
    return OutboundMessage(**values)


def factory(
    channel: Channel, address: Callable[[int], str | None]
) -> Callable[..., OutboundMessage]:
    """Messages ``i`` on ``channel`` to ``address(i)``; keyword arguments override fields."""

    def message(i: int, **over: Any) -> OutboundMessage:
        return make_message(i, **({"channel": channel, "address": address(i)} | over))

    return message


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def context(tmp_path: Path, clock: FixedClock) -> AdapterContext:
    """A context for adapters that do not use the database (an unused in-memory one)."""
    unused = sessionmaker(create_engine("sqlite://"))
    return AdapterContext(sessions=unused, data_dir=tmp_path / "data", clock=clock)


@pytest.fixture
def inbox_engine(tmp_path: Path) -> Iterator[Engine]:
    """The operational database, migrated, as a file of its own (the rep inbox's receiver);
    the ``container`` tests below run on every configured deployment."""
    engine = make_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def smtp_server() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def http_server(clock: FixedClock) -> Iterator[HttpReceiver]:
    server = HttpReceiver(secret=WEBHOOK_SECRET, now=clock.now)
    yield server
    server.stop()


@pytest.fixture
def sms_server(clock: FixedClock) -> Iterator[HttpReceiver]:
    server = HttpReceiver(secret=SMS_SIGNING, now=clock.now)
    yield server
    server.stop()


def smtp_config(server: SmtpReceiver, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from_address": SENDER,
        "timeout_s": 5,
    }
    values.update(over)
    return values


def sms_config(server: HttpReceiver, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "url": server.url,
        "api_token": SMS_TOKEN,
        "signing_secret": SMS_SIGNING,
        "sender_id": "Zentrova",
        "timeout_s": 5,
    }
    values.update(over)
    return values


def webhook_config(server: HttpReceiver, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"url": server.url, "secret": WEBHOOK_SECRET, "timeout_s": 5}
    values.update(over)
    return values


# --- what arrived, per receiver -----------------------------------------------------------------


def text_part(mail: email.message.EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")  # line breaks travel as CRLF


def parsed_mails(server: SmtpReceiver) -> list[email.message.EmailMessage]:
    found = []
    for mail in server.mails:
        parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append(parsed)
    return found


def csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def block(directory: Path) -> None:
    """Make ``directory`` unusable (a file in its place): the file system refuses writes."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.write_text("in the way")


@dataclass
class Case:
    """One adapter wired to its receiver, and what the contract needs to know of it."""

    name: str
    adapter: ChannelAdapter
    message: Callable[..., OutboundMessage]
    bad: OutboundMessage
    bad_is_hard_bounce: bool
    arrived: Callable[[], list[tuple[str, str]]]
    """(identity, text) of every copy the receiver holds."""
    identity: Callable[[OutboundMessage], str]
    take_down: Callable[[], None]


def _key(message: OutboundMessage) -> str:
    return message.idempotency_key


def _case(name: str, request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    builders: dict[str, Callable[[pytest.FixtureRequest, AdapterContext], Case]] = {
        "console": _console_case,
        "smtp": _smtp_case,
        "sms_http": _sms_case,
        "webhook": _webhook_case,
        "rep_inbox": _rep_inbox_case,
        "crm_export": _crm_case,
        "print_export": _print_case,
    }
    return builders[name](request, context)


def _console_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    adapter = build_adapter("console", {"echo": False}, context)
    path = context.data_dir / "outbox" / "console.jsonl"

    message = factory(Channel.CAMPAIGN_EMAIL, lambda i: f"hcp{i}@clinic.example")

    return Case(
        "console",
        adapter,
        message,
        message(99, metadata={"not_json": object()}),
        False,
        lambda: [(r["idempotency_key"], r["text"]) for r in jsonl_rows(path)],
        _key,
        lambda: block(path.parent),
    )


def _smtp_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    server: SmtpReceiver = request.getfixturevalue("smtp_server")
    adapter = build_adapter("smtp", smtp_config(server), context)

    message = factory(Channel.CAMPAIGN_EMAIL, lambda i: f"hcp{i}@clinic.example")

    def arrived() -> list[tuple[str, str]]:
        return [(str(m["Message-ID"]), text_part(m)) for m in parsed_mails(server)]

    return Case(
        "smtp",
        adapter,
        message,
        message(99, address="bounce@clinic.example"),
        True,
        arrived,
        lambda m: message_id(m.idempotency_key, SENDER),
        server.stop,
    )


def _sms_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    server: HttpReceiver = request.getfixturevalue("sms_server")
    adapter = build_adapter("sms_http", sms_config(server), context)

    message = factory(Channel.SMS, lambda i: f"+4915112345{i:03d}")

    return Case(
        "sms_http",
        adapter,
        message,
        message(99, address=BAD_NUMBER),
        True,
        lambda: [(k, m["text"]) for k, m in server.stored.items()],
        _key,
        server.stop,
    )


def _webhook_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    server: HttpReceiver = request.getfixturevalue("http_server")
    adapter = build_adapter("webhook", webhook_config(server), context)

    message = factory(Channel.CAMPAIGN_EMAIL, lambda i: f"hcp{i}@clinic.example")

    return Case(
        "webhook",
        adapter,
        message,
        message(99, address=BAD_ADDRESS),
        True,
        lambda: [(k, m["text"]) for k, m in server.stored.items()],
        _key,
        server.stop,
    )


def _rep_inbox_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    engine = request.getfixturevalue("inbox_engine")
    context = AdapterContext(make_sessionmaker(engine), context.data_dir, context.clock)
    adapter = build_adapter("rep_inbox", {}, context)

    message = factory(Channel.F2F_CALL, lambda i: None)

    def arrived() -> list[tuple[str, str]]:
        with context.sessions() as session:
            rows = session.execute(select(RepInboxItem.id, RepInboxItem.text)).all()
        return [(row.id, row.text) for row in rows]

    def take_down() -> None:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE rep_inbox_item"))

    return Case(
        "rep_inbox",
        adapter,
        message,
        message(99, metadata={"journey": "launch"}),
        False,
        arrived,
        _key,
        take_down,
    )


def _crm_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    adapter = build_adapter("crm_export", {}, context)
    folder = context.data_dir / "exports" / "crm"

    message = factory(Channel.F2F_CALL, lambda i: None)

    return Case(
        "crm_export",
        adapter,
        message,
        message(99, metadata={}),
        False,
        lambda: [
            (r["idempotency_key"], r["text"]) for r in csv_rows(folder / _day_file("rep-tasks"))
        ],
        _key,
        lambda: block(folder),
    )


def _print_case(request: pytest.FixtureRequest, context: AdapterContext) -> Case:
    adapter = build_adapter("print_export", {}, context)
    folder = context.data_dir / "exports" / "print"

    message = factory(Channel.DIRECT_MAIL, lambda i: POSTAL)

    return Case(
        "print_export",
        adapter,
        message,
        message(99, address=None),
        False,
        lambda: [
            (r["idempotency_key"], r["text"]) for r in csv_rows(folder / _day_file("direct-mail"))
        ],
        _key,
        lambda: block(folder),
    )


def _day_file(prefix: str) -> str:
    return f"{prefix}-2026-11-23.csv"  # the date of tests.conftest.NOW


@pytest.fixture(params=ADAPTERS)
def case(request: pytest.FixtureRequest, context: AdapterContext) -> Iterator[Case]:
    built = _case(request.param, request, context)
    yield built
    built.adapter.close()


# --- the contract ----------------------------------------------------------------------------


def receipts(results: list[Receipt | DeliveryError]) -> list[Receipt]:
    assert all(isinstance(r, Receipt) for r in results), [getattr(r, "reason", r) for r in results]
    return [r for r in results if isinstance(r, Receipt)]


def test_every_adapter_is_installed_through_entry_points() -> None:
    found = adapter_classes()
    assert sorted(found) == sorted(ADAPTERS)
    for name, cls in found.items():
        assert cls.name == name
        assert issubclass(cls.Config, AdapterConfig)
        assert cls.channels
        assert cls.channels <= frozenset(Channel)
        assert isinstance(cls.idempotent, bool)


def test_the_adapter_meets_the_protocol(case: Case) -> None:
    assert isinstance(case.adapter, ChannelAdapter)
    assert type(case.adapter).name == case.name


def test_a_batch_arrives_exactly_once_with_its_content_intact(case: Case) -> None:
    messages = [case.message(i) for i in range(5)]
    results = receipts(case.adapter.send_many(messages))
    assert len(results) == len(messages)
    arrived = case.arrived()
    assert Counter(identity for identity, _ in arrived) == Counter(
        case.identity(m) for m in messages
    )
    by_identity = dict(arrived)
    for message in messages:
        assert by_identity[case.identity(message)].rstrip("\n") == message.text.rstrip("\n")


def test_the_same_key_again_is_not_a_second_message(case: Case) -> None:
    first = receipts(case.adapter.send_many([case.message(1)]))
    again = receipts(case.adapter.send_many([case.message(1)]))
    copies = [i for i, _ in case.arrived() if i == case.identity(case.message(1))]
    if type(case.adapter).idempotent:
        assert len(copies) == 1  # the receiver (or the adapter) de-duplicated
    else:
        # SMTP servers do not de-duplicate: the repeat carries the identical Message-ID.
        assert len(copies) == 2
        assert first[0].provider_id == again[0].provider_id == copies[0]
    # Control: another key is another message, so the count above can fail.
    receipts(case.adapter.send_many([case.message(2)]))
    assert len(case.arrived()) == len(copies) + 1


def test_results_are_per_message_and_in_order(case: Case) -> None:
    batch = [case.message(0), case.bad, case.message(1), case.message(2)]
    results = case.adapter.send_many(batch)
    assert len(results) == 4
    assert isinstance(results[0], Receipt)
    assert isinstance(results[1], PermanentDeliveryError), results[1]
    assert results[1].hard_bounce is case.bad_is_hard_bounce
    assert results[1].reason
    assert isinstance(results[2], Receipt)
    assert isinstance(results[3], Receipt)
    identities = {i for i, _ in case.arrived()}
    assert identities == {case.identity(m) for m in (batch[0], batch[2], batch[3])}


def test_a_receiver_that_is_down_gives_transient_errors(case: Case) -> None:
    case.take_down()
    results = case.adapter.send_many([case.message(0), case.message(1)])
    assert len(results) == 2
    for result in results:
        assert isinstance(result, TransientDeliveryError), result
        assert result.reason
        assert result.code


def test_an_empty_batch_is_an_empty_result(case: Case) -> None:
    assert case.adapter.send_many([]) == []


def test_a_channel_the_adapter_does_not_carry_is_refused(case: Case) -> None:
    carried = type(case.adapter).channels
    other = next((c for c in Channel if c not in carried), None)
    if other is None:
        assert carried == frozenset(Channel)  # console and webhook carry every channel
        return
    results = case.adapter.send_many([case.message(0, channel=other), case.message(1)])
    assert isinstance(results[0], PermanentDeliveryError)
    assert results[0].code == "channel"
    assert isinstance(results[1], Receipt)


# --- secrets ---------------------------------------------------------------------------------

SECRET_CONFIGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "smtp": (
        {
            "host": "smtp.example.com",
            "from_address": SENDER,
            "username": "mailer",
            "password": "hunter2-smtp-secret",
        },
        ["hunter2-smtp-secret"],
    ),
    "sms_http": (
        {
            "url": "https://sms.example.com/v1/messages",
            "api_token": SMS_TOKEN,
            "signing_secret": SMS_SIGNING,
            "sender_id": "Zentrova",
        },
        [SMS_TOKEN, SMS_SIGNING],
    ),
    "webhook": (
        {"url": "https://hooks.example.com/cp", "secret": WEBHOOK_SECRET},
        [WEBHOOK_SECRET],
    ),
}


@pytest.mark.parametrize("name", sorted(SECRET_CONFIGS))
def test_configuration_never_shows_a_secret(name: str, context: AdapterContext) -> None:
    values, secrets = SECRET_CONFIGS[name]
    adapter = build_adapter(name, values, context)
    config = adapter.config  # type: ignore[attr-defined]
    shown = [
        repr(config),
        str(config),
        repr(adapter),
        config.model_dump_json(),
        str(config.model_dump()),
    ]
    # Bad settings, with a secret under a misspelt key (an error would name that key).
    bad = {**values, "timeout_s": "soon", "pasword": secrets[0]}
    with pytest.raises(ValidationFailedError) as caught:
        parse_config(name, bad)
    problem = caught.value
    shown += [str(problem), problem.detail, problem.fix or "", json.dumps(problem.to_problem())]
    with pytest.raises(ValidationError) as direct:  # pydantic's own error, built directly
        type(adapter).Config.model_validate(bad)
    shown.append(str(direct.value))
    for secret in secrets:
        for text_shown in shown:
            assert secret not in text_shown
    assert problem.field == f"{name}.timeout_s"
    adapter.close()


def test_the_secret_check_would_catch_an_echoing_error() -> None:
    """Negative control: a model that echoes its input does show the secret."""
    from pydantic import BaseModel, ConfigDict, SecretStr

    class Echoing(BaseModel):
        model_config = ConfigDict(extra="forbid")
        password: SecretStr
        timeout_s: float

    bad = {"password": "x", "timeout_s": "soon", "pasword": "hunter2-smtp-secret"}
    with pytest.raises(ValidationError) as caught:
        Echoing.model_validate(bad)
    assert "hunter2-smtp-secret" in str(caught.value)


# --- file adapters write one file per UTC day with a header ---------------------------------


def test_export_files_have_the_documented_columns(context: AdapterContext) -> None:
    from counterpoint.channel.exports import CRM_COLUMNS, PRINT_COLUMNS

    crm = build_adapter("crm_export", {}, context)
    printer = build_adapter("print_export", {}, context)
    receipts(crm.send_many([make_message(1, Channel.REP_EMAIL, None)]))
    receipts(printer.send_many([make_message(2, Channel.DIRECT_MAIL, POSTAL)]))
    crm_path = context.data_dir / "exports" / "crm" / _day_file("rep-tasks")
    print_path = context.data_dir / "exports" / "print" / _day_file("direct-mail")
    with crm_path.open(newline="", encoding="utf-8") as handle:
        assert tuple(next(csv.reader(handle))) == CRM_COLUMNS
    with print_path.open(newline="", encoding="utf-8") as handle:
        assert tuple(next(csv.reader(handle))) == PRINT_COLUMNS
    (task,) = csv_rows(crm_path)
    assert task["rep"] == "rep-anna"
    assert json.loads(task["details"]) == {"journey": "launch", "synthetic": True}
    assert task["exported_at"] == "2026-11-23T12:00:00+00:00"
    (piece,) = csv_rows(print_path)
    assert [piece[f"address_line_{i}"] for i in range(1, 7)] == [*POSTAL.split("\n"), ""]
    assert piece["approval_code"] == "ZEN-DE-0042"


def test_the_console_prints_one_summary_line_per_new_message(
    context: AdapterContext, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = build_adapter("console", {}, context)
    receipts(adapter.send_many([make_message(1, Channel.SMS, "+4915112345001")]))
    receipts(adapter.send_many([make_message(1, Channel.SMS, "+4915112345001")]))
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for shown in ("sms", "hcp_syn_0001", "key-0001"):
        assert shown in err
    quiet = build_adapter("console", {"echo": False}, context)
    receipts(quiet.send_many([make_message(2, Channel.SMS, "+4915112345002")]))
    assert capsys.readouterr().err == ""


def test_rep_inbox_writes_a_batch_in_one_transaction(container: Any) -> None:
    from sqlalchemy import event

    context = AdapterContext(container.sessions, container.settings.data_dir, container.clock)
    adapter = build_adapter("rep_inbox", {}, context)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    event.listen(container.engine, "commit", committed)
    try:
        batch = [make_message(i, Channel.F2F_CALL, None) for i in range(50)]
        results = receipts(adapter.send_many(batch))
        assert all(r.delivered for r in results)
        assert len(commits) == 1
        again = receipts(adapter.send_many(batch))
        assert {r.detail for r in again} == {"already in the inbox"}
    finally:
        event.remove(container.engine, "commit", committed)
    with container.sessions() as session:
        count = session.scalar(select(text("count(*)")).select_from(RepInboxItem))
        item = session.get(RepInboxItem, "key-0003")
    assert count == 50
    assert item is not None
    assert item.recipient == "rep-anna"
    assert item.details == {"journey": "launch", "synthetic": True}


# --- SMTP ------------------------------------------------------------------------------------


def smtp_adapter(server: SmtpReceiver, context: AdapterContext, **over: Any) -> ChannelAdapter:
    return build_adapter("smtp", smtp_config(server, **over), context)


def email_to(i: int, address: str | None = None, **over: Any) -> OutboundMessage:
    return make_message(i, Channel.CAMPAIGN_EMAIL, address or f"hcp{i}@clinic.example", **over)


def test_smtp_sends_the_documented_headers_and_parts(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    adapter = smtp_adapter(smtp_server, context)
    message = email_to(1)
    (receipt,) = receipts(adapter.send_many([message]))
    adapter.close()
    (raw,) = smtp_server.mails
    assert raw.content.isascii()  # 7-bit: any server takes it, 8BITMIME or not
    assert raw.mail_from == "news@pharma.example"
    assert raw.rcpt_tos == ["hcp1@clinic.example"]
    (mail,) = parsed_mails(smtp_server)
    assert mail["Message-ID"] == receipt.provider_id == message_id("key-0001", SENDER)
    assert re.fullmatch(r"<[0-9a-f]{32}@pharma\.example>", mail["Message-ID"])
    assert mail["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["From"] == SENDER
    assert mail["To"] == "hcp1@clinic.example"
    assert mail["Subject"] == message.subject
    assert mail["Date"] == "Mon, 23 Nov 2026 12:00:00 +0000"
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[1].get_content().rstrip("\r\n") == message.html


def test_smtp_sends_text_alone_as_one_part(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    adapter = smtp_adapter(smtp_server, context, from_address="news@pharma.example")
    receipts(adapter.send_many([email_to(1, html=None, sender="Dr Rep <rep@pharma.example>")]))
    adapter.close()
    (mail,) = parsed_mails(smtp_server)
    assert mail.get_content_type() == "text/plain"
    assert mail["From"] == "Dr Rep <rep@pharma.example>"
    assert smtp_server.mails[0].mail_from == "news@pharma.example"  # bounces come back to us


def test_smtp_maps_recipient_and_data_refusals(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    adapter = smtp_adapter(smtp_server, context)
    batch = [
        email_to(1, "bounce@clinic.example"),
        email_to(2, "later@clinic.example"),
        email_to(3, headers={"X-Test-Reject": "data"}),
        email_to(4),
    ]
    hard, later, data, good = adapter.send_many(batch)
    adapter.close()
    assert isinstance(hard, PermanentDeliveryError)
    assert (hard.code, hard.hard_bounce) == ("550", True)
    assert isinstance(later, TransientDeliveryError)
    assert later.code == "451"
    assert isinstance(data, PermanentDeliveryError)
    assert (data.code, data.hard_bounce) == ("554", False)
    assert isinstance(good, Receipt)
    assert [m.rcpt_tos for m in smtp_server.mails] == [["hcp4@clinic.example"]]
    assert smtp_server.connections == 1  # refusals leave the connection usable


@pytest.mark.parametrize(
    ("address", "code", "hard"),
    [
        (None, "no_address", False),
        ("", "no_address", False),
        ("not-an-address", "invalid_address", True),
        ("a@b.example>\r\nRCPT TO:<evil@x.example", "invalid_address", True),
        ("two@at@clinic", "invalid_address", True),
    ],
)
def test_smtp_refuses_a_bad_address_before_sending(
    smtp_server: SmtpReceiver, context: AdapterContext, address: str | None, code: str, hard: bool
) -> None:
    adapter = smtp_adapter(smtp_server, context)
    bad = make_message(1, Channel.CAMPAIGN_EMAIL, address)
    refused, good = adapter.send_many([bad, email_to(2)])
    adapter.close()
    assert isinstance(refused, PermanentDeliveryError)
    assert (refused.code, refused.hard_bounce) == (code, hard)
    assert isinstance(good, Receipt)
    assert [m.rcpt_tos for m in smtp_server.mails] == [["hcp2@clinic.example"]]


@pytest.mark.parametrize(
    "over",
    [
        {"subject": "Hello\r\nBcc: all@evil.example"},
        {"headers": {"List-Unsubscribe": "<https://x.example>\r\nBcc: all@evil.example"}},
        {"headers": {"From": "ceo@evil.example"}},
        {"headers": {"Message-ID": "<forged@evil.example>"}},
    ],
)
def test_smtp_refuses_header_injection(
    smtp_server: SmtpReceiver, context: AdapterContext, over: dict[str, Any]
) -> None:
    adapter = smtp_adapter(smtp_server, context)
    (result,) = adapter.send_many([email_to(1, **over)])
    adapter.close()
    assert isinstance(result, PermanentDeliveryError)
    assert result.code == "bad_message"
    assert smtp_server.mails == []


def test_smtp_reuses_one_connection_across_batches(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    adapter = smtp_adapter(smtp_server, context)
    receipts(adapter.send_many([email_to(i) for i in range(3)]))
    receipts(adapter.send_many([email_to(i) for i in range(3, 6)]))
    adapter.close()
    assert len(smtp_server.mails) == 6
    assert smtp_server.connections == 1


def test_smtp_renews_the_connection_after_max_per_connection(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    """Control of the test above: the server does count each connection."""
    adapter = smtp_adapter(smtp_server, context, max_per_connection=2)
    receipts(adapter.send_many([email_to(i) for i in range(5)]))
    adapter.close()
    assert len(smtp_server.mails) == 5
    assert smtp_server.connections == 3


def test_smtp_reconnects_when_the_server_closed_an_idle_connection(
    context: AdapterContext,
) -> None:
    server = SmtpReceiver(idle_timeout_s=0.2).start()
    try:
        adapter = smtp_adapter(server, context)
        receipts(adapter.send_many([email_to(1)]))
        time.sleep(0.5)  # the server's idle timeout closes the connection (real I/O)
        receipts(adapter.send_many([email_to(2)]))
        adapter.close()
        assert len(server.mails) == 2
        assert server.connections == 2
    finally:
        server.stop()


def test_smtp_no_answer_after_the_message_was_sent_is_an_unknown_outcome_never_retried(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    # The server has the whole message but answers too late: it may have accepted it, so a
    # retry could deliver it twice. The adapter says so (permanent: a person decides).
    smtp_server.data_delay_s = 1.5
    adapter = smtp_adapter(smtp_server, context, timeout_s=0.3)
    (result,) = adapter.send_many([email_to(1)])
    adapter.close()
    assert isinstance(result, PermanentDeliveryError)
    assert result.code == "outcome_unknown"
    assert not result.hard_bounce


def test_smtp_authenticates_over_starttls_and_verifies_the_certificate(
    certificate: tuple[Path, Path], context: AdapterContext
) -> None:
    server = SmtpReceiver("starttls+auth", certificate).start()
    secure = {
        "security": "starttls",
        "ca_file": str(certificate[0]),
        "username": "mailer",
        "password": "s3cret-smtp-password-1",
    }
    try:
        adapter = smtp_adapter(server, context, **secure)
        receipts(adapter.send_many([email_to(1)]))
        adapter.close()
        assert [m.authenticated for m in server.mails] == [True]
        untrusted = smtp_adapter(server, context, **{**secure, "ca_file": None})
        (refused,) = untrusted.send_many([email_to(2)])
        assert isinstance(refused, TransientDeliveryError)
        assert refused.code == "tls"  # a self-signed certificate is not trusted by default
        unverified = smtp_adapter(server, context, **{**secure, "ca_file": None, "verify": False})
        receipts(unverified.send_many([email_to(3)]))  # the explicit opt-out
        unverified.close()
        assert len(server.mails) == 2
    finally:
        server.stop()


def test_smtp_with_a_wrong_password_is_transient_auth_and_never_shows_it(
    certificate: tuple[Path, Path], context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = SmtpReceiver("starttls+auth", certificate).start()
    wrong = "wrong-password-4711"
    try:
        adapter = smtp_adapter(
            server,
            context,
            security="starttls",
            ca_file=str(certificate[0]),
            username="mailer",
            password=wrong,
        )
        results = adapter.send_many([email_to(1), email_to(2)])
        adapter.close()
    finally:
        server.stop()
    assert len(results) == 2
    for result in results:
        assert isinstance(result, TransientDeliveryError)
        assert result.code == "auth"
        assert wrong not in result.reason
        assert wrong not in repr(result)
        assert "mailer" in results[0].reason  # names the user, so the fix is clear
    assert wrong not in caplog.text
    assert server.mails == []


def test_smtp_over_implicit_tls(certificate: tuple[Path, Path], context: AdapterContext) -> None:
    server = SmtpReceiver("tls", certificate).start()
    try:
        adapter = smtp_adapter(server, context, security="tls", ca_file=str(certificate[0]))
        receipts(adapter.send_many([email_to(1)]))
        adapter.close()
        assert len(server.mails) == 1
    finally:
        server.stop()


def test_smtp_starttls_not_offered_is_transient_and_sends_nothing_in_clear(
    smtp_server: SmtpReceiver, context: AdapterContext
) -> None:
    adapter = smtp_adapter(smtp_server, context, security="starttls")
    (result,) = adapter.send_many([email_to(1)])
    adapter.close()
    assert isinstance(result, TransientDeliveryError)
    assert result.code == "tls"
    assert smtp_server.mails == []


@given(key=st.text(min_size=1, max_size=200), other=st.text(min_size=1, max_size=200))
def test_the_message_id_depends_only_on_the_key(key: str, other: str) -> None:
    first = message_id(key, SENDER)
    assert first == message_id(key, SENDER)
    assert re.fullmatch(r"<[0-9a-f]{32}@pharma\.example>", first)
    assert (first == message_id(other, SENDER)) == (key == other)


# --- HTTP: the SMS gateway and webhooks --------------------------------------------------------


def test_the_sms_request_is_as_documented(
    sms_server: HttpReceiver, context: AdapterContext, clock: FixedClock
) -> None:
    adapter = build_adapter("sms_http", sms_config(sms_server), context)
    message = make_message(1, Channel.SMS, "+4915112345001")
    (receipt,) = receipts(adapter.send_many([message]))
    adapter.close()
    (request,) = sms_server.requests
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.headers["authorization"] == f"Bearer {SMS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "key-0001"
    assert json.loads(request.body) == {
        "to": "+4915112345001",
        "from": "Zentrova",
        "text": message.text,
        "client_reference": "key-0001",
    }
    signature = request.headers["x-counterpoint-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    assert verify_signature(SMS_SIGNING, signature, request.body, clock.now())
    assert receipt.provider_id == "rcv-key-0001"


def test_the_webhook_body_is_as_documented_and_verifiable(
    http_server: HttpReceiver, context: AdapterContext, clock: FixedClock
) -> None:
    adapter = build_adapter("webhook", webhook_config(http_server), context)
    message = make_message(1, Channel.REP_EMAIL, "hcp1@clinic.example")
    (receipt,) = receipts(adapter.send_many([message]))
    adapter.close()
    (request,) = http_server.requests
    assert request.signature_ok  # the receiver checked it with verify_signature
    assert request.headers["idempotency-key"] == "key-0001"
    body = json.loads(request.body)
    assert set(body) == {
        "idempotency_key", "outbox_id", "channel", "hcp_id", "address", "subject", "text",
        "html", "sender", "headers", "content_id", "approval_code", "brand", "market",
        "metadata", "created_at",
    }  # fmt: skip
    assert body["channel"] == "rep_email"
    assert body["text"] == message.text
    assert body["metadata"] == {"rep": "rep-anna", "journey": "launch", "synthetic": True}
    assert receipt.provider_id == "rcv-key-0001"
    header = request.headers["x-counterpoint-signature"]
    tampered = request.body.replace(b"rep_email", b"rep_emaiL")
    assert not verify_signature(WEBHOOK_SECRET, header, tampered, clock.now())  # negative control
    assert not verify_signature("another-secret-0123456789", header, request.body, clock.now())
    later = clock.now() + dt.timedelta(seconds=301)
    assert not verify_signature(WEBHOOK_SECRET, header, request.body, later)  # replayed late


def test_a_receiver_that_checks_signatures_refuses_a_wrong_secret(
    http_server: HttpReceiver, context: AdapterContext
) -> None:
    config = webhook_config(http_server, secret="not-the-receivers-secret-0")
    adapter = build_adapter("webhook", config, context)
    (result,) = adapter.send_many([make_message(1)])
    adapter.close()
    assert isinstance(result, PermanentDeliveryError)
    assert result.code == "http_401"
    assert http_server.stored == {}


@pytest.mark.parametrize("name", ["sms_http", "webhook"])
def test_the_same_key_is_sent_again_for_the_receiver_to_deduplicate(
    name: str, http_server: HttpReceiver, sms_server: HttpReceiver, context: AdapterContext
) -> None:
    server = sms_server if name == "sms_http" else http_server
    config = sms_config(server) if name == "sms_http" else webhook_config(server)
    adapter = build_adapter(name, config, context)
    message = make_message(1, Channel.SMS, "+4915112345001")
    receipts(adapter.send_many([message]))
    receipts(adapter.send_many([message]))
    adapter.close()
    assert [r.headers["idempotency-key"] for r in server.requests] == ["key-0001", "key-0001"]
    assert list(server.stored) == ["key-0001"]


@pytest.mark.parametrize(
    ("status", "body", "transient", "hard"),
    [
        (503, {}, True, False),
        (500, {}, True, False),
        (429, {}, True, False),
        (408, {}, True, False),
        (425, {}, True, False),
        (400, {"error": "invalid_number"}, False, True),
        (400, {"error": "malformed"}, False, False),
        (401, {}, False, False),
        (404, {}, False, False),
        (413, {}, False, False),
    ],
)
@pytest.mark.parametrize("name", ["sms_http", "webhook"])
def test_http_answers_map_to_transient_or_permanent(
    name: str,
    status: int,
    body: dict[str, Any],
    transient: bool,
    hard: bool,
    http_server: HttpReceiver,
    context: AdapterContext,
) -> None:
    http_server.status, http_server.status_body = status, body
    if name == "sms_http":
        http_server.secret = SMS_SIGNING
    config = sms_config(http_server) if name == "sms_http" else webhook_config(http_server)
    adapter = build_adapter(name, config, context)
    results = adapter.send_many([make_message(1, Channel.SMS, "+4915112345001")] * 2)
    adapter.close()
    assert len(results) == 2
    for result in results:
        assert isinstance(result, TransientDeliveryError if transient else PermanentDeliveryError)
        assert result.code == f"http_{status}"
        assert getattr(result, "hard_bounce", False) is hard
    assert len(http_server.requests) == 2  # an HTTP answer stops nothing else


@pytest.mark.parametrize("name", ["sms_http", "webhook"])
def test_a_slow_receiver_times_out_and_the_rest_waits(
    name: str, http_server: HttpReceiver, context: AdapterContext
) -> None:
    http_server.delay_s = 1.0
    http_server.secret = SMS_SIGNING if name == "sms_http" else WEBHOOK_SECRET
    base = sms_config(http_server) if name == "sms_http" else webhook_config(http_server)
    adapter = build_adapter(name, {**base, "timeout_s": 0.2}, context)
    batch = [make_message(i, Channel.SMS, f"+4915112345{i:03d}") for i in range(3)]
    results = adapter.send_many(batch)
    adapter.close()
    assert [type(r) for r in results] == [TransientDeliveryError] * 3
    assert [r.code for r in results if isinstance(r, DeliveryError)] == ["timeout"] * 3
    assert len(http_server.requests) == 1  # not hammered: the rest is left for a retry


def test_a_gateway_answer_without_an_id_is_still_a_receipt(
    sms_server: HttpReceiver, context: AdapterContext
) -> None:
    sms_server.status, sms_server.status_body = 202, {}
    adapter = build_adapter("sms_http", sms_config(sms_server), context)
    (receipt,) = receipts(adapter.send_many([make_message(1, Channel.SMS, "+4915112345001")]))
    adapter.close()
    assert receipt.provider_id is None
    assert receipt.detail
    assert "202" in receipt.detail


@pytest.mark.parametrize(
    ("address", "code", "hard"),
    [(None, "no_address", False), ("0151 1234567", "invalid_number", True)],
)
def test_sms_refuses_a_number_not_in_e164_before_sending(
    sms_server: HttpReceiver, context: AdapterContext, address: str | None, code: str, hard: bool
) -> None:
    adapter = build_adapter("sms_http", sms_config(sms_server), context)
    (result,) = adapter.send_many([make_message(1, Channel.SMS, address)])
    adapter.close()
    assert isinstance(result, PermanentDeliveryError)
    assert (result.code, result.hard_bounce) == (code, hard)
    assert sms_server.requests == []


def test_http_adapters_never_log_their_secrets(
    sms_server: HttpReceiver, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = build_adapter("sms_http", sms_config(sms_server), context)
    receipts(adapter.send_many([make_message(1, Channel.SMS, "+4915112345001")]))
    adapter.close()
    assert caplog.records  # httpx and httpcore did log the exchange
    assert SMS_TOKEN not in caplog.text
    assert SMS_SIGNING not in caplog.text


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=16, max_size=40),
    body=st.binary(max_size=300),
    stamp=st.integers(min_value=0, max_value=2**33),
    data=st.data(),
)
def test_a_signature_verifies_exactly_its_body_secret_and_time(
    secret: str, body: bytes, stamp: int, data: st.DataObject
) -> None:
    header = signature_header(secret, body, stamp)
    assert verify_signature(secret, header, body, stamp)
    assert verify_signature(secret, header, body, stamp + 300)
    assert not verify_signature(secret, header, body, stamp + 301)
    if body:
        at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        tampered = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    else:
        tampered = b"x"
    assert not verify_signature(secret, header, tampered, stamp)
    assert not verify_signature(secret + "!", header, body, stamp)
    moved = header.replace(f"t={stamp},", f"t={stamp + 1},")
    assert not verify_signature(secret, moved, body, stamp)


@given(header=st.text(max_size=200), body=st.binary(max_size=50))
def test_verifying_a_malformed_header_never_raises(header: str, body: bytes) -> None:
    assert verify_signature("0123456789abcdef", header, body, 1_800_000_000) in (True, False)


def test_a_signature_may_carry_several_v1_values_during_a_secret_rotation() -> None:
    body = b'{"x":1}'
    old = signature_header("old-secret-0123456789", body, 100)
    new = signature_header("new-secret-0123456789", body, 100)
    both = f"{old},v1={new.split('v1=')[1]}"
    assert verify_signature("old-secret-0123456789", both, body, 100)
    assert verify_signature("new-secret-0123456789", both, body, 100)
    assert not verify_signature("other-secret-01234567", both, body, 100)


# --- the export files: crashes, damage, several writers ---------------------------------------


def crm_path(context: AdapterContext, day: str = "2026-11-23") -> Path:
    return context.data_dir / "exports" / "crm" / f"rep-tasks-{day}.csv"


def task(i: int) -> OutboundMessage:
    return make_message(i, Channel.F2F_CALL, None)


def test_a_row_cut_short_by_a_crash_is_removed_and_written_again(
    context: AdapterContext,
) -> None:
    first = build_adapter("crm_export", {}, context)
    receipts(first.send_many([task(1), task(2)]))
    path = crm_path(context)
    whole = path.read_bytes()
    second = build_adapter("crm_export", {}, context)
    receipts(second.send_many([task(3)]))
    row_three = path.read_bytes()[len(whole) :]
    path.write_bytes(whole + row_three[: len(row_three) // 2])  # the crash, mid-row
    restarted = build_adapter("crm_export", {}, context)
    (receipt,) = receipts(restarted.send_many([task(3)]))
    assert receipt.detail == "row written"
    assert path.read_bytes() == whole + row_three
    assert [r["idempotency_key"] for r in csv_rows(path)] == ["key-0001", "key-0002", "key-0003"]


def test_a_last_row_missing_only_its_line_end_is_kept(context: AdapterContext) -> None:
    adapter = build_adapter("crm_export", {}, context)
    receipts(adapter.send_many([task(1), task(2)]))
    path = crm_path(context)
    path.write_bytes(path.read_bytes().removesuffix(b"\r\n"))  # e.g. saved by an editor
    restarted = build_adapter("crm_export", {}, context)
    again, fresh = receipts(restarted.send_many([task(2), task(3)]))
    assert again.detail == "already in the file"
    assert fresh.detail == "row written"
    assert [r["idempotency_key"] for r in csv_rows(path)] == ["key-0001", "key-0002", "key-0003"]


def test_damage_inside_a_file_stops_writing_and_changes_nothing(context: AdapterContext) -> None:
    adapter = build_adapter("crm_export", {}, context)
    receipts(adapter.send_many([task(1), task(2)]))
    path = crm_path(context)
    lines = path.read_bytes().split(b"\r\n")
    lines[1] = b'"key-0001"broken' + lines[1]  # a character after a closing quote
    path.write_bytes(b"\r\n".join(lines))
    before = path.read_bytes()
    restarted = build_adapter("crm_export", {}, context)
    (result,) = restarted.send_many([task(3)])
    assert isinstance(result, TransientDeliveryError)
    assert result.code == "io"
    assert path.read_bytes() == before


def test_several_writers_share_a_file_without_duplicates(context: AdapterContext) -> None:
    adapters = [build_adapter("crm_export", {}, context) for _ in range(4)]
    batch = [task(i) for i in range(40)]
    errors: list[BaseException] = []

    def send(adapter: ChannelAdapter, offset: int) -> None:
        try:
            for start in range(0, 40, 8):
                chunk = batch[(start + offset) % 40 :] + batch[: (start + offset) % 40]
                receipts(adapter.send_many(chunk[:8]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(a, 8 * n)) for n, a in enumerate(adapters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    keys = [r["idempotency_key"] for r in csv_rows(crm_path(context))]
    assert sorted(keys) == sorted(m.idempotency_key for m in batch)


def test_a_new_utc_day_starts_a_new_file(context: AdapterContext, clock: FixedClock) -> None:
    adapter = build_adapter("crm_export", {}, context)
    receipts(adapter.send_many([task(1)]))
    clock.advance(dt.timedelta(hours=12))  # 2026-11-24T00:00Z
    receipts(adapter.send_many([task(2)]))
    assert [r["idempotency_key"] for r in csv_rows(crm_path(context))] == ["key-0001"]
    assert [r["idempotency_key"] for r in csv_rows(crm_path(context, "2026-11-24"))] == ["key-0002"]


def test_an_export_directory_may_be_configured(context: AdapterContext, tmp_path: Path) -> None:
    adapter = build_adapter("print_export", {"directory": str(tmp_path / "mailhouse")}, context)
    receipts(adapter.send_many([make_message(1, Channel.DIRECT_MAIL, POSTAL)]))
    assert (tmp_path / "mailhouse" / "direct-mail-2026-11-23.csv").exists()
    with pytest.raises(ValidationFailedError) as caught:
        build_adapter("print_export", {"directory": "../outside"}, context)
    assert caught.value.field == "print_export.directory"


def test_a_postal_address_has_one_to_six_lines(context: AdapterContext) -> None:
    adapter = build_adapter("print_export", {}, context)
    seven = "\n".join(f"line {n}" for n in range(7))
    too_long, blank = adapter.send_many(
        [make_message(1, Channel.DIRECT_MAIL, seven), make_message(2, Channel.DIRECT_MAIL, " \n ")]
    )
    assert isinstance(too_long, PermanentDeliveryError)
    assert too_long.code == "invalid_address"
    assert isinstance(blank, PermanentDeliveryError)
    assert blank.code == "no_address"


def test_the_console_file_keeps_its_keys_across_restarts(context: AdapterContext) -> None:
    first = build_adapter("console", {"echo": False}, context)
    receipts(first.send_many([make_message(1), make_message(2)]))
    restarted = build_adapter("console", {"echo": False}, context)
    again, fresh = receipts(restarted.send_many([make_message(2), make_message(3)]))
    assert again.detail == "already written"
    assert fresh.detail is None
    path = context.data_dir / "outbox" / "console.jsonl"
    rows = jsonl_rows(path)
    assert [r["idempotency_key"] for r in rows] == ["key-0001", "key-0002", "key-0003"]
    assert rows[0]["adapter"] == "console"
    assert rows[0]["written_at"] == "2026-11-23T12:00:00+00:00"


def test_a_console_line_cut_short_is_removed(context: AdapterContext) -> None:
    adapter = build_adapter("console", {"echo": False}, context)
    receipts(adapter.send_many([make_message(1)]))
    path = context.data_dir / "outbox" / "console.jsonl"
    path.write_bytes(path.read_bytes() + b'{"idempotency_key": "key-0002", "te')
    restarted = build_adapter("console", {"echo": False}, context)
    (receipt,) = receipts(restarted.send_many([make_message(2)]))
    assert receipt.detail is None
    assert [r["idempotency_key"] for r in jsonl_rows(path)] == ["key-0001", "key-0002"]


# --- building adapters from settings -----------------------------------------------------------


def test_an_unknown_adapter_names_the_installed_ones(context: AdapterContext) -> None:
    with pytest.raises(UnknownAdapterError) as caught:
        build_adapter("pigeon", {}, context)
    problem = caught.value.to_problem()
    assert problem["status"] == 400
    assert problem["field"] == "adapter"
    for name in ADAPTERS:
        assert name in problem["fix"]
    assert problem["installed"] == sorted(ADAPTERS)


@pytest.mark.parametrize(
    ("values", "field", "fix"),
    [
        ({"host": "mx.example", "from_address": SENDER, "port": "many"}, "smtp.port", "correct"),
        ({"host": "mx.example"}, "smtp.from_address", "add the setting from_address"),
        ({"host": "mx.example", "from_address": SENDER, "hots": "x"}, "smtp.hots", "remove hots"),
        ({"host": "mx.example", "from_address": "nobody"}, "smtp.from_address", "correct"),
        ({"host": "mx.example", "from_address": SENDER, "security": "ssl"}, "smtp.security", ""),
        ({"host": "mx.example", "from_address": SENDER, "password": "p"}, "smtp", ""),
        ({"host": "mx.example", "from_address": SENDER, "username": "u"}, "smtp", ""),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(
    values: dict[str, Any], field: str, fix: str
) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        parse_config("smtp", values)
    assert caught.value.field == field
    assert caught.value.fix
    assert fix in caught.value.fix


def test_credentials_are_never_sent_without_tls() -> None:
    values = {"host": "mx.example", "from_address": SENDER, "security": "none"}
    with pytest.raises(ValidationFailedError) as caught:
        parse_config("smtp", {**values, "username": "u", "password": "hunter2-smtp-secret"})
    assert "TLS" in caught.value.detail
    assert "hunter2" not in str(caught.value.to_problem())
    assert parse_config("smtp", values)  # control: without credentials it is accepted


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"url": "ftp://hooks.example.com", "secret": WEBHOOK_SECRET}, "webhook.url"),
        (
            {"url": "https://u:pw-in-url-99@hooks.example.com", "secret": WEBHOOK_SECRET},
            "webhook.url",
        ),
        ({"url": "https://hooks.example.com", "secret": "short"}, "webhook.secret"),
        (
            {"url": "https://hooks.example.com", "secret": WEBHOOK_SECRET, "timeout_s": 0},
            "webhook.timeout_s",
        ),
    ],
)
def test_bad_webhook_settings_are_refused(values: dict[str, Any], field: str) -> None:
    good = {"url": "https://hooks.example.com/cp", "secret": WEBHOOK_SECRET}
    assert parse_config("webhook", good)
    with pytest.raises(ValidationFailedError) as caught:
        parse_config("webhook", {**good, **values})
    assert caught.value.field == field
    assert "pw-in-url-99" not in str(caught.value.to_problem())
