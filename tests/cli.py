"""The ``counterpoint`` command run in the test's process against an embedded data folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from counterpoint.cli.app import app


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def env(self) -> dict[str, str | None]:
        return {
            "COUNTERPOINT_DATA_DIR": str(self.data_dir),
            "COUNTERPOINT_DATABASE_URL": None,
            "COLUMNS": "250",
        }

    def run(self, *args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env(), input=stdin)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output
