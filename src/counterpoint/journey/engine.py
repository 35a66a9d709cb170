"""The journey engine's rule: how one HCP moves through one journey version. Pure.

``advance(document, state, stimulus, oracle)`` takes an HCP's enrollment, one stimulus (its
start, a timer that came due, an interaction that arrived) and returns the new enrollment and
the effects to carry out, in order. It moves through every node that takes no time
(condition, random split, send, rep task, update, goal) and stops at the first node that
waits (wait, wait for an event) or ends the journey (exit, a goal without next).

What it must know about the world it asks the ``oracle``: whether a condition holds for the
HCP now, whether the guard allows a send or a rep task now, the HCP's time zone. The runtime
answers from the database inside the transaction that then stores the new enrollment and
enqueues the allowed sends in the outbox (so state and sends commit together); tests answer
with plain objects. Given the same answers the result is the same, which is what makes a
replay after a crash produce the same idempotency keys and so no duplicate send.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from counterpoint.event.canonical import Channel
from counterpoint.journey.definition import (
    ConditionNode,
    EntryNode,
    ExitNode,
    GoalNode,
    JourneyDocument,
    Node,
    RandomNode,
    RepTaskNode,
    SendNode,
    UpdateAttributeNode,
    WaitForEventNode,
    WaitNode,
    WaitUntil,
)
from counterpoint.segment.conditions import Condition

__all__ = [
    "MAX_INSTANT_STEPS",
    "Effect",
    "Enrollment",
    "EnrollmentStatus",
    "Entered",
    "Exited",
    "GoalReached",
    "Interaction",
    "Oracle",
    "Permission",
    "Refused",
    "RepTask",
    "Send",
    "Start",
    "Step",
    "Stimulus",
    "Timer",
    "UpdateAttribute",
    "advance",
    "arm_of",
    "next_wake",
    "replay",
    "start",
]

MAX_INSTANT_STEPS = 200
"""More nodes than this without a wait in one advance: the HCP exits (``step_limit``) rather
than spin. Validation refuses loops without a wait before publishing; this is the backstop."""


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"  # between nodes (only inside ``advance``)
    WAITING = "waiting"  # at a wait or wait-for-event node, until ``wake_at`` or an event
    COMPLETED = "completed"  # reached a goal without next
    EXITED = "exited"  # reached an exit node, or was taken out (stop, step limit)


FINAL = frozenset({EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED})


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One HCP in one version of one journey. ``visits`` counts node entries so far: with
    the enrollment id it makes every effect's key unique and stable."""

    id: str
    journey: str
    version: int
    hcp_id: str
    node: str
    status: EnrollmentStatus
    entered_at: dt.datetime
    node_entered_at: dt.datetime
    wake_at: dt.datetime | None = None
    arm: str | None = None
    visits: int = 0
    exit_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    # The copies below are what ``dataclasses.replace`` would give, built directly: a step
    # makes two or three of them and ``replace`` is the larger part of a step's cost.
    def entering(self, node: str, now: dt.datetime) -> Enrollment:
        """At ``node`` from ``now`` (one more visit), between nodes, no timer."""
        return Enrollment(
            self.id, self.journey, self.version, self.hcp_id, node, EnrollmentStatus.ACTIVE,
            self.entered_at, now, None, self.arm, self.visits + 1, self.exit_reason,
        )  # fmt: skip

    def waiting(self, wake_at: dt.datetime) -> Enrollment:
        return Enrollment(
            self.id, self.journey, self.version, self.hcp_id, self.node, EnrollmentStatus.WAITING,
            self.entered_at, self.node_entered_at, wake_at, self.arm, self.visits,
            self.exit_reason,
        )  # fmt: skip

    def ending(self, status: EnrollmentStatus, reason: str) -> Enrollment:
        return Enrollment(
            self.id, self.journey, self.version, self.hcp_id, self.node, status,
            self.entered_at, self.node_entered_at, self.wake_at, self.arm, self.visits, reason,
        )  # fmt: skip

    def drawn(self, arm: str) -> Enrollment:
        return Enrollment(
            self.id, self.journey, self.version, self.hcp_id, self.node, self.status,
            self.entered_at, self.node_entered_at, self.wake_at, arm, self.visits,
            self.exit_reason,
        )  # fmt: skip


# --- stimuli ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """The HCP enters the journey (at its entry node) now."""

    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer came due: ``now`` is at or after the enrollment's ``wake_at``."""

    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Interaction:
    """An interaction of the HCP arrived (from the event log)."""

    now: dt.datetime
    channel: str | None
    action: str | None
    brand: str | None = None
    content_id: str | None = None
    seq: int = 0


Stimulus = Start | Timer | Interaction


# --- effects ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entered:
    """The HCP entered a node (and through it a touchpoint and a stage): for analytics."""

    node: str
    touchpoint: str | None
    stage: str | None
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Send:
    key: str
    """Idempotency key of the outbox entry: the same step replayed has the same key."""
    node: str
    channel: Channel
    content: str


@dataclass(frozen=True, slots=True)
class RepTask:
    key: str
    node: str
    channel: Channel
    content: str | None
    reason: str
    due_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """The guard refused a send or a rep task; the HCP took the refusal branch or went on."""

    node: str
    codes: tuple[str, ...]
    branch: str


@dataclass(frozen=True, slots=True)
class UpdateAttribute:
    node: str
    attribute: str
    value: str
    brand: str


@dataclass(frozen=True, slots=True)
class GoalReached:
    node: str
    goal: str


@dataclass(frozen=True, slots=True)
class Exited:
    node: str
    reason: str
    completed: bool


Effect = Entered | Send | RepTask | Refused | UpdateAttribute | GoalReached | Exited


@dataclass(frozen=True, slots=True)
class Permission:
    allowed: bool
    codes: tuple[str, ...] = ()


class Oracle(Protocol):
    """What ``advance`` asks the world (answered inside the runtime's transaction)."""

    def holds(self, condition: Condition, now: dt.datetime) -> bool:
        """Does the condition hold for this HCP now?"""
        ...

    def permits(self, effect: Send | RepTask, now: dt.datetime) -> Permission:
        """Would the guard allow this send or rep task now?"""
        ...

    def time_zone(self) -> str:
        """The HCP's IANA time zone (the market's when the HCP has none)."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    enrollment: Enrollment
    effects: tuple[Effect, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.effects)


# --- the rule ---------------------------------------------------------------------------------
def start(
    document: JourneyDocument, enrollment_id: str, version: int, hcp_id: str, now: dt.datetime
) -> Enrollment:
    """A new enrollment at the entry node (``advance`` with ``Start`` then moves it on)."""
    entry = document.flow.entry
    return Enrollment(
        id=enrollment_id,
        journey=document.journey,
        version=version,
        hcp_id=hcp_id,
        node=entry.id,
        status=EnrollmentStatus.ACTIVE,
        entered_at=now,
        node_entered_at=now,
    )


def arm_of(node: RandomNode, journey: str, hcp_id: str) -> str:
    """The arm an HCP is drawn into: a hash of journey, node and HCP mapped onto the weights,
    so the draw is stable across replays, restarts and versions."""
    digest = hashlib.sha256(f"{journey}\x00{node.id}\x00{hcp_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(a.weight for a in node.arms)
    upto = 0.0
    for arm in node.arms:
        upto += arm.weight
        if point < upto:
            return arm.name
    return node.arms[-1].name


def next_wake(until: WaitUntil, now: dt.datetime, time_zone: str) -> dt.datetime:
    """The first moment after ``now`` that is one of the weekdays at the time, in the zone
    (a wall time skipped by a clock change moves to the same time the next valid day)."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    days = {w.number for w in until.weekdays}
    for offset in range(0, 15):
        day = local.date() + dt.timedelta(days=offset)
        if day.weekday() not in days:
            continue
        candidate = dt.datetime.combine(day, until.time, tzinfo=zone)
        # a wall time that does not exist (spring forward) round-trips to another time
        if candidate.astimezone(dt.UTC).astimezone(zone).time() != until.time:
            continue
        moment = candidate.astimezone(dt.UTC)
        if moment > now:
            return moment
    raise ValueError("no weekday given")  # pragma: no cover - weekdays is never empty


def _key(state: Enrollment, node: Node) -> str:
    """The enrollment, the node and the visit: unique per contact, the same on a replay.
    Long ids are hashed to fit the outbox's 200 characters."""
    key = f"journey:{state.id}:{node.id}:{state.visits}"
    if len(key) <= 200:
        return key
    return "journey:" + hashlib.sha256(key.encode()).hexdigest()


