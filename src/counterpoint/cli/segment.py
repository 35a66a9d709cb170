"""``counterpoint segment``: segments (named conditions over HCPs), their previews, counts and
membership refreshes. See docs/segments.md."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from counterpoint.cli.common import console, container
from counterpoint.container import Container
from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.policy.audit import Actor
from counterpoint.segment.conditions import Condition, parse_condition
from counterpoint.segment.service import SegmentDocument, parse_segment

__all__ = ["app"]

app = typer.Typer(
    help="Segments: named conditions over HCPs, previewed, counted and refreshed.",
    no_args_is_help=True,
)

_KINDS = ("all", "any", "not", "attribute", "events", "feature", "consent")
NameOrFile = Annotated[
    str, typer.Argument(help="A segment's name, or a YAML/JSON file with a condition.")
]


@contextmanager
def _reported() -> Iterator[None]:
    """An expected failure is printed with its field and fix; the exit code is 2."""
    try:
        yield
    except CounterpointError as exc:
        out = console()
        out.print(f"[bold red]error:[/] {exc.detail}", soft_wrap=True, highlight=False)
        if exc.field:
            out.print(f"  field: {exc.field}", markup=False, soft_wrap=True)
        if exc.fix:
            out.print(f"  fix:   {exc.fix}", markup=False, soft_wrap=True)
        out.print("nothing stored", markup=False)
        raise typer.Exit(2) from None


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
            fix="check the document's syntax (docs/segments.md has examples)",
        ) from None


def _document(path: Path) -> SegmentDocument:
    return parse_segment(_read(path))


def _condition(built: Container, name_or_file: str) -> Condition:
    """A stored segment's condition, or the condition in a file (a segment document, or a
    bare condition)."""
    path = Path(name_or_file)
    if not path.is_file():
        return built.segments.condition_of(name_or_file)
    data = _read(path)
    if isinstance(data, dict) and "condition" in data and not set(data) & set(_KINDS):
        return parse_segment(data).condition
    return parse_condition(data)


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: name, description, condition.")],
) -> None:
    """Create a segment from FILE (it has members after its first refresh)."""
    with _reported():
        document = _document(file)
        with container() as built:
            created = built.segments.create(document, Actor.cli())
    console().print(f"created segment {created['name']} (version {created['version']})")


@app.command("update")
def update(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: name, description, condition.")],
) -> None:
    """Store a new version of the segment FILE names (its members follow at the next refresh)."""
    with _reported():
        document = _document(file)
        with container() as built:
            result = built.segments.update(document, Actor.cli())
    state = "updated to" if result["changed"] else "unchanged, still"
    console().print(f"{result['name']}: {state} version {result['version']}")


@app.command("list")
def list_segments() -> None:
    """Every segment: version, members, last refresh."""
    with _reported(), container() as built:
        items = built.segments.list()
    table = Table("name", "v", "members", "refreshed", "description")
    for s in items:
        table.add_row(
            s["name"], str(s["version"]), str(s["members"]), _when(s["refreshed_at"]),
            s["description"] or "-",
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(items)} segments")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="The segment's name.")]) -> None:
    """One segment: its description, version, members and condition (YAML)."""
    with _reported(), container() as built:
        found = built.segments.get(name)
    lines = [
        f"{found['name']}: version {found['version']}, {found['members']} members",
        f"  {found['description'] or '(no description)'}",
        f"  created by {found['created_by']} {_when(found['created_at'])}, "
        f"updated {_when(found['updated_at'])}, refreshed {_when(found['refreshed_at'])}",
    ]
    for line in lines:
        console().print(line, markup=False, soft_wrap=True)
    console().print(
        yaml.safe_dump({"condition": found["condition"]}, sort_keys=False, allow_unicode=True),
        markup=False,
        end="",
    )


@app.command("preview")
def preview(target: NameOrFile) -> None:
    """What a segment (or the condition in a file) selects now: size, size per market,
    consent coverage per channel for promotional contact, and a few member ids."""
    with _reported(), container() as built:
        result = built.segments.preview(_condition(built, target))
    out = console()
    out.print(f"size: {result['size']} HCPs (at {_when(result['at'])} UTC)")
    markets = Table("market", "HCPs", "share")
    for row in result["markets"]:
        share = row["size"] / result["size"] if result["size"] else 0.0
        markets.add_row(row["market"] or "-", str(row["size"]), f"{share:.1%}")
    out.print(markets)
    coverage = Table("consent channel", "allowed (promotional)", "share")
    for row in result["consent"]:
        share = "-" if row["share"] is None else f"{row['share']:.1%}"
        coverage.add_row(row["channel"], str(row["allowed"]), share)
    out.print(coverage)
    if result["sample"]:
        out.print("sample: " + ", ".join(result["sample"]), markup=False, soft_wrap=True)


@app.command("count")
def count(target: NameOrFile) -> None:
    """How many HCPs a segment (or the condition in a file) selects now."""
    with _reported(), container() as built:
        n = built.segments.count(_condition(built, target))
    console().print(f"{n} HCPs")


@app.command("refresh")
def refresh(name: Annotated[str, typer.Argument(help="The segment's name.")]) -> None:
    """Evaluate the segment for every HCP now and update its members; each entry and exit
    is written to the event log."""
    with _reported(), container() as built:
        result = built.segments.refresh(name)
    console().print(
        f"{result['name']} (version {result['version']}): {result['size']} members, "
        f"{result['entered']} entered, {result['left']} left"
    )


@app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="The segment's name.")]) -> None:
    """Delete a segment; every member leaves it (each exit is written to the event log)."""
    with _reported(), container() as built:
        result = built.segments.delete(name, Actor.cli())
    console().print(f"deleted {result['name']}: {result['left']} members left")
