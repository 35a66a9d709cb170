"""Per-attribute merge strategies for HCP profile attributes. Pure, no I/O.

Each source states attribute values for identifiers; when identifiers are merged into one
profile, ``merge_attributes`` folds every stated value into one value per attribute. The result
depends only on the *set* of values, never on their order. See docs/identity.md.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, replace
from types import MappingProxyType

__all__ = [
    "DEFAULT_STRATEGIES",
    "AttributeValue",
    "MergeStrategy",
    "is_empty",
    "merge_attributes",
    "source_rank",
]


class MergeStrategy(enum.StrEnum):
    MOST_RECENT = "most_recent"
    """The value with the latest observed_at, then the highest seq."""
    NON_EMPTY = "non_empty"
    """The best non-empty value: master data before others, then the latest, then highest seq."""
    UNION = "union"
    """The sorted union of all list/set values (a scalar counts as a one-element set)."""
    MAX = "max"
    MIN = "min"


@dataclass(frozen=True)
class AttributeValue:
    """One source's statement of one attribute, at a time and log position."""

    name: str
    value: object
    observed_at: dt.datetime
    seq: int
    source: str


_NON_EMPTY_NAMES = (
    "first_name",
    "last_name",
    "title",
    "specialty",
    "market",
    "preferred_language",
    "time_zone",
    "territory",
)
_MOST_RECENT_NAMES = (
    "email",
    "phone",
    "preferred_channel",
    "preferred_contact_time",
    "potential_decile",
    "persona",
    "adoption_stage",
)

DEFAULT_STRATEGIES: Mapping[str, MergeStrategy] = MappingProxyType(
    dict.fromkeys(_NON_EMPTY_NAMES, MergeStrategy.NON_EMPTY)
    | dict.fromkeys(_MOST_RECENT_NAMES, MergeStrategy.MOST_RECENT)
    | {"segments": MergeStrategy.UNION}
)
"""HCP attributes. ``adoption_stage`` is a dict brand→stage, merged per brand (MOST_RECENT)."""


def source_rank(source: str) -> int:
    """Lower is more trusted: master data before every other source."""
    return 0 if source == "master_data" else 1


def is_empty(value: object) -> bool:
    """None, a blank string, or an empty collection. ``0`` and ``False`` are values."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, bytes | bytearray):
        return not value
    return isinstance(value, Sized) and len(value) == 0


def _canonical(value: object) -> str:
    """A text form that is the same for equal values whatever their internal order."""
    if isinstance(value, Mapping):
        items = sorted(f"{_canonical(k)}:{_canonical(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, set | frozenset):
        return "set(" + ",".join(sorted(_canonical(v) for v in value)) + ")"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


def _recency(v: AttributeValue) -> tuple[dt.datetime, int, int, str, str]:
    return (v.observed_at, v.seq, -source_rank(v.source), v.source, _canonical(v.value))


def _elements(value: object) -> Iterable[object]:
    if isinstance(value, list | tuple | set | frozenset):
        return value
    return (value,)


def _sorted_values(values: Iterable[object]) -> list[object]:
    unique = {_canonical(v): v for v in values}
    try:
        return sorted(unique.values(), key=lambda v: (v, _canonical(v)))
    except TypeError:
        return [unique[key] for key in sorted(unique)]


def _merge_one(strategy: MergeStrategy, values: list[AttributeValue]) -> object:
    present = [v for v in values if v.value is not None]
    if strategy is MergeStrategy.UNION:
        return _sorted_values(e for v in present for e in _elements(v.value))
    if strategy is MergeStrategy.NON_EMPTY:
        present = [v for v in present if not is_empty(v.value)]
        if not present:
            return None
        return max(present, key=lambda v: (-source_rank(v.source), *_recency(v))).value
    if not present:
        return None
    if strategy is MergeStrategy.MOST_RECENT:
        return max(present, key=_recency).value
    pick = max if strategy is MergeStrategy.MAX else min
    return pick((v.value for v in present), key=lambda x: (x, _canonical(x)))


def merge_attributes(
    values: Iterable[AttributeValue],
    strategies: Mapping[str, MergeStrategy],
    default: MergeStrategy = MergeStrategy.MOST_RECENT,
) -> dict[str, object]:
    """One value per attribute name, each merged by its strategy (``default`` when unnamed).

    ``None`` means "not stated" and is ignored by every strategy. A dict value (such as
    ``adoption_stage``) is merged key by key: key ``k`` of attribute ``name`` uses
    ``strategies["name.k"]`` if present, else the strategy of ``name``; the result is a dict
    with sorted keys. An attribute with dict values and other non-None values is an error.
    MAX and MIN raise TypeError when the values of one attribute cannot be compared.
    """
    plain: dict[str, list[AttributeValue]] = {}
    keyed: dict[str, dict[str, list[AttributeValue]]] = {}
    for item in values:
        if isinstance(item.value, Mapping):
            parts = keyed.setdefault(item.name, {})
            for key, sub in item.value.items():
                parts.setdefault(str(key), []).append(replace(item, value=sub))
        else:
            plain.setdefault(item.name, []).append(item)

    merged: dict[str, object] = {}
    for name in sorted(plain.keys() | keyed.keys()):
        strategy = strategies.get(name, default)
        if name not in keyed:
            merged[name] = _merge_one(strategy, plain[name])
            continue
        if any(v.value is not None for v in plain.get(name, ())):
            raise ValueError(f"attribute {name!r} mixes dict values with other values")
        merged[name] = {
            key: _merge_one(strategies.get(f"{name}.{key}", strategy), parts)
            for key, parts in sorted(keyed[name].items())
        }
    return merged
