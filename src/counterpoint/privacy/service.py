"""Use cases of privacy: export everything held about one HCP, and erase them (GDPR).

Erasure, in order: (1) the person's fingerprints are known to ingestion at once, so new
events are stored pseudonymised; (2) the event log is redacted (the person's events keep
their aggregates under the pseudonym) and quarantined entries naming them are deleted;
(3) in one transaction of the operational store: the customer record forgets them, their
engagement counts, consent records and transfers of value move to the pseudonym, the
erasure and fingerprints are stored, with the audit record; (4) the log is redacted once
more (events that arrived meanwhile) and the store files are compacted so that deleted
bytes do not linger. See docs/privacy.md.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pyarrow as pa
from sqlalchemy import String, delete, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.models import ConsentRow
from counterpoint.consent.service import ConsentService, record_dict
from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.event.canonical import LogEvent
from counterpoint.event.log import EventLog, QuarantineEntry, StoredEvent, TimelineQuery
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import Base
from counterpoint.kit.ids import stable_id
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.policy.audit import record_dict as audit_dict
from counterpoint.privacy.fingerprint import (
    fingerprint,
    pseudonym_for,
    scrub_event,
    scrub_text,
)
from counterpoint.privacy.models import ErasedIdentifier, Erasure
from counterpoint.profile.identifiers import parse_user_id
from counterpoint.profile.projector import ProfileProjector
from counterpoint.profile.repository import ProfileRepository
from counterpoint.profile.service import ProfileService
from counterpoint.profile.traits import trait_identifiers
from counterpoint.transparency.service import TransferService

__all__ = ["ErasureIndex", "ErasureResult", "PrivacyService"]


class ErasureIndex:
    """Fingerprint -> pseudonym of every erased identifier, cached in memory.

    Empty (nobody erased) costs one dictionary test per batch. Other processes' erasures are
    seen within ``refresh_s`` seconds; this process's own at once."""

    def __init__(
        self, sessions: sessionmaker[Session], secret: str, *, refresh_s: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._secret = secret
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._map: dict[str, str] = {}
        self._pending: dict[str, str] = {}
        self._loaded_at = float("-inf")

    def fingerprint(self, key: str) -> str:
        return fingerprint(key, self._secret)

    def reload(self) -> None:
        with self._sessions() as session:
            rows = session.execute(
                select(ErasedIdentifier.fingerprint, Erasure.pseudonym).join(
                    Erasure, Erasure.id == ErasedIdentifier.erasure_id
                )
            ).all()
        with self._lock:
            self._map = {**dict(rows), **self._pending}
            self._loaded_at = time.monotonic()

    def hold(self, fingerprints: Iterable[str], pseudonym: str) -> None:
        """Treat these as erased from now on in this process (before the erasure commits)."""
        with self._lock:
            for f in fingerprints:
                self._pending[f] = pseudonym
                self._map[f] = pseudonym

    def _current(self) -> dict[str, str]:
        if time.monotonic() - self._loaded_at > self._refresh_s:
            self.reload()
        return self._map

    def pseudonym_of(self, key: str) -> str | None:
        current = self._current()
        if not current:
            return None
        return current.get(self.fingerprint(key))

    def is_erased(self, key: str) -> bool:
        return self.pseudonym_of(key) is not None

    # --- ingestion hooks ----------------------------------------------------------------
    def _of_event(
        self, current: dict[str, str], subject: str, anon: str | None, kind: str, payload: Any
    ) -> str | None:
        keys = [subject]
        if anon:
            keys.append(f"anon:{anon}")
        if kind in ("identify", "alias"):
            data = msgspec.json.decode(payload) if isinstance(payload, str) else payload or {}
            traits = data.get("traits") if isinstance(data, dict) else None
            if isinstance(traits, dict):
                keys.extend(i.key for i in trait_identifiers(traits))
            previous = data.get("previous_id") if isinstance(data, dict) else None
            if isinstance(previous, str):
                keys.append(previous)
        for key in keys:
            found = current.get(self.fingerprint(key))
            if found is not None:
                return found
        return None

    def filter_events(self, events: list[LogEvent]) -> list[LogEvent]:
        current = self._current()
        if not current:
            return events
        out: list[LogEvent] = []
        for e in events:
            found = self._of_event(current, e.subject, e.anonymous_id, e.kind.value, e.payload)
            out.append(e if found is None else scrub_event(e, found))
        return out

    def filter_quarantine(self, entries: list[QuarantineEntry]) -> list[QuarantineEntry]:
        """Refused events of erased people are dropped, not kept for a fix and a replay."""
        current = self._current()
        if not current:
            return entries
        return [q for q in entries if not self._names_erased(current, q.raw)]

    def _names_erased(self, current: dict[str, str], raw: str) -> bool:
        try:
            data = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return False
        if not isinstance(data, dict):
            return False
        keys: list[str] = []
        for name in ("userId", "user_id", "previousId", "previous_id"):
            value = data.get(name)
            if isinstance(value, str) and value.strip():
                try:
                    keys.append(parse_user_id(value).key)
                except CounterpointError:
                    continue
        for name in ("anonymousId", "anonymous_id"):
            value = data.get(name)
            if isinstance(value, str) and value.strip():
                keys.append(f"anon:{value.strip()}")
        traits = data.get("traits")
        if isinstance(traits, dict):
            keys.extend(i.key for i in trait_identifiers(traits))
        return any(self.fingerprint(k) in current for k in keys)

    def filter_arrow(self, table: pa.Table) -> pa.Table:
        current = self._current()
        if not current or table.num_rows == 0:
            return table
        cols = table.select(["subject", "anonymous_id", "kind", "payload"]).to_pydict()
        found = [
            self._of_event(current, s, a, k, p)
            for s, a, k, p in zip(
                cols["subject"], cols["anonymous_id"], cols["kind"], cols["payload"], strict=True
            )
        ]
        if all(f is None for f in found):
            return table

        def replaced(name: str, value: Callable[[str], Any]) -> pa.Array:
            old = table.column(name).to_pylist()
            new = [o if f is None else value(f) for o, f in zip(old, found, strict=True)]
            return pa.array(new, type=table.schema.field(name).type)

        out = table
        for name, value in (
            ("subject", lambda f: f),
            ("payload", lambda _: "{}"),
            ("anonymous_id", lambda _: None),
            ("event_name", lambda _: None),
            ("actor_id", lambda _: None),
        ):
            out = out.set_column(out.schema.get_field_index(name), name, replaced(name, value))
        return out


@dataclass(frozen=True, slots=True)
class ErasureResult:
    pseudonym: str
    erased_at: dt.datetime
    events_redacted: int
    quarantine_deleted: int
    consent_records: int
    transfers: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    audit_seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pseudonym": self.pseudonym,
            "erased_at": self.erased_at,
            "events_redacted": self.events_redacted,
            "quarantine_deleted": self.quarantine_deleted,
            "consent_records_pseudonymised": self.consent_records,
            "transfers_pseudonymised": self.transfers,
            "rows_deleted": self.rows_deleted,
            "audit_seq": self.audit_seq,
        }


