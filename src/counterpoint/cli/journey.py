"""``counterpoint journey``: validate, publish, pause, resume, stop, move, status, list, run
(and ``simulate``, the dry run). See docs/journeys.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from counterpoint.cli import journey_simulate
from counterpoint.cli.common import console, container
from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.journey.loader import JourneyInvalidError, Problem
from counterpoint.journey.validation import ValidationReport
from counterpoint.policy.access import Principal
from counterpoint.policy.audit import Actor

__all__ = ["app"]

app = typer.Typer(
    help="Journeys: maps and flows as versioned documents, run through the guard and outbox.",
    no_args_is_help=True,
)
journey_simulate.register(app)

AsUser = Annotated[str, typer.Option("--as", help="The user acting (name or id).")]
JourneyId = Annotated[str, typer.Argument(help="The journey's id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def _reported() -> Iterator[None]:
    """An expected failure is printed with its field and fix (and, for a journey document,
    every problem); the exit code is 2."""
    try:
        yield
    except JourneyInvalidError as exc:
        out = console()
        for problem in exc.problems:
            out.print(problem.render(), markup=False, soft_wrap=True, highlight=False)
        out.print(f"not published: {len(exc.problems)} errors", markup=False)
        raise typer.Exit(2) from None
    except CounterpointError as exc:
        out = console()
        out.print(f"[bold red]error:[/] {exc.detail}", soft_wrap=True, highlight=False)
        if exc.field:
            out.print(f"  field: {exc.field}", markup=False, soft_wrap=True)
        if exc.fix:
            out.print(f"  fix:   {exc.fix}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailedError(
            f"cannot read {path}: {exc}", field="FILE", fix="give a readable UTF-8 YAML file"
        ) from None


def _print_report(report: ValidationReport) -> None:
    out = console()
    problems: list[Problem] = report.problems
    for problem in problems:
        out.print(problem.render(), markup=False, soft_wrap=True, highlight=False)
    if report.coverage:
        table = Table("channel", "consent coverage", title="Audience consent per contact channel")
        for channel, share in sorted(report.coverage.items()):
            table.add_row(channel.value, f"{share:.0%}")
        out.print(table)
    verdict = "valid" if report.ok else "not valid"
    out.print(
        f"{report.source}: {verdict} ({len(report.errors)} errors, "
        f"{len(report.warnings)} warnings)",
        markup=False,
    )


@app.command("validate")
def validate_command(
    file: Annotated[Path, typer.Argument(help="The journey document (YAML).")],
    as_json: AsJson = False,
) -> None:
    """Check a journey before publishing: each problem on one line with its file, line,
    code, node, message and fix; consent coverage per channel. Exit code 2 on an error."""
    with _reported():
        text = _read(file)
        with container() as built:
            report = built.journeys.validate(text, str(file))
    if as_json:
        console().print_json(json.dumps(report.as_dict()))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(2)


def _acting(user: str, built: Any) -> tuple[Principal, str]:
    principal: Principal = built.users.principal(user)
    return principal, Actor.cli().origin


@app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(help="The journey document (YAML).")],
    as_user: AsUser,
) -> None:
    """Validate and publish FILE as the journey's next version (nothing stored on an error)."""
    with _reported():
        text = _read(file)
        with container() as built:
            principal, origin = _acting(as_user, built)
            result = built.journeys.publish(text, principal, origin, source=str(file))
    for problem in result["report"]["problems"]:  # warnings only: errors refuse
        console().print(
            f"{file}:{problem['line']}: [{problem['code']}, warning] "
            f"{'node ' + problem['node'] + ': ' if problem['node'] else ''}{problem['message']}",
            markup=False,
            soft_wrap=True,
        )
    if result["changed"]:
        console().print(
            f"published {result['id']} version {result['current_version']} ({result['status']})"
        )
    else:
        console().print(f"{result['id']} version {result['current_version']} is this document")


