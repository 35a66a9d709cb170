"""Segment conditions: data, never evaluated code, and their evaluation for one HCP. Pure.

A condition is a small tree written in YAML or JSON. Every node is an object with exactly one
key naming its kind:

```yaml
all:                                   # every part holds (``any``: at least one; ``not``)
  - attribute: {name: specialty, op: in, value: [cardiology, internal_medicine]}
  - attribute: {name: potential_decile, op: gte, value: 8}
  - attribute: {name: adoption_stage, brand: cardiomax, op: in, value: [aware, trial]}
  - consent: {channel: email, purpose: promotional}          # granted now
  - events: {channel: campaign_email, action: [opened, clicked], within_days: 30,
             op: gte, count: 2}
  - feature: {name: response_rate, channel: campaign_email, window_days: 90,
              op: gte, value: 0.2}
  - not: {events: {channel: webinar, action: attended, within_days: 90}}
```

The same tree is evaluated two ways that must agree (a property test holds them to it): for
one HCP in Python (``evaluate``, as an event arrives) and for every HCP at once in SQL
(``counterpoint.segment.bulk``). Semantics, shared by both:

* The population is every known HCP profile (not anonymous visitors, not merged away).
* ``attribute``: a missing value (null, no adoption stage for the brand) makes every
  operator false except ``missing``; ``segments`` is a list, and ``in`` / ``not_in`` ask
  whether it shares any / no value with ``value`` (``eq`` asks whether it contains it).
* ``events``: the HCP's interactions (events with a channel and an action, through any of
  its identifiers) matching every given filter
  with ``now - within_days < occurred_at <= now``, counted and compared (default: at least
  one). ``op: eq, count: 0`` means "did not".
* ``feature``: engagement over a window, from the same events: ``touches`` (actions that
  spend attention: sent, call completed, …), ``responses`` (opened, clicked, attended, …),
  ``events`` (all), ``response_rate`` (responses per touch; false when there was no touch).
* ``consent``: the consent ledger allows the channel and purpose (and brand, when given) in
  the HCP's market now, exactly as the guard decides it.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import (
    ENGAGEMENT_ACTIONS,
    TOUCH_ACTIONS,
    Action,
    Channel,
    Function,
)

__all__ = [
    "ATTRIBUTES",
    "MAX_WINDOW_DAYS",
    "All",
    "AnyOf",
    "AttributeCondition",
    "AttributeName",
    "Condition",
    "ConsentCondition",
    "ConsentKey",
    "EventFact",
    "EventFilter",
    "EventsCondition",
    "FeatureCondition",
    "FeatureName",
    "HcpFacts",
    "Leaf",
    "Not",
    "Op",
    "condition_adapter",
    "consent_keys",
    "count_of",
    "dump_condition",
    "evaluate",
    "event_filters",
    "feature_value",
    "leaves",
    "matches",
    "max_window_days",
    "parse_condition",
    "reads_events",
    "window_start",
]

MAX_WINDOW_DAYS = 3660
"""Ten years: the longest window a condition may look back."""


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"
    MISSING = "missing"


_ORDERED = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
_COUNT_OPS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE})


class AttributeName(enum.StrEnum):
    MARKET = "market"
    TERRITORY = "territory"
    SPECIALTY = "specialty"
    PERSONA = "persona"
    PREFERRED_LANGUAGE = "preferred_language"
    TIME_ZONE = "time_zone"
    POTENTIAL_DECILE = "potential_decile"
    SEGMENTS = "segments"
    ADOPTION_STAGE = "adoption_stage"


ATTRIBUTES: Mapping[AttributeName, type] = {
    AttributeName.MARKET: str,
    AttributeName.TERRITORY: str,
    AttributeName.SPECIALTY: str,
    AttributeName.PERSONA: str,
    AttributeName.PREFERRED_LANGUAGE: str,
    AttributeName.TIME_ZONE: str,
    AttributeName.POTENTIAL_DECILE: int,
    AttributeName.SEGMENTS: list,
    AttributeName.ADOPTION_STAGE: str,
}
"""HCP attributes a condition may read, with the type of their values (``segments`` is a list
of text; ``adoption_stage`` is read for one brand)."""


class FeatureName(enum.StrEnum):
    EVENTS = "events"
    TOUCHES = "touches"
    RESPONSES = "responses"
    RESPONSE_RATE = "response_rate"


_STRICT = ConfigDict(extra="forbid", frozen=True)
Scalar = str | int | float


class AttributeCondition(BaseModel):
    model_config = _STRICT
    name: AttributeName
    op: Op
    value: Scalar | list[Scalar] | None = None
    brand: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _shape(self) -> AttributeCondition:
        kind = ATTRIBUTES[self.name]
        if (self.name is AttributeName.ADOPTION_STAGE) != (self.brand is not None):
            raise ValueError(
                "adoption_stage needs a brand (brand: cardiomax); other attributes take none"
            )
        if self.op in (Op.EXISTS, Op.MISSING):
            if self.value is not None:
                raise ValueError(f"op {self.op.value} takes no value")
            return self
        if self.value is None:
            raise ValueError(f"op {self.op.value} needs a value")
        if self.op in (Op.IN, Op.NOT_IN):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op.value} needs a non-empty list of values")
            values: list[Scalar] = self.value
        else:
            if isinstance(self.value, list):
                raise ValueError(f"op {self.op.value} needs one value, not a list")
            values = [self.value]
        if self.op in _ORDERED and kind is not int:
            raise ValueError(f"op {self.op.value} applies to numbers (potential_decile) only")
        want: type = int if kind is int else str
        for v in values:
            if want is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"{self.name.value} values are whole numbers, not {v!r}")
            if want is str and not isinstance(v, str):
                raise ValueError(f"{self.name.value} values are text, not {v!r}")
        return self

    def values(self) -> tuple[Scalar, ...]:
        if self.value is None:
            return ()
        return tuple(self.value) if isinstance(self.value, list) else (self.value,)


class EventFilter(BaseModel):
    """Which events count: every given field must match (a list matches any of its values)."""

    model_config = _STRICT
    channel: list[Channel] | None = None
    action: list[Action] | None = None
    brand: list[str] | None = None
    content_id: list[str] | None = None
    function: Function | None = None
    within_days: int = Field(ge=1, le=MAX_WINDOW_DAYS)

    @field_validator("channel", "action", "brand", "content_id", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value
        return [value]

    @field_validator("channel", "action", "brand", "content_id")
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and not value:
            raise ValueError("an empty list matches nothing; leave the field out instead")
        return value

    def key(self) -> tuple[Any, ...]:
        """Identity of the filter (two conditions on the same filter share one count)."""

        def norm(v: list[Any] | None) -> tuple[str, ...] | None:
            return None if v is None else tuple(sorted({str(x) for x in v}))

        return (
            norm(self.channel),
            norm(self.action),
            norm(self.brand),
            norm(self.content_id),
            None if self.function is None else self.function.value,
            self.within_days,
        )


class EventsCondition(EventFilter):
    op: Op = Op.GTE
    count: int = Field(default=1, ge=0, le=1_000_000)

    @field_validator("op")
    @classmethod
    def _count_op(cls, value: Op) -> Op:
        if value not in _COUNT_OPS:
            raise ValueError("events compare a count: use eq, ne, gt, gte, lt or lte")
        return value

    def filter(self) -> EventFilter:
        return EventFilter(
            channel=self.channel,
            action=self.action,
            brand=self.brand,
            content_id=self.content_id,
            function=self.function,
            within_days=self.within_days,
        )


_TOUCH_LIST = sorted(TOUCH_ACTIONS)
_RESPONSE_LIST = sorted(ENGAGEMENT_ACTIONS)


class FeatureCondition(BaseModel):
    model_config = _STRICT
    name: FeatureName
    channel: list[Channel] | None = None
    brand: list[str] | None = None
    function: Function | None = None
    window_days: int = Field(ge=1, le=MAX_WINDOW_DAYS)
    op: Op
    value: float = Field(ge=0, allow_inf_nan=False)

    @field_validator("channel", "brand", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value
        return [value]

    @field_validator("op")
    @classmethod
    def _numeric_op(cls, value: Op) -> Op:
        if value not in _COUNT_OPS:
            raise ValueError("features compare a number: use eq, ne, gt, gte, lt or lte")
        return value

    def filters(self) -> tuple[EventFilter, EventFilter | None]:
        """The counts the feature is made of: (numerator, denominator or None)."""

        def counted(actions: list[Action] | None) -> EventFilter:
            return EventFilter(
                channel=self.channel,
                action=actions,
                brand=self.brand,
                function=self.function,
                within_days=self.window_days,
            )

        if self.name is FeatureName.EVENTS:
            return counted(None), None
        if self.name is FeatureName.TOUCHES:
            return counted(_TOUCH_LIST), None
        if self.name is FeatureName.RESPONSES:
            return counted(_RESPONSE_LIST), None
        return counted(_RESPONSE_LIST), counted(_TOUCH_LIST)


class ConsentCondition(BaseModel):
    """The consent ledger allows this channel and purpose (and brand) in the HCP's market."""

    model_config = _STRICT
    channel: ConsentChannel
    purpose: Purpose
    brand: str | None = Field(default=None, min_length=1, max_length=100)

    def key(self) -> ConsentKey:
        return ConsentKey(self.channel, self.purpose, self.brand)


@dataclass(frozen=True, slots=True, order=True)
class ConsentKey:
    channel: ConsentChannel
    purpose: Purpose
    brand: str | None = None

    @property
    def column(self) -> str:
        """A stable column name for this key in bulk evaluation."""
        brand = (
            ""
            if self.brand is None
            else "_" + "".join(c if c.isalnum() else "_" for c in self.brand)
        )
        return f"consent_{self.channel.value}_{self.purpose.value}{brand}"


class All(BaseModel):
    model_config = _STRICT
    all: list[Condition] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = _STRICT
    any: list[Condition] = Field(min_length=1)


class Not(BaseModel):
    model_config = _STRICT
    not_: Condition = Field(alias="not")


class _Leaf(BaseModel):
    model_config = _STRICT


class AttributeLeaf(_Leaf):
    attribute: AttributeCondition


class EventsLeaf(_Leaf):
    events: EventsCondition


class FeatureLeaf(_Leaf):
    feature: FeatureCondition


class ConsentLeaf(_Leaf):
    consent: ConsentCondition


_KINDS = ("all", "any", "not", "attribute", "events", "feature", "consent")


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for name, model in _MODELS.items():
            if isinstance(value, model):
                return name
        return None
    if isinstance(value, Mapping):
        keys = [k for k in value if k in _KINDS]
        if len(keys) == 1 and len(value) == 1:
            return str(keys[0])
    return None


