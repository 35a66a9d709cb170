"""The ``counterpoint`` command end to end on the embedded deployment: a synthetic market is
generated, imported and read back; errors exit with code 2 and name the field and the fix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from counterpoint.cli.app import app
from counterpoint.container import open_container
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.settings import Settings

COUNTERPOINT = Path(sys.executable).with_name("counterpoint")


@dataclass
class Market:
    data_dir: Path
    out: Path
    imports: dict[str, Result]

    def env(self) -> dict[str, str | None]:
        return {
            "COUNTERPOINT_DATA_DIR": str(self.data_dir),
            "COUNTERPOINT_DATABASE_URL": None,
            "COLUMNS": "250",  # rich tables are not wrapped
        }

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env())


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    root = tmp_path_factory.mktemp("cli")
    built = Market(data_dir=root / "data", out=root / "market", imports={})
    generated = built.run(
        "simulate", "market", "--hcps", "50", "--weeks", "2", "--out", str(built.out),
        "--invalid", "0.02",
    )  # fmt: skip
    assert generated.exit_code == 0, generated.output
    for kind in ("hcos", "hcps", "affiliations"):
        result = built.run("import", kind, str(built.out / f"{kind}.parquet"))
        assert result.exit_code == 0, result.output
        built.imports[kind] = result
    (part,) = sorted((built.out / "events").glob("*.parquet"))
    result = built.run("import", "events", str(part))
    assert result.exit_code == 0, result.output
    built.imports["events"] = result
    return built


def _counts(output: str) -> dict[str, int]:
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", output)}


def test_generated_files_are_imported(market: Market) -> None:
    for kind in ("hcos", "hcps", "affiliations"):
        counts = _counts(market.imports[kind].output)
        expected = pq.read_metadata(market.out / f"{kind}.parquet").num_rows
        assert counts["rows"] == expected, market.imports[kind].output
        assert counts["imported"] == expected
        assert counts["rejected"] == 0
    assert _counts(market.imports["hcps"].output)["unchanged"] == 0

    events = _counts(market.imports["events"].output)
    (part,) = sorted((market.out / "events").glob("*.parquet"))
    assert events["rows"] == pq.read_metadata(part).num_rows
    assert events["accepted"] > 0
    assert events["quarantined"] > 0  # --invalid 0.02
    assert events["accepted"] + events["duplicates"] + events["quarantined"] == events["rows"]
    assert "Rejected rows" in market.imports["events"].output


def test_reimporting_hcps_reports_them_unchanged(market: Market) -> None:
    again = market.run("import", "hcps", str(market.out / "hcps.parquet"))
    assert again.exit_code == 0, again.output
    counts = _counts(again.output)
    assert counts["imported"] == 0
    assert counts["unchanged"] == counts["rows"] == 50


def test_hcp_show_prints_the_profile(market: Market) -> None:
    hcps = pq.read_table(market.out / "hcps.parquet").to_pylist()
    row = next(r for r in hcps if r["npi"])
    shown = market.run("hcp", "show", f"npi:{row['npi']}")
    assert shown.exit_code == 0, shown.output
    assert row["first_name"] in shown.output
    assert row["last_name"] in shown.output
    assert f"npi:{row['npi']}" in shown.output
    assert "(synthetic)" in shown.output

    as_json = market.run("hcp", "show", f"npi:{row['npi']}", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert f'"first_name": "{row["first_name"]}"' in as_json.output
    hcp_id = re.search(r'"id": "(hcp_\w+)"', as_json.output)
    assert hcp_id is not None
    by_id = market.run("hcp", "show", hcp_id.group(1))
    assert by_id.exit_code == 0, by_id.output
    assert row["last_name"] in by_id.output


def test_keys_and_tokens_are_printed_once(market: Market) -> None:
    key = market.run("keys", "create", "website")
    assert key.exit_code == 0, key.output
    assert re.search(r"cpk_[\w-]{20,}", key.output), key.output
    assert "website" in key.output
    unknown = market.run("tokens", "create", "nobody", "--days", "7")
    assert unknown.exit_code != 0
    assert "users create" in str(getattr(unknown.exception, "fix", ""))
    user = market.run("users", "create", "analyst", "--role", "data_analyst", "--market", "de")
    assert user.exit_code == 0, user.output
    assert "data_analyst" in user.output
    token = market.run("tokens", "create", "analyst", "--days", "7")
    assert token.exit_code == 0, token.output
    assert re.search(r"cpt_[\w-]{20,}", token.output), token.output
    assert "analyst" in token.output


def test_quarantine_list_shows_reasons(market: Market) -> None:
    listed = market.run("quarantine", "list", "--limit", "5")
    assert listed.exit_code == 0, listed.output
    assert "invalid_row" in listed.output
    assert "import:part-00000.parquet" in listed.output
    rows = [line for line in listed.output.splitlines() if "invalid_row" in line]
    assert len(rows) == 5
    bad_status = market.run("quarantine", "list", "--status", "lost")
    assert bad_status.exit_code != 0


def test_rebuild_reports_the_replayed_count(market: Market) -> None:
    before = market.run("hcp", "show", "--json", _first_npi(market))
    rebuilt = market.run("rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    replayed = re.search(r"replayed (\d+) events", rebuilt.output)
    assert replayed is not None, rebuilt.output
    events = _counts(market.imports["events"].output)
    hcps = _counts(market.imports["hcps"].output)
    # Every interaction accepted plus one master-data identify per HCP row.
    assert int(replayed.group(1)) == events["accepted"] + hcps["imported"]
    after = market.run("hcp", "show", "--json", _first_npi(market))
    assert after.exit_code == 0
    assert _without_times(after.output) == _without_times(before.output)


def _first_npi(market: Market) -> str:
    hcps = pq.read_table(market.out / "hcps.parquet", columns=["npi"]).column("npi")
    return "npi:" + str(next(n for n in hcps.to_pylist() if n))


def _without_times(output: str) -> str:
    return re.sub(r'"(created_at|updated_at)": "[^"]*"', "", output)


# --- errors through main(): exit code 2, field and fix on stderr -------------------------


def _main(market: Market, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``counterpoint`` command, whose ``main()`` prints errors."""
    env = {k: v for k, v in os.environ.items() if k != "COUNTERPOINT_DATABASE_URL"}
    env["COUNTERPOINT_DATA_DIR"] = str(market.data_dir)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(COUNTERPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_errors_exit_2_with_field_and_fix(market: Market) -> None:
    assert COUNTERPOINT.exists()
    bad_npi = _main(market, "hcp", "show", "npi:0000000000")
    assert bad_npi.returncode == 2, bad_npi
    assert "error:" in bad_npi.stderr
    assert "field: identifier" in bad_npi.stderr
    assert "fix:" in bad_npi.stderr
    assert "Luhn" in bad_npi.stderr
    assert "Traceback" not in bad_npi.stderr

    missing = _main(market, "import", "hcps", str(market.out / "nope.csv"))
    assert missing.returncode == 2, missing
    assert "nope.csv" in missing.stderr
    assert "field: FILE" in missing.stderr
    assert "fix:" in missing.stderr
    assert "Traceback" not in missing.stderr


def _refuses_a_size(tmp_path: Path, variable: str, value: str) -> None:
    """The CLI refuses ``variable=value`` naming the variable and the fix, before opening."""
    env = {k: v for k, v in os.environ.items() if k != "COUNTERPOINT_DATABASE_URL"}
    env["COUNTERPOINT_DATA_DIR"] = str(tmp_path / "data")
    env[variable] = value
    refused = subprocess.run(
        [str(COUNTERPOINT), "keys", "create", "web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused
    assert variable in refused.stderr
    assert "4GB or 512MiB" in refused.stderr
    assert not (tmp_path / "data" / "events.duckdb").exists()  # refused before opening


def test_the_log_memory_limit_is_a_setting(tmp_path: Path) -> None:
    _refuses_a_size(tmp_path, "COUNTERPOINT_DUCKDB_MEMORY_LIMIT", "lots")

    settings = Settings(
        data_dir=tmp_path / "data", database_url=None, duckdb_memory_limit=" 512 mib"
    )
    assert settings.duckdb_memory_limit == "512mib"
    built = open_container(settings)
    try:
        assert isinstance(built.log, DuckDBEventLog)
        limit = built.log._cursor().execute("SELECT current_setting('memory_limit')").fetchall()
        assert limit == [("512.0 MiB",)]
    finally:
        built.close()


def test_the_log_checkpoint_threshold_is_a_setting(tmp_path: Path) -> None:
    _refuses_a_size(tmp_path, "COUNTERPOINT_DUCKDB_CHECKPOINT_THRESHOLD", "often")

    for given, shown in ((None, "244.1 MiB"), ("64MiB", "64.0 MiB")):
        extra = {} if given is None else {"duckdb_checkpoint_threshold": given}
        built = open_container(Settings(data_dir=tmp_path / "data", database_url=None, **extra))
        try:
            assert isinstance(built.log, DuckDBEventLog)
            threshold = (
                built.log._cursor()
                .execute("SELECT current_setting('checkpoint_threshold')")
                .fetchall()
            )
            assert threshold == [(shown,)]  # the default is 256MB (decimal), not DuckDB's 16
        finally:
            built.close()
