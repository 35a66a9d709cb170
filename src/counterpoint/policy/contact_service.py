"""Use cases of contact policy: versioned policy documents per market, do-not-contact entries,
hard-bounce suppressions, the HCP's own contact preferences (each change audited in its
transaction), and the bulk reads of the facts the guard needs."""

from __future__ import annotations

import datetime as dt
import enum
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    String,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import BindParameter

from counterpoint.consent.ledger import ConsentChannel
from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import Clock
from counterpoint.kit.db import Reader, UtcDateTime, connection_of
from counterpoint.policy.audit import Actor, AuditTrail, require_reason
from counterpoint.policy.contact import (
    ContactPolicy,
    default_policy,
    parse_policies,
    parse_policy,
    policy_document,
)
from counterpoint.policy.guard import HCP_FREQUENCY_DAYS, DncEntry, TouchDay
from counterpoint.policy.policy_models import (
    ContactPolicyVersion,
    ContactPreference,
    DoNotContact,
    Suppression,
    TouchDayRow,
    TouchLast,
)
from counterpoint.profile.service import HcpRef

__all__ = [
    "ALL_CHANNELS",
    "MAX_PROMOTIONAL_PER_MONTH",
    "PREFERENCE_ACTION",
    "ContactFacts",
    "ContactService",
    "PreferenceSource",
]

ALL_CHANNELS = "all"
_IN_BATCH = 500
_SUBJECTS: BindParameter[list[str]] = bindparam("subjects", expanding=True)
# Built once: the guard runs these on every check (statement caching, plain rows).
_TOUCHES = select(
    TouchDayRow.subject,
    TouchDayRow.day,
    TouchDayRow.channel,
    TouchDayRow.brand,
    TouchDayRow.touches,
    TouchDayRow.reported_touches,
    TouchDayRow.reported_minutes,
    TouchDayRow.promotional,
).where(TouchDayRow.subject.in_(_SUBJECTS), TouchDayRow.day >= bindparam("since"))
_LAST_AND_SUPPRESSED = union_all(
    select(
        literal("last").label("kind"), TouchLast.subject, TouchLast.channel, TouchLast.last_at
    ).where(TouchLast.subject.in_(_SUBJECTS)),
    select(
        literal("suppressed"),
        Suppression.subject,
        Suppression.channel,
        cast(null(), UtcDateTime()),
    ).where(Suppression.subject.in_(_SUBJECTS), Suppression.lifted_at.is_(None)),
)
"""Last touches and active suppressions in one round trip (a guard check is hot)."""
_BY_ALIAS: CompoundSelect[Any] = union_all(
    select(
        literal("dnc").label("kind"),
        DoNotContact.hcp_id,
        DoNotContact.channel.label("code"),
        DoNotContact.reason,
        cast(null(), Integer()).label("limit"),
        cast(null(), UtcDateTime()).label("set_at"),
    ).where(DoNotContact.hcp_id.in_(bindparam("ids", expanding=True))),
    select(
        literal("preference"),
        ContactPreference.hcp_id,
        ContactPreference.market,
        cast(null(), String()),
        ContactPreference.max_promotional_per_month,
        ContactPreference.set_at,
    ).where(ContactPreference.hcp_id.in_(bindparam("ids", expanding=True))),
)
"""Do-not-contact entries and the HCP's own limits in one round trip (a guard check is hot)."""


PREFERENCE_ACTION = "hcp.contact_frequency"
"""Audit action of a change of the HCP's own preference: before/after hold
``max_promotional_per_month`` (None: no limit of its own), ``market`` and ``source``."""
MAX_PROMOTIONAL_PER_MONTH = 100
"""The highest limit that may be recorded (1 to this; None: no limit of the HCP's own)."""


class PreferenceSource(enum.StrEnum):
    """Where the HCP expressed its preference."""

    PREFERENCE_CENTRE = "preference_centre"
    API = "api"  # recorded by operations (phone, letter, …)


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


@dataclass
class ContactFacts:
    """What contact policy knows of one HCP (through all its ids and identifiers)."""

    touches: list[TouchDay] = field(default_factory=list)
    last_touch: dict[str, dt.datetime] = field(default_factory=dict)
    dnc: list[DncEntry] = field(default_factory=list)
    suppressed: set[ConsentChannel] = field(default_factory=set)
    max_promotional_per_month: int | None = None  # the HCP's own limit in its market


def _version_dict(row: ContactPolicyVersion | None, market: str) -> dict[str, Any]:
    if row is None:
        return {
            "market": market,
            "version": None,
            "builtin": True,
            "document": policy_document(default_policy(market)),
        }
    return {
        "market": row.market,
        "version": row.version,
        "builtin": False,
        "document": row.document,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "reason": row.reason,
    }


def _dnc_dict(row: DoNotContact) -> dict[str, Any]:
    return {
        "hcp_id": row.hcp_id,
        "channel": row.channel,
        "reason": row.reason,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


def _suppression_dict(row: Suppression) -> dict[str, Any]:
    return {
        "identifier": row.subject,
        "channel": row.channel,
        "since": row.since,
        "message_id": row.message_id,
        "lifted_at": row.lifted_at,
        "lifted_by": row.lifted_by,
        "lift_reason": row.lift_reason,
    }


def _preference_dict(row: ContactPreference) -> dict[str, Any]:
    return {
        "hcp_id": row.hcp_id,
        "market": row.market,
        "max_promotional_per_month": row.max_promotional_per_month,
        "set_at": row.set_at,
        "source": row.source,
        "set_by": row.set_by,
    }


def _no_preference(hcp_id: str, market: str) -> dict[str, Any]:
    return {
        "hcp_id": hcp_id,
        "market": market,
        "max_promotional_per_month": None,
        "set_at": None,
        "source": None,
        "set_by": None,
    }


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_PROMOTIONAL_PER_MONTH
    ):
        raise ValidationFailedError(
            f"{str(value)[:20]!r} is not a number of promotional messages per month",
            field="max_promotional_per_month",
            fix=f"give a whole number from 1 to {MAX_PROMOTIONAL_PER_MONTH},"
            " or null for no limit of the HCP's own",
        )
    return value


def _market(text: str) -> str:
    market = text.strip().upper()
    if len(market) != 2 or not market.isalpha() or not market.isascii():
        raise ValidationFailedError(
            f"{text[:10]!r} is not a market", field="market", fix="write e.g. DE or US"
        )
    return market


