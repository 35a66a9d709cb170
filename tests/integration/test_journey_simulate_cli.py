"""``counterpoint journey simulate FILE``: the dry run from the command line. It prints what
would be sent, refused and reached, writes nothing but the ``--json`` report it is asked for,
sends nothing, and stops with exit code 2 on a bad file naming the line and the fix. All data
is synthetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select
from tests.conftest import TEST_ACTOR
from typer.testing import CliRunner, Result

from counterpoint.cli.journey_simulate import register
from counterpoint.container import Container
from counterpoint.delivery.models import OutboxEntry
from counterpoint.segment.service import parse_segment
from counterpoint.settings import Settings

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples" / "journeys").glob("*.yaml"))
LAUNCH = ROOT / "examples" / "journeys" / "launch-new-indication.yaml"
WEBINAR = ROOT / "examples" / "journeys" / "webinar-invitation.yaml"
COUNTERPOINT = Path(sys.executable).with_name("counterpoint")


def journey_app() -> typer.Typer:
    """A ``journey`` group with only the dry run in it (as the real group registers it)."""
    app = typer.Typer()

    @app.callback()
    def _journey() -> None:
        """Journeys."""

    register(app)
    return app


def run(*args: str, data_dir: Path, database_url: str | None = None) -> Result:
    env = {"COUNTERPOINT_DATA_DIR": str(data_dir), "COUNTERPOINT_DATABASE_URL": database_url,
           "COLUMNS": "220"}  # fmt: skip
    return CliRunner().invoke(journey_app(), ["simulate", *args], env=env)


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_journey_runs_and_nothing_but_the_report_is_written(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    result = run(str(path), "--hcps", "400", "--weeks", "6", "--json", "report.json", data_dir=data)
    assert result.exit_code == 0, result.output
    for words in ("Dry run", "400 synthetic HCPs", "6 simulated weeks", "nothing was sent",
                  "By stage and touchpoint", "By node", "Refusals by reason", "Totals",
                  "report written to report.json"):  # fmt: skip
        assert words in result.output, words
    assert not data.exists()  # no store opened, no outbox, no log
    assert files_under(tmp_path) == {"report.json"}
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["synthetic"] is True
    assert report["dry_run"] is True
    assert report["hcps"] == 400
    assert report["weeks"] == 6
    assert report["period"]["start"] == "2026-11-02T08:00:00+00:00"  # 09:00 in Berlin
    t = report["totals"]
    assert report["nodes"][0]["figures"]["entered"] == t["completed"] + t["exited"] + t["waiting"]
    assert t["sent"] + t["tasks"] > 0
    again = run(str(path), "--hcps", "400", "--weeks", "6", "--json", "again.json", data_dir=data)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == report


def test_the_seed_and_start_change_the_run(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    args = [str(WEBINAR), "--hcps", "200", "--weeks", "2"]
    assert run(*args, "--json", str(out), data_dir=tmp_path / "d").exit_code == 0
    other = tmp_path / "b.json"
    later = run(*args, "--seed", "2", "--start", "2027-01-04", "--json", str(other),
                data_dir=tmp_path / "d")  # fmt: skip
    assert later.exit_code == 0, later.output
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (out, other))
    assert a["seed"] == 1
    assert b["seed"] == 2
    assert b["period"]["start"] == "2027-01-04T08:00:00+00:00"
    assert a["totals"] != b["totals"]


def test_a_policy_file_applies_to_its_market(tmp_path: Path) -> None:
    strict = tmp_path / "de.yaml"
    strict.write_text(
        "market: DE\ncaps:\n  - {scope: channel, key: campaign_email, period_days: 7, "
        "max_touches: 0}\n",
        encoding="utf-8",
    )
    out = tmp_path / "r.json"
    result = run(str(LAUNCH), "--hcps", "400", "--weeks", "2", "--policy", str(strict),
                 "--json", str(out), data_dir=tmp_path / "d")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "DE from --policy" in result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    send = next(n for n in report["nodes"] if n["id"] == "send-intro")["figures"]
    assert send["sent"] == 0
    assert send["refused"] == send["entered"] > 0
    assert send["refusals"]["over_cap"] == send["entered"]


def test_the_example_policy_documents_are_read(tmp_path: Path) -> None:
    policy = ROOT / "examples" / "policies" / "de.yaml"
    result = run(str(LAUNCH), "--hcps", "100", "--weeks", "1", "--policy", str(policy),
                 data_dir=tmp_path / "d")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "DE from --policy" in result.output


def journey_text(**changes: str) -> str:
    """A small valid journey (synthetic), with text replaced as ``changes`` say."""
    text = """journey: dry-cli
title: Dry run from the command line (synthetic)
brand: Cardiomax
markets: [DE]
map:
  stages: [awareness]
  touchpoints:
    - id: tp
      stage: awareness
      name: Mail
      customer_goal: Learn
      business_reason: Awareness
      owner: {responsible: marketing_ops, accountable: brand_manager}
