"""The delivery worker: claims due outbox entries, asks the guard again, renders, hands each
adapter its batch, and records what happened (outbox state and delivery events).

One pass (``run_once``):
1. entries left ``sending`` by a stopped worker (lease expired) are recovered
   (``retry.after_lost_lease``: retried on idempotent channels, dead letters otherwise);
2. due ``pending`` entries are claimed under a lease, at most one per HCP per pass (so a cap
   or a minimum gap is judged with the previous send counted), with a conditional update that
   two workers cannot both win (``FOR UPDATE SKIP LOCKED`` on PostgreSQL);
3. the guard decides them again *now* (consent withdrawn, content withdrawn or expired, a cap
   reached since enqueueing: refused, never sent; refusals are recorded as events);
4. messages are composed and each adapter sends its batch over one connection;
5. delivery events (``sent``, ``delivered``, ``bounced``) are appended to the log with
   message ids derived from the entry (a repeat is a no-op), the touch counter catches up,
   and the entries' new states are committed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.channel.base import (
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.consent.ledger import Purpose
from counterpoint.delivery.compose import Composer
from counterpoint.delivery.models import Outbound, OutboxEntry
from counterpoint.delivery.retry import (
    Outcome,
    RetryPolicy,
    Status,
    Verdict,
    after_attempt,
    after_deferral,
    after_lost_lease,
)
from counterpoint.delivery.routing import Routes
from counterpoint.errors import CounterpointError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import fast_update
from counterpoint.policy.access import Role
from counterpoint.policy.guard_service import CheckRequest, GuardService
from counterpoint.profile.service import HcpRef, ProfileService, Recipient

__all__ = ["DeliveryWorker", "PassReport"]

_log = logging.getLogger(__name__)
_SOFT = re.compile(r"^4\d\d$")
_OUTBOX: Table = OutboxEntry.__table__  # type: ignore[assignment]
_CLAIMED = tuple(_OUTBOX.c[f.name] for f in dataclasses.fields(Outbound))
"""The columns a claim returns, in the order of ``Outbound``'s fields."""
_ACTOR = {
    Role.SALES_REP.value: ActorType.REP,
    Role.KAM.value: ActorType.KAM,
    Role.MSL.value: ActorType.MSL,
    Role.MEDICAL_AFFAIRS.value: ActorType.MEDICAL_AFFAIRS,
    Role.BRAND_MANAGER.value: ActorType.MARKETING,
    Role.MARKETING_OPS.value: ActorType.MARKETING,
}


