"""``counterpoint content``: the content library and its MLR approval workflow."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.container import Container
from counterpoint.content.repository import ItemFilter
from counterpoint.content.schemas import ContentDocumentError, parse_documents
from counterpoint.content.workflow import ApprovalTerms, Discipline, expected_meaning
from counterpoint.errors import ValidationFailedError
from counterpoint.policy.access import Principal
from counterpoint.policy.audit import Actor

__all__ = ["app", "read_password"]

app = typer.Typer(
    help="The content library: assets, fragments, MLR review and e-signatures.",
    no_args_is_help=True,
)

AsUser = Annotated[str, typer.Option("--as", help="The user acting (name or id).")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _acting(built: Container, user: str) -> tuple[Principal, Actor]:
    """The user acting, and the audit actor: that user, from this command line."""
    principal = built.users.principal(user)
    cli = Actor.cli()
    return principal, Actor.of(principal, f"{cli.origin} ({cli.name})")


def _read(path: Path) -> Any:
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
            f"{path} is neither YAML nor JSON: {str(exc)[:300]}",
            field="FILE",
            fix="check the document's syntax (docs/content.md has an example)",
        ) from None


def _report(exc: ContentDocumentError) -> None:
    console().print(f"[red]nothing stored[/]: {len(exc.problems)} problem(s)", soft_wrap=True)
    for problem in exc.problems:
        console().print(f"  {problem}", markup=False, soft_wrap=True)


def read_password(from_stdin: bool, *, confirm: bool = False) -> str:
    """A password from standard input (one line) or a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: one document or a list.")],
    as_user: AsUser,
) -> None:
    """Create every asset and fragment in FILE, or none: every problem is listed."""
    data = _read(file)
    with container() as built:
        principal, actor = _acting(built, as_user)
        try:
            created = built.content.create_many(parse_documents(data), principal, actor)
        except ContentDocumentError as exc:
            _report(exc)
            raise typer.Exit(2) from None
    for item in created:
        console().print(f"created {item['id']} {item['code']} ({item['kind']}, draft)")


@app.command("edit")
def edit(
    item: Annotated[str, typer.Argument(help="The item's id or code.")],
    file: Annotated[Path, typer.Argument(help="YAML or JSON: the item's whole document.")],
    as_user: AsUser,
) -> None:
    """Replace an item's document: a new version in draft; items built from it go back to
    review."""
    data = _read(file)
    with container() as built:
        principal, actor = _acting(built, as_user)
        try:
            (document,) = parse_documents(data if not isinstance(data, list) else data[:1])
            result = built.content.update(item, document, principal, actor)
        except ContentDocumentError as exc:
            _report(exc)
            raise typer.Exit(2) from None
    if result["changed"]:
        console().print(f"{result['code']}: version {result['version']}, {result['state']}")
    else:
        console().print(f"{result['code']}: unchanged, version {result['version']}")


def _cell(values: list[str]) -> str:
    return ",".join(values) or "-"


@app.command("list")
def list_items(
    kind: Annotated[str | None, typer.Option(help="asset or fragment.")] = None,
    asset_type: Annotated[str | None, typer.Option("--type", help="An asset type.")] = None,
    brand: Annotated[str | None, typer.Option(help="One brand.")] = None,
    state: Annotated[str | None, typer.Option(help="A workflow state.")] = None,
    market: Annotated[str | None, typer.Option(help="A market (ISO code).")] = None,
    channel: Annotated[str | None, typer.Option(help="A channel.")] = None,
    search: Annotated[str | None, typer.Option("--search", help="In title or code.")] = None,
    limit: Annotated[int, typer.Option(help="Items per page.")] = 50,
    offset: Annotated[int, typer.Option(help="Items to skip.")] = 0,
) -> None:
    """Items by code, filtered."""
    where = ItemFilter(
        kind=kind,
        asset_type=asset_type,
        brand=brand,
        state=state,
        market=market.upper() if market else None,
        channel=channel,
        text=search,
    )
    with container() as built:
        page = built.content.list(where, limit=max(1, min(limit, 500)), offset=max(0, offset))
    table = Table("code", "kind", "type", "brand", "state", "v", "markets", "channels", "title")
    for i in page["items"]:
        table.add_row(
            i["code"],
            i["kind"],
            i["asset_type"] or "-",
            i["brand"] or "-",
            i["state"],
            str(i["version"]),
            _cell(i["markets"]),
            _cell(i["channels"]),
            i["title"],
        )
    console().print(table)
    shown = f"{page['offset'] + 1}-{page['offset'] + len(page['items'])}" if page["items"] else "0"
    console().print(f"{shown} of {page['total']} items")


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