flow:
  nodes:
    - id: in
      type: entry
      touchpoint: tp
      trigger: {condition: {attribute: {name: market, op: eq, value: DE}}}
      next: mail
    - id: mail
      type: send
      touchpoint: tp
      channel: campaign_email
      content: CMX-1
      next: out
    - {id: out, type: exit, reason: done}
"""
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


def write(tmp_path: Path, text: str, name: str = "journey.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_invalid_journey_exits_2_naming_the_line_and_the_fix(tmp_path: Path) -> None:
    bad = write(tmp_path, journey_text(**{"next: out": "nxt: out"}), "bad.yaml")
    result = run(str(bad), data_dir=tmp_path / "d")
    assert result.exit_code == 2, result.output
    assert f"{bad}:26:" in result.stderr  # the line of the send node's misspelt key
    assert "node mail" in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_broken_yaml_and_missing_files_exit_2(tmp_path: Path) -> None:
    broken = write(tmp_path, journey_text(**{"markets: [DE]": "markets: [DE"}))
    result = run(str(broken), data_dir=tmp_path / "d")
    assert result.exit_code == 2
    assert "yaml_syntax" in result.stderr
    missing = run(str(tmp_path / "nope.yaml"), data_dir=tmp_path / "d")
    assert missing.exit_code == 2
    assert "no file" in missing.stderr
    assert "field: FILE" in missing.stderr
    policy = write(tmp_path, "market: DE\ncaps: [{scope: all, period_days: 0, max_touches: 1}]\n",
                   "policy.yaml")  # fmt: skip
    ok = write(tmp_path, journey_text(), "ok.yaml")
    bad_policy = run(str(ok), "--policy", str(policy), data_dir=tmp_path / "d")
    assert bad_policy.exit_code == 2
    assert f"{policy}: caps[0].period_days" in bad_policy.stderr
    assert "fix:" in bad_policy.stderr


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--hcps", "0"], "--hcps"),
        (["--weeks", "0"], "--weeks"),
        (["--weeks", "105"], "--weeks"),
        (["--start", "next monday"], "--start"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str], word: str) -> None:
    ok = write(tmp_path, journey_text())
    result = run(str(ok), *args, data_dir=tmp_path / "d")
    assert result.exit_code == 2
    assert word in result.output


SEGMENT = {"{condition: {attribute: {name: market, op: eq, value: DE}}}": "{segment: hf-targets}"}


def test_a_segment_entry_without_a_store_names_the_segment_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, journey_text(**SEGMENT))
    result = run(str(path), data_dir=tmp_path / "d")
    assert result.exit_code == 2
    assert "hf-targets" in result.stderr
    assert "field: flow.nodes.0.trigger.segment" in result.stderr
    assert "--all-enter" in result.stderr
    assert not (tmp_path / "d").exists()  # looking did not create a store
    out = tmp_path / "r.json"
    everyone = run(str(path), "--all-enter", "--hcps", "120", "--json", str(out),
                   data_dir=tmp_path / "d")  # fmt: skip
    assert everyone.exit_code == 0, everyone.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["totals"]["entered"] == 120
    assert report["entry"].startswith("all")


def count(container: Container, model: Any) -> int:
    with container.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_stored_segment_is_read_and_nothing_is_sent(
    container: Container, settings: Settings, tmp_path: Path
) -> None:
    high = {"attribute": {"name": "potential_decile", "op": "gte", "value": 8}}
    doc = {"name": "hf-targets", "description": "synthetic", "condition": high}
    container.segments.create(parse_segment(doc), TEST_ACTOR)
    path = write(tmp_path, journey_text(**SEGMENT))
    out = tmp_path / "r.json"
    result = run(str(path), "--hcps", "300", "--json", str(out), data_dir=settings.data_dir,
                 database_url=settings.database_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["entry"] == "segment hf-targets"
    assert 0 < report["totals"]["entered"] < 300  # deciles 8-10: about three in ten
    assert report["totals"]["sent"] > 0
    assert count(container, OutboxEntry) == 0
    missing = write(tmp_path, journey_text(**{SEGMENT_KEY: "{segment: not-there}"}), "m.yaml")
    absent = run(str(missing), data_dir=settings.data_dir, database_url=settings.database_url)
    assert absent.exit_code == 2
    assert "not-there" in absent.stderr


SEGMENT_KEY = next(iter(SEGMENT))


def test_through_the_counterpoint_command(tmp_path: Path) -> None:
    """The installed command: ``counterpoint journey simulate`` (the group registers it)."""
    from counterpoint.cli.app import app

    names = [g.name for g in app.registered_groups]
    if "journey" not in names:
        pytest.skip("the journey command group is not registered in this build yet")
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path / "d"), "journey", "simulate", str(WEBINAR), "--hcps", "100",
         "--weeks", "2"],
        env={"COLUMNS": "220"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.output
    assert not (tmp_path / "d").exists()
