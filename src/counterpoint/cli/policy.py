"""``counterpoint policy|dnc``: contact policies per market, do-not-contact, suppressions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.consent.ledger import ConsentChannel
from counterpoint.container import Container
from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.policy.audit import Actor
from counterpoint.profile.service import HcpRef

__all__ = ["dnc_app", "guard_app", "policy_app"]

policy_app = typer.Typer(
    help="Contact policies per market: caps, gaps, quiet hours.", no_args_is_help=True
)
dnc_app = typer.Typer(
    help="Do-not-contact entries and hard-bounce suppressions.", no_args_is_help=True
)

Reason = Annotated[str, typer.Option(help="Why (kept in the audit trail).")]


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailedError(
            f"cannot read {path}: {exc}", field="FILE", fix="give a readable UTF-8 file"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationFailedError(
            f"{path} is neither YAML nor JSON: {str(exc)[:200]}",
            field="FILE",
            fix="check the document's syntax (docs/contact-policy.md has an example)",
        ) from None


@policy_app.command("set")
def policy_set(file: Path, reason: Reason) -> None:
    """Store a new version of the policy of each market in FILE (YAML or JSON)."""
    document = _read_document(file)
    with container() as built:
        results = built.contact.set_policies(document, Actor.cli(), reason)
    for r in results:
        state = "stored as version" if r["changed"] else "unchanged, still version"
        console().print(f"{r['market']}: {state} {r['version']}")


@policy_app.command("show")
def policy_show(
    market: str,
    history: Annotated[bool, typer.Option(help="List every version too.")] = False,
) -> None:
    """The policy in force in MARKET (the built-in one when it has none), as YAML."""
    with container() as built:
        current = built.contact.show(market)
        versions = built.contact.history(market) if history else []
    label = "built-in default" if current["builtin"] else f"version {current['version']}"
    console().print(f"# {current['market']}: {label}")
    console().print(yaml.safe_dump(current["document"], sort_keys=False), end="", markup=False)
    for v in versions:
        console().print(
            f"# version {v['version']} {v['created_at']:%Y-%m-%d %H:%M}"
            f" by {v['created_by']}: {v['reason']}",
            markup=False,
        )


def _hcp(built: Container, text: str) -> HcpRef:
    if ":" in text:
        ref = built.profiles.resolve_identifier(text)
        if ref is None:
            raise NotFoundError(
                f"no HCP holds {text[:80]!r}", field="HCP", fix="check the identifier"
            )
        return ref
    return built.profiles.resolve(text)


def _channel(text: str | None) -> Channel | None:
    if text is None or text == "all":
        return None
    try:
        return Channel(text)
    except ValueError:
        raise ValidationFailedError(
            f"{text[:40]!r} is not a channel",
            field="--channel",
            fix=f"use all or one of: {', '.join(c.value for c in Channel)}",
        ) from None


@dnc_app.command("add")
def dnc_add(
    hcp: Annotated[str, typer.Argument(help="HCP id or identifier (npi:…).")],
    reason: Reason,
    channel: Annotated[str | None, typer.Option(help="One channel; default all.")] = None,
) -> None:
    """Never contact the HCP (on one channel, or on any) until removed."""
    with container() as built:
        entry = built.contact.add_dnc(_hcp(built, hcp), _channel(channel), reason, Actor.cli())
    state = "added" if entry["created"] else "already present"
    console().print(f"do not contact {entry['hcp_id']} on {entry['channel']}: {state}")


@dnc_app.command("remove")
def dnc_remove(
    hcp: Annotated[str, typer.Argument(help="HCP id or identifier (npi:…).")],
    reason: Reason,
    channel: Annotated[str | None, typer.Option(help="One channel; default the all entry.")] = None,
) -> None:
    """Remove a do-not-contact entry."""
    with container() as built:
        entry = built.contact.remove_dnc(_hcp(built, hcp), _channel(channel), reason, Actor.cli())
    console().print(f"removed: do not contact {entry['hcp_id']} on {entry['channel']}")


@dnc_app.command("list")
def dnc_list(
    hcp: Annotated[str, typer.Argument(help="HCP id or identifier (npi:…).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The HCP's do-not-contact entries and active suppressions."""
    with container() as built:
        ref = _hcp(built, hcp)
        entries = built.contact.list_dnc(ref)
        suppressed = built.contact.suppressions(ref)
    if as_json:
        typer.echo(
            json.dumps(
                {"hcp_id": ref.id, "do_not_contact": entries, "suppressions": suppressed},
                default=str,
            )
        )
        return
    table = Table("kind", "channel", "identifier", "since", "by", "reason")
    for e in entries:
        table.add_row(
            "do not contact",
            e["channel"],
            "",
            f"{e['created_at']:%Y-%m-%d}",
            e["created_by"],
            e["reason"],
        )
    for s in suppressed:
        table.add_row(
            "suppressed",
            s["channel"],
            s["identifier"],
            f"{s['since']:%Y-%m-%d}",
            "hard bounce",
            s["message_id"],
        )
    console().print(table)


