"""``SeenKeys``: the set of stored message ids' 128-bit keys that lets the log skip its slow
path. A key is new exactly when it was never added and is its first occurrence in the batch.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.event.seen import SeenKeys

# A small alphabet of halves makes repeats (within and across batches) common, and keys that
# share their high half but differ in the low one; the extremes of the 64-bit range check
# that nothing is signed or truncated on the way.
_HALF = st.one_of(st.integers(0, 6), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]))
_KEY = st.tuples(_HALF, _HALF)
_BATCHES = st.lists(st.lists(_KEY, max_size=30), max_size=25)


def _split(keys: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([h for h, _ in keys], dtype=np.uint64),
        np.array([lo for _, lo in keys], dtype=np.uint64),
    )


@given(_BATCHES)
@settings(max_examples=300)
def test_new_is_exactly_never_added_and_first_in_the_batch(
    batches: list[list[tuple[int, int]]],
) -> None:
    seen = SeenKeys()
    model: set[tuple[int, int]] = set()
    for batch in batches:
        expected = []
        earlier: set[tuple[int, int]] = set()
        for key in batch:
            expected.append(key not in model and key not in earlier)
            earlier.add(key)
        assert seen.new(*_split(batch)).tolist() == expected
        assert seen.contains(*_split(batch)).tolist() == [k in model for k in batch]
        seen.add(*_split(batch))
        model.update(batch)
    everything = sorted(model | {(7, 0), (0, 7)})
    assert seen.contains(*_split(everything)).tolist() == [k in model for k in everything]


@given(st.lists(st.integers(1, 3_000), min_size=1, max_size=40))
def test_runs_at_least_double_from_newest_to_oldest(sizes: list[int]) -> None:
    seen = SeenKeys()
    start = 0
    for size in sizes:
        keys = np.arange(start, start + size, dtype=np.uint64)
        seen.add(keys, keys)
        start += size
    probe = np.arange(0, start + 5, dtype=np.uint64)
    assert seen.contains(probe, probe).sum() == start
    runs = seen.run_sizes()
    assert all(older > 2 * newer for older, newer in itertools.pairwise(runs))
    assert seen.runs <= max(1, int(np.log2(start)) + 1)


def test_built_from_stored_keys_knows_them_all() -> None:
    rng = np.random.default_rng(7)
    hi, lo = (rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64) for _ in range(2))
    seen = SeenKeys(hi, lo)
    assert seen.contains(hi, lo).all()
    assert not seen.contains(hi, lo + np.uint64(1)).any()  # same high half, other key
    assert seen.new(hi, lo + np.uint64(1)).all()


def test_an_empty_batch_is_fine() -> None:
    seen = SeenKeys()
    none = np.array([], dtype=np.uint64)
    assert seen.new(none, none).tolist() == []
    seen.add(none, none)
    assert seen.runs == 0
    zero = np.array([0], dtype=np.uint64)
    assert seen.contains(zero, zero).tolist() == [False]