@dataclass
class PassReport:
    claimed: int = 0
    sent: int = 0
    refused: int = 0
    retrying: int = 0
    deferred: int = 0
    dead: int = 0
    recovered: int = 0

    def add(self, other: PassReport) -> None:
        for name in ("claimed", "sent", "refused", "retrying", "deferred", "dead", "recovered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _Result:
    verdict: Verdict
    error: str | None = None
    code: str | None = None
    provider_id: str | None = None
    adapter: str | None = None
    delivered: bool = False  # acceptance is delivery (internal channels)
    hard_bounce: bool = False
    deferred: bool = False  # refused for now by timing rules; not an attempt


def _request(entry: Outbound) -> CheckRequest:
    return CheckRequest(
        hcp_id=entry.hcp_id,
        channel=Channel(entry.channel),
        purpose=Purpose(entry.purpose),
        brand=entry.brand,
        content_id=entry.content_id,
    )


class DeliveryWorker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        guard: GuardService,
        profiles: ProfileService,
        composer: Composer,
        routes: Routes,
        context: AdapterContext,
        log: EventLog,
        clock: Clock,
        *,
        settle: Callable[[], object] | None = None,
        policy: RetryPolicy | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._guard = guard
        self._profiles = profiles
        self._composer = composer
        self._routes = routes
        self._context = context
        self._log = log
        self._clock = clock
        self._settle = settle
        self.policy = policy or RetryPolicy()
        self._lease = lease
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:100]
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll_s = 1.0

    # --- running in the background ----------------------------------------------------------
    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="delivery", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self.close()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.run_once().claimed
            except Exception:  # logged; the entries' leases bring them back
                _log.exception("delivery pass failed; will retry")
                claimed = 0
                self._stop.wait(self.poll_s)
            if not claimed:
                self._wake.wait(timeout=self.poll_s)
                self._wake.clear()

    # --- one pass -------------------------------------------------------------------------
    def run_once(self, limit: int = 200) -> PassReport:
        report = PassReport()
        report.recovered = self._recover()
        entries = self._claim(limit)
        report.claimed = len(entries)
        if not entries:
            return report
        results, recipients = self._deliver(entries)
        self._finish(entries, results, recipients, report)
        return report

    def drain(self, limit: int = 200, max_passes: int = 1_000_000) -> PassReport:
        """Passes until nothing is due (tests, ``counterpoint send --now``, benchmarks)."""
        total = PassReport()
        for _ in range(max_passes):
            one = self.run_once(limit)
            total.add(one)
            if one.claimed == 0:
                break
        return total

    def close(self) -> None:
        self._routes.close()

    # --- recovering and claiming ----------------------------------------------------------
    def _recover(self) -> int:
        now = self._clock.now()
        with self._sessions.begin() as session:
            query = (
                select(OutboxEntry)
                .where(OutboxEntry.status == Status.SENDING.value, OutboxEntry.lease_until < now)
                .limit(1000)
            )
            if self._postgres:  # one recovering worker per entry
                query = query.with_for_update(skip_locked=True)
            stale = session.scalars(query).all()
            for entry in stale:
                try:
                    idempotent = self._routes.idempotent(Channel(entry.channel))
                except CounterpointError:
                    idempotent = False
                verdict = after_lost_lease(idempotent=idempotent, now=now)
                entry.status = verdict.status.value
                entry.lease_until = None
                entry.updated_at = now
                if verdict.status is Status.DEAD:
                    entry.error_code = verdict.dead_code
                    entry.last_error = (
                        "the worker stopped while sending; whether the message left is unknown "
                        "and this channel cannot de-duplicate, so it is not re-sent "
                        "automatically (replay it if it did not arrive)"
                    )
                else:
                    entry.next_attempt_at = verdict.next_attempt_at or now
            return len(stale)

    def _claim(self, limit: int) -> list[Outbound]:
        now = self._clock.now()
        with self._sessions.begin() as session:
            query = (
                select(OutboxEntry.id, OutboxEntry.hcp_id)
                .where(
                    OutboxEntry.status == Status.PENDING.value,
                    OutboxEntry.next_attempt_at <= now,
                )
                .order_by(OutboxEntry.next_attempt_at, OutboxEntry.id)
                .limit(limit * 4)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            seen: set[str] = set()
            ids: list[str] = []
            for entry_id, hcp_id in session.execute(query):
                if hcp_id not in seen:  # one per HCP per pass
                    seen.add(hcp_id)
                    ids.append(entry_id)
                if len(ids) >= limit:
                    break
            if not ids:
                return []
            claimed = session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(ids), _OUTBOX.c.status == Status.PENDING.value)
                .values(
                    status=Status.SENDING.value,
                    lease_until=now + self._lease,
                    claimed_by=self.name,
                    attempts=_OUTBOX.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*_CLAIMED)
            ).all()
        entries = [Outbound(*row) for row in claimed]
        return sorted(entries, key=lambda e: (e.next_attempt_at or now, e.id))

    # --- guard, compose, send -------------------------------------------------------------
    def _deliver(
        self, entries: Sequence[Outbound]
    ) -> tuple[dict[str, _Result], dict[str, Recipient]]:
        results: dict[str, _Result] = {}
        refs = self._profiles.resolve_many(e.hcp_id for e in entries)  # guard and composer
        allowed = self._recheck(entries, refs, results)
        if not allowed:
            return results, {}
        by_id = {e.id: e for e in allowed}
        messages, recipients = self._composer.compose_many(allowed, refs)
        batches: dict[str, list[OutboundMessage]] = defaultdict(list)
        for entry in allowed:
            composed = messages[entry.id]
            if isinstance(composed, PermanentDeliveryError):
                results[entry.id] = self._failed(entry, composed, None)
                continue
            try:
                instance = self._routes.instance_of(Channel(entry.channel))
            except CounterpointError as exc:
                results[entry.id] = self._failed(
                    entry, PermanentDeliveryError(exc.detail, code="no_route"), None
                )
                continue
            batches[instance.name].append(composed)
        for name, batch in batches.items():
            outcomes = self._send(name, batch)
            for message, outcome in zip(batch, outcomes, strict=True):
                entry = by_id[message.outbox_id]
                if isinstance(outcome, Receipt):
                    results[entry.id] = _Result(
                        Verdict(Status.SENT),
                        provider_id=outcome.provider_id,
                        adapter=name,
                        delivered=outcome.delivered,
                    )
                else:
                    results[entry.id] = self._failed(entry, outcome, name)
        return results, recipients

    def _recheck(
        self,
        entries: Sequence[Outbound],
        refs: Mapping[str, HcpRef],
        results: dict[str, _Result],
    ) -> list[Outbound]:
        """The guard, now, as each entry's role. Refusals that time will lift defer the entry;
        others close it, and only those are recorded as ``refused`` events (once)."""
        now = self._clock.now()
        by_role: dict[str | None, list[Outbound]] = defaultdict(list)
        for entry in entries:
            by_role[entry.role].append(entry)
        allowed: list[Outbound] = []
        for role, group in by_role.items():
            decisions = self._guard.check_many(
                [_request(e) for e in group], role=Role(role) if role else None, refs=refs
            )
            final: list[Outbound] = []
            for entry, decision in zip(group, decisions, strict=True):
                if decision.allowed:
                    allowed.append(entry)
                    continue
                verdict = after_deferral(
                    decision.codes, queued_at=entry.created_at, now=now, policy=self.policy
                )
                results[entry.id] = _Result(
                    verdict,
                    error="; ".join(r.detail for r in decision.refusals),
                    code=",".join(decision.codes)[:64],
                    deferred=verdict.status is Status.PENDING,
                )
                if verdict.status is Status.REFUSED:
                    final.append(entry)
            if final:  # the same decisions again, this time recorded as events
                self._guard.check_many(
                    [_request(e) for e in final],
                    role=Role(role) if role else None,
                    actor=final[0].requested_by if role else None,
                    record_refusal=True,
                    refs=refs,
                )
        return allowed

    def _send(self, name: str, batch: list[OutboundMessage]) -> list[Receipt | DeliveryError]:
        try:
            adapter = self._routes.adapter(name, self._context)
            outcomes = adapter.send_many(batch)
        except Exception as exc:  # an adapter bug or a broken configuration: retry later
            _log.exception("adapter %s failed on a batch of %d", name, len(batch))
            reason = f"the {name} adapter failed: {type(exc).__name__}"
            return [TransientDeliveryError(reason, code="adapter_error") for _ in batch]
        if len(outcomes) != len(batch):
            reason = f"the {name} adapter answered {len(outcomes)} results for {len(batch)}"
            return [TransientDeliveryError(reason, code="adapter_error") for _ in batch]
        return outcomes

    def _failed(self, entry: Outbound, error: DeliveryError, adapter: str | None) -> _Result:
        now = self._clock.now()
        outcome = (
            Outcome.PERMANENT if isinstance(error, PermanentDeliveryError) else Outcome.TRANSIENT
        )
        verdict = after_attempt(
            outcome,
            attempts=entry.attempts,
            now=now,
            policy=self.policy,
            rng=self._rng,
            code=error.code,
        )
        hard = isinstance(error, PermanentDeliveryError) and error.hard_bounce
        return _Result(
            verdict, error=error.reason, code=error.code, adapter=adapter, hard_bounce=hard
        )

    # --- recording ------------------------------------------------------------------------
    def _finish(
        self,
        entries: Sequence[Outbound],
        results: Mapping[str, _Result],
        recipients: Mapping[str, Recipient],
        report: PassReport,
    ) -> None:
        now = self._clock.now()
        events: list[LogEvent] = []
        rows: list[dict[str, Any]] = []
        for entry in entries:
            result = results[entry.id]
            status = result.verdict.status
            row: dict[str, Any] = {
                "id": entry.id,
                "status": status.value,
                "lease_until": None,
                "updated_at": now,
                "adapter": result.adapter or entry.adapter,
                "error_code": (result.verdict.dead_code or result.code)
                if status is not Status.SENT
                else None,
                "last_error": result.error if status is not Status.SENT else None,
            }
            if status is Status.SENT:
                row["provider_id"] = result.provider_id
                row["sent_at"] = now
                report.sent += 1
            elif status is Status.PENDING:
                row["next_attempt_at"] = result.verdict.next_attempt_at
                if result.deferred:
                    row["attempts"] = entry.attempts - 1  # a deferral is not an attempt
                    report.deferred += 1
                else:
                    report.retrying += 1
            elif status is Status.REFUSED:
                report.refused += 1
            elif status is Status.DEAD:
                report.dead += 1
            rows.append(row)
            events.extend(self._events(entry, result, recipients.get(entry.hcp_id), now))
        if events:
            self._log.append(events)
            if self._settle is not None:
                self._settle()
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for row in rows:  # one executemany per set of columns written, the id last
            entry_id = row.pop("id")
            shapes[tuple(row)].append((*row.values(), entry_id))
        with self._sessions.begin() as session:
            for names, params in shapes.items():
                fast_update(session, _OUTBOX.name, names, params, key="id")

    @staticmethod
    def _events(
        entry: Outbound, result: _Result, recipient: Recipient | None, now: dt.datetime
    ) -> list[LogEvent]:
        subject = recipient.ref.subject if recipient else None
        if subject is None or recipient is None:
            return []
        status = result.verdict.status
        base: dict[str, Any] = {
            "kind": EventKind.TRACK,
            "subject": subject,
            "occurred_at": now,
            "received_at": now,
            "source": "delivery",
            "channel": Channel(entry.channel),
            "brand": entry.brand,
            "content_id": entry.content_id,
            "actor_type": _ACTOR.get(entry.role or "", ActorType.SYSTEM),
            "actor_id": (entry.requested_by or "system")[:200],
            "function": Function.MEDICAL
            if entry.purpose == Purpose.MEDICAL.value
            else Function.COMMERCIAL,
            "market": recipient.ref.market,
            "synthetic": recipient.synthetic,
        }
        props: dict[str, Any] = {
            "outbox_id": entry.id,
            "hcp_id": recipient.ref.id,
            "purpose": entry.purpose,
            "adapter": result.adapter,
        }
        out: list[LogEvent] = []
        if status is Status.SENT:
            props["provider_id"] = result.provider_id
            out.append(
                LogEvent(
                    message_id=f"delivery:{entry.id}:sent",
                    action=Action.SENT,
                    event_name=f"{entry.channel} sent",
                    payload={"properties": props},
                    **base,
                )
            )
            if result.delivered:
                out.append(
                    LogEvent(
                        message_id=f"delivery:{entry.id}:delivered",
                        action=Action.DELIVERED,
                        event_name=f"{entry.channel} delivered",
                        payload={"properties": props},
                        **base,
                    )
                )
        elif result.hard_bounce or (
            status is Status.PENDING
            and not result.deferred
            and result.code is not None
            and _SOFT.match(result.code)
        ):
            props.update(
                bounce_type="hard" if result.hard_bounce else "soft",
                code=result.code,
                reason=result.error,
            )
            out.append(
                LogEvent(
                    message_id=f"delivery:{entry.id}:bounced:{entry.attempts}",
                    action=Action.BOUNCED,
                    event_name=f"{entry.channel} bounced",
                    payload={"properties": props},
                    **base,
                )
            )
        return out