@dnc_app.command("lift")
def dnc_lift(
    hcp: Annotated[str, typer.Argument(help="HCP id or identifier (npi:…).")],
    channel: Annotated[str, typer.Argument(help="The consent channel, e.g. email.")],
    reason: Reason,
) -> None:
    """Lift a hard-bounce suppression (e.g. after the address was corrected)."""
    try:
        consent = ConsentChannel(channel)
    except ValueError:
        raise ValidationFailedError(
            f"{channel[:40]!r} is not a consent channel",
            field="CHANNEL",
            fix=f"use one of: {', '.join(c.value for c in ConsentChannel)}",
        ) from None
    with container() as built:
        lifted = built.contact.lift(_hcp(built, hcp), consent, reason, Actor.cli())
    for s in lifted:
        console().print(f"lifted: {s['channel']} for {s['identifier']}")


guard_app = typer.Typer(
    help="Ask the guard whether a contact may happen now.", no_args_is_help=True
)


@guard_app.command("check")
def guard_check(
    hcp: Annotated[str, typer.Argument(help="An HCP id (hcp_…) or identifier (npi:…).")],
    channel: Annotated[str, typer.Option(help="The channel, e.g. campaign_email, f2f_call.")],
    purpose: Annotated[
        str, typer.Option(help="promotional, medical, educational or market_research.")
    ] = "promotional",
    brand: Annotated[str | None, typer.Option(help="The brand the contact is about.")] = None,
    role: Annotated[
        str | None, typer.Option(help="The acting role (default: automated orchestration).")
    ] = None,
) -> None:
    """Allowed, or refused with every reason (nothing is sent or recorded)."""
    from counterpoint.consent.ledger import Purpose
    from counterpoint.policy.access import Role
    from counterpoint.policy.guard_service import CheckRequest

    found = _channel(channel)
    if found is None:
        raise ValidationFailedError(
            "a channel is required", field="--channel", fix="e.g. --channel campaign_email"
        )
    try:
        wanted, acting = Purpose(purpose), Role(role) if role else None
    except ValueError as exc:
        raise ValidationFailedError(
            str(exc),
            field="--role" if role and "Role" in str(exc) else "--purpose",
            fix="purposes: "
            + ", ".join(p.value for p in Purpose)
            + "; roles: "
            + ", ".join(r.value for r in Role),
        ) from None
    with container() as built:
        built.catch_up()
        ref = _hcp(built, hcp)
        decision = built.guard.check(
            CheckRequest(hcp_id=ref.id, channel=found, purpose=wanted, brand=brand), role=acting
        )
    if decision.allowed:
        console().print(f"[green]allowed[/]: {found.value} {wanted.value} to {ref.id}")
        return
    console().print(f"[red]refused[/]: {found.value} {wanted.value} to {ref.id}")
    for r in decision.refusals:
        console().print(f"  {r.code}: {r.detail}")
    raise typer.Exit(1)
