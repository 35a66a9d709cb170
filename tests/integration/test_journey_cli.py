"""``counterpoint journey`` end to end on the embedded deployment: validate (problems as
``file:line: [code] node X: message (fix)``, exit 2 on errors), publish as a user (and
refused for a role that may not), run, status (tables and JSON), list, pause, resume, move,
stop."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from tests.cli import Cli
from tests.conftest import TEST_ACTOR
from tests.integration.test_journey_runtime import JOURNEY, add_content, add_hcps, manager, rep

from counterpoint.container import open_container
from counterpoint.settings import Settings

ANY_HOUR = {
    "market": "DE",
    "time_zone": "Europe/Berlin",
    "caps": [{"scope": "all", "period_days": 7, "max_touches": 20}],
    "min_gap_hours": {},
    "quiet_weekdays": [],
}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """Synthetic HCPs, content valid around today, a rep and a brand manager. The CLI runs
    on the wall clock, so DE's contact policy here has no quiet hours or quiet weekdays: a
    run in the evening or on a Sunday sends as one at noon on a Tuesday does."""
    data_dir = tmp_path / "data"
    built = open_container(Settings(data_dir=data_dir, environment="test", run_delivery=False))
    try:
        today = built.clock.now()
        add_content(
            built,
            valid_from=today - dt.timedelta(days=10),
            valid_until=today + dt.timedelta(days=400),
        )
        built.contact.set_policies(ANY_HOUR, TEST_ACTOR, "tests run at any hour")
        rep(built)
        manager(built)
        built.users.create("analyst", "data_analyst", TEST_ACTOR)
        add_hcps(built, 3)
    finally:
        built.close()
    return Cli(data_dir)


def test_validate_prints_file_line_code_node_and_exits_2_on_errors(
    cli: Cli, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(JOURNEY)
    out = cli.ok("journey", "validate", str(good))
    assert f"{good}: valid (0 errors" in out
    assert "consent coverage" in out  # the audience's consent per channel
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        JOURNEY.replace("content: ZEN-EM-1\n      next", "content: ZEN-EM-9\n      next")
    )
    result = cli.run("journey", "validate", str(bad))
    assert result.exit_code == 2
    line = JOURNEY.splitlines().index("      content: ZEN-EM-1") + 1
    assert f"{bad}:{line}: [content_unknown] node send-intro: no asset ZEN-EM-9" in result.output
    assert "(fix: " in result.output
    report = json.loads(cli.run("journey", "validate", str(bad), "--json").output)
    assert (report["ok"], report["errors"]) == (False, 1)


def test_publish_run_status_list_and_life_cycle(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "zen.yaml"
    source.write_text(JOURNEY)
    refused = cli.run("journey", "publish", str(source), "--as", "analyst")
    assert refused.exit_code == 2
    assert "may not change journeys" in refused.output
    assert "published zen-intro version 1" in cli.ok(
        "journey", "publish", str(source), "--as", "bm-zen"
    )
    assert "3 entered" in cli.ok("journey", "run")
    out = cli.ok("journey", "status", "zen-intro")
    assert "stages" in out
    assert "send-intro" in out
    status = json.loads(cli.ok("journey", "status", "zen-intro", "--json"))
    assert (status["totals"]["sent"], status["totals"]["waiting"]) == (3, 3)
    assert "zen-intro" in cli.ok("journey", "list")
    assert "paused" in cli.ok("journey", "pause", "zen-intro", "--as", "bm-zen")
    assert "0 took an event" in cli.ok("journey", "resume", "zen-intro", "--as", "bm-zen")
    source.write_text(JOURNEY.replace("timeout: {days: 3}", "timeout: {days: 2}"))
    cli.ok("journey", "publish", str(source), "--as", "bm-zen")
    assert "version 1 → 2: 3 moved, 0 stayed" in cli.ok(
        "journey", "move", "zen-intro", "--to-version", "2", "--as", "bm-zen"
    )
    assert "3 waiting HCPs exited" in cli.ok("journey", "stop", "zen-intro", "--as", "bm-zen")
    again = cli.run("journey", "resume", "zen-intro", "--as", "bm-zen")
    assert again.exit_code == 2
    assert "stopped" in again.output
    missing = cli.run("journey", "status", "nope")
    assert missing.exit_code == 2
    assert "no journey 'nope'" in missing.output
