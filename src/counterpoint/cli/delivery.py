"""``counterpoint send`` and ``counterpoint outbox``: send approved content through the guard
and the outbox; see what waits, what failed and why; replay dead letters."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any

import typer
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.delivery.service import SendRequest
from counterpoint.event.canonical import Channel
from counterpoint.policy.audit import Actor
from counterpoint.profile.service import SegmentFilter

__all__ = ["outbox_app", "send"]

outbox_app = typer.Typer(help="The delivery outbox and its dead letters.", no_args_is_help=True)


def _channel(value: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise typer.BadParameter(
            "one of " + ", ".join(c.value for c in Channel), param_hint="--channel"
        ) from None


def send(
    content: Annotated[str, typer.Argument(help="The approved asset: id or code.")],
    channel: Annotated[str, typer.Option(help="The channel, e.g. campaign_email, sms.")],
    hcp: Annotated[list[str] | None, typer.Option(help="An HCP id (repeatable).")] = None,
    market: Annotated[str | None, typer.Option(help="Segment: market (ISO code).")] = None,
    territory: Annotated[str | None, typer.Option(help="Segment: territory.")] = None,
    specialty: Annotated[str | None, typer.Option(help="Segment: specialty code.")] = None,
    segment: Annotated[str | None, typer.Option(help="Segment: one of the HCP's segments.")] = None,
    persona: Annotated[str | None, typer.Option(help="Segment: persona.")] = None,
    as_user: Annotated[
        str | None,
        typer.Option("--as", help="Send as this user (role and scopes); default: the system."),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key never queues twice.")
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Deliver at once in this process (no server needed).")
    ] = False,
) -> None:
    """Send an approved asset to HCPs or a segment: the guard decides each HCP (refusals are
    listed with reasons), allowed sends are queued in the outbox and delivered by the worker
    (or here with --now)."""
    where = None
    if not hcp:
        if not any((market, territory, specialty, segment, persona)):
            raise typer.BadParameter(
                "name HCPs (--hcp) or a segment (--market, --territory, --specialty, "
                "--segment, --persona)",
                param_hint="--hcp",
            )
        where = SegmentFilter(
            market=market,
            territory=territory,
            specialty=specialty,
            segment=segment,
            persona=persona,
        )
    with container() as built:
        principal = built.users.principal(as_user) if as_user else None
        report = built.delivery.send(
            SendRequest(
                content=content,
                channel=_channel(channel),
                hcp_ids=hcp or [],
                segment=where,
                request_key=key or f"cli-{secrets.token_hex(8)}",
            ),
            principal=principal,
            actor=Actor.cli(),
        )
        out = console()
        out.print(
            f"{len(report.queued)} queued, {len(report.already_queued)} already queued, "
            f"{len(report.refused)} refused (the guard, or no address on the channel)"
        )
        for r in report.refused[:20]:
            out.print(f"  {r['hcp_id']}: {', '.join(r['reasons'])} ({'; '.join(r['details'])})")
        if report.deferred:
            reasons = sorted({c for r in report.deferred for c in r["reasons"]})
            out.print(
                f"{len(report.deferred)} of the queued wait for {', '.join(reasons)}: "
                "delivered once the guard allows them"
            )
        if now and report.queued:
            with out.status("delivering"):
                done = built.delivery_worker.drain()
            out.print(
                f"delivered: {done.sent} sent, {done.refused} refused at delivery, "
                f"{done.retrying} to retry, {done.dead} dead letters"
            )


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "status", "channel", "hcp", "attempts", "adapter", "error")
    for e in items:
        table.add_row(
            e["id"],
            e["status"],
            e["channel"],
            e["hcp_id"],
            str(e["attempts"]),
            e["adapter"] or "",
            f"{e['error_code'] or ''} {e['last_error'] or ''}".strip()[:80],
        )
    return table


@outbox_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="pending, sending, sent, refused, dead, cancelled.")
    ] = None,
    hcp: Annotated[str | None, typer.Option(help="Only this HCP.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Outbox entries, newest first, and the count per status."""
    with container() as built:
        items = built.delivery.outbox(status=status, hcp_id=hcp, limit=limit)
        counts = built.delivery.counts()
    console().print(_table(items))
    console().print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "empty")


@outbox_app.command("replay")
def replay(
    entry: Annotated[str, typer.Argument(help="The dead letter's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
) -> None:
    """Put a dead letter back in line (the guard decides again at delivery)."""
    with container() as built:
        after = built.delivery.replay(entry, Actor.cli(), reason)
    console().print(f"{after['id']} is {after['status']} again")


@outbox_app.command("cancel")
def cancel(
    entry: Annotated[str, typer.Argument(help="A pending entry or dead letter.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
) -> None:
    """Cancel an entry not yet sent."""
    with container() as built:
        after = built.delivery.cancel(entry, Actor.cli(), reason)
    console().print(f"{after['id']} is {after['status']}")


@outbox_app.command("deliver")
def deliver(
    limit: Annotated[int, typer.Option(min=1, max=5000, help="Entries per pass.")] = 200,
) -> None:
    """Deliver everything due now, then stop (the server and `counterpoint worker` deliver
    continuously)."""
    with container() as built:
        started = dt.datetime.now(dt.UTC)
        with console().status("delivering"):
            done = built.delivery_worker.drain(limit)
        seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    console().print(
        f"{done.claimed} attempts in {seconds:.1f} s: {done.sent} sent, {done.refused} refused, "
        f"{done.retrying} to retry, {done.dead} dead letters, {done.recovered} recovered"
    )


@outbox_app.command("routes")
def routes() -> None:
    """Which adapter carries each channel (COUNTERPOINT_CHANNELS_FILE)."""
    with container() as built:
        rows = built.routes.describe()
    table = Table("channel", "instance", "adapter")
    for r in rows:
        table.add_row(r["channel"], r["instance"], r["adapter"])
    console().print(table)