@app.command("show")
def show(item: Annotated[str, typer.Argument(help="The item's id or code.")]) -> None:
    """One item: metadata, state, hashes, approval terms, body and reviews."""
    with container() as built:
        found = built.content.get(item)
        history = built.content.history(found["id"])
    terms = found["approval"]
    lines = [
        f"{found['code']} ({found['id']}): {found['title']}",
        f"  {found['kind']} {found['asset_type'] or ''}  brand {found['brand'] or '-'}  "
        f"function {found['function']}  version {found['version']}  state {found['state']}",
        f"  markets {_cell(found['markets'])}  languages {_cell(found['languages'])}  "
        f"channels {_cell(found['channels'])}",
        f"  fragments {_cell(found['fragments'])}  parent {found['parent'] or '-'}",
        f"  author {found['author']}  content hash {found['content_hash']}",
        f"  manifest hash {found['manifest_hash'] or '- (not submitted)'}",
        f"  approval: job {terms['job_code'] or '-'}  markets {_cell(terms['markets'])}  "
        f"channels {_cell(terms['channels'])}  valid {_when(terms['valid_from'])} → "
        f"{_when(terms['valid_until'])}",
    ]
    if found["review_note"]:
        lines.append(f"  note: {found['review_note']}")
    for line in lines:
        console().print(line, markup=False, soft_wrap=True)
    console().print(
        yaml.safe_dump({"body": found["body"]}, sort_keys=False, allow_unicode=True),
        markup=False,
        end="",
    )
    for r in history["reviews"]:
        binds = "binds" if r["binds"] else ("no longer binds" if r["signed"] else "")
        console().print(
            f"  {_when(r['at'])} {r['discipline']}: {r['decision']} by {r['reviewer']} "
            f"(v{r['version']}) {binds} {r['comments'] or ''}".rstrip(),
            markup=False,
            soft_wrap=True,
        )


