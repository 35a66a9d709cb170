"""``counterpoint journey simulate FILE``: a dry run of a journey over synthetic HCPs.

Reads the journey document (and, with ``--policy``, contact policies), moves synthetic HCPs
through it over simulated weeks (``journey.simulate``) and prints what would have been sent,
refused and reached. Nothing is sent and nothing is stored; the only file written is the
``--json`` report when asked for.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from counterpoint.cli.common import console, container, settings
from counterpoint.errors import CounterpointError, NotFoundError
from counterpoint.journey.definition import JourneyDocument
from counterpoint.journey.loader import JourneyInvalidError, load_document
from counterpoint.journey.simulate import MAX_HCPS, MAX_WEEKS, SimulationReport, simulate
from counterpoint.policy.contact import ContactPolicy, default_policy, parse_policies
from counterpoint.segment.conditions import Condition
from counterpoint.simulate.market import REFERENCE_DATE

__all__ = ["DEFAULT_START", "ENTRY_TIME", "register", "simulate_command"]

DEFAULT_START = REFERENCE_DATE
"""The first simulated day when none is given (a Monday: the same report every time)."""
ENTRY_TIME = dt.time(9, 0)
"""The simulated start is this time on the first day, in the first market's time zone."""


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the ``journey`` command group."""
    app.command("simulate")(simulate_command)


def simulate_command(
    file: Annotated[Path, typer.Argument(help="The journey document (YAML).")],
    hcps: Annotated[
        int, typer.Option(help="Synthetic HCPs to move through the journey.", min=1, max=MAX_HCPS)
    ] = 1000,
    weeks: Annotated[int, typer.Option(help="Simulated weeks.", min=1, max=MAX_WEEKS)] = 8,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same report).")] = 1,
    start: Annotated[
        str | None,
        typer.Option(help=f"First simulated day, YYYY-MM-DD [default: {DEFAULT_START}]."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Contact policies (YAML or JSON, one market or `policies:`); other markets "
            "get the built-in policy.",
        ),
    ] = None,
    all_enter: Annotated[
        bool,
        typer.Option("--all-enter", help="Let every synthetic HCP enter, whatever the entry."),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")
    ] = None,
) -> None:
    """Dry run: synthetic HCPs through the journey over simulated weeks. Nothing is sent."""
    out = console()
    try:
        document = _read_journey(file)
        policies = _read_policies(policy)
        first_day = _parse_start(start)
        policy_for = _policy_for(policies)
        zone = ZoneInfo(policy_for(document.markets[0]).time_zone)
        begin = dt.datetime.combine(first_day, ENTRY_TIME, tzinfo=zone).astimezone(dt.UTC)
        began = time.perf_counter()
        with _progress(out) as bar:
            task = bar.add_task("simulated weeks", total=weeks)
            report = simulate(
                document,
                hcps=hcps,
                weeks=weeks,
                seed=seed,
                start=begin,
                policy_for=policy_for,
                segment_conditions=_segment_conditions(document, all_enter),
                all_enter=all_enter,
                progress=lambda done: bar.update(task, completed=done),
            )
        elapsed = time.perf_counter() - began
    except CounterpointError as exc:
        _print_error(exc)
        raise typer.Exit(2) from None
    _print_report(out, report, policies)
    out.print(f"simulated in {elapsed:.1f} s")
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
        out.print(f"report written to {json_out}")


# --- reading ---------------------------------------------------------------------------------
def _read_text(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CounterpointError(
            f"no file {path}", field=field, fix="give the path of an existing file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CounterpointError(
            f"cannot read {path}: {exc}", field=field, fix="give a readable UTF-8 text file"
        ) from None


def _read_journey(path: Path) -> JourneyDocument:
    """The document, or ``JourneyInvalidError`` with every problem and its line."""
    return load_document(_read_text(path, "FILE"), source=str(path)).require()


def _read_policies(path: Path | None) -> dict[str, ContactPolicy]:
    if path is None:
        return {}
    text = _read_text(path, "--policy")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CounterpointError(
            f"{where}: not valid YAML or JSON", field="--policy", fix="fix the syntax at that line"
        ) from None
    try:
        parsed = parse_policies(raw)
    except CounterpointError as exc:
        raise CounterpointError(
            f"{path}: {exc.detail}", field=exc.field, fix=exc.fix or "see docs/contact-policy.md"
        ) from None
    return {p.market: p for p in parsed}


def _policy_for(policies: Mapping[str, ContactPolicy]) -> Callable[[str], ContactPolicy]:
    def policy_for(market: str) -> ContactPolicy:
        return policies.get(market) or default_policy(market)

    return policy_for


def _parse_start(value: str | None) -> dt.date:
    if value is None:
        return DEFAULT_START
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CounterpointError(
            f"{value!r} is not a date", field="--start", fix="write YYYY-MM-DD, e.g. 2026-11-02"
        ) from None


def _segment_conditions(document: JourneyDocument, all_enter: bool) -> dict[str, Condition]:
    """The stored condition of the segment the entry reads. The store is opened only then,
    and only when there is one (a dry run creates no data directory)."""
    entry = document.flow.entry
    name = entry.trigger.segment
    if name is None or all_enter:
        return {}
    config = settings()
    url = config.resolved_database_url
    there = not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()
    if there:
        with container() as built:
            try:
                return {name: built.segments.condition_of(name)}
            except NotFoundError:
                pass
    raise CounterpointError(
        f"the entry ({entry.id}) reads segment {name!r}, which is not stored",
        field=f"flow.nodes.{document.flow.nodes.index(entry)}.trigger.segment",
        fix="create it (counterpoint segment create), write its condition in the entry "
        "(trigger: condition: …), or let every synthetic HCP enter (--all-enter)",
    )


# --- printing --------------------------------------------------------------------------------
def _progress(out: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )


def _print_error(exc: CounterpointError) -> None:
    err = Console(stderr=True)
    problems = exc.problems if isinstance(exc, JourneyInvalidError) else []
    if problems:
        err.print(f"[bold red]error:[/] the journey has {len(problems)} problem(s); nothing ran")
        for p in problems:
            err.print(f"  {p.render()}", soft_wrap=True, markup=False)
        return
    err.print(f"[bold red]error:[/] {exc.detail}", soft_wrap=True)
    if exc.field:
        err.print(f"  field: {exc.field}", markup=False)
    if exc.fix:
        err.print(f"  fix:   {exc.fix}", soft_wrap=True, markup=False)


def _channels(by_channel: Mapping[str, int]) -> str:
    return ", ".join(f"{c} {n:,}" for c, n in by_channel.items()) or "-"


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in counts.items())


def _kpi(kpi: Mapping[str, Any] | None) -> str:
    if not kpi:
        return "-"
    actual = kpi["actual"]
    shown = "n/a" if actual is None else f"{actual:.0%}"
    mark = "" if kpi["met"] is None else (" [green]met[/]" if kpi["met"] else " [red]below[/]")
    return f"{kpi['measure']} {shown} / {kpi['target']:.0%}{mark}"


_FIGURE_COLUMNS = ("entered", "sent", "tasks", "refused", "goals", "waiting", "completed", "exited")


def _figure_cells(f: Mapping[str, Any]) -> list[str]:
    return [
        f"{f['entered']:,}",
        _channels(f["sent_by_channel"]),
        f"{f['tasks']:,}",
        f"{f['refused']:,}",
        f"{f['goals']:,}",
        f"{f['active']:,}",
        f"{f['completed']:,}",
        f"{f['exited']:,}" + (f" ({_reasons(f['exits'])})" if f["exits"] else ""),
    ]


def _numbers(table: Table) -> None:
    for name in _FIGURE_COLUMNS:
        table.add_column(name, justify="left" if name == "sent" else "right")


def _touchpoint_table(report: SimulationReport) -> Table:
    table = Table(title="By stage and touchpoint", title_justify="left")
    table.add_column("stage / touchpoint")
    _numbers(table)
    table.add_column("KPI (simulated / target)")
    for stage in report.stages:
        table.add_row(f"[bold]{stage['stage']}[/]", *_figure_cells(stage), "", style="bold")
        for tp in report.touchpoints:
            if tp["stage"] == stage["stage"]:
                table.add_row(f"  {tp['id']}", *_figure_cells(tp["figures"]), _kpi(tp["kpi"]))
    return table


def _node_table(report: SimulationReport) -> Table:
    table = Table(title="By node", title_justify="left")
    for name in ("node", "type", "touchpoint"):
        table.add_column(name)
    _numbers(table)
    for node in report.nodes:
        table.add_row(
            node["id"], node["type"], node["touchpoint"] or "-", *_figure_cells(node["figures"])
        )
    return table


def _arm_table(report: SimulationReport) -> Table:
    table = Table(title="Random arms", title_justify="left")
    for name in ("node", "arm", "weight"):
        table.add_column(name)
    for name in ("entered", "sent", "tasks", "refused", "goals", "waiting", "completed", "exited"):
        table.add_column(name, justify="right")
    for a in report.arms:
        label = f"{a.arm} (holdout)" if a.holdout else a.arm
        table.add_row(
            a.node, label, f"{a.weight:g}",
            *(f"{n:,}" for n in (a.entered, a.sent, a.tasks, a.refused, a.goals, a.waiting,
                                 a.completed, a.exited)),
        )  # fmt: skip
    return table


def _refusal_table(totals: Mapping[str, Any]) -> Table:
    attempts = totals["sent"] + totals["tasks"] + totals["refused"]
    table = Table(title="Refusals by reason", title_justify="left")
    table.add_column("reason")
    table.add_column("refusals", justify="right")
    table.add_column("of contacts attempted", justify="right")
    for code, n in sorted(totals["refusals"].items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(code, f"{n:,}", f"{n / attempts:.1%}" if attempts else "-")
    return table


def _totals_table(report: SimulationReport) -> Table:
    t = report.totals
    table = Table(title="Totals", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value")
    rows: Sequence[tuple[str, str]] = (
        ("synthetic HCPs", f"{t['population']:,}"),
        ("entered the journey", f"{t['entered']:,} HCPs ({t['enrollments']:,} enrollments)"),
        ("reached (a send or rep task allowed)", f"{t['reached']:,} ({t['reach']:.1%})"),
        ("sent", f"{t['sent']:,} ({_channels(t['sent_by_channel'])})"),
        ("rep tasks", f"{t['tasks']:,}"),
        ("refused by the guard", f"{t['refused']:,}"),
        ("goals reached", f"{t['goals']:,}"),
        ("completed", f"{t['completed']:,}"),
        ("exited", f"{t['exited']:,}" + (f" ({_reasons(t['exits'])})" if t["exits"] else "")),
        ("waiting at the end", f"{t['waiting']:,}"),
        ("responses to sends", _reasons(t["responses"]) or "-"),
        ("background interactions", f"{t['background_interactions']:,}"),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def _print_report(
    out: Console, report: SimulationReport, policies: Mapping[str, ContactPolicy]
) -> None:
    example = " (example journey)" if report.example else ""
    out.print(
        f"[bold]Dry run[/] of {report.title} ({report.journey}){example}: "
        f"{report.hcps:,} synthetic HCPs over {report.weeks} simulated weeks, "
        f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC.",
        soft_wrap=True,
    )
    out.print(
        "[magenta]Synthetic data; nothing was sent and nothing was stored.[/]", soft_wrap=True
    )
    markets = ", ".join(f"{m} {n:,}" for m, n in report.population["markets"].items())
    rules = ", ".join(
        f"{m} {'from --policy' if m in policies else 'built-in'}" for m in report.markets
    )
    out.print(
        f"entry: {report.entry} · markets: {markets} · contact policy: {rules}", soft_wrap=True
    )
    out.print(_touchpoint_table(report))
    out.print(_node_table(report))
    if report.arms:
        out.print(_arm_table(report))
    if report.totals["refusals"]:
        out.print(_refusal_table(report.totals))
    out.print(_totals_table(report))