class ContactService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditTrail,
        clock: Clock,
        *,
        cache_seconds: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._audit = audit
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ContactPolicy]] = {}
        self._lock = threading.Lock()

    # --- policies -----------------------------------------------------------------------
    @staticmethod
    def _current(session: Session, market: str) -> ContactPolicyVersion | None:
        return session.scalars(
            select(ContactPolicyVersion)
            .where(ContactPolicyVersion.market == market)
            .order_by(ContactPolicyVersion.version.desc())
            .limit(1)
        ).first()

    def set_policies(self, document: Any, actor: Actor, reason: str | None) -> list[dict[str, Any]]:
        """Store a new version of each market's policy in ``document`` (audited)."""
        why = require_reason(reason, "a contact policy change")
        policies = parse_policies(document)
        out: list[dict[str, Any]] = []
        with self._sessions.begin() as session:
            for policy in policies:
                out.append(self._set_in(session, policy, actor, why))
        self.invalidate()
        return out

    def set_policy(
        self, market: str, document: Any, actor: Actor, reason: str | None
    ) -> dict[str, Any]:
        """Store a new version of one market's policy; the document's market must match."""
        market = _market(market)
        why = require_reason(reason, "a contact policy change")
        if isinstance(document, Mapping) and "market" not in document:
            document = {**document, "market": market}
        policy = parse_policy(document)
        if policy.market != market:
            raise ValidationFailedError(
                f"the document is for {policy.market}, not {market}",
                field="market",
                fix="send the policy of the market named in the address",
            )
        with self._sessions.begin() as session:
            result = self._set_in(session, policy, actor, why)
        self.invalidate()
        return result

    def _set_in(
        self, session: Session, policy: ContactPolicy, actor: Actor, why: str
    ) -> dict[str, Any]:
        current = self._current(session, policy.market)
        document = policy_document(policy)
        if current is not None and current.document == document:
            return {**_version_dict(current, policy.market), "changed": False}
        row = ContactPolicyVersion(
            market=policy.market,
            version=(current.version if current else 0) + 1,
            document=document,
            created_at=self._clock.now(),
            created_by=actor.name[:200],
            reason=why,
        )
        session.add(row)
        session.flush()
        self._audit.record(
            session,
            actor,
            "contact_policy.set",
            "contact_policy",
            policy.market,
            before={"version": current.version, "document": current.document} if current else None,
            after={"version": row.version, "document": document},
            reason=why,
        )
        return {**_version_dict(row, policy.market), "changed": True}

    def show(self, market: str) -> dict[str, Any]:
        """The policy in force in ``market`` (the built-in one when it has none)."""
        market = _market(market)
        with self._sessions() as session:
            return _version_dict(self._current(session, market), market)

    def history(self, market: str) -> list[dict[str, Any]]:
        market = _market(market)
        with self._sessions() as session:
            rows = session.scalars(
                select(ContactPolicyVersion)
                .where(ContactPolicyVersion.market == market)
                .order_by(ContactPolicyVersion.version)
            )
            return [_version_dict(r, market) for r in rows]

    def markets(self) -> list[str]:
        with self._sessions() as session:
            return sorted(session.scalars(select(ContactPolicyVersion.market).distinct()))

    def policy(self, market: str | None) -> ContactPolicy:
        """The policy for ``market``, cached for a few seconds (other processes' changes
        arrive within ``cache_seconds``; this process's own at once)."""
        key = (market or "").upper()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        with self._sessions() as session:
            row = self._current(session, key) if key else None
        policy = parse_policy(row.document) if row else default_policy(key or "ZZ")
        with self._lock:
            self._cache[key] = (now, policy)
        return policy

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    # --- do not contact -----------------------------------------------------------------
    def add_dnc(
        self, ref: HcpRef, channel: Channel | None, reason: str | None, actor: Actor
    ) -> dict[str, Any]:
        """Never contact this HCP on ``channel`` (None: any channel) until removed."""
        why = require_reason(reason, "a do-not-contact entry")
        key = channel.value if channel else ALL_CHANNELS
        with self._sessions.begin() as session:
            existing = session.get(DoNotContact, (ref.id, key))
            if existing is not None:
                return {**_dnc_dict(existing), "created": False}
            row = DoNotContact(
                hcp_id=ref.id,
                channel=key,
                reason=why,
                created_at=self._clock.now(),
                created_by=actor.name[:200],
            )
            session.add(row)
            session.flush()
            self._audit.record(
                session, actor, "dnc.add", "hcp", ref.id, after=_dnc_dict(row), reason=why
            )
            return {**_dnc_dict(row), "created": True}

    def remove_dnc(
        self, ref: HcpRef, channel: Channel | None, reason: str | None, actor: Actor
    ) -> dict[str, Any]:
        why = require_reason(reason, "removing a do-not-contact entry")
        key = channel.value if channel else ALL_CHANNELS
        with self._sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(DoNotContact).where(
                        DoNotContact.hcp_id.in_(ref.aliases), DoNotContact.channel == key
                    )
                )
            )
            if not rows:
                raise NotFoundError(
                    f"no do-not-contact entry on {key} for this HCP",
                    field="channel",
                    fix="list the entries: GET …/do-not-contact",
                )
            for row in rows:
                before = _dnc_dict(row)
                session.delete(row)
                self._audit.record(
                    session, actor, "dnc.remove", "hcp", ref.id, before=before, reason=why
                )
            return before

    def list_dnc(self, ref: HcpRef) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(
                select(DoNotContact)
                .where(DoNotContact.hcp_id.in_(ref.aliases))
                .order_by(DoNotContact.channel)
            )
            return [_dnc_dict(r) for r in rows]

    # --- suppressions -------------------------------------------------------------------
    def suppressions(self, ref: HcpRef, *, include_lifted: bool = False) -> list[dict[str, Any]]:
        with self._sessions() as session:
            query = select(Suppression).where(Suppression.subject.in_(ref.identifiers or ("",)))
            if not include_lifted:
                query = query.where(Suppression.lifted_at.is_(None))
            rows = session.scalars(query.order_by(Suppression.subject, Suppression.channel))
            return [_suppression_dict(r) for r in rows]

    def lift(
        self, ref: HcpRef, channel: ConsentChannel, reason: str | None, actor: Actor
    ) -> list[dict[str, Any]]:
        """Lift the HCP's suppressions on ``channel`` (e.g. after the address was fixed)."""
        why = require_reason(reason, "lifting a suppression")
        now = self._clock.now()
        out: list[dict[str, Any]] = []
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Suppression).where(
                    Suppression.subject.in_(ref.identifiers or ("",)),
                    Suppression.channel == channel.value,
                    Suppression.lifted_at.is_(None),
                )
            )
            for row in rows:
                before = _suppression_dict(row)
                row.lifted_at, row.lifted_by, row.lift_reason = now, actor.name[:200], why
                session.flush()
                after = _suppression_dict(row)
                self._audit.record(
                    session,
                    actor,
                    "suppression.lift",
                    "hcp",
                    ref.id,
                    before=before,
                    after=after,
                    reason=why,
                )
                out.append(after)
        if not out:
            raise NotFoundError(
                f"no active suppression on {channel.value} for this HCP",
                field="channel",
                fix="list them: GET …/suppressions",
            )
        return out

    # --- the HCP's own contact preferences ---------------------------------------------
    @staticmethod
    def _preference_rows(session: Session, ref: HcpRef, market: str) -> list[ContactPreference]:
        return list(
            session.scalars(
                select(ContactPreference).where(
                    ContactPreference.hcp_id.in_(ref.aliases or (ref.id,)),
                    ContactPreference.market == market,
                )
            )
        )

    @staticmethod
    def _current_of(rows: Sequence[ContactPreference], hcp_id: str) -> ContactPreference | None:
        """The preference in force: the newest of the HCP's ids (merged records), the HCP's
        own id first on a tie."""
        if not rows:
            return None
        return max(rows, key=lambda r: (r.set_at, r.hcp_id == hcp_id))

    def preference_in(self, session: Session, ref: HcpRef, market: str) -> int | None:
        """The HCP's own limit on promotional messages per month in ``market`` (None: none)."""
        row = self._current_of(self._preference_rows(session, ref, _market(market)), ref.id)
        return row.max_promotional_per_month if row else None

    def set_preference_in(
        self,
        session: Session,
        ref: HcpRef,
        market: str,
        max_promotional_per_month: int | None,
        *,
        source: PreferenceSource,
        actor: Actor,
        reason: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Store the HCP's limit in the caller's transaction, audited (before/after) when it
        changes. Returns (the preference, whether it changed)."""
        why = require_reason(reason, "a contact preference")
        market = _market(market)
        limit = _limit(max_promotional_per_month)
        rows = self._preference_rows(session, ref, market)
        current = self._current_of(rows, ref.id)
        if current is not None and current.max_promotional_per_month == limit:
            return _preference_dict(current), False
        if current is None and limit is None:
            return _no_preference(ref.id, market), False
        before = _preference_dict(current) if current else None
        row = next((r for r in rows if r.hcp_id == ref.id), None)
        if row is None:
            row = ContactPreference(hcp_id=ref.id, market=market)
            session.add(row)
        row.max_promotional_per_month = limit
        row.set_at = self._clock.now()
        row.source = source.value
        row.set_by = actor.name[:200]
        for stale in rows:  # the HCP's other ids (merged records) follow the new value
            if stale is not row:
                session.delete(stale)
        session.flush()
        after = _preference_dict(row)
        self._audit.record(
            session,
            actor,
            PREFERENCE_ACTION,
            "hcp",
            ref.id,
            before=before,
            after=after,
            reason=why,
        )
        return after, True

    def set_preference(
        self,
        ref: HcpRef,
        market: str,
        max_promotional_per_month: int | None,
        *,
        source: PreferenceSource,
        actor: Actor,
        reason: str | None,
    ) -> dict[str, Any]:
        """Store the HCP's limit in its own transaction (see ``set_preference_in``)."""
        with self._sessions.begin() as session:
            result, changed = self.set_preference_in(
                session,
                ref,
                market,
                max_promotional_per_month,
                source=source,
                actor=actor,
                reason=reason,
            )
        return {**result, "changed": changed}

    def preference(self, ref: HcpRef, market: str | None = None) -> dict[str, Any]:
        """The HCP's preference in ``market`` (default: its own market) and the promotional
        touches of the last 30 days it is measured against."""
        key = _market(market or ref.market or "")
        with self._sessions() as session:
            row = self._current_of(self._preference_rows(session, ref, key), ref.id)
            used = self.promotional_count(session, ref, self._clock.now())
        found = _preference_dict(row) if row else _no_preference(ref.id, key)
        return {**found, "hcp_id": ref.id, "promotional_last_30_days": used}

    @staticmethod
    def promotional_count(session: Session, ref: HcpRef, at: dt.datetime) -> int:
        """Promotional touches to the HCP (every identifier, channel and brand) in the
        30 UTC days up to ``at``: one indexed read."""
        if not ref.identifiers:
            return 0
        today = at.astimezone(dt.UTC).date()
        total = session.scalar(
            select(func.coalesce(func.sum(TouchDayRow.promotional), 0)).where(
                TouchDayRow.subject.in_(ref.identifiers),
                TouchDayRow.day >= today - dt.timedelta(days=HCP_FREQUENCY_DAYS - 1),
                TouchDayRow.day <= today,
            )
        )
        return int(total or 0)

    # --- facts for the guard (bulk) -----------------------------------------------------
    def facts_of(
        self, session: Reader, refs: Sequence[HcpRef], since: dt.date
    ) -> dict[str, ContactFacts]:
        """Touches since ``since``, last touches, do-not-contact entries, active
        suppressions and the HCP's own limit in its market, of many HCPs, in a few queries
        per 500 ids."""
        owner: dict[str, str] = {}
        alias_owner: dict[str, str] = {}
        for ref in refs:
            for key in ref.identifiers:
                owner[key] = ref.id
            for alias in ref.aliases:
                alias_owner[alias] = ref.id
        out = {ref.id: ContactFacts() for ref in refs}
        connection = connection_of(session)  # Core statements: no ORM overhead per query
        for part in _batches(owner):
            for subject, day, channel, brand, n, reported, minutes, promo in connection.execute(
                _TOUCHES, {"subjects": part, "since": since}
            ):
                out[owner[subject]].touches.append(
                    TouchDay(day, channel, brand or None, n, reported, minutes, promo)
                )
            for kind, subject, channel, last_at in connection.execute(
                _LAST_AND_SUPPRESSED, {"subjects": part}
            ):
                if kind == "suppressed":
                    out[owner[subject]].suppressed.add(ConsentChannel(channel))
                    continue
                last = out[owner[subject]].last_touch
                if channel not in last or last[channel] < last_at:
                    last[channel] = last_at
        markets = {ref.id: ref.market for ref in refs}
        newest: dict[str, tuple[dt.datetime, bool]] = {}
        for part in _batches(alias_owner):
            for kind, hcp_id, code, reason, limit, set_at in connection.execute(
                _BY_ALIAS, {"ids": part}
            ):
                if kind == "dnc":
                    entry = DncEntry(None if code == ALL_CHANNELS else Channel(code), reason)
                    out[alias_owner[hcp_id]].dnc.append(entry)
                    continue
                market = code
                owner_id = alias_owner[hcp_id]
                if market != markets[owner_id]:
                    continue
                rank = (set_at, hcp_id == owner_id)
                if owner_id not in newest or newest[owner_id] < rank:
                    newest[owner_id] = rank
                    out[owner_id].max_promotional_per_month = limit
        return out