_SWEEP_COLUMNS = ("subject", "identifier", "hcp_id")
_KEPT_TABLES = frozenset(
    {
        "audit_record",
        "audit_head",
        "consent_record",
        "transfer_of_value",
        "erasure",
        "erased_identifier",
        "event_log",
        "quarantine",
    }
)


def _sweep(session: Session, keys: list[str]) -> dict[str, int]:
    """Delete rows of every other table of the store that name the person in a ``subject``,
    ``identifier`` or ``hcp_id`` column (suppressions, do-not-contact entries, touch counts,
    …): tables added later are covered without a change here. Derived rows come back under
    the pseudonym when their consumer replays the redacted log."""
    counts: dict[str, int] = {}
    if not keys:
        return counts
    for table in Base.metadata.sorted_tables[::-1]:
        if table.name in _KEPT_TABLES or table.info.get("store") == "event_log":
            continue
        for name in _SWEEP_COLUMNS:
            column = table.c.get(name)
            if column is None or not isinstance(column.type, String):
                continue
            result = session.execute(delete(table).where(column.in_(keys)))
            gone = int(result.rowcount)  # type: ignore[attr-defined]
            if gone:
                counts[table.name] = counts.get(table.name, 0) + gone
    return counts


def _event_dict(item: StoredEvent) -> dict[str, Any]:
    e = item.event
    return {
        "seq": item.seq,
        "message_id": e.message_id,
        "kind": e.kind.value,
        "identifier": e.subject,
        "anonymous_id": e.anonymous_id,
        "occurred_at": e.occurred_at,
        "received_at": e.received_at,
        "source": e.source,
        "channel": e.channel,
        "action": e.action,
        "event_name": e.event_name,
        "brand": e.brand,
        "content_id": e.content_id,
        "slide": e.slide,
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "function": e.function,
        "market": e.market,
        "payload": e.payload,
        "synthetic": e.synthetic,
    }


