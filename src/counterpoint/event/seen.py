"""Which message ids the log already holds: an in-memory set of their MD5s, no I/O.

The embedded log refuses a repeated message id by its 128-bit MD5. ``SeenKeys`` holds the keys
of the stored ids in memory (read from the log file, so durable), so the log can tell new
rows from repeats before it writes and insert the new ones plainly, with no unique index for
DuckDB to maintain.

A key is two unsigned 64-bit halves (``hi``, ``lo``). The keys are kept as sorted runs (by
``hi``, ``lo`` alongside) whose sizes at least double from newest to oldest, merged like a
binary counter: adding is amortised O(log n) per key, and a lookup is one binary search per
run (about 27 runs for 100M keys at worst, usually far fewer). Memory: 16 bytes per stored
message id.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Halves", "SeenKeys"]

Halves = npt.NDArray[np.uint64]
Mask = npt.NDArray[np.bool_]


class _Run:
    """Keys sorted by ``hi`` (``lo`` in the same order), without exact repeats side by side."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi: Halves, lo: Halves) -> None:
        order = np.argsort(hi, kind="stable")  # a merge when ``hi`` is two sorted runs
        hi, lo = hi[order], lo[order]
        keep = np.ones(len(hi), dtype=np.bool_)
        keep[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        self.hi: Halves = hi[keep]
        self.lo: Halves = lo[keep]

    def __len__(self) -> int:
        return len(self.hi)

    def contains(self, hi: Halves, lo: Halves) -> Mask:
        """Per key (``hi`` sorted ascending for locality), whether the run holds it."""
        at = np.searchsorted(self.hi, hi, side="left")
        inside = at < len(self.hi)
        found = np.zeros(len(hi), dtype=np.bool_)
        found[inside] = (self.hi[at[inside]] == hi[inside]) & (self.lo[at[inside]] == lo[inside])
        # Two ids whose MD5s share the high 64 bits: look through every key with that ``hi``
        # (essentially never more than one).
        shared = inside & ~found
        shared[shared] = self.hi[at[shared]] == hi[shared]
        for i in np.flatnonzero(shared):
            end = np.searchsorted(self.hi, hi[i], side="right")
            found[i] = bool((self.lo[at[i] : end] == lo[i]).any())
        return found


class SeenKeys:
    """Every 128-bit key added so far, exactly."""

    def __init__(self, hi: Halves | None = None, lo: Halves | None = None) -> None:
        self._runs: list[_Run] = []
        if hi is not None and lo is not None:
            self.add(hi, lo)

    @property
    def runs(self) -> int:
        return len(self._runs)

    def run_sizes(self) -> list[int]:
        """Keys per run, oldest first."""
        return [len(run) for run in self._runs]

    def add(self, hi: Halves, lo: Halves) -> None:
        """Remember these keys (repeats, and keys already held, are fine)."""
        if not len(hi):
            return
        self._runs.append(_Run(_halves(hi), _halves(lo)))
        # Keep each run more than twice the size of the next one: merge while it is not.
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(
                _Run(np.concatenate([older.hi, newer.hi]), np.concatenate([older.lo, newer.lo]))
            )

    def contains(self, hi: Halves, lo: Halves) -> Mask:
        """Per key, whether it was added before."""
        hi, lo = _halves(hi), _halves(lo)
        found = np.zeros(len(hi), dtype=np.bool_)
        if not len(hi) or not self._runs:
            return found
        order = np.argsort(hi, kind="stable")
        sorted_hi, sorted_lo = hi[order], lo[order]
        hit = np.zeros(len(hi), dtype=np.bool_)
        for run in self._runs:
            hit |= run.contains(sorted_hi, sorted_lo)
        found[order] = hit
        return found

    def new(self, hi: Halves, lo: Halves) -> Mask:
        """Per key, whether it is new: never added, and its first occurrence among these keys
        (a later repeat within the same keys is not new)."""
        hi, lo = _halves(hi), _halves(lo)
        first = np.zeros(len(hi), dtype=np.bool_)
        if len(hi):
            order = np.lexsort((lo, hi))  # stable: equal keys keep their order
            h, lo_ = hi[order], lo[order]
            first[order[0]] = True
            first[order[1:]] = (h[1:] != h[:-1]) | (lo_[1:] != lo_[:-1])
        return first & ~self.contains(hi, lo)


def _halves(values: Halves) -> Halves:
    return np.asarray(values, dtype=np.uint64)
