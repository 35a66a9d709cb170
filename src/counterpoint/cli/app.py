"""The ``counterpoint`` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from counterpoint.cli import access, consent, simulate
from counterpoint.cli import content as content_cli
from counterpoint.cli import delivery as delivery_cli
from counterpoint.cli import journey as journey_cli
from counterpoint.cli import policy as policy_cli
from counterpoint.cli import privacy as privacy_cli
from counterpoint.cli import segment as segment_cli
from counterpoint.cli import transfers as transfers_cli
from counterpoint.cli.common import container, reset_consoles, settings
from counterpoint.cli.demo_content import FIRST_SEND, DemoContent, prepare_content
from counterpoint.container import Container, open_container
from counterpoint.errors import CounterpointError
from counterpoint.event.log import QuarantineStatus
from counterpoint.kit import migrate
from counterpoint.kit.files import count_rows
from counterpoint.policy.audit import Actor

__all__ = ["app", "main"]

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="counterpoint",
    help="Omnichannel engagement between life-sciences companies and HCPs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(
    help="Import master data and interactions from files.", no_args_is_help=True
)
keys_app = typer.Typer(help="Write keys for event sources.", no_args_is_help=True)
hcp_app = typer.Typer(help="Look at HCP records.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Refused events: list, replay, discard.", no_args_is_help=True)
db_app = typer.Typer(help="The operational database schema.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(keys_app, name="keys")
app.add_typer(access.users_app, name="users")
app.add_typer(access.tokens_app, name="tokens")
app.add_typer(access.audit_app, name="audit")
app.add_typer(delivery_cli.outbox_app, name="outbox")
app.command("send")(delivery_cli.send)
app.add_typer(hcp_app, name="hcp")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(db_app, name="db")
app.add_typer(simulate.app, name="simulate")
app.add_typer(privacy_cli.app, name="privacy")
app.add_typer(transfers_cli.app, name="transfers")
app.add_typer(consent.app, name="consent")
app.add_typer(content_cli.app, name="content")
app.add_typer(segment_cli.app, name="segment")
app.add_typer(journey_cli.app, name="journey")
app.add_typer(policy_cli.policy_app, name="policy")
app.add_typer(policy_cli.dnc_app, name="dnc")
app.add_typer(policy_cli.guard_app, name="guard")


@app.callback()
def _root(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory (default ./.counterpoint).", envvar=None),
    ] = None,
) -> None:
    global console, err  # one console per invocation, sized for its own terminal
    console, err = Console(), Console(stderr=True)
    reset_consoles()
    if data_dir is not None:
        os.environ["COUNTERPOINT_DATA_DIR"] = str(data_dir)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


# --- serving -------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
) -> None:
    """Run the API on the deployment the settings name; GET /health answers when ready."""
    import uvicorn

    from counterpoint.api.app import create_app

    config = settings()
    built = open_container(config)
    uvicorn.run(
        create_app(built, settle_heap=True),
        host=host or config.host,
        port=port or config.port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def worker(
    poll: Annotated[float, typer.Option(help="Seconds between looks at the log.")] = 0.2,
) -> None:
    """Apply the event log to every consumer continuously (for API processes run without
    consumers): profiles, consent, touches; deliver the outbox; expire content past its
    valid-until; run journeys (entry, timers, events; unless COUNTERPOINT_RUN_JOURNEYS is
    false)."""
    import time

    with container() as built:
        console.print("applying the event log and delivering the outbox; stop with Ctrl-C")
        built.delivery_worker.start()
        for job in built.housekeeping:
            job.start()
        if built.settings.run_journeys:
            built.journey_runtime.start()
        try:
            while True:
                if not built.catch_up():
                    time.sleep(poll)
        except KeyboardInterrupt:
            console.print("stopped")


@app.command()
def demo(
    hcps: Annotated[int, typer.Option(help="Synthetic HCPs to generate.")] = 500,
    weeks: Annotated[int, typer.Option(help="Weeks of synthetic history.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    port: Annotated[int | None, typer.Option(help="Port to serve on.")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Prepare, do not serve.")] = False,
) -> None:
    """Generate a small synthetic market, ingest it, and serve the API (embedded)."""
    config = settings()
    out = config.data_dir / "market"
    if not _demo_market_ready(out):
        simulate.market(
            hcps=hcps, weeks=weeks, seed=seed, out=out, duplicates=0.0, invalid=0.0, start=None
        )
    with container() as built:
        for kind in ("hcos", "hcps", "affiliations"):
            _import(built, kind, out / f"{kind}.parquet")
        _demo_consents(built, out / "consents.parquet")
        for part in sorted((out / "events").glob("*.parquet")):
            _import(built, "events", part)
        content = prepare_content(built)
        _, key = built.write_keys.create("demo source")
        token = access.demo_admin_token(built)
        sample = _sample_hcp(built)
    base = f"http://{config.host}:{port or config.port}"
    console.print(f"\n[bold green]Ready.[/] Synthetic market in {out}")
    console.print(f"  write key (HTTP Basic user name for /v1/*): [bold]{key}[/]", soft_wrap=True)
    console.print(f"  API token (Authorization: Bearer …):        [bold]{token}[/]", soft_wrap=True)
    console.print(f"  API reference:   {base}/docs")
    console.print(f"  health:          {base}/health")
    if sample:
        console.print(
            f"  an HCP 360:      curl -H 'Authorization: Bearer {token}' "
            f"{base}/api/v1/hcps/{sample}",
            soft_wrap=True,
        )
        console.print(f"  in the terminal: counterpoint hcp show {sample}")
    _print_demo_content(content, base, token)
    if not no_serve:
        serve(host=None, port=port)


def _print_demo_content(content: DemoContent, base: str, token: str) -> None:
    if content.skipped:
        console.print(f"  content library: {content.skipped}")
        return
    console.print(
        f"  content library: {len(content.approved)} synthetic items approved by three "
        "synthetic MLR reviewers (e-signatures); their passwords, shown once:"
    )
    for name, password in content.passwords.items():
        console.print(f"    {name}: {password}", soft_wrap=True)
    console.print(
        f"  first campaign send ({FIRST_SEND}): {content.queued} queued, {content.refused} "
        "refused; the server delivers them to the console adapter "
        "(.counterpoint/outbox/console.jsonl)"
        + (
            f", {content.deferred} of them once the contact policy's timing allows (quiet hours)"
            if content.deferred
            else ""
        )
    )
    console.print(
        f"  the outbox:      curl -H 'Authorization: Bearer {token}' {base}/api/v1/outbox",
        soft_wrap=True,
    )


def _demo_market_ready(out: Path) -> bool:
    """A market is there, with its consents in the import format (older ones are redone)."""
    import pyarrow.parquet as pq

    from counterpoint.simulate.population import CONSENT_SCHEMA

    consents = out / "consents.parquet"
    return (
        (out / "hcps.parquet").exists()
        and consents.exists()
        and pq.read_schema(consents).names == CONSENT_SCHEMA.names
    )


def _demo_consents(built: Container, path: Path) -> None:
    """The market's consents, through ``counterpoint import consents`` (same checks)."""
    from counterpoint.consent.importer import import_consents

    with progress_bar() as bar:
        checking = bar.add_task(f"consents {path.name}", total=count_rows(path))
        recording = bar.add_task(f"recording {path.name}", total=None)
        report = import_consents(
            path,
            consents=built.consents,
            profiles=built.profiles,
            audit=built.audit,
            clock=built.clock,
            actor=Actor.cli(),
            progress=lambda n: bar.advance(checking, n),
            recording=lambda n: bar.advance(recording, n),
        )
    console.print(
        f"{path.name}: {report.rows} rows, {report.recorded} recorded, "
        f"{report.unchanged} unchanged, {report.rejected_rows} rejected"
    )
    _print_row_errors(report.rejected)


