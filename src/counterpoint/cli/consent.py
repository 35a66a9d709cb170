"""``counterpoint consent …`` (show, withdraw) and ``counterpoint import consents FILE``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.consent.importer import import_consents
from counterpoint.consent.ledger import ConsentChannel, ConsentSource, Proof, Purpose
from counterpoint.consent.service import record_dict, status_dict
from counterpoint.container import Container
from counterpoint.errors import CounterpointError, NotFoundError
from counterpoint.kit.files import count_rows
from counterpoint.policy.audit import Actor
from counterpoint.profile.service import HcpRef

__all__ = ["app", "import_command"]

app = typer.Typer(help="The consent ledger: show, withdraw.", no_args_is_help=True)


def _ref(built: Container, text: str) -> HcpRef:
    built.projector.catch_up()
    if text.startswith("hcp_"):
        return built.profiles.resolve(text)
    ref = built.profiles.resolve_identifier(text)
    if ref is None:
        raise NotFoundError(
            f"no HCP has the identifier {text!r}",
            field="HCP",
            fix="give an HCP id (hcp_…) or an identifier such as npi:1234567893",
        )
    return ref


def _at(text: str | None) -> dt.datetime | None:
    """``YYYY-MM-DD`` (the end of that day, UTC) or an ISO 8601 time."""
    if text is None:
        return None
    try:
        if len(text.strip()) == 10:
            day = dt.date.fromisoformat(text.strip())
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        stamp = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CounterpointError(
            f"{text!r} is not a date",
            field="--at",
            fix="write YYYY-MM-DD (the end of that day, UTC) or an ISO 8601 time",
        ) from None
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


@app.command("show")
def show(
    hcp: Annotated[str, typer.Argument(help="An HCP id (hcp_…) or identifier (npi:…).")],
    at: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD: the consent as it stood at the end of that day")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The consent state of every scope, and the records behind it."""
    when = _at(at)
    with container() as built:
        for consumer in built.consumers:
            consumer.catch_up()
        ref = _ref(built, hcp)
        moment = when or built.clock.now()
        states = built.consents.state(ref, moment)
        records = [
            r
            for r in built.consents.records(ref)
            if r.recorded_at <= moment and r.effective_at <= moment
        ]
    if as_json:
        body = {
            "hcp_id": ref.id,
            "at": moment,
            "state": [status_dict(s) for s in states],
            "records": [record_dict(r) for r in records],
        }
        console().print_json(json.dumps(body, default=str))
        return
    out = console()
    out.print(f"[bold]{ref.id}[/] consent at {moment:%Y-%m-%d %H:%M} UTC")
    columns = ("channel", "purpose", "market", "brand", "content_type", "state", "since")
    table = Table(*(c.replace("_", " ") for c in columns), "expires")
    for s in states:
        d = status_dict(s)
        table.add_row(*(_text(d[c]) for c in columns), _text(d["expires_at"]))
    out.print(table)
    out.print(f"{len(records)} records (--json shows them with their proof)")


@app.command("withdraw")
def withdraw(
    hcp: Annotated[str, typer.Argument(help="An HCP id (hcp_…) or identifier (npi:…).")],
    channel: Annotated[ConsentChannel, typer.Option(help="The channel to stop.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    purpose: Annotated[
        list[Purpose] | None, typer.Option(help="A purpose (repeatable; default: all).")
    ] = None,
    market: Annotated[
        list[str] | None,
        typer.Option(help="A market (repeatable; default: the HCP's and those with records)."),
    ] = None,
    evidence: Annotated[str | None, typer.Option(help="E.g. the HCP's letter reference.")] = None,
) -> None:
    """Revoke a channel for an HCP, at once."""
    actor = Actor.cli()
    with container() as built:
        ref = _ref(built, hcp)
        records = built.consents.withdraw(
            ref,
            channel,
            proof=Proof(source=ConsentSource.API, captured_by=actor.name, evidence=evidence),
            actor=actor,
            reason=reason,
            purposes=purpose or None,
            markets=market or None,
        )
    console().print(f"{ref.id}: {len(records)} revocation records ({channel.value})")


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
    )


def import_command(
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet consent file.")],
) -> None:
    """Import consent records (columns: docs/formats.md, "Consent")."""
    if not file.exists():
        raise CounterpointError(
            f"no file {file}", field="FILE", fix="give the path of an existing file"
        )
    out = console()
    with container() as built, _bar() as bar:
        total = count_rows(file)
        checking = bar.add_task(f"checking {file.name}", total=total)
        recording = bar.add_task(f"recording {file.name}", total=None)
        report = import_consents(
            file,
            consents=built.consents,
            profiles=built.profiles,
            audit=built.audit,
            clock=built.clock,
            actor=Actor.cli(),
            progress=lambda n: bar.advance(checking, n),
            recording=lambda n: bar.advance(recording, n),
        )
    out.print(
        f"{file.name}: {report.rows} rows, {report.recorded} recorded, "
        f"{report.unchanged} unchanged, {report.rejected_rows} rejected"
    )
    if report.rejected:
        table = Table("file", "row", "field", "reason", "fix", title="Rejected rows")
        for e in report.rejected[:20]:
            table.add_row(e.file, str(e.row), e.field, e.reason, e.fix)
        out.print(table)
        if len(report.rejected) > 20:
            out.print(f"… and {len(report.rejected) - 20} more")
    if report.reject_file is not None:
        out.print(
            f"[yellow]Rejected rows kept in {report.reject_file}[/] (fix them and import that file)"
        )
