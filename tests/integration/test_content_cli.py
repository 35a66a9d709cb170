"""``counterpoint content`` end to end on the embedded deployment: the example library is
loaded, submitted, signed by three reviewers (passwords on standard input), listed, shown,
withdrawn; a bad file stores nothing and names every problem."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.cli import Cli

EXAMPLES = Path(__file__).parents[2] / "examples" / "content" / "library.yaml"
COUNTERPOINT = Path(sys.executable).with_name("counterpoint")
PASSWORD = "correct horse battery staple"
DISCIPLINES = ("medical", "legal", "regulatory")
TODAY = dt.datetime.now(dt.UTC).date()
FROM, UNTIL = str(TODAY - dt.timedelta(days=1)), str(TODAY + dt.timedelta(days=45))


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Users (an author, three reviewers with passwords) and the example library."""
    built = Cli(tmp_path_factory.mktemp("content") / "data")
    built.ok("users", "create", "author", "--role", "brand_manager", "--brand", "Cardiomax")
    for discipline in DISCIPLINES:
        built.ok("users", "create", f"rev-{discipline}", "--role", "mlr_reviewer")
        built.ok("users", "set-password", f"rev-{discipline}", "--password-stdin", stdin=PASSWORD)
    created = built.ok("content", "create", str(EXAMPLES), "--as", "author")
    assert created.count("created ") == len(yaml.safe_load(EXAMPLES.read_text("utf-8")))
    return built


def _approve(cli: Cli, code: str, *channels: str) -> None:
    options = [x for c in channels for x in ("--channel", c)]
    markets = ["--market", "AT"] if "-AT-" in code else ["--market", "DE"]
    if code in ("isi-cmx-de", "footer-de"):
        markets = ["--market", "DE", "--market", "AT"]
    submitted = cli.ok(
        "content", "submit", code, "--as", "author", "--job-code", f"JOB-{code}",
        *markets, *options, "--valid-from", FROM, "--valid-until", UNTIL,
    )  # fmt: skip
    assert re.search(r"manifest hash [0-9a-f]{64}", submitted), submitted
    for discipline in DISCIPLINES:
        signed = cli.ok(
            "content", "review", code, "--as", f"rev-{discipline}", "--discipline", discipline,
            "--approve", "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert f"approved as {discipline} reviewer" in signed
        assert re.search(r"manifest hash [0-9a-f]{64}", signed)
        assert PASSWORD not in signed
    assert "approved" in signed


def test_the_example_library_is_approved_listed_and_withdrawn(cli: Cli) -> None:
    _approve(cli, "isi-cmx-de")
    _approve(cli, "footer-de")
    _approve(cli, "CMX-DE-EM-001", "campaign_email")
    listed = cli.ok("content", "list", "--state", "approved")
    assert "CMX-DE-EM-001" in listed
    assert "footer-de" in listed
    shown = cli.ok("content", "show", "CMX-DE-EM-001")
    assert "state approved" in shown
    assert shown.count(" binds") == 3
    assert "links.unsubscribe" not in shown  # the footer is included, not copied
    expiring = cli.ok("content", "expiring", "--days", "60")
    assert "3 approved item(s) expire within 60 days" in expiring
    assert "JOB-CMX-DE-EM-001" in expiring
    assert "0 approved item(s)" in cli.ok("content", "expiring", "--days", "30")

    withdrawn = cli.ok(
        "content", "withdraw", "footer-de", "--as", "rev-regulatory", "--reason", "wrong imprint"
    )
    assert "withdrawn" in withdrawn
    shown = cli.ok("content", "show", "CMX-DE-EM-001")
    assert "state submitted" in shown
    assert "fragment footer-de withdrawn" in shown
    assert shown.count("no longer binds") == 0  # the hash is unchanged: they still bind
    assert shown.count(" binds") == 3


def test_a_wrong_password_signs_nothing(cli: Cli) -> None:
    cli.ok(
        "content", "submit", "CMX-DE-SMS-001", "--as", "author", "--job-code", "JOB-SMS",
        "--market", "DE", "--channel", "sms", "--valid-from", FROM, "--valid-until", UNTIL,
    )  # fmt: skip
    refused = cli.run(
        "content", "review", "CMX-DE-SMS-001", "--as", "rev-medical", "--discipline", "medical",
        "--approve", "--password-stdin", stdin="not my password\n",
    )  # fmt: skip
    assert refused.exit_code != 0
    assert getattr(refused.exception, "code", None) == "reauthentication_failed"
    shown = cli.ok("content", "show", "CMX-DE-SMS-001")
    assert "medical: approved" not in shown
    needs_comment = cli.run(
        "content", "review", "CMX-DE-SMS-001", "--as", "rev-legal", "--discipline", "legal",
        "--request-changes",
    )  # fmt: skip
    assert getattr(needs_comment.exception, "field", None) == "comments"
    changes = cli.ok(
        "content", "review", "CMX-DE-SMS-001", "--as", "rev-legal", "--discipline", "legal",
        "--request-changes", "--comment", "Add the webinar link",
    )  # fmt: skip
    assert "changes_requested" in changes


def test_a_bad_file_stores_nothing_and_lists_every_problem(cli: Cli, tmp_path: Path) -> None:
    bad = [
        {"code": "NEW-1", "asset_type": "sms_text", "title": "ok", "function": "promotional"},
        {"code": "NEW-2", "asset_type": "sms_text", "title": "x", "function": "sales"},
        {"code": "NEW-3", "asset_type": "clm_deck", "title": "x", "function": "medical",
         "markets": ["Germany"], "channels": ["campaign_email"]},
    ]  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    result = cli.run("content", "create", str(path), "--as", "author")
    assert result.exit_code == 2, result.output
    assert "nothing stored" in result.output
    assert "document 1 (NEW-2): function" in result.output
    assert "document 2 (NEW-3): markets" in result.output
    assert "document 2 (NEW-3): channels" in result.output
    assert "fix:" in result.output
    assert "NEW-1" not in cli.ok("content", "list", "--search", "NEW-")


def test_errors_exit_2_with_field_and_fix(cli: Cli) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COUNTERPOINT_DATABASE_URL"}
    env["COUNTERPOINT_DATA_DIR"] = str(cli.data_dir)
    result = subprocess.run(
        [str(COUNTERPOINT), "content", "submit", "CMX-DE-CLM-001", "--as", "author",
         "--job-code", "J", "--market", "DE", "--channel", "f2f_call",
         "--valid-from", "1st of May", "--valid-until", UNTIL],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert "field: --valid-from" in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr
