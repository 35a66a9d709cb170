"""Use cases of transfers of value: record (audited), list per HCP, import a file, export the
Open Payments and EFPIA disclosures, and pseudonymise on erasure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.kit.clock import Clock
from counterpoint.kit.files import file_sha256, read_chunks, write_rejects
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Principal
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.profile.records import RowError
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.transparency.exports import (
    EFPIA_COLUMNS,
    OPEN_PAYMENTS_COLUMNS,
    Recipient,
    Transfer,
    efpia_rows,
    open_payments_rows,
    to_csv,
)
from counterpoint.transparency.models import TransferRow
from counterpoint.transparency.rules import Form, Nature, TransferDraft, validate_transfer

__all__ = ["ExportFormat", "TransferImportReport", "TransferService", "transfer_dict"]

ExportFormat = Literal["open_payments", "efpia"]
IMPORT_COLUMNS = (
    "hcp",
    "amount",
    "currency",
    "nature",
    "form",
    "date",
    "brand",
    "product",
    "market",
    "description",
    "message_id",
    "external_id",
    "disclosure_consent",
)
_REQUIRED = ("hcp", "amount", "currency", "nature", "date")


@dataclass
class TransferImportReport:
    file: str
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    reject_file: Path | None = None


def transfer_dict(row: TransferRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "hcp_id": row.hcp_id,
        "external_id": row.external_id,
        "message_id": row.message_id,
        "amount": f"{row.amount:.2f}",
        "currency": row.currency,
        "nature": row.nature,
        "form": row.form,
        "date": row.paid_on.isoformat(),
        "brand": row.brand,
        "product": row.product,
        "market": row.market,
        "description": row.description,
        "disclosure_consent": row.disclosure_consent,
        "recorded_at": row.recorded_at,
        "recorded_by": row.recorded_by,
        "reason": row.reason,
    }


def _transfer(row: TransferRow) -> Transfer:
    return Transfer(
        id=row.id,
        hcp_id=row.hcp_id,
        amount=row.amount,
        currency=row.currency,
        nature=Nature(row.nature),
        form=Form(row.form),
        paid_on=row.paid_on,
        market=row.market,
        product=row.product,
        brand=row.brand,
        description=row.description,
        disclosure_consent=row.disclosure_consent,
    )


class TransferService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        audit: AuditTrail,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._audit = audit
        self._clock = clock

    # --- writing ------------------------------------------------------------------------
    def _add(
        self, session: Session, ref: HcpRef, draft: TransferDraft, actor: Actor, reason: str
    ) -> TransferRow | None:
        market = draft.market or ref.market
        if market is None:
            raise ValidationFailedError(
                "the HCP has no market and the transfer names none",
                field="market",
                fix="name the market (ISO country) the transfer is disclosed in",
            )
        if draft.external_id is not None and session.scalar(
            select(TransferRow.id).where(TransferRow.external_id == draft.external_id)
        ):
            return None
        row = TransferRow(
            id=new_id("tov"),
            hcp_id=ref.id,
            external_id=draft.external_id,
            message_id=draft.message_id,
            amount=draft.amount,
            currency=draft.currency,
            nature=draft.nature.value,
            form=draft.form.value,
            paid_on=draft.paid_on,
            brand=draft.brand,
            product=draft.product,
            market=market,
            description=draft.description,
            disclosure_consent=draft.disclosure_consent,
            recorded_at=self._clock.now(),
            recorded_by=actor.name[:200],
            reason=reason,
            synthetic=False,
        )
        session.add(row)
        session.flush()
        row.audit_seq = self._audit.record(
            session,
            actor,
            "transfer_of_value.record",
            "hcp",
            ref.id,
            # free text may name people: the immutable trail keeps it out
            after={
                k: v for k, v in transfer_dict(row).items() if k not in ("reason", "description")
            },
            reason=reason,
        )
        return row

    def record(
        self,
        hcp_id: str,
        values: Mapping[str, object],
        actor: Actor,
        reason: str | None,
        *,
        viewer: Principal | None = None,
    ) -> dict[str, Any]:
        """Validate and store one transfer to an HCP in the viewer's scope (audited)."""
        why = require_reason(reason, "a transfer of value")
        draft = validate_transfer(values, today=self._clock.now().date())
        ref = self._profiles.resolve(hcp_id, viewer=viewer)
        with self._sessions.begin() as session:
            row = self._add(session, ref, draft, actor, why)
            if row is None:
                raise CounterpointError(
                    f"a transfer with external_id {draft.external_id!r} is already recorded",
                    field="external_id",
                    fix="send each payment once (the external id identifies it)",
                )
            return transfer_dict(row)

    def of_hcp(self, ref: HcpRef) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(
                select(TransferRow)
                .where(TransferRow.hcp_id.in_(ref.aliases))
                .order_by(TransferRow.paid_on, TransferRow.id)
            )
            return [transfer_dict(r) for r in rows]

    def pseudonymise_in(self, session: Session, hcp_ids: Sequence[str], pseudonym: str) -> int:
        """Erasure: the transfers stay (a legal obligation to report them) under the pseudonym,
        without their free-text description and the event link."""
        result = session.execute(
            update(TransferRow)
            .where(TransferRow.hcp_id.in_(list(hcp_ids)))
            .values(hcp_id=pseudonym, description=None, message_id=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- imports ------------------------------------------------------------------------
    def import_file(self, path: Path, actor: Actor, reason: str | None) -> TransferImportReport:
        """Validate every row first, then store the valid ones in one transaction; rejected
        rows go to ``<file>.rejects.csv`` with their reasons. Rows with an ``external_id``
        already recorded are unchanged (an import can be run again)."""
        why = require_reason(reason, "an import of transfers of value")
        report = TransferImportReport(file=str(path))
        today = self._clock.now().date()
        valid: list[tuple[int, HcpRef, TransferDraft]] = []
        rejected: list[tuple[int, dict[str, object]]] = []
        columns: list[str] = []
        for chunk in read_chunks(path):
            columns = chunk.columns
            missing = [c for c in _REQUIRED if c not in chunk.columns]
            unknown = [c for c in chunk.columns if c not in IMPORT_COLUMNS]
            if missing or unknown:
                raise ValidationFailedError(
                    f"missing columns {missing}, unknown columns {unknown}",
                    field=(missing or unknown)[0],
                    fix="columns: " + ", ".join(IMPORT_COLUMNS),
                )
            for number, row in chunk.numbered():
                report.rows += 1
                try:
                    draft = validate_transfer(row, today=today)
                    ref = self._recipient(str(row.get("hcp") or ""))
                except CounterpointError as exc:
                    report.rejected.append(
                        RowError(
                            path.name,
                            number,
                            exc.field or "row",
                            str(row.get(exc.field or "", ""))[:200],
                            exc.detail,
                            exc.fix or "fix the row",
                        )
                    )
                    rejected.append((number, row))
                    continue
                valid.append((number, ref, draft))
            for number, text in chunk.bad_lines:
                report.rows += 1
                report.rejected.append(
                    RowError(path.name, number, "line", text[:200], "unreadable line", "fix it")
                )
        if rejected:
            report.reject_file = write_rejects(path, columns, rejected, report.rejected)
        with self._sessions.begin() as session:
            for _, ref, draft in valid:
                if self._add(session, ref, draft, actor, why) is None:
                    report.unchanged += 1
                else:
                    report.imported += 1
            self._audit.record(
                session,
                actor,
                "transfer_of_value.import",
                "file",
                path.name,
                after={
                    "sha256": file_sha256(path),
                    "rows": report.rows,
                    "imported": report.imported,
                    "unchanged": report.unchanged,
                    "rejected": len(report.rejected),
                },
                reason=why,
            )
        return report

    def _recipient(self, text: str) -> HcpRef:
        text = text.strip()
        if not text:
            raise ValidationFailedError("the HCP is missing", field="hcp", fix="name the HCP")
        if text.startswith("hcp_"):
            return self._profiles.resolve(text)
        found = self._profiles.resolve_identifier(text)
        if found is None:
            raise ValidationFailedError(
                f"no HCP has the identifier {text[:60]!r}",
                field="hcp",
                fix="import the HCP first, or use its id or another identifier",
            )
        return found

    # --- disclosure ---------------------------------------------------------------------
    def export(self, fmt: ExportFormat, year: int, market: str | None = None) -> str:
        """The disclosure file (CSV text) of one year."""
        if not 2000 <= year <= 2100:
            raise ValidationFailedError(
                f"{year} is not a reporting year", field="year", fix="write a year, e.g. 2026"
            )
        start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
        with self._sessions() as session:
            query = select(TransferRow).where(
                TransferRow.paid_on >= start, TransferRow.paid_on < end
            )
            if fmt == "open_payments":
                query = query.where(TransferRow.market == "US")
            elif market is not None:
                query = query.where(TransferRow.market == market)
            transfers = [_transfer(r) for r in session.scalars(query)]
        recipients = self._recipients({t.hcp_id for t in transfers})
        if fmt == "open_payments":
            return to_csv(OPEN_PAYMENTS_COLUMNS, open_payments_rows(transfers, recipients, year))
        return to_csv(EFPIA_COLUMNS, efpia_rows(transfers, recipients, year, market))

    def _recipients(self, hcp_ids: Iterable[str]) -> dict[str, Recipient]:
        out: dict[str, Recipient] = {}
        for hcp_id in hcp_ids:
            if hcp_id.startswith("erased:"):
                out[hcp_id] = Recipient(hcp_id, None, None, None, None, None, erased=True)
                continue
            try:
                profile = self._profiles.get_hcp(hcp_id)
            except CounterpointError:
                out[hcp_id] = Recipient(hcp_id, None, None, None, None, None, erased=True)
                continue
            ids = {i["type"]: i["value"] for i in profile["identifiers"]}
            out[hcp_id] = Recipient(
                hcp_id,
                profile["first_name"],
                profile["last_name"],
                ids.get("npi"),
                ids.get("national"),
                profile["specialty"],
            )
        return out