def _life(action: str) -> Any:
    def command(journey_id: JourneyId, as_user: AsUser) -> None:
        with _reported(), container() as built:
            principal, origin = _acting(as_user, built)
            result = getattr(built.journeys, action)(journey_id, principal, origin)
        extra = ""
        if action == "stop":
            extra = f"; {result['exited']} waiting HCPs exited"
        if action == "resume":
            extra = f"; {result['caught_up']} took an event that arrived while paused"
        console().print(f"{journey_id}: {result['status']}{extra}")

    command.__doc__ = {
        "pause": "Pause a journey: timers and events wait, no HCP enters.",
        "resume": "Resume a paused journey: due timers fire late, events are taken.",
        "stop": "Stop a journey for good: every waiting HCP exits (journey_stopped).",
    }[action]
    return command


for _action in ("pause", "resume", "stop"):
    app.command(_action)(_life(_action))


@app.command("move")
def move_command(
    journey_id: JourneyId,
    as_user: AsUser,
    to_version: Annotated[
        int | None, typer.Option("--to-version", help="Default: the current version.")
    ] = None,
    from_version: Annotated[
        int | None, typer.Option("--from-version", help="Default: every other version.")
    ] = None,
) -> None:
    """Move waiting HCPs to a version: those waiting at a node that exists (and waits) there
    move with their timers; the others stay and are listed."""
    with _reported(), container() as built:
        principal, origin = _acting(as_user, built)
        versions = [v["version"] for v in built.journeys.get(journey_id)["versions"]]
        target = to_version or max(versions)
        sources = [from_version] if from_version else [v for v in versions if v != target]
        results = [
            built.journeys.move(journey_id, principal, origin, from_version=v, to_version=target)
            for v in sources
        ]
    out = console()
    for r in results:
        out.print(
            f"version {r['from_version']} → {r['to_version']}: {r['moved']} moved, "
            f"{r['stayed']} stayed"
        )
        for s in r["staying"]:
            out.print(f"  {s['hcp_id']} at {s['node']}: {s['reason']}", markup=False)


@app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """Every journey with its status and current version."""
    with _reported(), container() as built:
        items = built.journeys.all()
    if as_json:
        console().print_json(json.dumps(items, default=str))
        return
    table = Table("id", "title", "brand", "markets", "status", "version")
    for j in items:
        title = j["title"] + (" (example)" if j["example"] else "")
        table.add_row(
            j["id"],
            title,
            j["brand"],
            ",".join(j["markets"]),
            j["status"],
            str(j["current_version"]),
        )
    console().print(table)


_COLUMNS = ("waiting", "completed", "exited", "refused", "sent", "tasks", "goals")


def _figures_table(title: str, first: str, rows: list[dict[str, Any]], key: str) -> Table:
    table = Table(first, *_COLUMNS, "refusals", title=title, title_justify="left")
    for r in rows:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(r["refusals"].items()))
        table.add_row(str(r[key]), *(str(r[c]) for c in _COLUMNS), codes or "-")
    return table


@app.command("status")
def status_command(journey_id: JourneyId, as_json: AsJson = False) -> None:
    """Per stage, touchpoint and node: HCPs waiting, completed, exited; refused contacts with
    the guard's codes; sends, tasks and goals."""
    with _reported(), container() as built:
        status = built.journeys.status(journey_id)
    if as_json:
        console().print_json(json.dumps(status, default=str))
        return
    out = console()
    out.print(
        f"[bold]{status['id']}[/] {status['title']} · {status['brand']} · {status['status']} · "
        f"version {status['current_version']}",
        highlight=False,
    )
    out.print(_figures_table("stages", "stage", status["stages"], "stage"))
    out.print(_figures_table("touchpoints", "touchpoint", status["touchpoints"], "touchpoint"))
    nodes = [{**n, "label": f"v{n['version']} {n['node']} ({n['type']})"} for n in status["nodes"]]
    out.print(_figures_table("nodes", "node", nodes, "label"))
    t = status["totals"]
    out.print(
        f"total: {t['waiting']} waiting, {t['completed']} completed, {t['exited']} exited, "
        f"{t['refused']} refused, {t['sent']} sent, {t['tasks']} tasks, {t['goals']} goals"
    )


@app.command("run")
def run_command() -> None:
    """Run journeys once, now: audience entry, events, due timers, until nothing moves (the
    server and `counterpoint worker` do this continuously)."""
    with _reported(), container() as built:
        report = built.journey_runtime.drain()
        built.delivery_worker.wake()
    console().print(
        f"{report.entered} entered, {report.steps} steps, {report.events} events read, "
        f"{report.flushed} log events written"
    )
