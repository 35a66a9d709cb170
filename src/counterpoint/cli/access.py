"""``counterpoint users|tokens|audit``: people, their API tokens, and the audit trail."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.container import Container
from counterpoint.errors import CounterpointError, NotFoundError
from counterpoint.policy.access import Role
from counterpoint.policy.audit import Actor, record_dict

__all__ = ["audit_app", "demo_admin_token", "tokens_app", "users_app"]

users_app = typer.Typer(help="Users, their roles and scopes.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the management API.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify and export.", no_args_is_help=True)

_ROLES = ", ".join(r.value for r in Role)
DEMO_ADMIN = "demo-admin"


@users_app.command("create")
def users_create(
    name: str,
    role: Annotated[str, typer.Option(help=f"One of: {_ROLES}.")],
    market: Annotated[
        list[str] | None, typer.Option(help="A market (ISO country) in scope; repeatable.")
    ] = None,
    brand: Annotated[list[str] | None, typer.Option(help="A brand in scope; repeatable.")] = None,
    territory: Annotated[
        list[str] | None, typer.Option(help="A territory in scope; repeatable.")
    ] = None,
) -> None:
    """Create a user with one role; no --market/--brand means all of them."""
    with container() as built:
        user = built.users.create(
            name,
            role,
            Actor.cli(),
            markets=market or (),
            brands=brand or (),
            territories=territory or (),
        )
    console().print(f"user {user['id']} ({user['name']}, {user['role']})")


@users_app.command("list")
def users_list() -> None:
    """Every user with role and scopes."""
    with container() as built:
        users = built.users.list()
    table = Table("id", "name", "role", "markets", "brands", "territories", "disabled")
    for u in users:
        table.add_row(
            str(u["id"]),
            str(u["name"]),
            str(u["role"]),
            ",".join(u["markets"]) or "all",  # type: ignore[arg-type]
            ",".join(u["brands"]) or "all",  # type: ignore[arg-type]
            ",".join(u["territories"]) or "-",  # type: ignore[arg-type]
            "yes" if u["disabled_at"] else "",
        )
    console().print(table)


@users_app.command("disable")
def users_disable(
    name: str, reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")]
) -> None:
    """Disable a user: every token of theirs stops working at once."""
    with container() as built:
        built.users.disable(name, Actor.cli(), reason)
    console().print(f"disabled {name}")


@users_app.command("set-password")
def users_set_password(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set the password a user re-enters to sign approvals (at least 12 characters)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with container() as built:
        built.users.set_password(name, password, Actor.cli())
    console().print(f"password set for {name}")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="The user's name (or id) the token acts as.")],
    days: Annotated[int, typer.Option(help="Days until it expires.")] = 90,
) -> None:
    """Create an API token for a user and print it (shown once)."""
    with container() as built:
        info, secret = built.tokens.create(user, Actor.cli(), days=days)
    console().print(
        f"token {info.id} ({info.name}, expires {info.expires_at:%Y-%m-%d}): [bold]{secret}[/]",
        soft_wrap=True,
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token (its id is printed by `tokens create`)."""
    with container() as built:
        done = built.tokens.revoke(token_id, Actor.cli())
    if not done:
        raise CounterpointError(
            f"no active token {token_id}",
            field="TOKEN_ID",
            fix="give the id `tokens create` printed",
        )
    console().print(f"revoked {token_id}")


def demo_admin_token(built: Container) -> str:
    """The demo's administrator (created once) and a fresh 7-day token for it."""
    with built.sessions() as session:
        try:
            built.users.get(session, DEMO_ADMIN)
            exists = True
        except NotFoundError:
            exists = False
    if not exists:
        built.users.create(DEMO_ADMIN, Role.ADMIN.value, Actor.cli())
    return built.tokens.create(DEMO_ADMIN, Actor.cli(), days=7)[1]


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exits 1 if any record was edited, removed or reordered."""
    with container() as built:
        count, problems = built.audit.verify()
    if problems:
        for p in problems:
            where = f"record {p.seq}" if p.seq is not None else "chain"
            console().print(f"[red]TAMPERED[/] {where}: {p.problem}")
        console().print(f"{len(problems)} problem(s) in {count} records")
        raise typer.Exit(1)
    console().print(f"[green]intact[/]: {count} records, every link verified")


def _date(value: str | None, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CounterpointError(
            f"{value!r} is not a date", field=field, fix="write YYYY-MM-DD"
        ) from None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


@audit_app.command("export")
def audit_export(
    out: Annotated[
        Path | None, typer.Option(help="File to write (NDJSON); default standard output.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this day (YYYY-MM-DD, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this day (YYYY-MM-DD, UTC).")] = None,
    object_id: Annotated[str | None, typer.Option(help="Only records about this object.")] = None,
) -> None:
    """Export records with their hashes, one JSON object per line, for inspectors."""
    start, end = _date(since, "--since"), _date(until, "--until")
    with container() as built:
        handle = out.open("w", encoding="utf-8") if out else sys.stdout
        try:
            count = 0
            for row in built.audit.iter_records(object_id=object_id, since=start, until=end):
                handle.write(json.dumps(record_dict(row), ensure_ascii=False) + "\n")
                count += 1
        finally:
            if out:
                handle.close()
    if out:
        console().print(f"{count} records written to {out}")
