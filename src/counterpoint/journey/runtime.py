"""The journey runtime: durable enrollments moved by entry, timers and events, exactly once.

Every step is the pure rule (``engine.advance``) between a read and a write:

1. **compute**: the enrollments to move are read, and each is advanced with the answers of
   ``oracle.World`` (gathered in bulk for the whole batch, see ``journey.oracle``);
2. **write**, in one transaction: each enrollment's new state, stored only where the row is
   still the state the step was computed from (same ``visits`` and ``status``; a row moved
   meanwhile is not overwritten and the batch is computed again), its transitions (the read
   model of journey analytics), the allowed sends and rep tasks in the outbox
   (``delivery.outbox.enqueue``: idempotency key = the effect's key, built from enrollment,
   node and visit) and the log events it produces (an ``identify`` with the new adoption
   stage, a goal) as pending rows;
3. after the commit, pending log events are appended to the log under deterministic message
   ids and deleted (a crash in between leaves them pending: the next flush appends them
   again and the log drops the duplicate).

So a crash (kill -9) at any moment either loses the whole step (it is computed again from
the same state: same answers, same keys) or keeps all of it; never a send without its
state, never a state without its send. On PostgreSQL the scheduler holds the rows of its
batch with ``FOR UPDATE SKIP LOCKED`` from read to commit, so several workers never take
the same step; on SQLite (one process) the conditional write is the claim.

What moves enrollments:

* **entry**: journeys with a segment or condition entry evaluate their audience in bulk
  (``segment.bulk``) when published or resumed and then every ``entry_interval_s``; new
  members (by the re-entry rule) are inserted in large batches as ``waiting`` at the entry
  node, due now, with ids ``<journey>:<hcp>:<n>``; the scheduler then starts them, so every
  step takes the one code path. Event-triggered entries come through the consumer.
* **timers**: due waiting enrollments (``wake_at <= now``), earliest first, in batches;
  those of paused journeys are left waiting (they fire late, after resume); those of a
  stopped journey exit with ``journey_stopped``.
* **events**: ``JourneyEventConsumer`` (checkpoint ``journey-engine``) reads the log behind
  the profile projector: each interaction's subject is mapped to its HCP in bulk per chunk;
  it enters event-triggered journeys and is the ``Interaction`` stimulus of that HCP's
  enrollments waiting for an event. Events of HCPs in no journey cost one lookup per chunk.

A step that cannot be taken (its version or node no longer exists, a condition cannot be
evaluated, a timer at a node that does not wait) ends the enrollment with a reason, logged
and recorded: no HCP is left stuck and no error stops the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from counterpoint.delivery.outbox import OutboundAction, enqueue
from counterpoint.errors import CounterpointError
from counterpoint.event.canonical import ActorType, EventKind, LogEvent
from counterpoint.event.consumer import LogConsumer
from counterpoint.event.log import EventLog, TimelineQuery
from counterpoint.event.models import ConsumerCheckpoint
from counterpoint.journey.definition import JourneyDocument, Node, WaitForEventNode
from counterpoint.journey.engine import (
    Effect,
    Enrollment,
    EnrollmentStatus,
    Entered,
    Exited,
    GoalReached,
    Interaction,
    Refused,
    RepTask,
    Send,
    Start,
    Step,
    Stimulus,
    Timer,
    UpdateAttribute,
    advance,
)
from counterpoint.journey.models import Journey, JourneyPendingEvent
from counterpoint.journey.oracle import (
    Answers,
    AskingOracle,
    Contact,
    Question,
    StepFailedError,
    World,
)
from counterpoint.journey.repository import JourneyRepository, LastEntry, TransitionRow
from counterpoint.kit.clock import Clock
from counterpoint.kit.heap import collector_paused
from counterpoint.profile.models import Hcp, Identity
from counterpoint.segment.service import SegmentService

__all__ = [
    "CONSUMER_NAME",
    "SOURCE",
    "DrainReport",
    "JourneyEventConsumer",
    "JourneyInfo",
    "JourneyRuntime",
    "StepConflictError",
    "logged_event",
]

_log = logging.getLogger(__name__)

SOURCE = "journeys"
"""The ``source`` of the log events journeys write."""
CONSUMER_NAME = "journey-engine"
MAX_ROUNDS = 10
"""Rounds of questions per batch (a refusal branch may ask again); far more than any flow
needs."""
_FLUSH_PAGE = 10_000
PASS_SHARE = 1_000
"""The least a journey with due timers is given of a scheduler pass (while the pass lasts):
when many journeys have a backlog, a pass steps a few of them, in turn, rather than a few
rows of each (scattered writes cost a third of the steps per second at 50 journeys)."""
_CONTACTS = frozenset({Send, RepTask})
_LOGGED = frozenset({UpdateAttribute, GoalReached})
ENTRY_LOOK_S = 1.0
"""How often the entry thread looks for journeys whose audience is due for evaluation."""


class StepConflictError(Exception):
    """An enrollment moved between the read and the write of a step (the batch is redone)."""


@dataclass(frozen=True, slots=True)
class JourneyInfo:
    id: str
    status: str
    current_version: int
    updated_at: dt.datetime


@dataclass
class DrainReport:
    entered: int = 0
    steps: int = 0
    events: int = 0
    flushed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class _Work:
    before: Enrollment
    stimulus: Stimulus


@dataclass(frozen=True, slots=True)
class _Outcome:
    before: Enrollment
    step: Step
    document: JourneyDocument | None


@dataclass(frozen=True, slots=True)
class _Version:
    """A journey version as its steps see it: the document and its node ids, or why its
    enrollments end (``ends``: the journey stopped, the version is unknown)."""

    document: JourneyDocument | None
    nodes: frozenset[str]
    ends: str | None


@dataclass
class _Batch:
    outcomes: list[_Outcome] = field(default_factory=list)
    answers: Answers = field(default_factory=Answers)
    contacts: bool = False
    """Some step enqueued a send or a rep task (delivery is woken)."""
    logged: bool = False
    """Some step wrote a log event (the pending events are flushed)."""


def message_id(enrollment_id: str, visit: int, kind: str) -> str:
    """The log message id of an event a step writes (deterministic: a replay repeats it)."""
    text = f"journey:{enrollment_id}:{visit}:{kind}"
    if len(text) <= 200:
        return text
    return "journey:" + hashlib.sha256(text.encode()).hexdigest()


def enrollment_id(journey_id: str, hcp_id: str, number: int) -> str:
    return f"{journey_id}:{hcp_id}:{number}"


def ended(state: Enrollment, reason: str) -> Step:
    """The enrollment leaves the journey at its node for ``reason`` (a recorded no-op)."""
    after = dataclasses.replace(
        state, status=EnrollmentStatus.EXITED, wake_at=None, exit_reason=reason[:64]
    )
    return Step(after, (Exited(state.node, reason[:64], completed=False),))


def may_enter(last: LastEntry | None, document: JourneyDocument, now: dt.datetime) -> int | None:
    """The number of the HCP's next entry, or None when the re-entry rule says no."""
    if last is None:
        return 1
    rule = document.flow.entry.re_entry
    if rule.policy == "never" or last.status == EnrollmentStatus.WAITING.value:
        return None
    if rule.min_days and now - last.entered_at < dt.timedelta(days=rule.min_days):
        return None
    return last.number + 1


