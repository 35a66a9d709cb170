"""``counterpoint transfers``: import transfers of value and write disclosure files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from counterpoint.cli.common import console, container
from counterpoint.policy.audit import Actor

__all__ = ["app"]

app = typer.Typer(help="Transfers of value to HCPs and their disclosure.", no_args_is_help=True)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV, NDJSON or Parquet of transfers.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
) -> None:
    """Validate every row, store the valid ones; rejects go to FILE.rejects.csv."""
    with container() as built:
        report = built.transfers.import_file(file, Actor.cli(), reason)
    console().print(
        f"{report.rows} rows: {report.imported} imported, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected"
    )
    for e in report.rejected[:20]:
        console().print(f"  row {e.row}: {e.field}: {e.reason} (fix: {e.fix})")
    if report.reject_file is not None:
        console().print(f"rejected rows with reasons: {report.reject_file}")
    if report.rejected:
        raise typer.Exit(1)


@app.command("export")
def export(
    format: Annotated[str, typer.Option("--format", help="open_payments or efpia.")],
    year: Annotated[int, typer.Option(help="The reporting year.")],
    out: Annotated[Path, typer.Option(help="Where to write the CSV file.")],
    market: Annotated[str | None, typer.Option(help="EFPIA: one market only.")] = None,
) -> None:
    """Write the Open Payments or EFPIA disclosure file of one year."""
    if format not in ("open_payments", "efpia"):
        raise typer.BadParameter("write open_payments or efpia", param_hint="--format")
    fmt: Literal["open_payments", "efpia"] = (
        "open_payments" if format == "open_payments" else "efpia"
    )
    with container() as built:
        body = built.transfers.export(fmt, year, market.upper() if market else None)
    out.write_text(body, "utf-8")
    console().print(f"{body.count(chr(10)) - 1} rows -> {out}")
