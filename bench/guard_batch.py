"""The guard's batch form: the NumPy kernel's checks per second, and ``check_many`` end to end.

1. Kernel: ``policy.guard.kernel`` over synthetic ``GuardArrays`` (one row per candidate:
   consent state, touches and minutes per cap for four caps, hours since the last touch,
   local minute and weekday, do-not-contact, suppression, role, the HCP's own promotional
   limit). Baseline, same run and same
   arrays: a bare NumPy mask ``(consent == 0) & ~dnc & (touches < cap)``. Goal >= 1,000,000
   checks/s.
2. ``GuardService.check_many`` end to end on a seeded embedded store (bulk loads of profiles,
   consent, touches, do-not-contact and suppressions, then encode + kernel), candidates/s.

    .venv/bin/python bench/guard_batch.py                 # 1,000,000 rows; 10,000 candidates
    .venv/bin/python bench/guard_batch.py --tiny          # CI
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Result,
    add_common_args,
    command_line,
    machine_info,
    median_of,
    write_json,
)  # fmt: skip

TINY_SUPPORTED = True


def synthetic_arrays(n: int, seed: int = 3) -> object:
    from counterpoint.policy.guard import GuardArrays

    rng = np.random.default_rng(seed)
    k = 4
    return GuardArrays(
        known=rng.random(n) > 0.01,
        consent=rng.choice(np.arange(6, dtype=np.int8), n, p=[0.7, 0.1, 0.05, 0.05, 0.05, 0.05]),
        role_ok=rng.random(n) > 0.05,
        dnc=rng.random(n) < 0.02,
        suppressed=rng.random(n) < 0.01,
        cap_used=rng.integers(0, 8, (n, k)).astype(np.float64),
        cap_max=np.where(rng.random((n, k)) < 0.8, rng.integers(2, 10, (n, k)), np.inf),
        minutes_used=rng.random((n, k)) * 300,
        minutes_max=np.where(rng.random((n, k)) < 0.3, 240.0, np.inf),
        minutes=rng.choice([0.5, 2.0, 3.0, 15.0], n),
        hours_since=np.where(rng.random(n) < 0.7, rng.random(n) * 200, np.inf),
        gap_hours=rng.choice([0.0, 24.0, 48.0, 72.0], n),
        local_minute=rng.integers(0, 1440, n).astype(np.int16),
        quiet_start=np.full(n, 20 * 60, np.int16),
        quiet_end=np.full(n, 8 * 60, np.int16),
        weekday=rng.integers(0, 7, n).astype(np.int8),
        quiet_days=np.full(n, 1 << 6, np.uint8),
        promo_used=rng.integers(0, 6, n).astype(np.float64),
        promo_max=np.where(rng.random(n) < 0.1, rng.choice([1.0, 2.0, 4.0, 8.0], n), np.inf),
    )


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--hcps", type=int, default=5_000)
    parser.add_argument("--candidates", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.repeats, args.hcps, args.candidates = 100_000, 3, 300, 1_000

    from counterpoint.policy.guard import GuardArrays, kernel

    arrays = synthetic_arrays(args.rows)
    assert isinstance(arrays, GuardArrays)

    def kernel_rate() -> float:
        start = time.perf_counter()
        kernel(arrays)
        return args.rows / (time.perf_counter() - start)

    def bare_rate() -> float:
        start = time.perf_counter()
        mask = (arrays.consent == 0) & ~arrays.dnc & (arrays.cap_used[:, 0] < arrays.cap_max[:, 0])
        mask.sum()
        return args.rows / (time.perf_counter() - start)

    kernel(arrays)  # warm up
    k_rate = median_of(kernel_rate, args.repeats)
    b_rate = median_of(bare_rate, args.repeats)
    allowed, _ = kernel(arrays)

    from bench.guard_single import open_store, seed_store
    from counterpoint.consent.ledger import Purpose
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.guard_service import CheckRequest

    root = Path(tempfile.mkdtemp(prefix="guard-batch-"))
    container = open_store(root)
    try:
        ids = seed_store(container, args.hcps, 4)
        rng = random.Random(5)
        channels = [Channel.CAMPAIGN_EMAIL, Channel.SMS, Channel.WEBINAR]
        requests = [
            CheckRequest(rng.choice(ids), rng.choice(channels), Purpose.PROMOTIONAL,
                         brand=rng.choice([None, "ZENTROVA"]))
            for _ in range(args.candidates)
        ]  # fmt: skip
        container.guard.check_many(requests[:100], role=None)  # warm up

        def many_rate() -> float:
            start = time.perf_counter()
            container.guard.check_many(requests, role=None)
            return args.candidates / (time.perf_counter() - start)

        e2e = median_of(many_rate, max(1, args.repeats // 2))
        sample = requests[: min(300, len(requests))]

        def single_rate() -> float:
            start = time.perf_counter()
            for r in sample:
                container.guard.check(r, role=None)
            return len(sample) / (time.perf_counter() - start)

        one_by_one = median_of(single_rate, 1)
    finally:
        container.close()
        shutil.rmtree(root, ignore_errors=True)

    results = [
        Result("guard kernel", k_rate, "checks/s", "bare NumPy mask", b_rate,
               extra={"rows": args.rows, "allowed_share": float(allowed.mean()),
                      "goal": ">= 1,000,000 checks/s"}),
        Result("check_many end to end (DB loads included)", e2e, "candidates/s",
               "GuardService.check one by one", one_by_one,
               extra={"hcps": args.hcps, "candidates": args.candidates}),
    ]  # fmt: skip
    print(f"# {command_line()}")
    print(f"# machine: {machine_info()}")
    for result in results:
        result.print()
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
