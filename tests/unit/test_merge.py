"""Attribute merge strategies: order independence, replay, and each strategy's rule."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.profile.merge import (
    DEFAULT_STRATEGIES,
    AttributeValue,
    MergeStrategy,
    is_empty,
    merge_attributes,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
STRATEGIES = dict(DEFAULT_STRATEGIES) | {"score": MergeStrategy.MAX, "low": MergeStrategy.MIN}
SOURCES = ["master_data", "identify", "track", "manual"]


def value(
    name: str, v: object, minutes: int = 0, seq: int = 0, source: str = "identify"
) -> AttributeValue:
    return AttributeValue(name, v, T0 + dt.timedelta(minutes=minutes), seq, source)


stage = st.sampled_from(["unaware", "aware", "trial", "adopter"])
values_by_name = {
    "first_name": st.sampled_from([None, "", "  ", "Jane", "Janet"]),
    "specialty": st.sampled_from([None, "cardiology", "oncology"]),
    "potential_decile": st.one_of(st.none(), st.integers(1, 10)),
    "segments": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
    "adoption_stage": st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["brandx", "brandy"]), stage, max_size=2)
    ),
    "score": st.one_of(st.none(), st.integers(-5, 5)),
    "low": st.one_of(st.none(), st.integers(-5, 5)),
    "persona": st.sampled_from([None, "digital_first", "f2f_loyalist"]),
    "unlisted": st.sampled_from(["x", "y", 3]),
}


@st.composite
def attribute_value(draw: st.DrawFn) -> AttributeValue:
    name = draw(st.sampled_from(sorted(values_by_name)))
    return AttributeValue(
        name,
        draw(values_by_name[name]),
        T0 + dt.timedelta(minutes=draw(st.integers(0, 3))),
        draw(st.integers(0, 2)),
        draw(st.sampled_from(SOURCES)),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(attribute_value(), max_size=20), st.data())
def test_merge_ignores_order_and_replay(values: list[AttributeValue], data: st.DataObject) -> None:
    expected = merge_attributes(values, STRATEGIES)
    shuffled = data.draw(st.permutations(values))
    assert merge_attributes(shuffled, STRATEGIES) == expected
    assert merge_attributes(values + shuffled, STRATEGIES) == expected
    assert set(expected) == {v.name for v in values}


def test_non_empty_prefers_master_data_then_the_latest() -> None:
    values = [
        value("last_name", "Doe", minutes=0, source="master_data"),
        value("last_name", "Doe-Smith", minutes=5, source="master_data"),
        value("last_name", "Typo", minutes=9, source="identify"),
        value("last_name", "", minutes=10, source="master_data"),
        value("last_name", None, minutes=11, source="master_data"),
    ]
    assert merge_attributes(values, DEFAULT_STRATEGIES) == {"last_name": "Doe-Smith"}


def test_non_empty_falls_back_to_other_sources_and_empty_never_overwrites() -> None:
    values = [
        value("title", "Dr", minutes=1, source="track"),
        value("title", "", minutes=2, source="master_data"),
        value("title", "  ", minutes=3, source="identify"),
    ]
    assert merge_attributes(values, DEFAULT_STRATEGIES) == {"title": "Dr"}
    assert merge_attributes([value("title", "")], DEFAULT_STRATEGIES) == {"title": None}


def test_most_recent_breaks_ties_by_seq_and_ignores_none() -> None:
    values = [
        value("persona", "f2f_loyalist", minutes=1, seq=7),
        value("persona", "digital_first", minutes=1, seq=8),
        value("persona", None, minutes=2, seq=9),
        value("persona", "hybrid", minutes=0, seq=99, source="master_data"),
    ]
    assert merge_attributes(values, DEFAULT_STRATEGIES) == {"persona": "digital_first"}


def test_union_is_sorted_and_deduplicated() -> None:
    values = [
        value("segments", ["kol", "cardio"]),
        value("segments", {"cardio", "high_potential"}),
        value("segments", None),
        value("segments", "early_adopter"),
    ]
    assert merge_attributes(values, DEFAULT_STRATEGIES) == {
        "segments": ["cardio", "early_adopter", "high_potential", "kol"]
    }
    assert merge_attributes([value("segments", None)], DEFAULT_STRATEGIES) == {"segments": []}


def test_max_and_min() -> None:
    strategies = {"hi": MergeStrategy.MAX, "lo": MergeStrategy.MIN}
    values = [value(n, v) for n in ("hi", "lo") for v in (3, None, 9, -2)]
    assert merge_attributes(values, strategies) == {"hi": 9, "lo": -2}


def test_adoption_stage_merges_per_brand() -> None:
    values = [
        value("adoption_stage", {"brandx": "aware", "brandy": "trial"}, minutes=1),
        value("adoption_stage", {"brandx": "adopter"}, minutes=2),
        value("adoption_stage", {}, minutes=3),
        value("adoption_stage", None, minutes=4),
    ]
    assert merge_attributes(values, DEFAULT_STRATEGIES) == {
        "adoption_stage": {"brandx": "adopter", "brandy": "trial"}
    }


def test_a_per_key_strategy_overrides_the_attribute_strategy() -> None:
    strategies = {"reach": MergeStrategy.MOST_RECENT, "reach.email": MergeStrategy.MAX}
    values = [value("reach", {"email": 5, "f2f": 1}), value("reach", {"email": 2, "f2f": 3}, 1)]
    assert merge_attributes(values, strategies) == {"reach": {"email": 5, "f2f": 3}}


def test_unnamed_attributes_use_the_default() -> None:
    values = [value("x", 1, minutes=1), value("x", 7, minutes=0)]
    assert merge_attributes(values, {}) == {"x": 1}
    assert merge_attributes(values, {}, MergeStrategy.MAX) == {"x": 7}


def test_mixing_dict_and_scalar_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="mixes"):
        merge_attributes([value("a", {"k": 1}), value("a", "flat")], {})


@pytest.mark.parametrize(
    ("candidate", "empty"),
    [(None, True), ("", True), (" ", True), ([], True), ({}, True), (set(), True), (0, False)],
)
def test_is_empty(candidate: object, empty: bool) -> None:
    assert is_empty(candidate) is empty
    assert is_empty(False) is False