def advance(
    document: JourneyDocument, state: Enrollment, stimulus: Stimulus, oracle: Oracle
) -> Step:
    """Move the enrollment as far as the stimulus allows (see the module doc). A stimulus
    that does not concern the enrollment (an interaction it is not waiting for, a timer not
    yet due, anything after the end) returns it unchanged with no effects."""
    if state.final:
        return Step(state)
    nodes = document.flow.by_id
    now = stimulus.now
    node = nodes[state.node]
    effects: list[Effect] = []
    target: str | None
    if isinstance(stimulus, Start):
        if not isinstance(node, EntryNode) or state.visits:
            return Step(state)
        state = _enter(document, state, node, now, effects)
        target = node.next
    elif state.status is not EnrollmentStatus.WAITING:
        return Step(state)
    elif isinstance(stimulus, Timer):
        if state.wake_at is None or now < state.wake_at:
            return Step(state)
        if isinstance(node, WaitNode):
            target = node.next
        elif isinstance(node, WaitForEventNode):
            target = node.timeout_next
        else:  # pragma: no cover - only waits wait
            return Step(state)
    else:
        if not isinstance(node, WaitForEventNode) or not node.event.matches(
            stimulus.channel, stimulus.action, stimulus.brand, stimulus.content_id
        ):
            return Step(state)
        target = node.next
    return _run(document, state, target, now, oracle, effects)


def _enter(
    document: JourneyDocument,
    state: Enrollment,
    node: Node,
    now: dt.datetime,
    effects: list[Effect],
) -> Enrollment:
    effects.append(Entered(node.id, node.touchpoint, document.stage_of(node), now))
    return state.entering(node.id, now)


def _run(
    document: JourneyDocument,
    state: Enrollment,
    target: str | None,
    now: dt.datetime,
    oracle: Oracle,
    effects: list[Effect],
) -> Step:
    nodes = document.flow.by_id
    for _ in range(MAX_INSTANT_STEPS):
        if target is None:  # a goal without next: the journey is complete for this HCP
            effects.append(Exited(state.node, "completed", completed=True))
            state = state.ending(EnrollmentStatus.COMPLETED, "completed")
            return Step(state, tuple(effects))
        node = nodes[target]
        state = _enter(document, state, node, now, effects)
        if isinstance(node, WaitNode):
            if node.duration is not None:
                wake = now + node.duration.delta
            else:
                assert node.until is not None
                wake = next_wake(node.until, now, oracle.time_zone())
            state = state.waiting(wake)
            return Step(state, tuple(effects))
        if isinstance(node, WaitForEventNode):
            state = state.waiting(now + node.timeout.delta)
            return Step(state, tuple(effects))
        if isinstance(node, ExitNode):
            reason = node.reason or "exit"
            effects.append(Exited(node.id, reason, completed=False))
            state = state.ending(EnrollmentStatus.EXITED, reason)
            return Step(state, tuple(effects))
        if isinstance(node, ConditionNode):
            target = node.then if oracle.holds(node.condition, now) else node.else_
        elif isinstance(node, RandomNode):
            arm = arm_of(node, document.journey, state.hcp_id)
            state = state.drawn(arm)
            target = next(a.next for a in node.arms if a.name == arm)
        elif isinstance(node, SendNode | RepTaskNode):
            target = _contact(state, node, now, oracle, effects)
        elif isinstance(node, UpdateAttributeNode):
            effects.append(UpdateAttribute(node.id, node.attribute, node.value, document.brand))
            target = node.next
        elif isinstance(node, GoalNode):
            effects.append(GoalReached(node.id, node.goal))
            target = node.next
        else:  # an entry node is never a target (the definition refuses it)
            raise ValueError(f"node {node.id!r} cannot be entered")  # pragma: no cover
    effects.append(Exited(state.node, "step_limit", completed=False))
    state = state.ending(EnrollmentStatus.EXITED, "step_limit")
    return Step(state, tuple(effects))


def _contact(
    state: Enrollment,
    node: SendNode | RepTaskNode,
    now: dt.datetime,
    oracle: Oracle,
    effects: list[Effect],
) -> str:
    effect: Send | RepTask
    if isinstance(node, SendNode):
        effect = Send(_key(state, node), node.id, node.channel, node.content)
    else:
        effect = RepTask(
            _key(state, node),
            node.id,
            node.channel,
            node.content,
            node.reason,
            now + node.due.delta,
        )
    permission = oracle.permits(effect, now)
    if permission.allowed:
        effects.append(effect)
        return node.next
    branch = node.refused_next or node.next
    effects.append(Refused(node.id, permission.codes, branch))
    return branch


def replay(
    document: JourneyDocument,
    state: Enrollment,
    stimuli: Sequence[Stimulus],
    oracle: Oracle,
) -> tuple[Enrollment, list[Effect]]:
    """Apply stimuli in order (tests and the dry run)."""
    effects: list[Effect] = []
    for stimulus in stimuli:
        step = advance(document, state, stimulus, oracle)
        state = step.enrollment
        effects.extend(step.effects)
    return state, effects