def _instant(value: str, field: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailedError(
            f"{value[:40]!r} is not a date or time",
            field=field,
            fix="write YYYY-MM-DD (midnight UTC) or an ISO 8601 time with offset",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


@app.command("submit")
def submit(
    item: Annotated[str, typer.Argument(help="The item's id or code.")],
    as_user: AsUser,
    job_code: Annotated[str, typer.Option(help="The approval (job) code.")],
    market: Annotated[list[str], typer.Option(help="A market to approve for; repeatable.")],
    valid_from: Annotated[str, typer.Option(help="YYYY-MM-DD or ISO 8601 time.")],
    valid_until: Annotated[str, typer.Option(help="YYYY-MM-DD or ISO 8601 time.")],
    channel: Annotated[
        list[str] | None, typer.Option(help="A channel to approve for; repeatable.")
    ] = None,
) -> None:
    """Submit an item for MLR review with the approval terms the reviewers will sign."""
    terms = ApprovalTerms(
        job_code,
        tuple(market),
        tuple(channel or ()),
        _instant(valid_from, "--valid-from"),
        _instant(valid_until, "--valid-until"),
    )
    with container() as built:
        principal, actor = _acting(built, as_user)
        result = built.content.submit(item, terms, principal, actor)
    console().print(f"{result['code']}: submitted; manifest hash {result['manifest_hash']}")


def _decision(approve: bool, request_changes: bool, reject: bool) -> str:
    chosen = [
        name
        for name, flag in (
            ("approved", approve),
            ("changes_requested", request_changes),
            ("rejected", reject),
        )
        if flag
    ]
    if len(chosen) != 1:
        raise ValidationFailedError(
            "give exactly one decision",
            field="--approve/--request-changes/--reject",
            fix="add one of --approve, --request-changes, --reject",
        )
    return chosen[0]


@app.command("review")
def review(
    item: Annotated[str, typer.Argument(help="The item's id or code.")],
    as_user: AsUser,
    discipline: Annotated[str, typer.Option(help="medical, legal or regulatory.")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve and sign.")] = False,
    request_changes: Annotated[
        bool, typer.Option("--request-changes", help="Send back to the author.")
    ] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject (final).")] = False,
    comment: Annotated[str | None, typer.Option(help="Comments (required unless approving).")] = (
        None
    ),
    manifest: Annotated[
        str | None,
        typer.Option(help="The manifest hash you reviewed (content show); default current."),
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Review an item for one discipline; approving signs it (your password, re-entered)."""
    decision = _decision(approve, request_changes, reject)
    with container() as built:
        principal, actor = _acting(built, as_user)
        found = built.content.get(item, principal)
        signing = manifest or found["manifest_hash"] or ""
        console().print(
            f"{found['code']} version {found['version']} ({found['state']}): {found['title']}",
            markup=False,
        )
        console().print(f"manifest hash {signing}", markup=False)
        password = None
        if decision == "approved":
            meaning = expected_meaning(_discipline(discipline))
            console().print(f"signing as {principal.name}: {meaning}", markup=False)
            password = read_password(password_stdin)
        else:
            meaning = None
        result = built.content.review(
            found["id"],
            discipline,
            decision,
            comment,
            principal,
            actor,
            password=password,
            meaning=meaning,
            manifest_hash=signing,
        )
    signed = "signed" if result["review"]["signed"] else "recorded"
    console().print(f"{discipline} review {signed}; the item is {result['item']['state']}")


def _discipline(value: str) -> Discipline:
    try:
        return Discipline(value)
    except ValueError:
        raise ValidationFailedError(
            f"{value[:40]!r} is not a discipline",
            field="--discipline",
            fix="use one of: " + ", ".join(d.value for d in Discipline),
        ) from None


@app.command("withdraw")
def withdraw(
    item: Annotated[str, typer.Argument(help="The item's id or code.")],
    as_user: AsUser,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
) -> None:
    """Withdraw approved content at once; items built from it go back to review."""
    with container() as built:
        principal, actor = _acting(built, as_user)
        result = built.content.withdraw(item, reason, principal, actor)
    console().print(f"{result['code']}: withdrawn")


@app.command("expiring")
def expiring(
    days: Annotated[int, typer.Option(help="Look this many days ahead.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
) -> None:
    """Approved items whose validity ends within the next DAYS, soonest first."""
    with container() as built:
        now = built.clock.now()
        items = built.content.expiring(days, now)
    if as_json:
        typer.echo(json.dumps(items, default=str, ensure_ascii=False))
        return
    table = Table("valid until", "days left", "code", "job code", "brand", "markets", "title")
    for i in items:
        until = i["approval"]["valid_until"]
        table.add_row(
            _when(until),
            str((until - now).days),
            i["code"],
            i["approval"]["job_code"] or "-",
            i["brand"] or "-",
            _cell(i["approval"]["markets"]),
            i["title"],
        )
    console().print(table)
    console().print(f"{len(items)} approved item(s) expire within {days} days")


@app.command("expire-due")
def expire_due() -> None:
    """Mark approved items past their valid-until as expired (run it daily; the guard
    refuses them from valid-until on regardless)."""
    with container() as built:
        expired = built.content.expire_due()
    for i in expired:
        console().print(f"expired {i['code']}")
    console().print(f"{len(expired)} item(s) expired")