Condition = Annotated[
    Annotated[All, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[AttributeLeaf, Tag("attribute")]
    | Annotated[EventsLeaf, Tag("events")]
    | Annotated[FeatureLeaf, Tag("feature")]
    | Annotated[ConsentLeaf, Tag("consent")],
    Discriminator(
        _kind,
        custom_error_type="condition_kind",
        custom_error_message=(
            "a condition is an object with exactly one of the keys: " + ", ".join(_KINDS)
        ),
    ),
]

_MODELS: dict[str, type[BaseModel]] = {
    "all": All,
    "any": AnyOf,
    "not": Not,
    "attribute": AttributeLeaf,
    "events": EventsLeaf,
    "feature": FeatureLeaf,
    "consent": ConsentLeaf,
}
for _model in (All, AnyOf, Not):
    _model.model_rebuild()

condition_adapter: TypeAdapter[Condition] = TypeAdapter(Condition)

_FIX = "see the condition format in docs/segments.md"


def parse_condition(data: Any, *, where: str = "condition") -> Condition:
    """A condition from parsed YAML or JSON; a ``ValidationFailedError`` names the path."""
    try:
        return condition_adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts: list[str] = [where]
        for part in first["loc"]:  # a tag and its field share a name: say it once
            if str(part) != parts[-1]:
                parts.append(str(part))
        path = ".".join(parts)
        raise ValidationFailedError(f"{path}: {first['msg']}", field=path, fix=_FIX) from None


def dump_condition(condition: Condition) -> Any:
    """The condition as plain data (JSON-ready), the form it is stored in."""
    return condition_adapter.dump_python(
        condition, mode="json", by_alias=True, exclude_none=True, exclude_defaults=False
    )


# --- facts about one HCP and the evaluation ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventFact:
    occurred_at: dt.datetime
    channel: str | None
    action: str | None
    brand: str | None = None
    content_id: str | None = None
    function: str | None = None


@dataclass(frozen=True, slots=True)
class HcpFacts:
    """What a condition may read about one HCP."""

    hcp_id: str
    attributes: Mapping[str, Any]
    consent: frozenset[ConsentKey] = frozenset()
    """The consent keys the ledger allows now (only those the condition asks about matter)."""
    events: Sequence[EventFact] = field(default_factory=tuple)
    """The HCP's events, through all its identifiers (at least the condition's longest
    window back from ``now``)."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value)


def _attribute(cond: AttributeCondition, attributes: Mapping[str, Any]) -> bool:
    if cond.name is AttributeName.ADOPTION_STAGE:
        stages = attributes.get("adoption_stage") or {}
        value = stages.get(cond.brand) if isinstance(stages, Mapping) else None
    else:
        value = attributes.get(cond.name.value)
    if cond.op is Op.MISSING:
        return _missing(value)
    if _missing(value):
        return False
    if cond.op is Op.EXISTS:
        return True
    wanted = cond.values()
    if isinstance(value, list):  # segments: set semantics
        have = set(value)
        if cond.op is Op.EQ:
            return wanted[0] in have
        if cond.op is Op.NE:
            return wanted[0] not in have
        if cond.op is Op.IN:
            return any(w in have for w in wanted)
        if cond.op is Op.NOT_IN:
            return not any(w in have for w in wanted)
        return False
    return _compare(cond.op, value, wanted)


def _compare(op: Op, value: Any, wanted: Sequence[Any]) -> bool:
    if op is Op.EQ:
        return bool(value == wanted[0])
    if op is Op.NE:
        return bool(value != wanted[0])
    if op is Op.IN:
        return value in wanted
    if op is Op.NOT_IN:
        return value not in wanted
    if op is Op.GT:
        return bool(value > wanted[0])
    if op is Op.GTE:
        return bool(value >= wanted[0])
    if op is Op.LT:
        return bool(value < wanted[0])
    if op is Op.LTE:
        return bool(value <= wanted[0])
    return False


def window_start(now: dt.datetime, days: int) -> dt.datetime:
    """Events count when ``window_start < occurred_at <= now``."""
    return now - dt.timedelta(days=days)


def matches(f: EventFilter, e: EventFact, now: dt.datetime) -> bool:
    if e.channel is None or e.action is None:  # only interactions count
        return False
    if not window_start(now, f.within_days) < e.occurred_at <= now:
        return False
    if f.channel is not None and e.channel not in f.channel:
        return False
    if f.action is not None and e.action not in f.action:
        return False
    if f.brand is not None and e.brand not in f.brand:
        return False
    if f.content_id is not None and e.content_id not in f.content_id:
        return False
    return f.function is None or e.function == f.function.value


def count_of(f: EventFilter, events: Sequence[EventFact], now: dt.datetime) -> int:
    return sum(1 for e in events if matches(f, e, now))


def feature_value(
    cond: FeatureCondition, events: Sequence[EventFact], now: dt.datetime
) -> float | None:
    numerator, denominator = cond.filters()
    top = count_of(numerator, events, now)
    if denominator is None:
        return float(top)
    bottom = count_of(denominator, events, now)
    return None if bottom == 0 else top / bottom


def evaluate(condition: Condition, facts: HcpFacts, now: dt.datetime) -> bool:
    """Does the condition hold for this HCP at ``now``?"""
    if isinstance(condition, All):
        return all(evaluate(c, facts, now) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(evaluate(c, facts, now) for c in condition.any)
    if isinstance(condition, Not):
        return not evaluate(condition.not_, facts, now)
    if isinstance(condition, AttributeLeaf):
        return _attribute(condition.attribute, facts.attributes)
    if isinstance(condition, EventsLeaf):
        cond = condition.events
        return _compare(cond.op, count_of(cond.filter(), facts.events, now), (cond.count,))
    if isinstance(condition, FeatureLeaf):
        value = feature_value(condition.feature, facts.events, now)
        if value is None or math.isnan(value):
            return False
        return _compare(condition.feature.op, value, (condition.feature.value,))
    if isinstance(condition, ConsentLeaf):
        return condition.consent.key() in facts.consent
    raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover


# --- what a condition reads (for bulk evaluation and for loading facts) ------------------------
Leaf = AttributeLeaf | EventsLeaf | FeatureLeaf | ConsentLeaf


def leaves(condition: Condition) -> Iterator[Leaf]:
    if isinstance(condition, All):
        for c in condition.all:
            yield from leaves(c)
    elif isinstance(condition, AnyOf):
        for c in condition.any:
            yield from leaves(c)
    elif isinstance(condition, Not):
        yield from leaves(condition.not_)
    else:
        yield condition


def event_filters(condition: Condition) -> list[EventFilter]:
    """Every distinct event count the condition needs, in a stable order."""
    seen: dict[tuple[Any, ...], EventFilter] = {}
    for leaf in leaves(condition):
        found: list[EventFilter] = []
        if isinstance(leaf, EventsLeaf):
            found.append(leaf.events.filter())
        elif isinstance(leaf, FeatureLeaf):
            top, bottom = leaf.feature.filters()
            found.extend(f for f in (top, bottom) if f is not None)
        for f in found:
            seen.setdefault(f.key(), f)
    return list(seen.values())


def consent_keys(condition: Condition) -> list[ConsentKey]:
    return sorted(
        {leaf.consent.key() for leaf in leaves(condition) if isinstance(leaf, ConsentLeaf)}
    )


def max_window_days(condition: Condition) -> int:
    """The longest look-back of the condition (0 when it reads no events)."""
    return max((f.within_days for f in event_filters(condition)), default=0)


def reads_events(condition: Condition) -> bool:
    return any(isinstance(leaf, EventsLeaf | FeatureLeaf) for leaf in leaves(condition))