def _sample_hcp(built: Container) -> str | None:
    from sqlalchemy import select

    from counterpoint.profile.models import Hcp

    with built.sessions() as session:
        return session.scalars(
            select(Hcp.id).where(Hcp.master_data.is_(True), Hcp.merged_into.is_(None)).limit(1)
        ).first()


# --- imports -------------------------------------------------------------------------
def _import(built: Container, kind: str, path: Path) -> None:
    if not path.exists():
        raise CounterpointError(
            f"no file {path}", field="FILE", fix="give the path of an existing file"
        )
    total = count_rows(path)
    with progress_bar() as bar:
        task = bar.add_task(f"{kind} {path.name}", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        if kind == "events":
            profiles = bar.add_task(f"profiles {path.name}", total=None)
            report = built.import_events(
                path, progress=advance, profiles=lambda n: bar.advance(profiles, n)
            )
            for consumer in built.consumers:
                consumer.catch_up()
            console.print(
                f"{path.name}: {report.rows} rows, {report.accepted} accepted, "
                f"{report.duplicates} duplicates, {report.quarantined} quarantined"
            )
            _print_row_errors(report.errors)
            return
        master = built.profiles.import_master_data(path, _kind(kind), progress=advance)
    console.print(
        f"{path.name}: {master.rows} rows, {master.imported} imported, "
        f"{master.unchanged} unchanged, "
        f"{len({e.row for e in master.rejected})} rejected"
    )
    _print_row_errors(master.rejected)
    if master.reject_file is not None:
        console.print(
            f"[yellow]Rejected rows kept in {master.reject_file}[/] (fix them and import that file)"
        )


def _kind(kind: str) -> Literal["hcps", "hcos", "affiliations"]:
    if kind == "hcps":
        return "hcps"
    if kind == "hcos":
        return "hcos"
    return "affiliations"


def _print_row_errors(errors: list[Any], limit: int = 20) -> None:
    if not errors:
        return
    table = Table(
        "file", "row", "field", "reason", "fix", title="Rejected rows", title_justify="left"
    )
    for e in errors[:limit]:
        table.add_row(e.file, str(e.row), e.field, e.reason, e.fix)
    console.print(table)
    if len(errors) > limit:
        console.print(f"… and {len(errors) - limit} more")


def _import_command(kind: str) -> Callable[[Path], None]:
    def command(
        file: Annotated[Path, typer.Argument(help="CSV, Parquet (or NDJSON for events).")],
    ) -> None:
        with container() as built:
            _import(built, kind, file)

    command.__doc__ = f"Import {kind} from a file (columns: docs/formats.md)."
    return command


for _kind_name in ("hcps", "hcos", "affiliations", "events"):
    import_app.command(_kind_name)(_import_command(_kind_name))
import_app.command("consents")(consent.import_command)


# --- keys and tokens -----------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    name: str,
    trusted: Annotated[
        bool, typer.Option(help="A server-side source (may send consent grants).")
    ] = False,
) -> None:
    """Create a write key and print it (shown once)."""
    with container() as built:
        info, secret = built.write_keys.create(
            name, trusted=trusted, on_commit=built.audit.key_change(Actor.cli(), "write_key.create")
        )
    console.print(f"write key {info.id} ({name}): [bold]{secret}[/]")


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    with container() as built:
        done = built.write_keys.revoke(
            key_id, on_commit=built.audit.key_change(Actor.cli(), "write_key.revoke")
        )
    if not done:
        raise CounterpointError(
            f"no active write key {key_id}", field="KEY_ID", fix="give the id `keys create` printed"
        )
    console.print(f"revoked {key_id}")


