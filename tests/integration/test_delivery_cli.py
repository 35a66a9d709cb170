"""``counterpoint send`` and ``counterpoint outbox`` end to end, on both deployments, with the
default routing (the console adapter: nothing leaves the machine, every message is a line of
``<data_dir>/outbox/console.jsonl``). The command runs on the real clock, so the market's
contact policy here has no quiet hours (the test passes at any hour of any day). A bad
channels document stops the command with the path in the document and a fix. All data is
synthetic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from counterpoint.cli.app import app
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.container import Container, open_container
from counterpoint.content.models import ContentGeneration, ContentItem
from counterpoint.event.canonical import EventKind, LogEvent
from counterpoint.policy.audit import Actor
from counterpoint.profile.identifiers import npi_is_valid
from counterpoint.settings import Settings

COUNTERPOINT = Path(sys.executable).with_name("counterpoint")
CODE = "ZEN-DE-EM-CLI"
SETUP = Actor.system("tests")
POLICY = {
    "market": "DE",
    "time_zone": "Europe/Berlin",
    "caps": [{"scope": "all", "period_days": 7, "max_touches": 20}],
    "min_gap_hours": {},
    "quiet_weekdays": [],
}


def _npi(n: int) -> str:
    base = f"{987650000 + n:09d}"
    return next(base + d for d in "0123456789" if npi_is_valid(base + d))


class Cli:
    """The command run in this process against the deployment of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hcps: dict[str, str] = {}

    def env(self, **more: str | None) -> dict[str, str | None]:
        return {
            "COUNTERPOINT_DATA_DIR": str(self.settings.data_dir),
            "COUNTERPOINT_DATABASE_URL": self.settings.database_url,
            "COUNTERPOINT_CHANNELS_FILE": None,
            "COUNTERPOINT_RUN_DELIVERY": "false",
            "COLUMNS": "250",
            **more,
        }

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env())

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    def console_lines(self) -> list[dict[str, Any]]:
        path = self.settings.data_dir / "outbox" / "console.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]

    def open(self) -> Container:
        return open_container(self.settings)


def _hcp(built: Container, n: int, email: str | None, territory: str = "T1") -> str:
    now = built.clock.now()
    traits: dict[str, Any] = {
        "market": "DE",
        "territory": territory,
        "time_zone": "Europe/Berlin",
        "preferred_language": "de",
        "title": "Dr.",
        "last_name": f"Beispiel{n}",
    }
    if email:
        traits["email"] = email
    subject = f"npi:{_npi(n)}"
    built.log.append(
        [
            LogEvent(
                f"cli-id-{n}",
                EventKind.IDENTIFY,
                subject,
                now,
                now,
                "tests",
                payload={"traits": traits},
            )
        ]
    )
    built.catch_up()
    hcp_id = built.profiles.find_by_identifier(subject)
    assert hcp_id is not None
    built.consents.record(
        hcp_id=hcp_id,
        subject=None,
        scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
        state=ConsentState.GRANTED,
        proof=Proof(ConsentSource.API, "tests", wording_version="v1"),
        actor=SETUP,
        reason="signed form (synthetic)",
        effective_at=now - dt.timedelta(days=30),
    )
    return hcp_id


REP_CODE = "ZEN-DE-EM-REP"
"""An approved e-mail that needs the sending rep's details (an automated send cannot fill
it: a dead letter)."""


def _asset(built: Container, code: str = CODE, body: dict[str, str] | None = None) -> None:
    """An approved e-mail, valid around the real now, written as the library leaves it."""
    now = built.clock.now()
    with built.sessions.begin() as session:
        session.add(
            ContentItem(
                id=f"cnt_{code.lower()}", code=code, kind="asset", asset_type="campaign_email",
                title="Zentrova news (synthetic)", brand="ZENTROVA", function="promotional",
                markets=["DE"], languages=["de"], channels=["campaign_email", "rep_email"],
                claims=[], minutes=2.0, fragment_codes=[], version=1, content_hash="0" * 64,
                body=body or {
                    "subject": "{{ hcp.salutation }} {{ hcp.last_name }}, Neues zu Zentrova",
                    "text": "Neue Daten.\nAbmelden: {{ links.unsubscribe }}",
                },
                state="approved", author_id="usr_author", author="author",
                created_at=now - dt.timedelta(days=3), updated_at=now - dt.timedelta(days=3),
                job_code=f"JOB-{code}", approval_markets=["DE"],
                approval_channels=["campaign_email", "rep_email"],
                valid_from=now - dt.timedelta(days=2), valid_until=now + dt.timedelta(days=60),
                approved_at=now - dt.timedelta(days=2), approved_hash="1" * 64, synthetic=True,
            )
        )  # fmt: skip
        generation = session.get(ContentGeneration, 1)
        if generation is None:
            session.add(ContentGeneration(id=1, value=1))
        else:
            generation.value += 1