class PrivacyService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        projector: ProfileProjector,
        profiles: ProfileService,
        consents: ConsentService,
        transfers: TransferService,
        audit: AuditTrail,
        clock: Clock,
        index: ErasureIndex,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._projector = projector
        self._profiles = profiles
        self._consents = consents
        self._transfers = transfers
        self._audit = audit
        self._clock = clock
        self.index = index

    # --- export -------------------------------------------------------------------------
    def export(self, hcp_id: str, actor: Actor, reason: str | None) -> dict[str, Any]:
        """Everything held about one HCP, as one JSON-ready document (audited)."""
        why = require_reason(reason, "an export of personal data")
        ref = self._profiles.resolve(hcp_id)
        profile = self._profiles.get_hcp(ref.id)
        events: list[dict[str, Any]] = []
        before: tuple[dt.datetime, int] | None = None
        while True:
            _, page = self._profiles.timeline(
                ref.id, channel=None, brand=None, function=None, before=before, limit=500
            )
            events.extend(_event_dict(i) for i in page)
            if len(page) < 500:
                break
            before = (page[-1].event.occurred_at, page[-1].seq)
        consents = [record_dict(r) for r in self._consents.records(ref)]
        audit: dict[int, dict[str, Any]] = {}
        for object_id in sorted({*ref.aliases, *ref.identifiers}):
            for row in self._audit.iter_records(object_id=object_id):
                audit[row.seq] = audit_dict(row)
        transfers = self._transfers.of_hcp(ref)
        now = self._clock.now()
        with self._sessions.begin() as session:
            self._audit.record(
                session,
                actor,
                "hcp.export",
                "hcp",
                ref.id,
                after={
                    "events": len(events),
                    "consent_records": len(consents),
                    "audit_records": len(audit),
                    "transfers": len(transfers),
                },
                reason=why,
            )
        return {
            "format": "counterpoint.hcp-export/1",
            "generated_at": now,
            "synthetic": bool(profile["synthetic"]),
            "hcp_id": ref.id,
            "ids": list(ref.aliases),
            "identifiers": list(ref.identifiers),
            "profile": profile,
            "events": events,
            "consent_records": consents,
            "audit_records": [audit[s] for s in sorted(audit)],
            "transfers_of_value": transfers,
        }

    # --- erasure ------------------------------------------------------------------------
    def erase(self, hcp_id: str, actor: Actor, reason: str | None) -> ErasureResult:
        why = require_reason(reason, "an erasure")
        self._projector.catch_up()
        ref = self._profiles.resolve(hcp_id)
        profile = self._profiles.get_hcp(ref.id)
        keys = sorted(ref.identifiers)
        with self._sessions() as session:
            ids = sorted(
                {*ref.aliases, *ProfileRepository(session).origins_of(keys, list(ref.aliases))}
            )
        values = [k.partition(":")[2] for k in keys]
        names = [n for n in (profile["first_name"], profile["last_name"]) if n]
        needles = [*keys, *values, *names]
        mentioned = [n for n in needles if len(n) >= 3 and n.lower() in why.lower()]
        if mentioned:
            raise ValidationFailedError(
                "the reason names the person (the audit trail keeps it for ever)",
                field="reason",
                fix="say why without the person's name or identifiers, e.g. 'GDPR request "
                "ticket 1234'",
            )
        prints = {self.index.fingerprint(k): k.partition(":")[0] for k in keys}
        prints.update({self.index.fingerprint(f"hcp:{i}"): "hcp" for i in ids})
        pseudonym = pseudonym_for(self.index.fingerprint(k) for k in (keys or ids))
        self.index.hold(prints, pseudonym)
        redacted = self._log.redact(keys, pseudonym)
        purged = self._log.purge_quarantined([*keys, *values])
        now = self._clock.now()
        with self._sessions.begin() as session:
            deleted = self._forget_in(session, keys, ids, pseudonym, bool(profile["synthetic"]))
            consent = self._pseudonymise_consent(session, keys, ids, pseudonym, needles)
            transfers = self._transfers.pseudonymise_in(session, ids, pseudonym)
            deleted.update(_sweep(session, [*keys, *ids]))
            seq = self._audit.record(
                session,
                actor,
                "hcp.erase",
                "hcp",
                pseudonym,
                after={
                    "pseudonym": pseudonym,
                    "identifiers": len(keys),
                    "profile_ids": len(ids),
                    "events_redacted": redacted,
                    "quarantine_deleted": purged,
                    "consent_records": consent,
                    "transfers": transfers,
                    "rows_deleted": deleted,
                },
                reason=why,
            )
            erasure = session.scalar(select(Erasure).where(Erasure.pseudonym == pseudonym))
            if erasure is None:
                erasure = Erasure(
                    pseudonym=pseudonym,
                    erased_at=now,
                    erased_by=actor.name[:200],
                    audit_seq=seq,
                    events_redacted=redacted,
                )
                session.add(erasure)
                session.flush()
            else:
                erasure.events_redacted += redacted
            known = set(
                session.scalars(
                    select(ErasedIdentifier.fingerprint).where(
                        ErasedIdentifier.fingerprint.in_(list(prints))
                    )
                )
            )
            session.add_all(
                ErasedIdentifier(fingerprint=f, erasure_id=erasure.id, kind=kind[:16])
                for f, kind in prints.items()
                if f not in known
            )
        # Events that arrived while the store was being changed, and what the projector made
        # of them, are caught by a second pass (both passes are idempotent).
        late = self._log.redact(keys, pseudonym)
        if late:
            self._projector.catch_up()
        with self._sessions.begin() as session:
            self._forget_in(session, keys, ids, pseudonym, bool(profile["synthetic"]))
        self.index.reload()
        self._compact()
        return ErasureResult(
            pseudonym=pseudonym,
            erased_at=now,
            events_redacted=redacted + late,
            quarantine_deleted=purged,
            consent_records=consent,
            transfers=transfers,
            rows_deleted=deleted,
            audit_seq=seq,
        )

    def _forget_in(
        self, session: Session, keys: list[str], ids: list[str], pseudonym: str, synthetic: bool
    ) -> dict[str, int]:
        repo = ProfileRepository(session)
        had_events = bool(keys) and self._has_events(pseudonym)
        deleted = repo.erase(keys, ids, pseudonym)
        if had_events:
            # What the profile consumer would make of the redacted events on a replay: an
            # empty profile for the pseudonym, holding the engagement counts.
            profile_id = stable_id("hcp", pseudonym)
            now = self._clock.now()
            if not repo.existing_profiles([profile_id]):
                repo.insert_profiles(
                    [
                        {
                            "id": profile_id,
                            "kind": "hcp",
                            "master_data": False,
                            "segments": [],
                            "adoption_stage": {},
                            "synthetic": synthetic,
                            "merged_into": None,
                            "created_at": now,
                            "updated_at": now,
                        }
                    ]
                )
            repo.add_origins([(profile_id, pseudonym)], now)
            repo.set_identities(
                [{"key": pseudonym, "type": "erased", "hcp_id": profile_id, "first_seen": now}]
            )
        return deleted

    def _has_events(self, pseudonym: str) -> bool:
        return bool(self._log.timeline(TimelineQuery([pseudonym], limit=1)))

    @staticmethod
    def _pseudonymise_consent(
        session: Session, keys: list[str], ids: list[str], pseudonym: str, needles: list[str]
    ) -> int:
        rows = list(
            session.scalars(
                select(ConsentRow).where(
                    or_(ConsentRow.hcp_id.in_(ids), ConsentRow.subject.in_(keys or [""]))
                )
            )
        )
        for row in rows:
            session.execute(
                update(ConsentRow)
                .where(ConsentRow.seq == row.seq)
                .values(
                    hcp_id=pseudonym,
                    subject=pseudonym,
                    ip=None,
                    user_agent=None,
                    evidence=None,
                    reason=scrub_text(row.reason, needles),
                    dedupe_key=scrub_text(row.dedupe_key, needles),
                )
            )
        return len(rows)

    def _compact(self) -> None:
        """Make deleted bytes unreadable in the store files: SQLite keeps freed pages (and the
        write-ahead log) until it is vacuumed and checkpointed."""
        engine = self._sessions.kw["bind"]
        if engine is None or engine.dialect.name != "sqlite":
            return
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            conn.execute(text("VACUUM"))
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    def erased(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(select(Erasure).order_by(Erasure.id))
            return [
                {
                    "pseudonym": r.pseudonym,
                    "erased_at": r.erased_at,
                    "erased_by": r.erased_by,
                    "audit_seq": r.audit_seq,
                    "events_redacted": r.events_redacted,
                }
                for r in rows
            ]
