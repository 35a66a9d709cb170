"""``counterpoint segment`` end to end on the embedded deployment: create from YAML, list,
show, preview (tables), count (a name or a file), refresh (entered / left), update; bad YAML
and bad conditions exit 2 naming the field and store nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.cli import Cli

from counterpoint.container import open_container
from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
from counterpoint.settings import Settings

SEGMENT_YAML = """\
name: de-cardio-openers
description: German cardiologists who opened a campaign e-mail in the last 30 days
condition:
  all:
    - attribute: {name: market, op: eq, value: DE}
    - attribute: {name: specialty, op: in, value: [cardiology]}
    - events: {channel: campaign_email, action: opened, within_days: 30}
"""


def _seed(data_dir: Path) -> None:
    """Synthetic HCPs: two German cardiologists who opened an e-mail, one French one who did,
    and a German oncologist who did not (stored, then the store is closed for the CLI)."""
    now = dt.datetime.now(dt.UTC)
    built = open_container(Settings(data_dir=data_dir, environment="test", run_delivery=False))
    try:
        people = [("DE", "cardiology", True), ("DE", "cardiology", True),
                  ("FR", "cardiology", True), ("DE", "oncology", False)]  # fmt: skip
        events = []
        for n, (market, specialty, opened) in enumerate(people):
            traits = {"market": market, "specialty": specialty, "email": f"c{n}@x.example"}
            events.append(
                LogEvent(
                    f"id-c{n}",
                    EventKind.IDENTIFY,
                    f"crm:C{n}",
                    now,
                    now,
                    "tests",
                    payload={"traits": traits},
                    synthetic=True,
                )
            )
            if opened:
                at = now - dt.timedelta(days=2)
                events.append(
                    LogEvent(
                        f"open-c{n}",
                        EventKind.TRACK,
                        f"email:c{n}@x.example",
                        at,
                        at,
                        "tests",
                        channel=Channel.CAMPAIGN_EMAIL,
                        action=Action.OPENED,
                        synthetic=True,
                    )
                )
        built.log.append(events)
        built.catch_up()
    finally:
        built.close()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    data = tmp_path / "data"
    _seed(data)
    return Cli(data)


def test_create_preview_count_refresh_update(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "segment.yaml"
    path.write_text(SEGMENT_YAML, encoding="utf-8")
    assert "created segment de-cardio-openers (version 1)" in cli.ok("segment", "create", str(path))
    listed = cli.ok("segment", "list")
    assert "de-cardio-openers" in listed
    assert "1 segments" in listed
    shown = cli.ok("segment", "show", "de-cardio-openers")
    assert "version 1, 0 members" in shown
    assert "within_days: 30" in shown
    assert cli.ok("segment", "count", "de-cardio-openers").strip() == "2 HCPs"
    preview = cli.ok("segment", "preview", "de-cardio-openers")
    assert "size: 2 HCPs" in preview
    assert "DE" in preview
    assert "100.0%" in preview  # every member is in DE
    assert "consent channel" in preview
    assert "email" in preview
    assert "sample: hcp_" in preview
    bare = tmp_path / "cardiologists.yaml"
    bare.write_text("attribute: {name: specialty, op: eq, value: cardiology}\n", "utf-8")
    assert cli.ok("segment", "count", str(bare)).strip() == "3 HCPs"
    first = cli.ok("segment", "refresh", "de-cardio-openers")
    assert "2 members, 2 entered, 0 left" in first
    second = cli.ok("segment", "refresh", "de-cardio-openers")
    assert "2 members, 0 entered, 0 left" in second
    path.write_text(SEGMENT_YAML.replace("value: DE", "value: FR"), encoding="utf-8")
    assert "updated to version 2" in cli.ok("segment", "update", str(path))
    assert "1 members, 1 entered, 2 left" in cli.ok("segment", "refresh", "de-cardio-openers")
    assert "unchanged, still version 2" in cli.ok("segment", "update", str(path))
    assert "1 members left" in cli.ok("segment", "delete", "de-cardio-openers")
    assert "0 segments" in cli.ok("segment", "list")


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("name: x\ncondition: [unclosed\n", "FILE", "syntax"),
        (SEGMENT_YAML.replace("op: in", "op: between"), "condition.all.1.attribute.op",
         "docs/segments.md"),
        (SEGMENT_YAML.replace("within_days: 30", "within_days: 0"),
         "condition.all.2.events.within_days", "docs/segments.md"),
        (SEGMENT_YAML.replace("name: de-cardio-openers", "name: DE Cardio"), "name", "lower-case"),
        ("- just\n- a list\n", "document", "docs/segments.md"),
    ],
)  # fmt: skip
def test_bad_files_exit_2_name_the_field_and_store_nothing(
    cli: Cli, tmp_path: Path, text: str, field: str, fix: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli.run("segment", "create", str(path))
    assert result.exit_code == 2, result.output
    assert f"field: {field}" in result.output
    assert fix in result.output
    assert "nothing stored" in result.output
    assert "0 segments" in cli.ok("segment", "list")


def test_unknown_segments_and_files_are_clear_errors(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("segment", "show", "no-such-segment")
    assert missing.exit_code == 2
    assert "no segment named 'no-such-segment'" in missing.output
    absent = cli.run("segment", "create", str(tmp_path / "absent.yaml"))
    assert absent.exit_code == 2
    assert "field: FILE" in absent.output