@pytest.fixture
def cli(settings: Settings) -> Cli:
    """Three HCPs (two in territory T1, one without an e-mail address; one in T2), the
    approved asset, a policy without quiet hours, and a sales rep for T1."""
    built_cli = Cli(settings)
    built = built_cli.open()
    try:
        built.contact.set_policies(POLICY, SETUP, "tests run at any hour")
        built_cli.hcps = {
            "a": _hcp(built, 1, "a.beispiel@praxis.example"),
            "no-address": _hcp(built, 2, None),
            "t2": _hcp(built, 3, "c.beispiel@klinik.example", territory="T2"),
        }
        _asset(built)
        _asset(built, REP_CODE, {"subject": "{{ rep.name }}", "text": "{{ rep.signature }}"})
    finally:
        built.close()
    built_cli.ok("users", "create", "rep-anna", "--role", "sales_rep", "--territory", "T1")
    return built_cli


def test_send_now_writes_the_message_to_the_console_file(cli: Cli) -> None:
    target = cli.hcps["a"]
    out = cli.ok("send", CODE, "--channel", "campaign_email", "--hcp", target, "--now")
    assert "1 queued, 0 already queued, 0 refused" in out
    assert "delivered: 1 sent, 0 refused at delivery, 0 to retry, 0 dead letters" in out
    [line] = cli.console_lines()
    assert (line["adapter"], line["channel"], line["hcp_id"]) == (
        "console",
        "campaign_email",
        target,
    )
    assert line["address"] == "a.beispiel@praxis.example"
    assert line["subject"] == "Guten Tag Dr. Beispiel1, Neues zu Zentrova"
    assert "/consent/unsubscribe" in line["text"]
    assert line["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert line["approval_code"] == f"JOB-{CODE}"
    assert line["metadata"]["requested_by"].startswith("cli:")  # the system, run from the CLI
    listed = cli.ok("outbox", "list", "--status", "sent")
    assert line["outbox_id"] in listed
    assert "sent: 1" in listed
    # the same key again queues nothing, and nothing is written twice
    keyed = ("send", CODE, "--channel", "campaign_email", "--hcp", target, "--key", "k-1")
    cli.ok(*keyed)
    assert "0 queued, 1 already queued" in cli.ok(*keyed)


def test_send_as_a_user_acts_with_that_users_role_and_territory(cli: Cli) -> None:
    mine, theirs = cli.hcps["a"], cli.hcps["t2"]
    refused = cli.ok("send", CODE, "--channel", "campaign_email", "--hcp", mine, "--as", "rep-anna")
    assert "0 queued" in refused
    assert f"{mine}: role_not_allowed" in refused
    out = cli.ok(
        "send", CODE, "--channel", "rep_email", "--hcp", mine, "--hcp", theirs,
        "--as", "rep-anna", "--now",
    )  # fmt: skip
    assert "1 queued, 0 already queued, 1 refused" in out
    assert f"{theirs}: unknown_hcp" in out
    [line] = cli.console_lines()
    assert (line["hcp_id"], line["channel"]) == (mine, "rep_email")
    assert line["metadata"]["rep"] == "rep-anna"
    assert line["metadata"]["requested_by"] == "rep-anna"
    nobody = cli.run("send", CODE, "--channel", "rep_email", "--hcp", mine, "--as", "nobody")
    assert nobody.exit_code != 0
    assert getattr(nobody.exception, "field", None) == "user"
    # negative control: without --as the system sends campaign e-mail
    system = cli.ok("send", CODE, "--channel", "campaign_email", "--hcp", mine)
    assert "1 queued" in system


def test_send_without_recipients_or_with_a_bad_channel_is_a_clear_error(cli: Cli) -> None:
    neither = cli.run("send", CODE, "--channel", "campaign_email")
    assert neither.exit_code == 2
    assert "--hcp" in neither.output
    assert "segment" in neither.output
    bad = cli.run("send", CODE, "--channel", "pigeon", "--hcp", cli.hcps["a"])
    assert bad.exit_code == 2
    assert "--channel" in bad.output
    assert "campaign_email" in bad.output  # the valid choices are listed
    unknown = cli.run("send", "NO-SUCH", "--channel", "campaign_email", "--hcp", cli.hcps["a"])
    assert getattr(unknown.exception, "field", None) == "content"
    assert "empty" in cli.ok("outbox", "list")  # nothing was queued
    # a segment is accepted instead of --hcp
    segment = cli.ok(
        "send", CODE, "--channel", "campaign_email", "--market", "DE", "--territory", "T2"
    )
    assert "1 queued" in segment


def test_an_hcp_without_an_address_is_refused_at_once(cli: Cli) -> None:
    target = cli.hcps["no-address"]
    out = cli.ok("send", CODE, "--channel", "campaign_email", "--hcp", target, "--now")
    assert "0 queued, 0 already queued, 1 refused" in out
    assert "no_address" in out
    assert "empty" in cli.ok("outbox", "list")


def test_dead_letters_are_listed_replayed_and_cancelled(cli: Cli) -> None:
    target = cli.hcps["a"]
    out = cli.ok("send", REP_CODE, "--channel", "campaign_email", "--hcp", target, "--now")
    assert "1 dead letters" in out
    dead = cli.ok("outbox", "list", "--status", "dead")
    assert "template" in dead
    assert "dead: 1" in dead
    built = cli.open()
    try:
        [entry] = built.delivery.outbox(status="dead")
    finally:
        built.close()
    assert entry["id"] in dead
    without_reason = cli.run("outbox", "replay", entry["id"])
    assert without_reason.exit_code == 2
    assert "--reason" in without_reason.output
    replayed = cli.ok("outbox", "replay", entry["id"], "--reason", "address being added")
    assert f"{entry['id']} is pending again" in replayed
    assert "pending: 1" in cli.ok("outbox", "list")
    again = cli.run("outbox", "replay", entry["id"], "--reason", "once more")
    assert getattr(again.exception, "code", None) == "conflict"
    cancelled = cli.ok("outbox", "cancel", entry["id"], "--reason", "no address yet")
    assert f"{entry['id']} is cancelled" in cancelled
    assert "0 attempts" in cli.ok("outbox", "deliver")
    built = cli.open()
    try:
        records = [r for r in built.audit.iter_records() if r.object_id == entry["id"]]
    finally:
        built.close()
    assert [(r.action, r.reason) for r in records] == [
        ("outbox.replay", "address being added"),
        ("outbox.cancel", "no address yet"),
    ]


def test_routes_lists_the_default_routing(cli: Cli) -> None:
    out = cli.ok("outbox", "routes")
    cells = [line.replace("│", " ").replace("┃", " ").split() for line in out.splitlines()]
    rows = {c[0]: c[1:] for c in cells if len(c) == 3}
    assert rows["campaign_email"] == ["console", "console"]
    assert rows["f2f_call"] == ["inbox", "rep_inbox"]
    assert rows["direct_mail"] == ["print", "print_export"]


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (
            "adapters:\n  mail:\n    adapter: smtp\n"
            "    config: {host: 127.0.0.1, port: 99999, from_address: news@pharma.example}\n"
            "routes: {campaign_email: mail}\n",
            "adapters.mail.config.port",
        ),
        (
            "adapters:\n  inbox: {adapter: rep_inbox}\nroutes: {campaign_email: inbox}\n",
            "routes.campaign_email",
        ),
        ("adapters: {}\nroutes: {pigeon_post: nowhere}\n", "routes.pigeon_post"),
    ],
)
def test_a_bad_channels_document_names_the_path_and_exits_non_zero(
    cli: Cli, tmp_path: Path, document: str, path: str
) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(document, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERPOINT_")}
    env.update({k: v for k, v in cli.env(COUNTERPOINT_CHANNELS_FILE=str(channels)).items() if v})
    result = subprocess.run(
        [str(COUNTERPOINT), "outbox", "routes"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert f"channels document, {path}:" in result.stderr
    assert f"field: {path}" in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr
    # the control: the same command without the document works
    del env["COUNTERPOINT_CHANNELS_FILE"]
    fine = subprocess.run(
        [str(COUNTERPOINT), "outbox", "routes"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fine.returncode == 0, fine.stderr