def new_enrollment(
    journey_id: str, version: int, hcp_id: str, number: int, entry: str, now: dt.datetime
) -> dict[str, Any]:
    """The row of an HCP entering: waiting at the entry node, due now."""
    return {
        "id": enrollment_id(journey_id, hcp_id, number),
        "journey_id": journey_id,
        "version": version,
        "hcp_id": hcp_id,
        "entry_number": number,
        "node": entry,
        "status": EnrollmentStatus.WAITING.value,
        "entered_at": now,
        "node_entered_at": now,
        "wake_at": now,
        "arm": None,
        "visits": 0,
        "exit_reason": None,
        "updated_at": now,
    }


# --- effects as rows -----------------------------------------------------------------------------
def _place(document: JourneyDocument | None, node_id: str) -> tuple[str | None, str | None]:
    if document is None:
        return None, None
    node: Node | None = document.flow.by_id.get(node_id)
    if node is None:
        return None, None
    return node.touchpoint, document.stage_of(node)


def _transition(effect: Effect, answers: Answers) -> tuple[str, dict[str, Any] | None]:
    if isinstance(effect, Entered):
        return "entered", None
    if isinstance(effect, Send):
        contact = answers.contacts.get(effect.key)
        return "sent", {
            "channel": effect.channel.value,
            "content": effect.content,
            "content_id": contact.content_id if contact else None,
            "key": effect.key,
        }
    if isinstance(effect, RepTask):
        contact = answers.contacts.get(effect.key)
        return "task", {
            "channel": effect.channel.value,
            "content": effect.content,
            "rep": contact.rep if contact else None,
            "due_at": effect.due_at.isoformat(),
            "key": effect.key,
        }
    if isinstance(effect, Refused):
        return "refused", {"codes": list(effect.codes), "branch": effect.branch}
    if isinstance(effect, UpdateAttribute):
        return "updated", {"attribute": effect.attribute, "value": effect.value}
    if isinstance(effect, GoalReached):
        return "goal", {"goal": effect.goal}
    assert isinstance(effect, Exited)
    return ("completed" if effect.completed else "exited"), {"reason": effect.reason}


def _event_json(event: LogEvent) -> dict[str, Any]:
    data = dataclasses.asdict(event)
    for name in ("occurred_at", "received_at"):
        data[name] = data[name].isoformat()
    for name in ("kind", "channel", "action", "actor_type", "function"):
        if data[name] is not None:
            data[name] = str(data[name].value if hasattr(data[name], "value") else data[name])
    return data


def logged_event(data: Mapping[str, Any]) -> LogEvent:
    """A pending event's stored JSON as the ``LogEvent`` to append."""
    values = dict(data)
    values["kind"] = EventKind(values["kind"])
    values["occurred_at"] = dt.datetime.fromisoformat(values["occurred_at"])
    values["received_at"] = dt.datetime.fromisoformat(values["received_at"])
    if values.get("actor_type") is not None:
        values["actor_type"] = ActorType(values["actor_type"])
    return LogEvent(**values)


