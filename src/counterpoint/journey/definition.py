"""The journey document: a map and a flow in one versioned object. Pure.

A journey is written in YAML (``examples/journeys/*.yaml``, format in docs/journeys.md) and
has two layers that reference each other:

* the **map**: ordered stages and, in each, touchpoints that carry the customer's goal, the
  business reason, the owner (RACI roles), the channels and content used and a KPI with a
  target;
* the **flow**: typed nodes, each tied to a touchpoint, that move one HCP at a time: entry,
  wait, wait for an event, condition split, random split (arms and a holdout), send, rep
  task, update attribute, goal and exit.

This module defines the shapes and the checks that need nothing but the document (types,
references between nodes and touchpoints, unique ids). Checks that need the rest of the
system (content approval, consent coverage, reachability and loops) live in
``counterpoint.journey.validation``.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from counterpoint.consent.ledger import Purpose
from counterpoint.event.canonical import Action, Channel
from counterpoint.policy.access import Role
from counterpoint.segment.conditions import Condition, EventFilter

__all__ = [
    "DEFAULT_STAGES",
    "ID_PATTERN",
    "Arm",
    "ConditionNode",
    "Duration",
    "EntryNode",
    "EntryTrigger",
    "EventTrigger",
    "ExitNode",
    "Flow",
    "GoalNode",
    "JourneyDocument",
    "JourneyMap",
    "Kpi",
    "KpiMeasure",
    "Node",
    "NodeType",
    "Owner",
    "RandomNode",
    "ReEntry",
    "RepTaskNode",
    "SendNode",
    "Touchpoint",
    "UpdateAttributeNode",
    "WaitForEventNode",
    "WaitNode",
    "WaitUntil",
    "Weekday",
    "successors",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,99}$"
"""Journey, stage, touchpoint and node ids: lower case, digits, ``-`` and ``_``."""

DEFAULT_STAGES: tuple[str, ...] = ("awareness", "consideration", "trial", "adoption", "advocacy")

_STRICT = ConfigDict(extra="forbid", frozen=True)
Id = Annotated[str, Field(pattern=ID_PATTERN)]
ContentCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.\-]{0,99}$")]


# --- the map --------------------------------------------------------------------------------
class Owner(BaseModel):
    """Who owns a touchpoint, as RACI roles."""

    model_config = _STRICT
    responsible: Role
    accountable: Role
    consulted: list[Role] = Field(default_factory=list)
    informed: list[Role] = Field(default_factory=list)


class KpiMeasure(enum.StrEnum):
    """What a touchpoint's KPI measures, computed from the journey's own figures."""

    REACH = "reach"  # share of HCPs entering the touchpoint who were sent something
    OPEN_RATE = "open_rate"  # opened / sent (e-mail)
    CLICK_RATE = "click_rate"  # clicked / sent
    RESPONSE_RATE = "response_rate"  # any engagement action / sent
    ATTENDANCE_RATE = "attendance_rate"  # attended / registered or invited
    COMPLETION_RATE = "completion_rate"  # HCPs completing the touchpoint / entering it
    CONVERSION = "conversion"  # HCPs reaching the next stage / entering this one
    GOAL_RATE = "goal_rate"  # HCPs reaching the touchpoint's goal node / entering it


class Kpi(BaseModel):
    model_config = _STRICT
    measure: KpiMeasure
    target: float = Field(ge=0, le=1, allow_inf_nan=False)
    """A share between 0 and 1 (every measure is a rate)."""


class Touchpoint(BaseModel):
    model_config = _STRICT
    id: Id
    stage: Id
    name: str = Field(min_length=1, max_length=200)
    customer_goal: str = Field(min_length=1, max_length=500)
    business_reason: str = Field(min_length=1, max_length=500)
    owner: Owner
    channels: list[Channel] = Field(default_factory=list)
    content: list[ContentCode] = Field(default_factory=list)
    kpi: Kpi | None = None


class _Frozen(BaseModel):
    """A frozen model whose ``functools.cached_property`` views (maps by id, a duration as a
    ``timedelta``) are computed once; a copy with changes drops them, so none goes stale."""

    model_config = _STRICT

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        for name, member in vars(type(self)).items():
            if isinstance(member, functools.cached_property):
                copied.__dict__.pop(name, None)
        return copied


class JourneyMap(_Frozen):
    model_config = _STRICT
    stages: list[Id] = Field(default_factory=lambda: list(DEFAULT_STAGES), min_length=1)
    touchpoints: list[Touchpoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> JourneyMap:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must be distinct")
        seen: set[str] = set()
        for i, tp in enumerate(self.touchpoints):
            if tp.id in seen:
                raise ValueError(f"touchpoints.{i}: the id {tp.id!r} is used twice")
            seen.add(tp.id)
            if tp.stage not in self.stages:
                raise ValueError(
                    f"touchpoints.{i}: stage {tp.stage!r} is not one of the stages "
                    f"({', '.join(self.stages)})"
                )
        return self

    def touchpoint(self, touchpoint_id: str) -> Touchpoint:
        found = self.touchpoints_by_id.get(touchpoint_id)
        if found is None:
            raise KeyError(touchpoint_id)
        return found

    @functools.cached_property
    def touchpoints_by_id(self) -> Mapping[str, Touchpoint]:
        return MappingProxyType({tp.id: tp for tp in self.touchpoints})


# --- the flow -------------------------------------------------------------------------------
class Duration(_Frozen):
    model_config = _STRICT
    days: int = Field(default=0, ge=0, le=3660)
    hours: int = Field(default=0, ge=0, le=24 * 366)
    minutes: int = Field(default=0, ge=0, le=60 * 24 * 366)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if not (self.days or self.hours or self.minutes):
            raise ValueError("a duration must be longer than zero (days, hours or minutes)")
        return self

    @functools.cached_property
    def delta(self) -> dt.timedelta:
        """As a ``timedelta`` (computed once: the model is frozen; every step reads it)."""
        return dt.timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as in ``datetime.weekday()``."""
        return list(Weekday).index(self)


