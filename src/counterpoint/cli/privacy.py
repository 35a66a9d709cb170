"""``counterpoint privacy``: export or erase one HCP's personal data (GDPR requests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from counterpoint.cli.common import console, container
from counterpoint.policy.audit import Actor

__all__ = ["app"]

app = typer.Typer(help="Privacy requests: export and erasure of one HCP.", no_args_is_help=True)


@app.command("export")
def export(
    hcp: Annotated[str, typer.Argument(help="The HCP id, or an identifier such as npi:…")],
    out: Annotated[Path, typer.Option(help="Where to write the JSON document.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
) -> None:
    """Write everything held about one HCP to a JSON file (audited)."""
    with container() as built:
        hcp_id = hcp if hcp.startswith("hcp_") else built.profiles.resolve_identifier(hcp)
        if hcp_id is None:
            raise typer.BadParameter(f"no HCP has the identifier {hcp!r}", param_hint="HCP")
        ref = hcp_id if isinstance(hcp_id, str) else hcp_id.id
        document = built.privacy.export(ref, Actor.cli(), reason)
    out.write_text(json.dumps(document, default=str, indent=2, ensure_ascii=False), "utf-8")
    console().print(
        f"exported {document['hcp_id']}: {len(document['events'])} events, "
        f"{len(document['consent_records'])} consent records, "
        f"{len(document['transfers_of_value'])} transfers -> {out}"
    )


@app.command("erase")
def erase(
    hcp: Annotated[str, typer.Argument(help="The HCP id, or an identifier such as npi:…")],
    reason: Annotated[
        str, typer.Option(help="Why, without naming the person (kept in the audit trail).")
    ],
) -> None:
    """Erase one HCP: personal data removed, aggregates kept under a pseudonym."""
    with container() as built:
        found = hcp if hcp.startswith("hcp_") else built.profiles.resolve_identifier(hcp)
        if found is None:
            raise typer.BadParameter(f"no HCP has the identifier {hcp!r}", param_hint="HCP")
        hcp_id = found if isinstance(found, str) else found.id
        result = built.privacy.erase(hcp_id, Actor.cli(), reason)
    console().print(
        f"erased: now {result.pseudonym}; {result.events_redacted} events redacted, "
        f"{result.quarantine_deleted} quarantined entries deleted, "
        f"{result.consent_records} consent records and {result.transfers} transfers "
        f"pseudonymised (audit record {result.audit_seq})"
    )