# --- the runtime ---------------------------------------------------------------------------------
class JourneyRuntime:
    """Entry, timers, events and the log flush of every journey (see the module doc)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        world: World,
        segments: SegmentService,
        clock: Clock,
        *,
        projected: Callable[[], int],
        batch: int = 500,
        entry_interval_s: float = 300.0,
        poll_s: float = 0.25,
        wake_delivery: Callable[[], object] | None = None,
        wake_consumers: Callable[[int], object] | None = None,
        settle: Callable[[], object] | None = None,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self.world = world
        self._segments = segments
        self._clock = clock
        self.batch = batch
        self.entry_interval_s = entry_interval_s
        self.poll_s = poll_s
        self._wake_delivery = wake_delivery
        self._wake_consumers = wake_consumers
        self._settle = settle
        self.lock = threading.RLock()
        """Held by every path that steps enrollments in this process (one writer at a time)."""
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        self._documents: dict[tuple[str, int], JourneyDocument | None] = {}
        self._nodes: dict[int, frozenset[str]] = {}
        self._seen: dict[str, tuple[str, int, dt.datetime]] = {}
        self._entered_at: dict[str, dt.datetime] = {}
        self._requested: set[str] = set()
        self._turn = 0
        self.consumer = JourneyEventConsumer(sessions, log, self, projected)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- journeys and their documents -----------------------------------------------------
    def journeys(self) -> dict[str, JourneyInfo]:
        with self._sessions() as session:
            rows = session.execute(
                select(Journey.id, Journey.status, Journey.current_version, Journey.updated_at)
            ).all()
        return {r[0]: JourneyInfo(r[0], r[1], r[2], r[3]) for r in rows}

    def document(self, journey_id: str, version: int) -> JourneyDocument | None:
        """A published version's document (None: no such version, or unreadable)."""
        key = (journey_id, version)
        if key not in self._documents:
            with self._sessions() as session:
                row = JourneyRepository(session).version(journey_id, version)
                data = row.document if row is not None else None
            document: JourneyDocument | None = None
            if data is not None:
                try:
                    document = JourneyDocument.model_validate(data)
                except ValueError:
                    _log.exception("journey %s version %s cannot be read", journey_id, version)
            self._documents[key] = document
        return self._documents[key]

    def _node_ids(self, document: JourneyDocument) -> frozenset[str]:
        key = id(document)
        found = self._nodes.get(key)
        if found is None:
            found = self._nodes[key] = frozenset(n.id for n in document.flow.nodes)
        return found

    # --- computing steps ------------------------------------------------------------------
    def _compute(self, work: Sequence[_Work], journeys: Mapping[str, JourneyInfo]) -> _Batch:
        """Advance every item with the world's answers, gathered in bulk (rounds)."""
        batch = _Batch()
        results: dict[str, _Outcome] = {}
        versions: dict[tuple[str, int], _Version] = {}
        pending = list(work)
        for _ in range(MAX_ROUNDS):
            questions: list[Question] = []
            again: list[_Work] = []
            for item in pending:
                state = item.before
                version = versions.get((state.journey, state.version))
                if version is None:
                    version = versions[(state.journey, state.version)] = self._version(
                        journeys, state.journey, state.version
                    )
                outcome, asked = self._one(item, version, batch.answers)
                results[state.id] = outcome
                if asked:
                    questions.extend(asked)
                    again.append(item)
            if not questions:
                break
            self.world.answer(batch.answers, questions)
            pending = again
        else:  # pragma: no cover - a flow asks at most a handful of questions per step
            for item in pending:
                results[item.before.id] = _Outcome(
                    item.before, ended(item.before, "step_unresolved"), None
                )
        batch.outcomes = [results[w.before.id] for w in work]
        return batch

    def _version(
        self, journeys: Mapping[str, JourneyInfo], journey_id: str, version: int
    ) -> _Version:
        """What every step of one journey version needs (looked up once per batch)."""
        info = journeys.get(journey_id)
        if info is None or info.status == "stopped":
            return _Version(None, frozenset(), "journey_stopped")
        document = self.document(journey_id, version)
        if document is None:
            return _Version(None, frozenset(), "unknown_version")
        return _Version(document, self._node_ids(document), None)

    @staticmethod
    def _one(item: _Work, version: _Version, answers: Answers) -> tuple[_Outcome, list[Question]]:
        state = item.before
        document = version.document
        if document is None:
            assert version.ends is not None
            return _Outcome(state, ended(state, version.ends), None), []
        if state.node not in version.nodes:
            _log.warning("enrollment %s waits at %r, not in its version", state.id, state.node)
            return _Outcome(state, ended(state, "unknown_node"), document), []
        oracle = AskingOracle(answers, state.hcp_id, document)
        try:
            step = advance(document, state, item.stimulus, oracle)
        except StepFailedError as exc:
            return _Outcome(state, ended(state, exc.reason), document), []
        except Exception:  # a step that cannot be taken must not stop the others
            _log.exception("enrollment %s: the step failed; it exits", state.id)
            return _Outcome(state, ended(state, "step_error"), document), []
        if oracle.questions:
            return _Outcome(state, step, document), oracle.questions
        if not step.effects and not isinstance(item.stimulus, Interaction):
            # a due timer at a node that does not wait (a version changed under it)
            return _Outcome(state, ended(state, "timer_without_wait"), document), []
        return _Outcome(state, step, document), []

    # --- writing steps --------------------------------------------------------------------
    def _write(self, session: Session, batch: _Batch, now: dt.datetime) -> int:
        """Store the batch's steps (see the module doc); StepConflictError when a row moved."""
        repo = JourneyRepository(session)
        changed = [o for o in batch.outcomes if o.step.effects]
        written = repo.store([(o.before, o.step.enrollment) for o in changed], now)
        if written != len(changed):
            raise StepConflictError(f"{len(changed) - written} enrollments moved meanwhile")
        transitions: list[TransitionRow] = []
        logging: list[_Outcome] = []
        for outcome in changed:
            transitions.extend(self._transitions(outcome, batch.answers, now))
            kinds = {type(e) for e in outcome.step.effects}
            if not kinds.isdisjoint(_CONTACTS):
                batch.contacts = True
                self._enqueue(session, outcome, batch.answers, now)
            if not kinds.isdisjoint(_LOGGED):
                logging.append(outcome)
        repo.add_transitions(transitions)
        if logging:
            batch.logged = True
            self.world.know(batch.answers, (o.before.hcp_id for o in logging))
            events = [e for o in logging for e in self._events(o, batch.answers)]
            synthetic = self._synthetic(session, (_hcp_of(e) for _, e in events))
            repo.add_pending(
                [
                    {
                        "message_id": mid,
                        "event": _event_json(
                            dataclasses.replace(event, synthetic=_hcp_of(event) in synthetic)
                        ),
                        "created_at": now,
                    }
                    for mid, event in events
                ]
            )
        return len(changed)

    @staticmethod
    def _synthetic(session: Session, hcp_ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(hcp_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            found.update(session.scalars(select(Hcp.id).where(Hcp.id.in_(part), Hcp.synthetic)))
        return found

    @staticmethod
    def _transitions(outcome: _Outcome, answers: Answers, now: dt.datetime) -> list[TransitionRow]:
        """One row per effect, at the visit it happened in (``Entered`` opens a visit)."""
        before, after, document = outcome.before, outcome.step.enrollment, outcome.document
        visit = before.visits
        rows: list[TransitionRow] = []
        for effect in outcome.step.effects:
            if type(effect) is Entered:
                visit += 1
                rows.append(
                    TransitionRow(
                        before.id, visit, "entered", before.journey, after.version,
                        before.hcp_id, effect.node, effect.touchpoint, effect.stage, effect.at,
                        None,
                    )
                )  # fmt: skip
                continue
            touchpoint, stage = _place(document, effect.node)
            kind, detail = _transition(effect, answers)
            rows.append(
                TransitionRow(
                    before.id, visit, kind, before.journey, after.version, before.hcp_id,
                    effect.node, touchpoint, stage, now, detail,
                )
            )  # fmt: skip
        return rows

    def _events(self, outcome: _Outcome, answers: Answers) -> list[tuple[str, LogEvent]]:
        """Log events of the step: the new adoption stage (``identify``), goals reached."""
        before, document = outcome.before, outcome.document
        if document is None:
            return []
        ref = answers.refs.get(before.hcp_id)
        subject = ref.subject if ref is not None else None
        if ref is None or subject is None:
            return []  # no identifier left to write the event under (erased)
        now = self._clock.now()
        visit = before.visits
        out: list[tuple[str, LogEvent]] = []
        for effect in outcome.step.effects:
            if isinstance(effect, Entered):
                visit += 1
            elif isinstance(effect, UpdateAttribute):
                mid = message_id(before.id, visit, "updated")
                out.append(
                    (
                        mid,
                        LogEvent(
                            message_id=mid,
                            kind=EventKind.IDENTIFY,
                            subject=subject,
                            occurred_at=now,
                            received_at=now,
                            source=SOURCE,
                            actor_type=ActorType.SYSTEM,
                            actor_id=f"journey:{before.journey}",
                            market=ref.market,
                            payload={
                                "traits": {effect.attribute: {effect.brand: effect.value}},
                                "properties": _about(before, effect.node, ref.id),
                            },
                        ),
                    )
                )
            elif isinstance(effect, GoalReached):
                mid = message_id(before.id, visit, "goal")
                props = {**_about(before, effect.node, ref.id), "goal": effect.goal}
                out.append(
                    (
                        mid,
                        LogEvent(
                            message_id=mid,
                            kind=EventKind.TRACK,
                            subject=subject,
                            occurred_at=now,
                            received_at=now,
                            source=SOURCE,
                            event_name="Journey Goal Reached",
                            brand=document.brand,
                            actor_type=ActorType.SYSTEM,
                            actor_id=f"journey:{before.journey}",
                            market=ref.market,
                            payload={"properties": props},
                        ),
                    )
                )
        return out

    def _enqueue(
        self, session: Session, outcome: _Outcome, answers: Answers, now: dt.datetime
    ) -> None:
        """The step's allowed sends and rep tasks, in the outbox, in the step's transaction."""
        document = outcome.document
        if document is None:
            return
        for effect in outcome.step.effects:
            if isinstance(effect, Send | RepTask):
                contact = answers.contacts[effect.key]
                action = self.outbound(outcome.before, document, effect, contact, answers)
                enqueue(session, action, now)

    def outbound(
        self,
        before: Enrollment,
        document: JourneyDocument,
        effect: Send | RepTask,
        contact: Contact,
        answers: Answers,
    ) -> OutboundAction:
        """The outbox entry of an allowed send or rep task (key: the effect's own)."""
        ref = answers.refs.get(before.hcp_id)
        context: dict[str, Any] = {
            "journey": before.journey,
            "version": before.version,
            "node": effect.node,
            "enrollment": before.id,
        }
        if isinstance(effect, RepTask):
            node = document.flow.by_id.get(effect.node)
            title = (node.name if node is not None else None) or effect.reason
            context.update(
                rep=contact.rep,
                reason=effect.reason,
                due_at=effect.due_at.isoformat(),
                subject=title[:200],
                text=effect.reason,
            )
        return OutboundAction(
            idempotency_key=effect.key,
            hcp_id=ref.id if ref is not None else before.hcp_id,
            channel=effect.channel,
            purpose=document.purpose,
            requested_by=f"journey:{before.journey}",
            content_id=contact.content_id,
            brand=document.brand,
            role=contact.rep_role,
            context=context,
        )

    # --- timers ---------------------------------------------------------------------------
    def run_timers(self) -> int:
        """One pass of the scheduler: up to ``batch`` due enrollments stepped; how many."""
        # A pass allocates many small objects (rows, states, effects) without reference
        # cycles; full collections of a large heap triggered by them halved the steps per
        # second (bench/journeys.py).
        with self.lock, collector_paused():
            now = self._clock.now()
            journeys = self.journeys()
            running = sorted(j.id for j in journeys.values() if j.status != "paused")
            if running:  # who is served first turns with every pass
                turn = self._turn % len(running)
                running = running[turn:] + running[:turn]
                self._turn += 1
            if self._postgres:
                with self._sessions.begin() as session:
                    due = JourneyRepository(session).due(
                        now, self.batch, journeys=running, skip_locked=True, least=PASS_SHARE
                    )
                    batch = self._compute([self._timer(e, now) for e in due], journeys)
                    done = self._write(session, batch, now)
            else:
                with self._sessions() as session:
                    due = JourneyRepository(session).due(
                        now, self.batch, journeys=running, least=PASS_SHARE
                    )
                batch = self._compute([self._timer(e, now) for e in due], journeys)
                with self._sessions.begin() as session:
                    done = self._write(session, batch, now)
        self.after(batch)
        return done

    @staticmethod
    def _timer(state: Enrollment, now: dt.datetime) -> _Work:
        """A new enrollment (at its entry node, never visited) starts; others wake."""
        if state.visits == 0:
            return _Work(state, Start(now))
        return _Work(state, Timer(now))

    def after(self, batch: _Batch) -> None:
        if batch.contacts and self._wake_delivery is not None:
            self._wake_delivery()
        if batch.logged:
            self.flush()

    def step_interactions(
        self,
        session: Session,
        items: Sequence[tuple[Enrollment, Interaction]],
        journeys: Mapping[str, JourneyInfo],
        now: dt.datetime,
    ) -> _Batch:
        """Step enrollments by interactions in the caller's transaction (rows already held)."""
        batch = self._compute([_Work(e, s) for e, s in items], journeys)
        self._write(session, batch, now)
        return batch

    # --- stopping and moving ------------------------------------------------------------------
    def end_waiting(self, session: Session, journey_id: str, reason: str) -> int:
        """Every waiting enrollment of the journey exits with ``reason`` (recorded), in the
        caller's transaction."""
        repo = JourneyRepository(session)
        now = self._clock.now()
        waiting = repo.waiting_in(journey_id)
        if self._postgres and waiting:
            waiting = list(repo.get([e.id for e in waiting], lock=True).values())
            waiting = [e for e in waiting if e.status is EnrollmentStatus.WAITING]
        batch = _Batch()
        for state in waiting:
            batch.outcomes.append(
                _Outcome(state, ended(state, reason), self.document(journey_id, state.version))
            )
        return self._write(session, batch, now)

    # --- entry ----------------------------------------------------------------------------
    def request_entry(self, journey_id: str) -> None:
        """Evaluate the journey's audience at the next pass (after publish or resume)."""
        self._requested.add(journey_id)
        self.wake()

    def enter_due(self) -> int:
        """Audience entry of the journeys that changed (published, resumed), were asked for,
        or were last evaluated ``entry_interval_s`` ago; returns HCPs entered."""
        now = self._clock.now()
        entered = 0
        for info in self.journeys().values():
            seen = (info.status, info.current_version, info.updated_at)
            changed = self._seen.get(info.id) != seen
            self._seen[info.id] = seen
            last = self._entered_at.get(info.id)
            interval = dt.timedelta(seconds=self.entry_interval_s)
            due = changed or info.id in self._requested or last is None or now - last >= interval
            if info.status != "active" or not due:
                continue
            self._requested.discard(info.id)
            try:
                entered += self.enter(info.id)
            except CounterpointError as exc:  # e.g. its segment was deleted: said, not fatal
                _log.warning("journey %s: audience entry failed: %s", info.id, exc.detail)
            self._entered_at[info.id] = now
        return entered

    def enter(self, journey_id: str) -> int:
        """Insert the journey's new audience members (segment or condition entry) as waiting
        at the entry node, due now; returns how many entered."""
        info = self.journeys().get(journey_id)
        if info is None or info.status != "active":
            return 0
        document = self.document(journey_id, info.current_version)
        if document is None:
            return 0
        trigger = document.flow.entry.trigger
        if trigger.event is not None:
            return 0
        now = self._clock.now()
        condition = trigger.condition
        if condition is None:
            assert trigger.segment is not None
            condition = self._segments.condition_of(trigger.segment)
        members = self._segments.bulk.evaluate(condition, now)
        members = members.filter(pc.is_in(members.column("market"), pa.array(document.markets)))
        return self.enroll(
            journey_id, info.current_version, document, members.column("hcp_id").to_pylist(), now
        )

    def enroll(
        self,
        journey_id: str,
        version: int,
        document: JourneyDocument,
        hcp_ids: Sequence[str],
        now: dt.datetime,
        *,
        chunk: int = 20_000,
    ) -> int:
        """Enter these HCPs (those the re-entry rule lets in), in batches of ``chunk``."""
        if not hcp_ids:
            return 0
        with self._sessions() as session:
            last = JourneyRepository(session).entries(journey_id)
        entering: list[tuple[str, int]] = []
        for hcp_id in hcp_ids:
            number = may_enter(last.get(hcp_id), document, now)
            if number is not None:
                entering.append((hcp_id, number))
        entry = document.flow.entry.id
        for start in range(0, len(entering), chunk):
            with self.lock, self._sessions.begin() as session:
                JourneyRepository(session).enter_many(
                    journey_id, version, entry, now, entering[start : start + chunk]
                )
        if entering:
            self.wake()
        return len(entering)

    def catch_up_paused(self, journey_id: str, since: dt.datetime) -> int:
        """After a pause: enrollments waiting for an event that arrived while the journey was
        paused take it now (read from the HCP's timeline); returns how many moved."""
        journeys = self.journeys()
        with self._sessions() as session:
            waiting = JourneyRepository(session).waiting_in(journey_id)
        answers = Answers()
        self.world.know(answers, (e.hcp_id for e in waiting))
        now = self._clock.now()
        items: list[tuple[Enrollment, Interaction]] = []
        for state in waiting:
            document = self.document(journey_id, state.version)
            node = document.flow.by_id.get(state.node) if document is not None else None
            ref = answers.refs.get(state.hcp_id)
            if not isinstance(node, WaitForEventNode) or ref is None or not ref.identifiers:
                continue
            start = max(state.node_entered_at, since) - dt.timedelta(microseconds=1)
            found = self._log.timeline(TimelineQuery(ref.identifiers, limit=10_000, since=start))
            for item in reversed(found):  # oldest first
                e = item.event
                if e.actor_id == f"journey:{journey_id}" or e.channel is None:
                    continue
                channel, action = e.channel.value, e.action.value if e.action else None
                if node.event.matches(channel, action, e.brand, e.content_id):
                    items.append((state, Interaction(now, channel, action, e.brand, e.content_id)))
                    break
        if not items:
            return 0
        with self.lock, self._sessions.begin() as session:
            held = JourneyRepository(session).get([s.id for s, _ in items], lock=self._postgres)
            items = [(held[s.id], i) for s, i in items if s.id in held and held[s.id] == s]
            batch = self.step_interactions(session, items, journeys, now)
        self.after(batch)
        return len(items)

    # --- the log --------------------------------------------------------------------------
    def flush(self) -> int:
        """Append pending log events to the log, then forget them; how many were accepted."""
        accepted, last = 0, 0
        while True:
            with self._sessions() as session:
                rows: list[JourneyPendingEvent] = JourneyRepository(session).pending(_FLUSH_PAGE)
            if not rows:
                break
            result = self._log.append([logged_event(r.event) for r in rows])
            accepted += result.accepted
            last = result.last_seq
            with self._sessions.begin() as session:
                JourneyRepository(session).drop_pending(r.message_id for r in rows)
        if accepted and self._wake_consumers is not None:
            self._wake_consumers(last)
        return accepted

    # --- running ----------------------------------------------------------------------------
    def drain(self, max_passes: int = 100_000) -> DrainReport:
        """Everything now due, until nothing moves: entry, events, timers, the log flush
        (tests, the CLI, benchmarks; with a fixed clock, timers later than now wait)."""
        report = DrainReport()
        for _ in range(max_passes):
            moved = DrainReport(flushed=self.flush())
            if self._settle is not None:
                self._settle()
            moved.entered = self.enter_due()
            moved.events = self.consumer.catch_up()
            while n := self._timers_once():
                moved.steps += n
            moved.flushed += self.flush()
            for name, value in moved.as_dict().items():
                setattr(report, name, getattr(report, name) + value)
            if not (moved.entered or moved.events or moved.steps or moved.flushed):
                break
        return report

    def _timers_once(self, attempts: int = 5) -> int:
        """``run_timers``, computed again when an enrollment moved meanwhile."""
        for _ in range(attempts - 1):
            try:
                return self.run_timers()
            except StepConflictError as exc:
                _log.info("journey step computed again: %s", exc)
        return self.run_timers()

    def wake(self, _position: int = 0) -> None:
        self._wake.set()

    def start(self) -> None:
        """Two threads: steps (timers, events, the log flush) and audience entry, so that a
        long audience evaluation never delays a timer."""
        if not self._threads:
            self._stop.clear()
            for name, target in (("journeys", self._loop), ("journey-entry", self._entry_loop)):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        if self._threads:
            self._stop.set()
            self._wake.set()
            for thread in self._threads:
                thread.join()
            self._threads = []
            self._stop.clear()

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` is waiting for the runtime's threads."""
        return self._stop.is_set()

    def _loop(self) -> None:
        self.flush_safely()
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.run_timers() >= self.batch
                self.consumer.catch_up()
                self.flush()
            except StepConflictError as exc:
                _log.info("journey step computed again: %s", exc)
                busy = True
            except Exception:  # logged; the next pass tries again
                _log.exception("journey pass failed; will retry")
                self._stop.wait(self.poll_s)
            if not busy:
                self._wake.wait(timeout=self.poll_s)
                self._wake.clear()

    def _entry_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.enter_due()
            except Exception:  # logged; tried again at the next look
                _log.exception("journey audience entry failed; will retry")
            self._stop.wait(ENTRY_LOOK_S)

    def flush_safely(self) -> None:
        try:
            self.flush()
        except Exception:  # logged; the loop flushes again
            _log.exception("flushing journey events failed; will retry")


def _about(before: Enrollment, node: str, hcp_id: str) -> dict[str, Any]:
    return {
        "journey": before.journey,
        "version": before.version,
        "node": node,
        "enrollment": before.id,
        "hcp_id": hcp_id,
    }


def _hcp_of(event: LogEvent) -> str:
    props = event.payload.get("properties") or {}
    return str(props.get("hcp_id", ""))


# --- the consumer --------------------------------------------------------------------------------
class JourneyEventConsumer(LogConsumer):
    """Reads the log behind the profile projector and moves journeys by interactions."""

    name = CONSUMER_NAME

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: EventLog,
        runtime: JourneyRuntime,
        projected: Callable[[], int],
    ) -> None:
        super().__init__(sessions, log)
        self._runtime = runtime
        self._projected = projected
        self._moved: list[_Batch] = []
        self._listens: dict[tuple[str, int], tuple[bool, frozenset[str]]] = {}
        """Per journey version: does any version wait for an event; the actions it hears."""

    def catch_up(
        self, progress: Callable[[int], None] | None = None, *, give_way: bool = True
    ) -> int:
        """Apply the log up to the profile projector's position (identities are known).

        The runtime's lock is taken per chunk, so timers run between the chunks of a long
        backlog instead of waiting for all of it."""
        applied = 0
        with self._lock:
            while not self._stopping():
                if give_way:
                    self._give_way()
                started = time.perf_counter()
                with self._turn(), self._runtime.lock:
                    read = self._one_chunk()
                if read == 0:
                    break
                self._timed(read, time.perf_counter() - started)
                applied += read
                if progress is not None:
                    progress(read)
        return applied

    def _stopping(self) -> bool:
        return self._runtime.stopping

    def _one_chunk(self) -> int:
        """Apply the next chunk in one transaction with the checkpoint; 0 when caught up."""
        bound = self._projected()
        self._moved = []
        with self._sessions.begin() as session:
            position = self._hold(session)
            if position >= bound:
                return 0
            table = self._log.read_after(position, self._next_rows())
            table = table.filter(pc.less_equal(table.column("seq"), bound))
            if table.num_rows == 0:
                return 0
            self.apply(session, table)
            last = int(table.column("seq")[-1].as_py())
            session.execute(
                update(ConsumerCheckpoint)
                .where(ConsumerCheckpoint.name == self.name)
                .values(position=last)
            )
        for batch in self._moved:
            self._runtime.after(batch)
        return int(table.num_rows)

    def _hold(self, session: Session) -> int:
        """The checkpoint, written first: the transaction holds it (and, on SQLite, the
        database's write lock) before it reads anything it will change."""
        result = session.execute(
            update(ConsumerCheckpoint)
            .where(ConsumerCheckpoint.name == self.name)
            .values(position=ConsumerCheckpoint.position)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            session.add(ConsumerCheckpoint(name=self.name, position=0))
            session.flush()
            return 0
        return int(
            session.scalar(
                select(ConsumerCheckpoint.position).where(ConsumerCheckpoint.name == self.name)
            )
            or 0
        )

    def apply(self, session: Session, table: pa.Table) -> None:
        runtime = self._runtime
        journeys = runtime.journeys()
        listening = self._listening(journeys)
        if listening is None:
            return  # no active journey enters by an event or waits for one
        waiting_for, actions = listening
        interactions = table.filter(
            pc.and_(
                pc.is_valid(table.column("channel")),
                pc.is_in(table.column("action"), value_set=pa.array(sorted(actions))),
            )
        )
        if interactions.num_rows == 0:
            return
        rows = interactions.select(
            [
                "seq",
                "subject",
                "occurred_at",
                "channel",
                "action",
                "brand",
                "content_id",
                "actor_id",
            ]
        ).to_pylist()
        holders = _holders(session, {r["subject"] for r in rows})
        if not holders:
            return
        now = runtime._clock.now()
        by_hcp: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            hcp_id = holders.get(r["subject"])
            if hcp_id is not None:
                by_hcp[hcp_id].append(r)
        self._enter(session, by_hcp, journeys, now)
        self._interactions(session, by_hcp, journeys, waiting_for, now)

    def _listening(
        self, journeys: Mapping[str, JourneyInfo]
    ) -> tuple[frozenset[str], frozenset[str]] | None:
        """The active journeys with a wait-for-event node in any of their versions, and every
        action an active journey's entry or waits can match (the rest of the log is passed
        over before it is read into Python); None when there are none."""
        waiting_for: set[str] = set()
        actions: set[str] = set()
        for info in journeys.values():
            if info.status != "active":
                continue
            found = self._listens.get((info.id, info.current_version))
            if found is None:
                waits, heard = False, set[str]()
                for version in range(1, info.current_version + 1):
                    document = self._runtime.document(info.id, version)
                    if document is None:
                        continue
                    for node in document.flow.nodes:
                        if isinstance(node, WaitForEventNode):
                            waits = True
                            heard.update(a.value for a in node.event.action)
                    if version == info.current_version:
                        trigger = document.flow.entry.trigger.event
                        if trigger is not None:
                            heard.update(a.value for a in trigger.action)
                found = self._listens[(info.id, info.current_version)] = (waits, frozenset(heard))
            if found[0]:
                waiting_for.add(info.id)
            actions.update(found[1])
        if not actions:
            return None
        return frozenset(waiting_for), frozenset(actions)

    def _enter(
        self,
        session: Session,
        by_hcp: Mapping[str, list[dict[str, Any]]],
        journeys: Mapping[str, JourneyInfo],
        now: dt.datetime,
    ) -> None:
        """Event-triggered entries of active journeys."""
        runtime = self._runtime
        repo = JourneyRepository(session)
        answers = Answers()
        for info in journeys.values():
            if info.status != "active":
                continue
            document = runtime.document(info.id, info.current_version)
            trigger = document.flow.entry.trigger.event if document is not None else None
            if document is None or trigger is None:
                continue
            own = f"journey:{info.id}"
            candidates = [
                hcp_id
                for hcp_id, events in by_hcp.items()
                if any(
                    r["actor_id"] != own
                    and trigger.matches(r["channel"], r["action"], r["brand"], r["content_id"])
                    for r in events
                )
            ]
            if not candidates:
                continue
            runtime.world.know(answers, candidates)
            candidates = [
                h
                for h in candidates
                if (ref := answers.refs.get(h)) is not None and ref.market in document.markets
            ]
            last = repo.entries(info.id, candidates)
            entry = document.flow.entry.id
            rows = []
            for hcp_id in sorted(candidates):
                live = answers.refs[hcp_id].id
                number = may_enter(last.get(live), document, now)
                if number is not None:
                    rows.append(
                        new_enrollment(info.id, info.current_version, live, number, entry, now)
                    )
            repo.insert_enrollments(rows)
            if rows:
                runtime.wake()

    def _interactions(
        self,
        session: Session,
        by_hcp: Mapping[str, list[dict[str, Any]]],
        journeys: Mapping[str, JourneyInfo],
        waiting_for: Collection[str],
        now: dt.datetime,
    ) -> None:
        """Each waiting enrollment's first matching interaction since it began to wait."""
        runtime = self._runtime
        waiting = JourneyRepository(session).waiting_of(by_hcp, waiting_for, lock=runtime._postgres)
        items: list[tuple[Enrollment, Interaction]] = []
        for state in waiting:
            info = journeys.get(state.journey)
            if info is None or info.status != "active":
                continue  # paused: taken from the timeline on resume; stopped: exits
            document = runtime.document(state.journey, state.version)
            node = document.flow.by_id.get(state.node) if document is not None else None
            if not isinstance(node, WaitForEventNode):
                continue
            own = f"journey:{state.journey}"
            for r in by_hcp.get(state.hcp_id, ()):
                if r["actor_id"] == own or r["occurred_at"] < state.node_entered_at:
                    continue
                if node.event.matches(r["channel"], r["action"], r["brand"], r["content_id"]):
                    stimulus = Interaction(
                        now, r["channel"], r["action"], r["brand"], r["content_id"], r["seq"]
                    )
                    items.append((state, stimulus))
                    break
        if items:
            self._moved.append(runtime.step_interactions(session, items, journeys, now))


def _holders(session: Session, subjects: Iterable[str]) -> dict[str, str]:
    """Identifier → the HCP holding it, in bulk (subjects no HCP holds are absent)."""
    wanted = sorted(set(subjects))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows = session.execute(
            select(Identity.key, Identity.hcp_id).where(Identity.key.in_(part))
        ).all()
        found.update((key, hcp_id) for key, hcp_id in rows)
    return found
