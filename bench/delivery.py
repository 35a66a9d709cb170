"""The outbox delivering: e-mails to a local SMTP server, and internal channels.

Seeds an embedded deployment (SQLite + DuckDB in a temporary directory) with synthetic HCPs
(an e-mail address and an e-mail grant each), an approved synthetic e-mail asset and a
permissive contact policy, queues one send per HCP through ``DeliveryService.send`` (guard
included), then times the delivery worker draining the outbox:

* **SMTP**: the worker (claim, guard again, render with tracking links, the ``smtp`` adapter
  with connection reuse, delivery events, outbox updates) against an aiosmtpd server on
  loopback. Baseline in the same run: a bare ``smtplib`` loop sending the same number of
  messages of the same size over one connection to the same server. Goal: >= 300 e-mails/s.
* **Internal**: the same worker into the rep inbox (and, separately, the print export), and
  the adapters alone (``send_many`` of composed messages). Goal: >= 10,000 actions/s. A third
  figure bounds the worker from above: the *storage floor*, the same passes' reads and writes
  (claim, the guard's and composer's reads, inbox rows, two delivery events through the log's
  own append, touch counters, outcomes) as raw statements, with no decision or rendering.

All data is synthetic.

    .venv/bin/python bench/delivery.py                 # 3,000 e-mails, 20,000 internal
    .venv/bin/python bench/delivery.py --tiny          # CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.policy
import multiprocessing
import shutil
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Result,
    add_common_args,
    command_line,
    free_port,
    machine_info,
    median_of,
    write_json,
)

TINY_SUPPORTED = True
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)  # Monday, 13:00 in Berlin
POLICY = {"market": "DE", "time_zone": "Europe/Berlin", "caps": []}
HTML = (
    "<html><body><p>{{ hcp.salutation }} {{ hcp.last_name }},</p><p>Synthetic benchmark "
    'content about Cardiomax dosing.</p><p><a href="https://pharma.example/cmx">Read more</a></p>'
    '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>'
)


class _Count:
    """An SMTP handler that accepts and counts (shared with the parent process)."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def _sink(port: int, counter: Any, ready: Any) -> None:
    """The SMTP server, in its own process like a real one (not competing for our GIL)."""
    import threading

    from aiosmtpd.controller import Controller

    controller = Controller(_Count(counter), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    threading.Event().wait()


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.counter: Any = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=_sink, args=(self.port, self.counter, ready), daemon=True
        )
        self.process.start()
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")

    @property
    def messages(self) -> int:
        return int(self.counter.value)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def open_store(root: Path, channels: dict[str, Any] | None) -> Any:
    import yaml

    from counterpoint.container import open_container
    from counterpoint.kit.clock import FixedClock
    from counterpoint.settings import Settings

    channels_file = None
    if channels is not None:
        channels_file = root / "channels.yaml"
        channels_file.write_text(yaml.safe_dump(channels))
    root.joinpath("data").mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data_dir=root / "data",
        environment="test",
        run_delivery=False,
        channels_file=channels_file,
    )
    return open_container(settings, clock=FixedClock(NOW))


