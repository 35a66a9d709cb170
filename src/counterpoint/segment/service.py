"""Use cases of segments: define, preview and count conditions, and keep membership current.

Membership lives in ``segment_member``; ``refresh`` (every HCP, in SQL) and ``evaluate_one``
(one HCP, in Python, as its events arrive) compare what the condition says now with it, and
each entry or exit becomes a ``segment_entered`` / ``segment_left`` event in the log. See
docs/segments.md.

Membership events and their message ids
---------------------------------------
An event's message id is ``segment:<name>:<version>:<hcp_id>:<entered|left>:<n>``, where
``n`` is the segment's *generation*: a counter (``segment.generation``) that every membership
transaction of the segment (a refresh, a delete, one HCP's change as its events arrive)
advances by one, and an HCP enters or leaves at most once per transaction. So

* repeats are distinct: an HCP that enters, leaves and enters again does so in three
  generations, three different ids (and re-creating a deleted segment continues its version
  and generation, never reusing an id);
* replays are idempotent: the change, its new generation and its events (in
  ``segment_pending_event``) are committed in one transaction, and the events are appended
  to the log afterwards under those stored ids. A crash before the commit leaves nothing (the
  next run decides afresh); a crash after it leaves the events pending, and the next
  ``flush`` (run before and after every refresh, and by the housekeeping job) appends them;
  one appended twice is a duplicate the log drops.

Membership events have no channel: conditions never count them as interactions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.errors import ConflictError, NotFoundError, ValidationFailedError
from counterpoint.event.canonical import Action, ActorType, EventKind, LogEvent
from counterpoint.event.log import EventLog
from counterpoint.kit.clock import Clock
from counterpoint.kit.ids import new_id
from counterpoint.policy.access import Principal
from counterpoint.policy.audit import Actor, AuditTrail
from counterpoint.profile.service import HcpRef, ProfileService
from counterpoint.segment.bulk import BulkEvaluator
from counterpoint.segment.conditions import (
    Condition,
    ConsentKey,
    consent_keys,
    dump_condition,
    evaluate,
    max_window_days,
    parse_condition,
)
from counterpoint.segment.facts import SegmentFacts
from counterpoint.segment.models import Segment
from counterpoint.segment.repository import SegmentRepository

__all__ = [
    "NAME_PATTERN",
    "SAMPLE_SIZE",
    "SOURCE",
    "SegmentDocument",
    "SegmentService",
    "message_id",
    "parse_segment",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")
SAMPLE_SIZE = 20
SOURCE = "segments"
_DOC_FIX = "a segment is {name, description, condition}; see docs/segments.md"
_FLUSH_PAGE = 50_000


@dataclass(frozen=True, slots=True)
class SegmentDocument:
    name: str
    description: str
    condition: Condition


def _name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValidationFailedError(
            f"{str(value)[:120]!r} is not a segment name",
            field=field,
            fix="1-100 characters: lower-case letters, digits, '_' and '-', starting with a "
            "letter or digit (e.g. cardio-kol)",
        )
    return value


def parse_segment(data: Any, *, name: str | None = None) -> SegmentDocument:
    """A segment document (``name``, ``description``, ``condition``) from parsed YAML or
    JSON; ``name`` given (the URL's) must match the document's when it has one. Errors name
    the field path and the fix."""
    if not isinstance(data, Mapping):
        raise ValidationFailedError(
            "a segment document is an object", field="document", fix=_DOC_FIX
        )
    unknown = sorted(str(k) for k in data if k not in ("name", "description", "condition"))
    if unknown:
        raise ValidationFailedError(f"unknown field {unknown[0]!r}", field=unknown[0], fix=_DOC_FIX)
    given = data.get("name", name)
    if name is not None and given != name:
        raise ValidationFailedError(
            f"the document names {str(given)[:120]!r}, not {name!r}",
            field="name",
            fix="a segment keeps its name; leave name out or give the same one",
        )
    description = data.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > 2000:
        raise ValidationFailedError(
            "description is text of at most 2000 characters", field="description", fix=_DOC_FIX
        )
    if "condition" not in data:
        raise ValidationFailedError("a segment needs a condition", field="condition", fix=_DOC_FIX)
    return SegmentDocument(_name(given), description, parse_condition(data["condition"]))


def message_id(name: str, version: int, hcp_id: str, entered: bool, generation: int) -> str:
    """The membership event's id (see the module docstring for why it is unique and stable)."""
    return f"segment:{name}:{version}:{hcp_id}:{'entered' if entered else 'left'}:{generation}"


def _segment_dict(row: Segment, members: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "condition": row.condition,
        "version": row.version,
        "members": members,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "refreshed_at": row.refreshed_at,
    }


def _audit_view(row: Segment) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "condition": row.condition,
        "version": row.version,
    }


