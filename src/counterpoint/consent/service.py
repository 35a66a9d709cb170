"""Use cases of the consent ledger: record (with proof and an audit record), withdraw, read
the history, the state at any time, and the decision for one contact."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentDecision,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
    ScopeStatus,
    decide,
    fold,
)
from counterpoint.consent.models import ConsentRow
from counterpoint.errors import ValidationFailedError
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import Reader, connection_of
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.profile.validation import country_codes, normalise_market

__all__ = ["ConsentService", "record_dict", "status_dict"]

_CODE = re.compile(r"^[\w.\-]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_FUTURE_SLACK = dt.timedelta(minutes=5)


_TABLE = ConsentRow.__table__
_RECORDS_OF = (
    select(_TABLE)
    .where(
        or_(
            _TABLE.c.hcp_id.in_(bindparam("ids", expanding=True)),
            _TABLE.c.subject.in_(bindparam("subjects", expanding=True)),
        )
    )
    .order_by(_TABLE.c.seq)
)


def _row_record(row: Any) -> ConsentRecord:
    """A ledger row (ORM ``ConsentRow`` or a Core row of its table) as a record."""
    return ConsentRecord(
        seq=row.seq,
        hcp_id=row.hcp_id or row.subject or "",
        scope=ConsentScope(
            ConsentChannel(row.channel),
            Purpose(row.purpose),
            row.market,
            row.brand,
            row.content_type,
        ),
        state=ConsentState(row.state),
        effective_at=row.effective_at,
        recorded_at=row.recorded_at,
        expires_at=row.expires_at,
        proof=Proof(
            source=ConsentSource(row.source),
            captured_by=row.captured_by,
            wording_version=row.wording_version,
            wording_hash=row.wording_hash,
            ip=row.ip,
            user_agent=row.user_agent,
            evidence=row.evidence,
        ),
        reason=row.reason,
        synthetic=bool(row.synthetic),
    )


def _scope_dict(scope: ConsentScope) -> dict[str, Any]:
    return {
        "channel": scope.channel.value,
        "purpose": scope.purpose.value,
        "market": scope.market,
        "brand": scope.brand,
        "content_type": scope.content_type,
    }


def record_dict(record: ConsentRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "hcp_id": record.hcp_id,
        **_scope_dict(record.scope),
        "state": record.state.value,
        "effective_at": record.effective_at,
        "recorded_at": record.recorded_at,
        "expires_at": record.expires_at,
        "proof": {k: (v.value if k == "source" else v) for k, v in _proof_items(record.proof)},
        "reason": record.reason,
        "synthetic": record.synthetic,
    }


def _proof_items(proof: Proof) -> list[tuple[str, Any]]:
    return [(f.name, getattr(proof, f.name)) for f in dataclasses.fields(proof)]


def status_dict(status: ScopeStatus) -> dict[str, Any]:
    return {
        **_scope_dict(status.scope),
        "state": status.state.value,
        "since": status.since,
        "expires_at": status.expires_at,
        "record_seq": status.seq,
    }


def _check_scope(scope: ConsentScope) -> ConsentScope:
    market = normalise_market(scope.market)
    if market is None or market not in country_codes():
        raise ValidationFailedError(
            f"{scope.market[:10]!r} is not an ISO 3166-1 alpha-2 country code",
            field="market",
            fix="write a two-letter code such as DE or US",
        )
    for name in ("brand", "content_type"):
        value = getattr(scope, name)
        if value is not None and not _CODE.fullmatch(value):
            raise ValidationFailedError(
                f"{str(value)[:40]!r} is not a valid {name}",
                field=name,
                fix="use 1-64 letters, digits, . _ - (or leave it out for all)",
            )
    return dataclasses.replace(scope, market=market)


def _check_proof(proof: Proof, state: ConsentState) -> None:
    if proof.wording_hash is not None and not _HASH.fullmatch(proof.wording_hash):
        raise ValidationFailedError(
            "wording_hash is not a SHA-256 hex digest",
            field="wording_hash",
            fix="send the SHA-256 (64 lower-case hex digits) of the exact wording shown",
        )
    if state in (ConsentState.GRANTED, ConsentState.PENDING) and not proof.wording_version:
        raise ValidationFailedError(
            "a grant needs the version of the wording the HCP agreed to",
            field="wording_version",
            fix="send wording_version (and wording_hash) of the consent text shown",
        )
    if proof.source is ConsentSource.REP_CAPTURE and not proof.evidence:
        raise ValidationFailedError(
            "a consent captured by a rep needs the HCP's signature reference",
            field="evidence",
            fix="send the id of the captured signature in evidence",
        )


class ConsentService:
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
    def record_in(
        self,
        session: Session,
        *,
        hcp_id: str | None,
        subject: str | None,
        scope: ConsentScope,
        state: ConsentState,
        proof: Proof,
        actor: Actor,
        reason: str | None,
        effective_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
        dedupe_key: str | None = None,
        synthetic: bool = False,
    ) -> ConsentRecord | None:
        """Append one record and its audit record in ``session``'s transaction.

        Returns None when ``dedupe_key`` was recorded before (a retry or a replay).
        ``synthetic`` marks generated data (the synthetic market).
        """
        if hcp_id is None and subject is None:
            raise ValidationFailedError(
                "a consent record needs the HCP", field="hcp_id", fix="send hcp_id"
            )
        if state is ConsentState.EXPIRED:
            raise ValidationFailedError(
                "expired is reached through expires_at, not recorded",
                field="state",
                fix="record a grant with expires_at",
            )
        scope = _check_scope(scope)
        _check_proof(proof, state)
        why = require_reason(reason, "a consent change")
        now = self._clock.now()
        effective = effective_at or now
        if effective > now + _FUTURE_SLACK:
            raise ValidationFailedError(
                "effective_at is in the future",
                field="effective_at",
                fix="record consent when it is given (leave effective_at out for now)",
            )
        if expires_at is not None and expires_at <= effective:
            raise ValidationFailedError(
                "expires_at is not after effective_at",
                field="expires_at",
                fix="give an expiry after the time the consent takes effect",
            )
        if dedupe_key is not None and session.scalar(
            select(ConsentRow.seq).where(ConsentRow.dedupe_key == dedupe_key)
        ):
            return None
        row = ConsentRow(
            hcp_id=hcp_id,
            subject=subject,
            channel=scope.channel.value,
            purpose=scope.purpose.value,
            market=scope.market,
            brand=scope.brand,
            content_type=scope.content_type,
            state=state.value,
            effective_at=effective,
            recorded_at=now,
            expires_at=expires_at,
            source=proof.source.value,
            captured_by=proof.captured_by[:200],
            wording_version=proof.wording_version,
            wording_hash=proof.wording_hash,
            ip=proof.ip,
            user_agent=(proof.user_agent or "")[:300] or None,
            evidence=proof.evidence,
            reason=why,
            synthetic=synthetic,
            dedupe_key=dedupe_key,
        )
        session.add(row)
        session.flush()
        record = _row_record(row)
        self._audit.record(
            session,
            actor,
            f"consent.{state.value}",
            "hcp",
            hcp_id or self._audit.pseudonym(subject or ""),
            after=self._audited(record, subject),
            reason=why,
        )
        return record

    def _audited(self, record: ConsentRecord, subject: str | None) -> dict[str, Any]:
        """The record as the immutable audit trail keeps it: no identifier in clear and no
        personal proof details (address, agent, evidence); those stay in the ledger, which
        an erasure can pseudonymise."""
        kept = record_dict(record)
        kept["proof"] = {
            "source": record.proof.source.value,
            "wording_version": record.proof.wording_version,
            "wording_hash": record.proof.wording_hash,
        }
        if subject is not None:
            kept["hcp_id"] = record.hcp_id if record.hcp_id != subject else None
            kept["subject"] = self._audit.pseudonym(subject)
        return kept

    def record(self, **kwargs: Any) -> ConsentRecord | None:
        """``record_in`` in a transaction of its own; a racing duplicate is a no-op."""
        try:
            with self._sessions.begin() as session:
                return self.record_in(session, **kwargs)
        except IntegrityError:
            if kwargs.get("dedupe_key") is None:
                raise
            return None

    def record_all(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        then: Callable[[Session, list[ConsentRecord | None]], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[ConsentRecord | None]:
        """``record_in`` for every item (its keyword arguments) in one transaction: all are
        recorded or none is. ``then`` runs last in the same transaction (e.g. a summary audit
        record). None in the result marks an item recorded before (same ``dedupe_key``)."""
        out: list[ConsentRecord | None] = []
        with self._sessions.begin() as session:
            for start in range(0, len(items), 1000):
                for item in items[start : start + 1000]:
                    out.append(self.record_in(session, **item))
                if progress is not None:
                    progress(len(items[start : start + 1000]))
            if then is not None:
                then(session, out)
        return out

    def withdraw_in(
        self,
        session: Session,
        ref: HcpRef,
        channel: ConsentChannel,
        *,
        proof: Proof,
        actor: Actor,
        reason: str,
        purposes: Sequence[Purpose] | None = None,
        markets: Sequence[str] | None = None,
        dedupe_key: str | None = None,
    ) -> list[ConsentRecord]:
        """Revoke ``channel`` for the purposes (default: all) in the markets (default: the
        HCP's market and every market it holds records for). Takes effect at once."""
        if markets is None:
            held = {
                r.scope.market for r in self._records(session, ref) if r.scope.channel == channel
            }
            markets = sorted(held | ({ref.market} if ref.market else set()))
        if not markets:
            raise ValidationFailedError(
                "the HCP has no market to withdraw consent in",
                field="market",
                fix="name the market",
            )
        out: list[ConsentRecord] = []
        for market in markets:
            for purpose in purposes or list(Purpose):
                key = f"{dedupe_key}:{market}:{purpose.value}" if dedupe_key else None
                rec = self.record_in(
                    session,
                    hcp_id=ref.id,
                    subject=None,
                    scope=ConsentScope(channel, purpose, market),
                    state=ConsentState.REVOKED,
                    proof=proof,
                    actor=actor,
                    reason=reason,
                    dedupe_key=key,
                )
                if rec is not None:
                    out.append(rec)
        return out

    def withdraw(self, ref: HcpRef, channel: ConsentChannel, **kwargs: Any) -> list[ConsentRecord]:
        with self._sessions.begin() as session:
            return self.withdraw_in(session, ref, channel, **kwargs)

    # --- reading ------------------------------------------------------------------------
    def records_in(self, session: Reader, ref: HcpRef) -> list[ConsentRecord]:
        """``records`` inside the caller's session (hot paths: one guard check), through a
        prebuilt Core statement."""
        rows = connection_of(session).execute(
            _RECORDS_OF,
            {"ids": list(ref.aliases), "subjects": list(ref.identifiers) or [""]},
        )
        return [_row_record(r) for r in rows]

    def _records(self, session: Session, ref: HcpRef) -> list[ConsentRecord]:
        rows = session.scalars(
            select(ConsentRow)
            .where(
                or_(
                    ConsentRow.hcp_id.in_(ref.aliases),
                    ConsentRow.subject.in_(ref.identifiers or ("",)),
                )
            )
            .order_by(ConsentRow.seq)
        )
        return [_row_record(r) for r in rows]

    def records(self, ref: HcpRef) -> list[ConsentRecord]:
        """Every record of the HCP, oldest first (its ids and identifiers, across merges)."""
        with self._sessions() as session:
            return self._records(session, ref)

    def records_of_many(self, refs: Iterable[HcpRef]) -> dict[str, list[ConsentRecord]]:
        """Records per HCP id for many HCPs in one pass (batch decisions)."""
        refs = list(refs)
        owner: dict[str, str] = {}
        for ref in refs:
            for alias in ref.aliases:
                owner[alias] = ref.id
            for key in ref.identifiers:
                owner[key] = ref.id
        out: dict[str, list[ConsentRecord]] = {ref.id: [] for ref in refs}
        ids = sorted(owner)
        with self._sessions() as session:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                rows = connection_of(session).execute(_RECORDS_OF, {"ids": part, "subjects": part})
                seen: set[int] = set()
                for row in rows:
                    if row.seq in seen:
                        continue
                    seen.add(row.seq)
                    who = owner.get(row.hcp_id or "") or owner.get(row.subject or "")
                    if who is not None:
                        out[who].append(_row_record(row))
        for records in out.values():
            records.sort(key=lambda r: r.seq)
        return out

    def state(self, ref: HcpRef, at: dt.datetime | None = None) -> list[ScopeStatus]:
        """The state of every scope at ``at`` (default now): the audit question."""
        statuses = fold(self.records(ref), at or self._clock.now())
        return sorted(
            statuses.values(),
            key=lambda s: (s.scope.channel, s.scope.purpose, s.scope.market, s.scope.brand or ""),
        )

    def decide(
        self,
        ref: HcpRef,
        *,
        channel: ConsentChannel,
        purpose: Purpose,
        market: str,
        brand: str | None = None,
        content_type: str | None = None,
        at: dt.datetime | None = None,
    ) -> ConsentDecision:
        return decide(
            self.records(ref),
            channel=channel,
            purpose=purpose,
            market=market,
            brand=brand,
            content_type=content_type,
            at=at or self._clock.now(),
        )