def seed(container: Any, hcps: int, channel: str) -> list[str]:
    from counterpoint.consent.ledger import (
        ConsentChannel,
        ConsentScope,
        ConsentSource,
        ConsentState,
        Proof,
        Purpose,
    )
    from counterpoint.content.models import ContentGeneration, ContentItem
    from counterpoint.event.canonical import EventKind, LogEvent
    from counterpoint.policy.audit import Actor

    actor = Actor.system("bench")
    events = []
    for i in range(hcps):
        traits = {
            "market": "DE", "territory": "T1", "time_zone": "Europe/Berlin",
            "first_name": "Synthetic", "last_name": f"Hcp{i}", "title": "Dr.",
            "preferred_language": "de", "email": f"hcp{i}@synthetic.example",
        }  # fmt: skip
        subject = f"crm:BENCH{i:07d}"
        events.append(LogEvent(f"bench-id-{i}", EventKind.IDENTIFY, subject, NOW, NOW, "bench",
                               payload={"traits": traits}, synthetic=True))  # fmt: skip
    for start in range(0, len(events), 50_000):
        container.log.append(events[start : start + 50_000])
    container.catch_up()
    ids = [container.profiles.find_by_identifier(f"crm:BENCH{i:07d}") for i in range(hcps)]
    proof = Proof(ConsentSource.IMPORT, "bench", wording_version="v1")
    consent_channel = ConsentChannel.EMAIL if "email" in channel else ConsentChannel.F2F_CALL
    body: dict[str, Any] = {
        "subject": "{{ hcp.salutation }} {{ hcp.last_name }}: Cardiomax (synthetic)",
        "text": "{{ hcp.salutation }} {{ hcp.last_name }},\nSynthetic.\n{{ links.unsubscribe }}",
        "html": HTML,
    }
    if "email" not in channel:  # a call task for the rep: no HCP links in it
        body = {"subject": "Call {{ hcp.full_name }}", "text": "Discuss Cardiomax (synthetic)"}
    with container.sessions.begin() as session:
        for hcp_id in ids:
            container.consents.record_in(
                session, hcp_id=hcp_id, subject=None,
                scope=ConsentScope(consent_channel, Purpose.PROMOTIONAL, "DE"),
                state=ConsentState.GRANTED, proof=proof, actor=actor, reason="synthetic grant",
                effective_at=NOW - dt.timedelta(days=60),
            )  # fmt: skip
        session.add(
            ContentItem(
                id="cnt_bench", code="BENCH-EM-001", kind="asset", asset_type="campaign_email",
                title="Synthetic benchmark e-mail", brand="Cardiomax", function="promotional",
                markets=["DE"], languages=["de"], channels=[channel], claims=[], minutes=2.0,
                body=body,
                fragment_codes=[], version=1, content_hash="0" * 64, state="approved",
                author_id="usr_bench", author="bench", created_at=NOW, updated_at=NOW,
                job_code="BENCH-JOB-1", approval_markets=["DE"], approval_channels=[channel],
                valid_from=NOW - dt.timedelta(days=1), valid_until=NOW + dt.timedelta(days=300),
                approved_at=NOW, approved_hash="1" * 64, synthetic=True,
            )
        )  # fmt: skip
        session.merge(ContentGeneration(id=1, value=1))
    container.contact.set_policies(POLICY, actor, "benchmark policy")
    return [i for i in ids if i is not None]


def queue(container: Any, ids: list[str], channel: str, key: str, role: Any = None) -> float:
    from counterpoint.delivery.service import SendRequest
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.access import Principal
    from counterpoint.policy.audit import Actor

    principal = None
    if role is not None:
        principal = Principal("usr_rep", "bench-rep", role, territories=frozenset({"T1"}))
    start = time.perf_counter()
    report = container.delivery.send(
        SendRequest("cnt_bench", Channel(channel), hcp_ids=ids, request_key=key),
        principal=principal,
        actor=Actor.system("bench"),
    )
    assert len(report.queued) == len(ids), report.as_dict()["counts"]
    return time.perf_counter() - start


