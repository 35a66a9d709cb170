"""``counterpoint simulate``: generate synthetic data. Everything it writes is synthetic."""

from __future__ import annotations

import datetime as dt
import resource
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from counterpoint.simulate.market import (
    REFERENCE_DATE,
    MarketConfig,
    MarketSummary,
    expected_events,
    generate_market,
)

__all__ = ["app"]

app = typer.Typer(
    name="simulate",
    help="Generate synthetic data (invented HCPs and interactions, marked synthetic).",
    no_args_is_help=True,
)


@app.callback()
def _simulate() -> None:
    """Generate synthetic data (invented HCPs and interactions, marked synthetic)."""


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _parse_start(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "use an ISO date such as 2025-11-03", param_hint="--start"
        ) from None


def _summary_table(summary: MarketSummary) -> Table:
    table = Table(title=f"Synthetic market in {summary.out}", title_justify="left")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, rows in sorted(summary.files.items()):
        if not name.startswith("events/"):
            table.add_row(name, f"{rows:,}" if name != "catalog.json" else f"{rows} brands")
    parts = [n for n in summary.files if n.startswith("events/")]
    table.add_row(f"events/ ({len(parts)} parts)", f"{summary.events:,}")
    table.add_section()
    table.add_row("distinct events", f"{summary.generated:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    for kind, count in summary.invalid.items():
        if count:
            table.add_row(f"invalid: {kind}", f"{count:,}")
    table.add_row("history", f"{summary.start} + {summary.weeks} weeks")
    table.add_section()
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("events/s", f"{summary.events_per_second:,.0f}")
    table.add_row("peak memory", f"{peak_rss_mib():,.0f} MiB")
    return table


@app.command()
def market(
    hcps: Annotated[int, typer.Option(min=1, help="Number of HCPs.")] = 10_000,
    weeks: Annotated[int, typer.Option(min=1, max=520, help="Weeks of history.")] = 52,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same data.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path(".counterpoint/market"),
    duplicates: Annotated[
        float,
        typer.Option(min=0.0, max=0.49, help="Fraction of event rows repeating a message id."),
    ] = 0.0,
    invalid: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Fraction of deliberately invalid events.")
    ] = 0.0,
    start: Annotated[
        str | None,
        typer.Option(
            help=f"ISO date the history starts [default: WEEKS weeks before {REFERENCE_DATE}]."
        ),
    ] = None,
) -> None:
    """Write a synthetic market (HCPs, HCOs, reps, consents, catalogue, events) as Parquet."""
    config = MarketConfig(
        hcps=hcps,
        weeks=weeks,
        seed=seed,
        out=out,
        duplicates=duplicates,
        invalid=invalid,
        start=_parse_start(start),
    )
    console = Console()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("generating", total=expected_events(hcps, weeks, duplicates))

        def advance(rows: int) -> None:
            progress.advance(task, rows)

        try:
            summary = generate_market(config, on_events=advance)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        progress.update(task, total=summary.events, completed=summary.events)
    console.print(_summary_table(summary))