class WaitUntil(BaseModel):
    """The next moment that is one of ``weekdays`` at ``time`` in the HCP's time zone
    (the market's when the HCP has none)."""

    model_config = _STRICT
    weekdays: list[Weekday] = Field(default_factory=lambda: list(Weekday), min_length=1)
    time: dt.time

    @field_validator("weekdays", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class EventTrigger(BaseModel):
    """An interaction that starts or resumes an HCP's journey (a ``within_days`` of the
    filter is not used here: the event is the one that just arrived)."""

    model_config = _STRICT
    channel: list[Channel] | None = None
    action: list[Action] = Field(min_length=1)
    brand: list[str] | None = None
    content_id: list[str] | None = None

    @field_validator("channel", "action", "brand", "content_id", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def matches(
        self, channel: str | None, action: str | None, brand: str | None, content_id: str | None
    ) -> bool:
        return (
            action is not None
            and action in self.action
            and (self.channel is None or channel in self.channel)
            and (self.brand is None or brand in self.brand)
            and (self.content_id is None or content_id in self.content_id)
        )

    def as_filter(self, within_days: int) -> EventFilter:
        return EventFilter(
            channel=self.channel,
            action=self.action,
            brand=self.brand,
            content_id=self.content_id,
            within_days=within_days,
        )


class EntryTrigger(BaseModel):
    """Who enters: members of a stored segment, HCPs meeting a condition, or HCPs whose
    interaction matches an event (exactly one of the three)."""

    model_config = _STRICT
    segment: Id | None = None
    condition: Condition | None = None
    event: EventTrigger | None = None

    @model_validator(mode="after")
    def _one(self) -> EntryTrigger:
        given = [n for n in ("segment", "condition", "event") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("an entry has exactly one of: segment, condition, event")
        return self


class ReEntry(BaseModel):
    """May an HCP enter again? ``never`` (default), ``after_exit`` (once it has left), or
    ``after_exit`` with ``min_days`` since it last entered."""

    model_config = _STRICT
    policy: Literal["never", "after_exit"] = "never"
    min_days: int = Field(default=0, ge=0, le=3660)


class _Node(BaseModel):
    model_config = _STRICT
    id: Id
    touchpoint: Id | None = None
    """The map touchpoint this step serves (required except on ``exit``)."""
    name: str | None = Field(default=None, max_length=200)


class NodeType(enum.StrEnum):
    ENTRY = "entry"
    WAIT = "wait"
    WAIT_FOR_EVENT = "wait_for_event"
    CONDITION = "condition"
    RANDOM = "random"
    SEND = "send"
    REP_TASK = "rep_task"
    UPDATE_ATTRIBUTE = "update_attribute"
    GOAL = "goal"
    EXIT = "exit"


class EntryNode(_Node):
    type: Literal["entry"]
    trigger: EntryTrigger
    re_entry: ReEntry = Field(default_factory=ReEntry)
    next: Id


class WaitNode(_Node):
    """Wait a duration, or until a weekday and time in the HCP's time zone."""

    type: Literal["wait"]
    duration: Duration | None = None
    until: WaitUntil | None = None
    next: Id

    @model_validator(mode="after")
    def _one(self) -> WaitNode:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait has exactly one of: duration, until")
        return self


class WaitForEventNode(_Node):
    """Wait for the HCP's interaction; ``timeout`` later, take ``timeout_next``."""

    type: Literal["wait_for_event"]
    event: EventTrigger
    timeout: Duration
    next: Id
    timeout_next: Id


class ConditionNode(_Node):
    """Split on a condition (attributes, engagement features, events, consent)."""

    type: Literal["condition"]
    condition: Condition
    then: Id
    else_: Id = Field(alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Arm(BaseModel):
    model_config = _STRICT
    name: Id
    weight: float = Field(gt=0, le=100, allow_inf_nan=False)
    next: Id
    holdout: bool = False
    """A holdout arm: HCPs kept out of the treatment to measure its effect."""


class RandomNode(_Node):
    """Split at random by weight (experiment arms and a holdout). The draw is a hash of the
    journey, node and HCP, so it is stable across replays and restarts."""

    type: Literal["random"]
    arms: list[Arm] = Field(min_length=2)

    @model_validator(mode="after")
    def _distinct(self) -> RandomNode:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be distinct")
        return self


class SendNode(_Node):
    """Send approved content on a channel, through the guard and the outbox. A refusal
    takes ``refused_next`` when given; otherwise it is recorded and the HCP goes on to
    ``next``."""

    type: Literal["send"]
    channel: Channel
    content: ContentCode
    next: Id
    refused_next: Id | None = None


class RepTaskNode(_Node):
    """A task in the responsible rep's inbox (content optional), through the guard."""

    type: Literal["rep_task"]
    channel: Channel = Channel.F2F_CALL
    content: ContentCode | None = None
    reason: str = Field(min_length=1, max_length=500)
    due: Duration
    next: Id
    refused_next: Id | None = None


class UpdateAttributeNode(_Node):
    """Set an attribute of the HCP (the adoption stage for the journey's brand)."""

    type: Literal["update_attribute"]
    attribute: Literal["adoption_stage"]
    value: Id
    next: Id


class GoalNode(_Node):
    """The journey reached its goal for this HCP (counted as a conversion)."""

    type: Literal["goal"]
    goal: str = Field(min_length=1, max_length=200)
    next: Id | None = None
    """Where to go on; none: the HCP completes the journey here."""


class ExitNode(_Node):
    type: Literal["exit"]
    reason: str | None = Field(default=None, max_length=200)


Node = Annotated[
    EntryNode
    | WaitNode
    | WaitForEventNode
    | ConditionNode
    | RandomNode
    | SendNode
    | RepTaskNode
    | UpdateAttributeNode
    | GoalNode
    | ExitNode,
    Field(discriminator="type"),
]


def successors(node: Node) -> list[str]:
    """The ids a node can move an HCP to, in a stable order."""
    if isinstance(node, ConditionNode):
        return [node.then, node.else_]
    if isinstance(node, RandomNode):
        return [a.next for a in node.arms]
    if isinstance(node, WaitForEventNode):
        return [node.next, node.timeout_next]
    if isinstance(node, SendNode | RepTaskNode):
        return [node.next] + ([node.refused_next] if node.refused_next else [])
    if isinstance(node, GoalNode):
        return [node.next] if node.next else []
    if isinstance(node, ExitNode):
        return []
    return [node.next]


class Flow(_Frozen):
    model_config = _STRICT
    nodes: list[Node] = Field(min_length=2)

    @model_validator(mode="after")
    def _references(self) -> Flow:
        ids: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.id in ids:
                raise ValueError(f"nodes.{i}: the id {node.id!r} is used twice")
            ids[node.id] = i
        entries = [n for n in self.nodes if isinstance(n, EntryNode)]
        if len(entries) != 1:
            raise ValueError(f"a flow has exactly one entry node (found {len(entries)})")
        for i, node in enumerate(self.nodes):
            for target in successors(node):
                if target not in ids:
                    raise ValueError(f"nodes.{i} ({node.id}): goes to {target!r}, no such node")
                if isinstance(self.nodes[ids[target]], EntryNode):
                    raise ValueError(
                        f"nodes.{i} ({node.id}): goes back to the entry node; "
                        "re-entry is set on the entry (re_entry)"
                    )
        return self

    @property
    def entry(self) -> EntryNode:
        return next(n for n in self.nodes if isinstance(n, EntryNode))

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @functools.cached_property
    def by_id(self) -> Mapping[str, Node]:
        """The nodes by id (built once: the flow is frozen; every step reads it)."""
        return MappingProxyType({n.id: n for n in self.nodes})


class JourneyDocument(BaseModel):
    """One journey definition as written (one version of it once published)."""

    model_config = _STRICT
    journey: Id
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    brand: str = Field(min_length=1, max_length=100)
    markets: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(min_length=1)
    purpose: Purpose = Purpose.PROMOTIONAL
    planned_end: dt.date | None = None
    """The last day the journey is planned to run (content must stay valid until then)."""
    example: bool = False
    """An example shipped with the product (synthetic content); labelled wherever shown."""
    map: JourneyMap
    flow: Flow

    @model_validator(mode="after")
    def _touchpoints(self) -> JourneyDocument:
        known = {tp.id for tp in self.map.touchpoints}
        for i, node in enumerate(self.flow.nodes):
            if node.touchpoint is None:
                if not isinstance(node, ExitNode):
                    raise ValueError(
                        f"flow.nodes.{i} ({node.id}): every step but exit names the map "
                        "touchpoint it serves (touchpoint: …)"
                    )
            elif node.touchpoint not in known:
                raise ValueError(
                    f"flow.nodes.{i} ({node.id}): touchpoint {node.touchpoint!r} is not in the map"
                )
        return self

    def stage_of(self, node: Node) -> str | None:
        if node.touchpoint is None:
            return None
        return self.map.touchpoint(node.touchpoint).stage