# --- reading -------------------------------------------------------------------------
@hcp_app.command("show")
def hcp_show(
    identifier: Annotated[
        str, typer.Argument(help="An HCP id (hcp_…) or identifier, e.g. npi:1234567893.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the HCP 360 profile."""
    with container() as built:
        built.projector.catch_up()
        if identifier.startswith("hcp_"):
            profile = built.profiles.get_hcp(identifier)
        else:
            profile = built.profiles.get_by_identifier(identifier)
    if as_json:
        console.print_json(json.dumps(profile, default=str))
        return
    _print_profile(profile)


@hcp_app.command("unmerge")
def hcp_unmerge(
    hcp_id: Annotated[str, typer.Argument(help="The HCP id (hcp_…) holding both people.")],
    identifier: Annotated[
        list[str], typer.Option("--identifier", help="An identifier to split off (repeatable).")
    ],
    reason: Annotated[str, typer.Option(help="Why (kept in the merge record).")],
) -> None:
    """Split identifiers (and their events) off an HCP into a record of their own, for good."""
    with container() as built:
        built.projector.catch_up()
        result = built.profiles.unmerge(hcp_id, identifier, reason, Actor.cli())
    console.print(f"kept:      {result['hcp']['id']}")
    console.print(f"separated: {result['separated']['id']}")


def _print_profile(p: dict[str, Any]) -> None:
    title = " ".join(str(x) for x in (p["title"], p["first_name"], p["last_name"]) if x) or p["id"]
    console.print(
        f"[bold]{title}[/]  {p['id']}" + ("  [magenta](synthetic)[/]" if p["synthetic"] else "")
    )
    console.print(
        f"{p['specialty'] or '-'} · {p['market'] or '-'} · territory {p['territory'] or '-'} · "
        f"decile {p['potential_decile'] or '-'} · persona {p['persona'] or '-'}"
    )
    console.print(
        "identifiers: " + ", ".join(f"{i['type']}:{i['value']}" for i in p["identifiers"])
    )
    if p["adoption_stage"]:
        console.print(
            "adoption: " + ", ".join(f"{b} {s}" for b, s in sorted(p["adoption_stage"].items()))
        )
    e = p["engagement"]
    console.print(
        f"events 7/30/90d: {e['events']['7d']}/{e['events']['30d']}/{e['events']['90d']} · "
        f"touches: {e['touches']['7d']}/{e['touches']['30d']}/{e['touches']['90d']} · "
        f"preferred channel: {e['preferred_channel'] or '-'}"
    )
    table = Table(
        "channel", "events 90d", "touches 90d", "response rate", "last", title_justify="left"
    )
    for name, c in e["channels"].items():
        last = c.get("last")
        rate = c.get("response_rate_90d")
        table.add_row(
            name,
            str(c.get("events", {}).get("90d", 0)),
            str(c.get("touches", {}).get("90d", 0)),
            "-" if rate is None else f"{rate:.2f}",
            f"{last['action']} {last['at']:%Y-%m-%d}" if last else "-",
        )
    console.print(table)


# --- quarantine ----------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, replayed, discarded or all")] = "open",
    limit: int = 50,
) -> None:
    """Refused events with the reason and the fix."""
    chosen = None if status == "all" else _status(status)
    with container() as built:
        items = built.ingest.quarantined(chosen, 0, limit)
    table = Table("id", "status", "source", "reason", "field", "detail", "fix")
    for q in items:
        e = q.entry
        table.add_row(
            str(q.id), q.status.value, e.source, e.reason_code, e.field or "", e.detail, e.fix or ""
        )
    console.print(table)


def _status(text: str) -> QuarantineStatus:
    try:
        return QuarantineStatus(text)
    except ValueError:
        raise CounterpointError(
            f"unknown status {text!r}", field="--status", fix="use open, replayed, discarded or all"
        ) from None


@quarantine_app.command("replay")
def quarantine_replay(
    entry_id: int,
    corrected: Annotated[
        Path | None, typer.Option(help="A JSON file with the fixed event.")
    ] = None,
) -> None:
    """Validate a quarantined event again (as stored or corrected) and append it."""
    fixed = json.loads(corrected.read_text()) if corrected else None
    with container() as built:
        result = built.ingest.replay(entry_id, fixed)
        built.catch_up()
    console.print(f"replayed {entry_id}: {result.accepted} accepted, {result.duplicates} duplicate")


@quarantine_app.command("discard")
def quarantine_discard(entry_id: int, note: Annotated[str, typer.Option(help="Why.")]) -> None:
    with container() as built:
        count = built.ingest.discard([entry_id], note)
    console.print(f"discarded {count}")


# --- operations ----------------------------------------------------------------------
@app.command()
def rebuild() -> None:
    """Forget derived state (profiles, identities, engagement) and replay the event log."""
    with container() as built, progress_bar() as bar:
        task = bar.add_task("replaying", total=built.log.count())
        applied = built.projector.rebuild(lambda n: bar.advance(task, n))
        for consumer in built.consumers:
            task = bar.add_task(f"replaying ({consumer.name})", total=built.log.count())
            consumer.rebuild(lambda n, task=task: bar.advance(task, n))  # type: ignore[misc]
    console.print(f"replayed {applied} events")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the operational schema to the latest version."""
    from counterpoint.kit.db import make_engine

    config = settings()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.resolved_database_url)
    migrate.upgrade(engine)
    console.print("schema up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations differ (run after upgrade)."""
    from counterpoint.kit.db import make_engine

    config = settings()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.resolved_database_url)
    migrate.upgrade(engine)
    migrate.check(engine)
    console.print("no drift between models and migrations")


def main() -> None:
    try:
        app()
    except CounterpointError as exc:
        err.print(f"[bold red]error:[/] {exc.detail}")
        if exc.field:
            err.print(f"  field: {exc.field}")
        if exc.fix:
            err.print(f"  fix:   {exc.fix}")
        sys.exit(2)
