"""The audit trail: who changed what (before/after), when, why and from where.

Append-only and hash-chained: each record's SHA-256 covers its content and the previous
record's hash, and ``audit_head`` holds the newest link, so editing, deleting, reordering or
truncating records is detected by ``verify`` (``counterpoint audit verify``). A record is
written in the same transaction as the change it describes: no change without its record.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.errors import ValidationFailedError
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import upsert
from counterpoint.policy.access import Principal
from counterpoint.policy.models import AuditHead, AuditRecord
from counterpoint.privacy.fingerprint import pseudonymise_key

__all__ = ["GENESIS", "Actor", "AuditTrail", "Tampering", "record_hash"]

GENESIS = "0" * 64
_HEAD_ID = 1
_CHAIN_KEY = "counterpoint.audit.chain"
_REASON_MAX = 2000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, with which role, from where (client address and agent, or the CLI host)."""

    name: str
    role: str | None
    origin: str

    @classmethod
    def of(cls, principal: Principal, origin: str) -> Actor:
        return cls(principal.name, principal.role.value, origin)

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"cli:{user}", None, f"cli@{socket.gethostname()}")

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(f"system:{component}", None, "system")


@dataclass(frozen=True, slots=True)
class Tampering:
    seq: int | None
    problem: str


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """JSON-safe copy (times as ISO text) so what is hashed is exactly what is stored."""
    if value is None:
        return None
    plain: dict[str, Any] = json.loads(json.dumps(dict(value), default=str, sort_keys=True))
    return plain


def _at_text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def record_hash(
    *,
    seq: int,
    at: dt.datetime,
    actor: str,
    actor_role: str | None,
    action: str,
    object_type: str,
    object_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    reason: str | None,
    origin: str,
    prev_hash: str,
) -> str:
    body = json.dumps(
        [
            seq,
            _at_text(at),
            actor,
            actor_role,
            action,
            object_type,
            object_id,
            before,
            after,
            reason,
            origin,
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _row_hash(row: AuditRecord) -> str:
    return record_hash(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        actor_role=row.actor_role,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        before=row.before,
        after=row.after,
        reason=row.reason,
        origin=row.origin,
        prev_hash=row.prev_hash,
    )


def require_reason(reason: str | None, what: str) -> str:
    """A reason is required for consent changes, merges and approvals."""
    text = (reason or "").strip()
    if len(text) < 3:
        raise ValidationFailedError(
            f"a reason is required for {what}",
            field="reason",
            fix="say why in a few words (kept in the audit trail)",
        )
    if len(text) > _REASON_MAX:
        raise ValidationFailedError(
            f"the reason is longer than {_REASON_MAX} characters",
            field="reason",
            fix="shorten the reason",
        )
    return text


class AuditTrail:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *, secret: str) -> None:
        self._sessions = sessions
        self._clock = clock
        self._secret = secret

    def pseudonym(self, key: str) -> str:
        """An identifier key as an audit record may hold it (``npi:#3fa9…``): the trail is
        immutable, so it never holds an identifier an erasure would have to remove."""
        return pseudonymise_key(key, self._secret)

    def record(
        self,
        session: Session,
        actor: Actor,
        action: str,
        object_type: str,
        object_id: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> int:
        """Append one record inside the caller's transaction; returns its sequence number.

        The head row is updated first: that takes the write lock (row lock on PostgreSQL, the
        database write lock on SQLite) before the previous hash is read, so concurrent writers
        chain one after another and never fork the chain.
        """
        transaction = session.get_transaction()
        cached = session.info.get(_CHAIN_KEY)
        if cached is not None and cached[0] is transaction:
            # This transaction already holds the head's lock: chain on from memory.
            seq, prev = int(cached[1]) + 1, str(cached[2])
        else:
            bump = update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=AuditHead.seq + 1)
            if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
                # The first record ever: create the head (racing creators: one wins, all bump).
                upsert(
                    session,
                    AuditHead.__table__,
                    [{"id": _HEAD_ID, "seq": 0, "hash": GENESIS}],
                    keys=["id"],
                )
                session.execute(bump)
            head = session.execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == _HEAD_ID)
            ).one()
            seq, prev = int(head.seq), str(head.hash)
        at = self._clock.now()
        plain_before, plain_after = _plain(before), _plain(after)
        digest = record_hash(
            seq=seq,
            at=at,
            actor=actor.name,
            actor_role=actor.role,
            action=action,
            object_type=object_type,
            object_id=object_id,
            before=plain_before,
            after=plain_after,
            reason=reason,
            origin=actor.origin,
            prev_hash=prev,
        )
        session.add(
            AuditRecord(
                seq=seq,
                at=at,
                actor=actor.name,
                actor_role=actor.role,
                action=action,
                object_type=object_type,
                object_id=object_id,
                before=plain_before,
                after=plain_after,
                reason=reason,
                origin=actor.origin,
                prev_hash=prev,
                hash=digest,
            )
        )
        session.execute(
            update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=seq, hash=digest)
        )
        session.info[_CHAIN_KEY] = (transaction, seq, digest)
        return seq

    def key_change(self, actor: Actor, action: str) -> Callable[[Session, Any], None]:
        """A hook for write-key changes (``WriteKeys.create/revoke(on_commit=…)``)."""

        def write(session: Session, key: Any) -> None:
            self.record(
                session,
                actor,
                action,
                "write_key",
                key.id,
                after={"name": key.name, "trusted": key.trusted},
            )

        return write

    def iter_records(
        self,
        *,
        object_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        batch: int = 5000,
    ) -> Iterator[AuditRecord]:
        """Records in chain order, read in batches."""
        after = 0
        while True:
            query = select(AuditRecord).where(AuditRecord.seq > after)
            if object_id is not None:
                query = query.where(AuditRecord.object_id == object_id)
            if since is not None:
                query = query.where(AuditRecord.at >= since)
            if until is not None:
                query = query.where(AuditRecord.at < until)
            with self._sessions() as session:
                rows = list(session.scalars(query.order_by(AuditRecord.seq).limit(batch)))
            if not rows:
                return
            yield from rows
            after = rows[-1].seq

    def verify(self) -> tuple[int, list[Tampering]]:
        """Walk the chain; returns (records checked, problems found)."""
        problems: list[Tampering] = []
        expected_seq, prev, count = 1, GENESIS, 0
        for row in self.iter_records():
            count += 1
            if row.seq != expected_seq:
                problems.append(
                    Tampering(row.seq, f"records {expected_seq}..{row.seq - 1} are missing")
                )
            if row.prev_hash != prev:
                problems.append(Tampering(row.seq, "does not link to the previous record"))
            if _row_hash(row) != row.hash:
                problems.append(Tampering(row.seq, "content differs from what was recorded"))
            prev, expected_seq = row.hash, row.seq + 1
        with self._sessions() as session:
            head = session.get(AuditHead, _HEAD_ID)
        head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
        if head_seq != expected_seq - 1 or head_hash != prev:
            problems.append(
                Tampering(
                    None,
                    f"the chain ends at record {expected_seq - 1} but its head says {head_seq}: "
                    "records were removed from the end or the head was altered",
                )
            )
        return count, problems


def record_dict(row: AuditRecord) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": _at_text(row.at),
        "actor": row.actor,
        "actor_role": row.actor_role,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "before": row.before,
        "after": row.after,
        "reason": row.reason,
        "origin": row.origin,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