def smtp_run(emails: int, repeats: int) -> list[Result]:
    handler = SmtpSink()
    port = handler.port
    channels = {
        "adapters": {
            "mail": {
                "adapter": "smtp",
                "config": {"host": "127.0.0.1", "port": port, "security": "none",
                           "from_address": "Cardiomax <news@pharma.example>"},
            }
        },
        "routes": {"campaign_email": "mail"},
    }  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="delivery-smtp-"))
    container = open_store(root, channels)
    sample: list[bytes] = []
    try:
        ids = seed(container, emails, "campaign_email")
        rates: list[float] = []
        for run in range(repeats):
            queue(container, ids, "campaign_email", f"bench-{run}")
            before = handler.messages
            start = time.perf_counter()
            done = container.delivery_worker.drain(limit=200)
            seconds = time.perf_counter() - start
            assert done.sent == emails, done
            assert handler.messages - before == emails
            rates.append(emails / seconds)
            container.clock.advance(dt.timedelta(days=4))  # past the minimum gap

        message = EmailMessage()
        message["From"] = "news@pharma.example"
        message["Subject"] = "Guten Tag Dr. Hcp1: Cardiomax (synthetic)"
        filler = ("x" * 70 + "\n") * 6  # about the size of a rendered message's tracking links
        message.set_content("Guten Tag Dr. Hcp1,\nSynthetic.\n" + filler)
        message.add_alternative(HTML.replace("{{", "").replace("}}", "") + "\n" + filler, "html")
        sample.append(message.as_bytes(policy=email.policy.SMTP))

        def bare() -> float:
            start = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                for i in range(emails):
                    smtp.sendmail("news@pharma.example", [f"hcp{i}@synthetic.example"], sample[0])
            return emails / (time.perf_counter() - start)

        baseline = median_of(bare, repeats)
    finally:
        container.close()
        handler.stop()
        shutil.rmtree(root, ignore_errors=True)
    rate = sorted(rates)[len(rates) // 2]
    return [
        Result("outbox -> SMTP (worker, connection reuse)", rate, "e-mails/s",
               "bare smtplib loop", baseline,
               extra={"emails": emails, "runs": rates, "goal": ">= 300 e-mails/s"}),
    ]  # fmt: skip


def internal_run(actions: int, repeats: int) -> list[Result]:
    from counterpoint.channel.base import OutboundMessage
    from counterpoint.channel.rep_inbox import RepInboxAdapter
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.access import Role

    channels = {
        "adapters": {"inbox": {"adapter": "rep_inbox"}},
        "routes": {"f2f_call": "inbox"},
    }
    root = Path(tempfile.mkdtemp(prefix="delivery-internal-"))
    container = open_store(root, channels)
    try:
        ids = seed(container, actions, "f2f_call")
        rates: list[float] = []
        for run in range(repeats):
            queue(container, ids, "f2f_call", f"bench-{run}", role=Role.SALES_REP)
            start = time.perf_counter()
            done = container.delivery_worker.drain(limit=1000)
            seconds = time.perf_counter() - start
            assert done.sent == actions, done
            rates.append(actions / seconds)
            container.clock.advance(dt.timedelta(days=8))  # past the minimum gap
        # the adapter alone: composed messages into the inbox
        messages = [
            OutboundMessage(f"o{i}", f"adapter-{i}", Channel.F2F_CALL, h, None, "Task",
                            "Discuss Cardiomax (synthetic)", metadata={"rep": "bench-rep"})
            for i, h in enumerate(ids)
        ]  # fmt: skip
        adapter = container.routes.adapter("inbox", container.delivery_worker._context)

        def alone() -> float:
            start = time.perf_counter()
            for s in range(0, len(messages), 1000):
                adapter.send_many(messages[s : s + 1000])
            return len(messages) / (time.perf_counter() - start)

        adapter_rate = alone()  # later repeats find every key present (idempotent skips)
        assert isinstance(adapter, RepInboxAdapter)
        exports = _exports_alone(container, messages)
    finally:
        container.close()
        shutil.rmtree(root, ignore_errors=True)
    rate = sorted(rates)[len(rates) // 2]
    floor = median_of(lambda: storage_floor(actions, 1000), repeats)
    one_pass = median_of(lambda: storage_floor(actions, actions), repeats)
    return [
        Result("outbox -> rep inbox (worker, guard included)", rate, "actions/s",
               "rep inbox adapter alone", adapter_rate,
               extra={"actions": actions, "runs": rates, "goal": ">= 10,000 actions/s"}),
        Result("storage floor of the same passes (raw statements: no guard, no rendering)",
               floor, "actions/s", "the worker above", rate,
               extra={"actions": actions, "per_pass": 1000, "goal": ">= 10,000 actions/s"}),
        Result("storage floor, all actions in one pass", one_pass, "actions/s",
               "the worker above", rate,
               extra={"actions": actions, "per_pass": actions, "goal": ">= 10,000 actions/s"}),
        *exports,
    ]  # fmt: skip


def _exports_alone(container: Any, messages: list[Any]) -> list[Result]:
    """The CRM and print export adapters alone, batches of 1,000 rows (fsync per batch)."""
    import dataclasses

    from counterpoint.channel.registry import build_adapter
    from counterpoint.event.canonical import Channel

    context = container.delivery_worker._context
    out: list[Result] = []
    for name, channel, address in (
        ("crm_export", Channel.F2F_CALL, None),
        ("print_export", Channel.DIRECT_MAIL, "Dr. Synthetic Hcp\nPraxis Beispiel\nBerlin"),
    ):
        adapter = build_adapter(name, {}, context)
        batch = [dataclasses.replace(m, channel=channel, address=address) for m in messages]
        start = time.perf_counter()
        for s in range(0, len(batch), 1000):
            results = adapter.send_many(batch[s : s + 1000])
            assert all(not isinstance(r, Exception) for r in results), results[:3]
        rate = len(batch) / (time.perf_counter() - start)
        adapter.close()
        goal = {"actions": len(batch), "goal": ">= 10,000 actions/s"}
        out.append(Result(f"{name} adapter alone", rate, "actions/s", extra=goal))
    return out


# --- the storage floor of an internal-channel pass -----------------------------------------
_PENDING = (
    "SELECT id, hcp_id FROM outbox_entry WHERE status = 'pending' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?"
)
_CLAIM = (
    "UPDATE outbox_entry SET status = 'sending', lease_until = ?, claimed_by = 'floor', "
    "attempts = attempts + 1, updated_at = ? "
    "WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending' "
    "RETURNING id, idempotency_key, channel, hcp_id, content_id, brand, requested_by"
)
_IN = "IN (SELECT value FROM json_each(?))"
_READS = (  # what the guard and the composer read of a pass's HCPs (json lists of ids, keys)
    ("ids", f"SELECT id, market, territory, time_zone, kind, preferred_language, first_name, "
            f"last_name, title, specialty, persona, synthetic FROM hcp WHERE id {_IN}"),
    ("ids", f"SELECT hcp_id, channel FROM do_not_contact WHERE hcp_id {_IN}"),
    ("ids", f"SELECT * FROM consent_record WHERE hcp_id {_IN} ORDER BY seq"),
    ("keys", f"SELECT * FROM consent_record WHERE subject {_IN} ORDER BY seq"),
    ("keys", f"SELECT * FROM touch_day WHERE subject {_IN} AND day >= ?"),
    ("keys", f"SELECT * FROM touch_last WHERE subject {_IN}"),
    ("keys", f"SELECT * FROM contact_suppression WHERE subject {_IN}"),
)  # fmt: skip
_INBOX = (
    "INSERT INTO rep_inbox_item (id, recipient, hcp_id, channel, subject, text, content_id, "
    "approval_code, brand, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_TOUCH_DAY = (
    "INSERT INTO touch_day (subject, day, channel, brand, touches, reported_touches, "
    "reported_minutes, promotional) VALUES (?, ?, ?, ?, 1, 0, 0.0, 1) "
    "ON CONFLICT (subject, day, channel, brand) DO UPDATE SET touches = touch_day.touches + 1"
)
_TOUCH_LAST = (
    "INSERT INTO touch_last (subject, channel, last_at) VALUES (?, ?, ?) "
    "ON CONFLICT (subject, channel) DO UPDATE SET last_at = excluded.last_at"
)
_SENT = (
    "UPDATE outbox_entry SET status = 'sent', lease_until = NULL, updated_at = ?, adapter = ?, "
    "error_code = NULL, last_error = NULL, provider_id = ?, sent_at = ? WHERE id = ?"
)


def storage_floor(actions: int, pass_size: int) -> float:
    """Actions/s of the storage work alone of internal-channel passes, on a store seeded and
    queued as for the worker: per pass the claim, the guard's and composer's reads, the inbox
    rows, two delivery events through the log's own append (de-duplicated, durable), the touch
    counters and the outcomes, each as one raw statement or executemany, with no guard
    decision, no rendering and no Python objects per row. The worker cannot beat it."""
    import json
    import sqlite3

    from counterpoint.event.duckdb_log import DuckDBEventLog
    from counterpoint.policy.access import Role

    channels = {"adapters": {"inbox": {"adapter": "rep_inbox"}}, "routes": {"f2f_call": "inbox"}}
    root = Path(tempfile.mkdtemp(prefix="delivery-floor-"))
    try:
        container = open_store(root, channels)
        queue(container, seed(container, actions, "f2f_call"), "f2f_call", "floor", Role.SALES_REP)
        container.close()
        db = sqlite3.connect(root / "data" / "counterpoint.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
            db.execute(f"PRAGMA {pragma}")
        log = DuckDBEventLog(root / "data" / "events.duckdb")
        now = NOW.replace(tzinfo=None).isoformat(" ", "microseconds")
        since = (NOW - dt.timedelta(days=90)).date().isoformat()
        done = 0
        start = time.perf_counter()
        while True:
            seen: set[str] = set()
            ids: list[str] = []
            for entry_id, hcp_id in db.execute(_PENDING, (now, pass_size * 4)):
                if hcp_id not in seen and len(ids) < pass_size:
                    seen.add(hcp_id)
                    ids.append(entry_id)
            if not ids:
                break
            claimed = db.execute(_CLAIM, (now, now, json.dumps(ids))).fetchall()
            hcps = json.dumps([c[3] for c in claimed])
            keys = db.execute(f"SELECT key, hcp_id FROM identity WHERE hcp_id {_IN}", (hcps,))
            subject = {h: k for k, h in keys.fetchall()}
            for what, sql in _READS:
                args = (hcps,) if what == "ids" else (json.dumps(list(subject.values())),)
                db.execute(sql, (*args, since) if "day >=" in sql else args).fetchall()
            db.execute("BEGIN")
            inbox = [(c[1], c[6], c[3], c[2], "Task", "Discuss Cardiomax", c[4], "BENCH-JOB-1",
                      c[5], "{}", now) for c in claimed]  # fmt: skip
            db.executemany(_INBOX, inbox)
            db.execute("COMMIT")
            log.append_arrow(_floor_events(claimed, subject))
            db.execute("BEGIN")
            touched = [subject[c[3]] for c in claimed]
            db.executemany(_TOUCH_DAY, [(s, NOW.date().isoformat(), "f2f_call", "Cardiomax")
                                        for s in touched])  # fmt: skip
            db.executemany(_TOUCH_LAST, [(s, "f2f_call", now) for s in touched])
            db.executemany(_SENT, [(now, "inbox", c[1], now, c[0]) for c in claimed])
            db.execute("COMMIT")
            done += len(claimed)
        seconds = time.perf_counter() - start
        db.close()
        log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if done != actions:
        raise RuntimeError(f"the floor run delivered {done} of {actions}")
    return actions / seconds


def _floor_events(claimed: list[Any], subject: dict[str, str]) -> Any:
    """The pass's ``sent`` and ``delivered`` events, column by column."""
    import json

    import pyarrow as pa

    from counterpoint.event.arrow import LOG_SCHEMA

    n = 2 * len(claimed)
    props = [
        {"outbox_id": c[0], "hcp_id": c[3], "purpose": "promotional", "adapter": "inbox",
         "provider_id": c[1]}
        for c in claimed
    ]  # fmt: skip
    same = {"kind": "track", "occurred_at": NOW, "received_at": NOW, "source": "delivery",
            "channel": "f2f_call", "brand": "Cardiomax", "content_id": "cnt_bench",
            "actor_type": "rep", "actor_id": "bench-rep", "function": "commercial",
            "market": "DE", "synthetic": True}  # fmt: skip
    columns = {
        "message_id": [f"delivery:{c[0]}:{a}" for c in claimed for a in ("sent", "delivered")],
        "subject": [subject[c[3]] for c in claimed for _ in (0, 1)],
        "action": ["sent", "delivered"] * len(claimed),
        "event_name": ["f2f_call sent", "f2f_call delivered"] * len(claimed),
        "payload": [json.dumps({"properties": p}) for p in props for _ in (0, 1)],
    }
    arrays = [
        pa.array(columns[f.name] if f.name in columns else [same.get(f.name)] * n, f.type)
        for f in LOG_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=LOG_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--emails", type=int, default=3_000)
    parser.add_argument("--actions", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.tiny:
        args.emails, args.actions, args.repeats = 100, 300, 1
    results = smtp_run(args.emails, args.repeats) + internal_run(args.actions, args.repeats)
    print(f"# {command_line()}")
    print(f"# machine: {machine_info()}")
    for result in results:
        result.print()
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