@dataclass(frozen=True, slots=True)
class _Change:
    """The HCPs entering and leaving one segment, and what their events need."""

    entered: list[str]
    left: list[str]


class SegmentService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        engine: Engine,
        log: EventLog,
        profiles: ProfileService,
        facts: SegmentFacts,
        audit: AuditTrail,
        clock: Clock,
        *,
        wake: Callable[[int], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._profiles = profiles
        self._facts = facts
        self._audit = audit
        self._clock = clock
        self._wake = wake
        self.bulk = BulkEvaluator(engine, log)

    # --- definitions ------------------------------------------------------------------------
    def create(self, document: SegmentDocument, actor: Actor) -> dict[str, Any]:
        """A new segment at version 1 (no members until it is refreshed). A name used by a
        deleted segment continues its version."""
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo = SegmentRepository(session)
            row = repo.find(document.name, deleted=True)
            if row is not None and row.deleted_at is None:
                raise ConflictError(
                    f"a segment named {document.name!r} exists",
                    field="name",
                    fix="choose another name, or update it (counterpoint segment update)",
                )
            if row is None:
                row = Segment(id=new_id("seg"), name=document.name, version=1, generation=0)
                session.add(row)
            else:  # re-created: versions and generations go on, ids are never reused
                row.version += 1
                row.deleted_at = None
                row.refreshed_at = None
            row.description = document.description
            row.condition = dump_condition(document.condition)
            row.created_by = actor.name[:200]
            row.created_at = row.updated_at = now
            session.flush()
            self._audit.record(
                session, actor, "segment.create", "segment", row.name, after=_audit_view(row)
            )
            return _segment_dict(row, 0)

    def update(self, document: SegmentDocument, actor: Actor) -> dict[str, Any]:
        """A new version of the segment's description and condition (unchanged: none).
        Members stay until the next refresh evaluates the new condition."""
        with self._sessions.begin() as session:
            repo = SegmentRepository(session)
            row = self._get(repo, document.name)
            condition = dump_condition(document.condition)
            members = repo.member_counts().get(row.id, 0)
            if condition == row.condition and document.description == row.description:
                return {**_segment_dict(row, members), "changed": False}
            before = _audit_view(row)
            row.condition = condition
            row.description = document.description
            row.version += 1
            row.updated_at = self._clock.now()
            session.flush()
            self._audit.record(
                session,
                actor,
                "segment.update",
                "segment",
                row.name,
                before=before,
                after=_audit_view(row),
            )
            return {**_segment_dict(row, members), "changed": True}

    def get(self, name: str) -> dict[str, Any]:
        with self._sessions() as session:
            repo = SegmentRepository(session)
            row = self._get(repo, name)
            return _segment_dict(row, repo.member_counts().get(row.id, 0))

    def list(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            repo = SegmentRepository(session)
            counts = repo.member_counts()
            return [_segment_dict(row, counts.get(row.id, 0)) for row in repo.live()]

    def condition_of(self, name: str) -> Condition:
        """The stored condition of a live segment."""
        with self._sessions() as session:
            row = self._get(SegmentRepository(session), name)
            return parse_condition(row.condition)

    def delete(self, name: str, actor: Actor) -> dict[str, Any]:
        """Delete a segment: every member leaves it (with its ``segment_left`` event)."""
        self.flush()
        now = self._clock.now()
        with self._sessions() as session:
            row = self._get(SegmentRepository(session), name)
            segment_id, version = row.id, row.version
            leaving = SegmentRepository(session).members(segment_id)
        refs, synthetic = self._labels(leaving)
        with self._sessions.begin() as session:
            repo = SegmentRepository(session)
            generation = repo.next_generation(segment_id, version, now)
            if generation is None:
                raise self._changed(name)
            row = self._get(repo, name)
            members = repo.members(segment_id)
            if missing := members - leaving:  # entered since the first look
                more, more_synthetic = self._labels(missing)
                refs.update(more)
                synthetic |= more_synthetic
            self._apply(repo, row, generation, _Change([], sorted(members)), refs, synthetic, now)
            row.deleted_at = now
            self._audit.record(
                session, actor, "segment.delete", "segment", name, before=_audit_view(row)
            )
        self.flush()
        return {"name": name, "version": version, "left": len(members)}

    # --- evaluation ---------------------------------------------------------------------------
    def count(self, condition: Condition, *, viewer: Principal | None = None) -> int:
        """How many HCPs meet the condition now (those in the viewer's scope, if given)."""
        return int(self.bulk.evaluate(condition, self._clock.now(), within=viewer).num_rows)

    def preview(self, condition: Condition, *, viewer: Principal | None = None) -> dict[str, Any]:
        """What a condition selects now (in the viewer's scope, if given):

        * ``size``, and ``markets``: the size per market (``null``: HCPs without a market);
        * ``consent``: per consent channel, how many members the consent ledger allows to be
          contacted for the *promotional* purpose on that channel now, in their own market,
          for no particular brand and content type (a grant narrowed to one brand does not
          count), exactly as the guard would decide it; ``share`` is that number divided by
          ``size`` (``null`` when the segment is empty). HCPs without a market count as not
          allowed;
        * ``sample``: up to 20 member ids (the first by id).
        """
        now = self._clock.now()
        members = self.bulk.evaluate(condition, now, within=viewer)
        ids = members.column("hcp_id").to_pylist()
        markets = members.column("market").to_pylist()
        per_market: dict[str | None, int] = {}
        for market in markets:
            per_market[market] = per_market.get(market, 0) + 1
        keys = [ConsentKey(channel, Purpose.PROMOTIONAL) for channel in ConsentChannel]
        allowed = self.bulk.population.consent(keys, dict(zip(ids, markets, strict=True)), now)
        size = len(ids)
        coverage = []
        for i, key in enumerate(keys):
            n = sum(1 for held in allowed.values() if i in held)
            coverage.append(
                {
                    "channel": key.channel.value,
                    "purpose": key.purpose.value,
                    "allowed": n,
                    "share": n / size if size else None,
                }
            )
        return {
            "at": now,
            "size": size,
            "markets": [
                {"market": m, "size": n}
                for m, n in sorted(per_market.items(), key=lambda kv: (-kv[1], kv[0] or ""))
            ],
            "consent": coverage,
            "sample": ids[:SAMPLE_SIZE],
        }

    def refresh(self, name: str) -> dict[str, Any]:
        """Evaluate the segment for every HCP now and bring its members up to date: one
        ``segment_entered`` event per HCP that came in, one ``segment_left`` per HCP that
        went out. A second refresh with nothing changed writes nothing."""
        self.flush()
        now = self._clock.now()
        with self._sessions() as session:
            row = self._get(SegmentRepository(session), name)
            segment_id, version = row.id, row.version
            condition = parse_condition(row.condition)
            before = SegmentRepository(session).members(segment_id)
        result = self.bulk.evaluate(condition, now)
        wanted = set(result.column("hcp_id").to_pylist())
        refs, synthetic = self._labels((wanted - before) | (before - wanted))
        with self._sessions.begin() as session:
            repo = SegmentRepository(session)
            generation = repo.next_generation(segment_id, version, now)
            if generation is None:
                raise self._changed(name)
            row = self._get(repo, name)
            current = repo.members(segment_id)
            change = _Change(sorted(wanted - current), sorted(current - wanted))
            missing = set(change.entered + change.left) - refs.keys()
            if missing:  # changed since the first look (another evaluation ran)
                more, more_synthetic = self._labels(missing)
                refs.update(more)
                synthetic |= more_synthetic
            self._apply(repo, row, generation, change, refs, synthetic, now)
        self.flush()
        return {
            "name": name,
            "version": version,
            "at": now,
            "size": len(wanted),
            "entered": len(change.entered),
            "left": len(change.left),
            "entered_sample": change.entered[:SAMPLE_SIZE],
            "left_sample": change.left[:SAMPLE_SIZE],
        }

    def evaluate_one(self, hcp_id: str) -> dict[str, Any]:
        """Evaluate every segment for one HCP now (in Python, from its facts) and apply the
        same entries and exits as ``refresh`` would for it (used as events arrive). An HCP
        that is not a known profile (an anonymous visitor) is in no segment."""
        self.flush()
        now = self._clock.now()
        ref = self._profiles.resolve(hcp_id)
        with self._sessions() as session:
            repo = SegmentRepository(session)
            segments = [
                (s.id, s.name, s.version, parse_condition(s.condition)) for s in repo.live()
            ]
            current = repo.memberships_of(ref.id)
        wanted = self._wanted(ref, [(sid, cond) for sid, _, _, cond in segments], now)
        changed = [s for s in segments if (s[0] in wanted) != (s[0] in current)]
        entered: list[str] = []
        left: list[str] = []
        if changed:
            synthetic = self._synthetic([ref.id])
            with self._sessions.begin() as session:
                repo = SegmentRepository(session)
                for segment_id, name, version, _ in changed:
                    generation = repo.next_generation(segment_id, version, now)
                    if generation is None:  # edited or deleted meanwhile: its refresh decides
                        continue
                    row = self._get(repo, name)
                    inside = repo.is_member(segment_id, ref.id)
                    if (segment_id in wanted) == inside:
                        continue
                    change = _Change([ref.id], []) if not inside else _Change([], [ref.id])
                    self._apply(repo, row, generation, change, {ref.id: ref}, synthetic, now)
                    (entered if not inside else left).append(name)
            self.flush()
        return {"hcp_id": ref.id, "at": now, "entered": entered, "left": left}

    def _wanted(
        self, ref: HcpRef, segments: Sequence[tuple[str, Condition]], now: dt.datetime
    ) -> set[str]:
        if ref.kind != "hcp" or not segments:
            return set()
        keys = sorted({k for _, cond in segments for k in consent_keys(cond)})
        window = max(max_window_days(cond) for _, cond in segments)
        facts = self._facts.facts_of(ref, keys, window, now)
        return {segment_id for segment_id, cond in segments if evaluate(cond, facts, now)}

    # --- applying a change ------------------------------------------------------------------
    def _labels(self, hcp_ids: Iterable[str]) -> tuple[dict[str, HcpRef], set[str]]:
        """What membership events need of these HCPs: their live record (only those still
        live under their own id: an HCP merged away or erased leaves without an event, since
        its identifiers now belong to someone else or to nobody), and which are synthetic."""
        wanted = set(hcp_ids)
        if not wanted:
            return {}, set()
        refs = {
            hcp_id: ref
            for hcp_id, ref in self._profiles.resolve_many(wanted).items()
            if ref.id == hcp_id
        }
        return refs, self._synthetic(refs.keys())

    def _synthetic(self, hcp_ids: Iterable[str]) -> set[str]:
        with self._sessions() as session:
            return SegmentRepository(session).synthetic_among(hcp_ids)

    def _apply(
        self,
        repo: SegmentRepository,
        row: Segment,
        generation: int,
        change: _Change,
        refs: Mapping[str, HcpRef],
        synthetic: set[str],
        now: dt.datetime,
    ) -> None:
        """Members and pending events of one change, in the caller's transaction."""
        repo.add_members(row.id, change.entered, now)
        repo.remove_members(row.id, change.left)
        pending: list[dict[str, Any]] = []
        for entered, ids in ((True, change.entered), (False, change.left)):
            for hcp_id in ids:
                ref = refs.get(hcp_id)
                subject = ref.subject if ref is not None else None
                if ref is None or subject is None:
                    continue  # no identifier to write the event under (merged away, erased)
                pending.append(
                    {
                        "message_id": message_id(
                            row.name, row.version, hcp_id, entered, generation
                        ),
                        "subject": subject,
                        "action": (
                            Action.SEGMENT_ENTERED if entered else Action.SEGMENT_LEFT
                        ).value,
                        "occurred_at": now,
                        "market": ref.market,
                        "synthetic": hcp_id in synthetic,
                        "payload": {
                            "properties": {
                                "segment": row.name,
                                "version": row.version,
                                "hcp_id": hcp_id,
                            }
                        },
                    }
                )
        repo.add_pending(pending)

    def flush(self) -> int:
        """Append pending membership events to the log, then forget them; returns how many
        the log accepted (a repeat after a crash is a duplicate it drops)."""
        accepted = 0
        last = 0
        while True:
            with self._sessions() as session:
                rows = SegmentRepository(session).pending(_FLUSH_PAGE)
            if not rows:
                break
            events = [
                LogEvent(
                    message_id=r.message_id,
                    kind=EventKind.TRACK,
                    subject=r.subject,
                    occurred_at=r.occurred_at,
                    received_at=r.occurred_at,
                    source=SOURCE,
                    action=Action(r.action),
                    event_name=(
                        "Segment Entered" if r.action == Action.SEGMENT_ENTERED else "Segment Left"
                    ),
                    actor_type=ActorType.SYSTEM,
                    market=r.market,
                    payload=r.payload,
                    synthetic=r.synthetic,
                )
                for r in rows
            ]
            result = self._log.append(events)
            accepted += result.accepted
            last = result.last_seq
            with self._sessions.begin() as session:
                SegmentRepository(session).drop_pending(r.message_id for r in rows)
        if accepted and self._wake is not None:
            self._wake(last)
        return accepted

    # --- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _get(repo: SegmentRepository, name: str) -> Segment:
        row = repo.find(name)
        if row is None:
            raise NotFoundError(
                f"no segment named {name[:120]!r}",
                field="name",
                fix="list segments with `counterpoint segment list` (GET /api/v1/segments)",
            )
        return row

    @staticmethod
    def _changed(name: str) -> ConflictError:
        return ConflictError(
            f"the segment {name!r} was changed or deleted while it was evaluated",
            field="name",
            fix="run the refresh again",
        )
