"""Bulk import of consent records from a CSV or Parquet file (docs/formats.md, "Consent").

The whole file is validated first (``validate_consent_row`` is pure and applies the ledger's
own rules); rows naming an unknown HCP are rejected too. Rejected rows are written, with their
reasons, to ``FILE.rejects.csv``. Then every valid row is recorded in one transaction, each
with the dedupe key ``import:<sha256 of the file>:<row>``: importing the same file again
records nothing new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.consent.service import (
    _FUTURE_SLACK,
    ConsentService,
    _check_proof,
    _check_scope,
)
from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.kit.clock import Clock, utc
from counterpoint.kit.files import file_sha256, read_chunks, write_rejects
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.profile.identifiers import parse_user_id
from counterpoint.profile.records import RowError
from counterpoint.profile.service import ProfileService
from counterpoint.profile.validation import check_column_set, parse_bool

__all__ = [
    "CONSENT_COLUMNS",
    "ConsentImportReport",
    "ConsentImportRow",
    "import_consents",
    "validate_consent_row",
]

CONSENT_COLUMNS: Final[Mapping[str, bool]] = {
    "identifier": True,
    "channel": True,
    "purpose": True,
    "market": True,
    "brand": False,
    "content_type": False,
    "state": True,
    "effective_at": False,
    "expires_at": False,
    "source": False,
    "captured_by": False,
    "wording_version": False,
    "wording_hash": False,
    "evidence": False,
    "reason": False,
    "synthetic": False,
}
"""Column → required, for consent files."""

_STATES: Final = {s.value: s for s in ConsentState if s is not ConsentState.EXPIRED}
_CHANNELS: Final = {c.value: c for c in ConsentChannel}
_PURPOSES: Final = {p.value: p for p in Purpose}
_SOURCES: Final = {
    s.value: s for s in ConsentSource if s not in (ConsentSource.EVENT, ConsentSource.DELIVERY)
}
_LIMITS: Final = {
    "identifier": 320,
    "captured_by": 200,
    "wording_version": 64,
    "wording_hash": 64,
    "evidence": 2000,
    "reason": 2000,
    "brand": 64,
    "content_type": 64,
    "market": 10,
}
_STAMP_FIX: Final = "write ISO 8601, e.g. 2026-03-01T09:30:00Z (or a date, 2026-03-01)"


@dataclass(frozen=True, slots=True)
class ConsentImportRow:
    """One valid row of a consent file."""

    row: int
    identifier: str
    """The canonical identifier key, e.g. ``npi:1234567893``."""
    scope: ConsentScope
    state: ConsentState
    effective_at: dt.datetime | None
    expires_at: dt.datetime | None
    source: ConsentSource
    captured_by: str | None
    wording_version: str | None
    wording_hash: str | None
    evidence: str | None
    reason: str
    synthetic: bool = False
    """Generated data (the synthetic market), never a real HCP's consent."""


@dataclass
class ConsentImportReport:
    file: str
    rows: int = 0
    recorded: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    reject_file: Path | None = None

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.rejected})


class _Row:
    def __init__(self, row: Mapping[str, object], file: str, number: int) -> None:
        self.row = row
        self.file = file
        self.number = number
        self.errors: list[RowError] = []

    def refuse(self, name: str, reason: str, fix: str) -> None:
        shown = self.row.get(name)
        value = "" if shown is None else str(shown)[:200]
        self.errors.append(RowError(self.file, self.number, name, value, reason, fix))

    def text(self, name: str) -> str | None:
        value = self.row.get(name)
        if value is None:
            return None
        text = (value if isinstance(value, str) else str(value)).strip()
        limit = _LIMITS.get(name, 200)
        if len(text) > limit:
            self.refuse(name, f"is longer than {limit} characters", f"shorten it to {limit}")
            return None
        return text or None

    def code(self, name: str, codes: Mapping[str, Any], *, required: bool) -> Any:
        text = self.text(name)
        if text is None:
            if required:
                self.refuse(name, "is required", "use one of: " + ", ".join(codes))
            return None
        found = codes.get(text.lower())
        if found is None:
            self.refuse(name, "is not a known code", "use one of: " + ", ".join(codes))
        return found

    def stamp(self, name: str) -> dt.datetime | None:
        value = self.row.get(name)
        if isinstance(value, dt.datetime):
            return utc(value)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        text = self.text(name)
        if text is None:
            return None
        try:
            return utc(dt.datetime.fromisoformat(text))
        except (ValueError, OverflowError):
            self.refuse(name, "is not an ISO 8601 time", _STAMP_FIX)
            return None

    def flag(self, name: str) -> bool:
        """A boolean column (true/false, yes/no, 1/0); empty means false."""
        value = self.row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return False
        parsed = parse_bool(value)
        if parsed is None:
            self.refuse(name, "is not a boolean", "write true or false (or leave it empty)")
            return False
        return parsed

    def check(self, name: str, rule: Callable[[], object]) -> None:
        """Apply one of the ledger's own rules; its refusal becomes this row's error."""
        try:
            rule()
        except ValidationFailedError as exc:
            self.refuse(exc.field or name, exc.detail, exc.fix or "correct the value")


def validate_consent_row(
    row: Mapping[str, object], *, row_number: int, file: str, now: dt.datetime
) -> ConsentImportRow | list[RowError]:
    """One row of a consent file as a record to make, or every problem of the row. Pure.

    Applies the rules ``ConsentService.record_in`` applies (market code, brand and content type
    codes, wording hash and version, a rep's signature, times), so a valid row is recorded.
    """
    f = _Row(row, file, row_number)
    identifier: str | None = None
    raw_identifier = f.text("identifier")
    if raw_identifier is None:
        f.refuse("identifier", "is required", "write the HCP's identifier, e.g. npi:1234567893")
    else:
        try:
            identifier = parse_user_id(raw_identifier, field="identifier").key
        except ValidationFailedError as exc:
            f.refuse("identifier", exc.detail, exc.fix or "write e.g. npi:1234567893")
    channel = f.code("channel", _CHANNELS, required=True)
    purpose = f.code("purpose", _PURPOSES, required=True)
    state = f.code("state", _STATES, required=True)
    source = f.code("source", _SOURCES, required=False) or ConsentSource.IMPORT
    market = f.text("market")
    if market is None:
        f.refuse("market", "is required", "write a two-letter code such as DE or US")
    scope: ConsentScope | None = None
    if market is not None:  # the ledger's scope rules (market, brand and content type codes)
        candidate = ConsentScope(
            channel or ConsentChannel.EMAIL,
            purpose or Purpose.PROMOTIONAL,
            market,
            f.text("brand"),
            f.text("content_type"),
        )
        try:
            checked = _check_scope(candidate)
        except ValidationFailedError as exc:
            f.refuse(exc.field or "market", exc.detail, exc.fix or "correct the value")
        else:
            scope = checked if channel is not None and purpose is not None else None
    proof = Proof(
        source=source,
        captured_by=f.text("captured_by") or "",
        wording_version=f.text("wording_version"),
        wording_hash=f.text("wording_hash"),
        evidence=f.text("evidence"),
    )
    if state is not None:
        f.check("wording_version", lambda: _check_proof(proof, state))
    reason = f.text("reason") or f"consent import of {file}"
    f.check("reason", lambda: require_reason(reason, "a consent change"))
    effective_at = f.stamp("effective_at")
    expires_at = f.stamp("expires_at")
    synthetic = f.flag("synthetic")
    if effective_at is not None and effective_at > now + _FUTURE_SLACK:
        f.refuse("effective_at", "is in the future", "give the time the consent was given")
    if expires_at is not None and expires_at <= (effective_at or now):
        f.refuse(
            "expires_at",
            "is not after effective_at (or now)",
            "give an expiry after the time the consent takes effect, or leave it empty",
        )
    if f.errors or identifier is None or scope is None or state is None:
        return f.errors
    return ConsentImportRow(
        row=row_number,
        identifier=identifier,
        scope=scope,
        state=state,
        effective_at=effective_at,
        expires_at=expires_at,
        source=source,
        captured_by=proof.captured_by or None,
        wording_version=proof.wording_version,
        wording_hash=proof.wording_hash,
        evidence=proof.evidence,
        reason=reason,
        synthetic=synthetic,
    )


def import_consents(
    path: Path,
    *,
    consents: ConsentService,
    profiles: ProfileService,
    audit: AuditTrail,
    clock: Clock,
    actor: Actor,
    progress: Callable[[int], None] | None = None,
    recording: Callable[[int], None] | None = None,
) -> ConsentImportReport:
    """Validate the whole file, then record every valid row in one transaction.

    ``progress`` is told of rows validated, ``recording`` of rows recorded.
    """
    report = ConsentImportReport(file=str(path))
    now = clock.now()
    valid: list[tuple[ConsentImportRow, Mapping[str, object]]] = []
    rejected: dict[int, Mapping[str, object]] = {}
    columns: list[str] = []
    for chunk in read_chunks(path):
        columns = chunk.columns
        header = check_column_set(chunk.columns, known=CONSENT_COLUMNS, file=path.name)
        if header:
            raise ValidationFailedError(
                "; ".join(f"{e.field}: {e.reason}" for e in header),
                field=header[0].field,
                fix=header[0].fix,
            )
        for number, row in chunk.numbered():
            report.rows += 1
            result = validate_consent_row(row, row_number=number, file=path.name, now=now)
            if isinstance(result, list):
                report.rejected.extend(result)
                rejected[number] = row
            else:
                valid.append((result, row))
        for number, text in chunk.bad_lines:
            report.rows += 1
            report.rejected.append(
                RowError(path.name, number, "line", "", text[:200], "fix the line")
            )
            rejected[number] = {}
        if progress is not None:
            progress(chunk.size + len(chunk.bad_lines))
    owners: dict[str, str | None] = {}
    items: list[dict[str, Any]] = []
    digest = file_sha256(path)
    for entry, given in valid:
        if entry.identifier not in owners:
            owners[entry.identifier] = profiles.find_by_identifier(entry.identifier)
        hcp_id = owners[entry.identifier]
        if hcp_id is None:
            report.rejected.append(
                RowError(
                    path.name,
                    entry.row,
                    "identifier",
                    entry.identifier,
                    "unknown HCP",
                    "import the HCP first (counterpoint import hcps FILE)",
                )
            )
            rejected[entry.row] = given
            continue
        items.append(
            {
                "hcp_id": hcp_id,
                "subject": entry.identifier,
                "scope": entry.scope,
                "state": entry.state,
                "proof": Proof(
                    source=entry.source,
                    captured_by=entry.captured_by or actor.name,
                    wording_version=entry.wording_version,
                    wording_hash=entry.wording_hash,
                    evidence=entry.evidence,
                ),
                "actor": actor,
                "reason": entry.reason,
                "effective_at": entry.effective_at,
                "expires_at": entry.expires_at,
                "dedupe_key": f"import:{digest}:{entry.row}",
                "synthetic": entry.synthetic,
            }
        )
    if rejected:
        report.reject_file = write_rejects(path, columns, sorted(rejected.items()), report.rejected)

    def summary(session: Any, results: list[ConsentRecord | None]) -> None:
        report.recorded = sum(r is not None for r in results)
        report.unchanged = len(results) - report.recorded
        audit.record(
            session,
            actor,
            "consent.import",
            "file",
            path.name,
            after={
                "sha256": digest,
                "rows": report.rows,
                "recorded": report.recorded,
                "unchanged": report.unchanged,
                "rejected": report.rejected_rows,
            },
            reason=f"consent import of {path.name}",
        )

    try:
        consents.record_all(items, then=summary, progress=recording)
    except CounterpointError as exc:  # a rule the row check missed: nothing was recorded
        raise ValidationFailedError(
            f"nothing was imported: {exc.detail}",
            field=exc.field,
            fix=exc.fix or "correct the file and import it again",
        ) from None
    return report
