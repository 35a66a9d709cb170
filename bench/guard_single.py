"""One guard decision at a time: ``GuardService.check`` p50/p99 on a populated embedded store.

Seeds an embedded deployment (SQLite + DuckDB in a temporary directory) with synthetic HCPs,
a consent grant each, a contact policy and touches from the event log, then times
``GuardService.check`` (resolve the HCP, read consent fresh from the ledger, load touches,
do-not-contact entries and suppressions, decide) for random HCPs. The baseline, measured in
the same run, is the pure decision alone (``policy.guard.decide``) over facts loaded once.
Goal: p99 <= 2 ms. All data is synthetic.

    .venv/bin/python bench/guard_single.py                # 5,000 HCPs, 5,000 checks
    .venv/bin/python bench/guard_single.py --tiny         # CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, add_common_args, command_line, machine_info, write_json

TINY_SUPPORTED = True
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)  # Monday, 13:00 in Berlin
POLICY = {
    "market": "DE",
    "time_zone": "Europe/Berlin",
    "caps": [
        {"scope": "all", "period_days": 7, "max_touches": 6},
        {"scope": "all", "period_days": 30, "max_touches": 20, "max_minutes": 400},
        {"scope": "channel", "key": "campaign_email", "period_days": 7, "max_touches": 3},
        {"scope": "brand", "key": "ZENTROVA", "period_days": 30, "max_touches": 8},
    ],
    "min_gap_hours": {"campaign_email": 24, "f2f_call": 72},
    "quiet_hours": {"start": "20:00", "end": "08:00"},
    "quiet_weekdays": ["sunday"],
}


def open_store(root: Path) -> Any:
    from counterpoint.container import open_container
    from counterpoint.kit.clock import FixedClock
    from counterpoint.settings import Settings

    settings = Settings(data_dir=root / "data", environment="test")
    return open_container(settings, clock=FixedClock(NOW))


def seed_store(container: Any, hcps: int, touches_per_hcp: int, seed: int = 7) -> list[str]:
    """Synthetic HCPs (identify events), an e-mail grant each, the DE policy, and touches
    spread over the last 30 days. Returns the HCP ids."""
    from counterpoint.consent.ledger import (
        ConsentChannel,
        ConsentScope,
        ConsentSource,
        ConsentState,
        Proof,
        Purpose,
    )
    from counterpoint.event.canonical import Action, Channel, EventKind, LogEvent
    from counterpoint.policy.audit import Actor

    rng = random.Random(seed)
    actor = Actor.system("bench")
    events = []
    for i in range(hcps):
        traits = {"market": "DE", "territory": f"T{i % 20}", "time_zone": "Europe/Berlin"}
        subject = f"crm:BENCH{i:07d}"
        events.append(LogEvent(f"bench-id-{i}", EventKind.IDENTIFY, subject, NOW, NOW, "bench",
                               payload={"traits": traits}, synthetic=True))  # fmt: skip
        for j in range(touches_per_hcp):
            channel, action = rng.choice(
                [(Channel.CAMPAIGN_EMAIL, Action.SENT), (Channel.F2F_CALL, Action.CALL_COMPLETED),
                 (Channel.WEBINAR, Action.ATTENDED), (Channel.REP_EMAIL, Action.SENT)]
            )  # fmt: skip
            at = NOW - dt.timedelta(minutes=rng.randint(60, 30 * 24 * 60))
            brand = rng.choice([None, "ZENTROVA", "OTHER"])
            events.append(
                LogEvent(f"bench-t-{i}-{j}", EventKind.TRACK, subject, at, NOW, "bench",
                         channel=channel, action=action, brand=brand, synthetic=True)
            )  # fmt: skip
    for start in range(0, len(events), 50_000):
        container.log.append(events[start : start + 50_000])
    container.catch_up()
    ids = [container.profiles.find_by_identifier(f"crm:BENCH{i:07d}") for i in range(hcps)]
    proof = Proof(ConsentSource.IMPORT, "bench", wording_version="v1")
    with container.sessions.begin() as session:
        for hcp_id in ids:
            container.consents.record_in(
                session, hcp_id=hcp_id, subject=None,
                scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
                state=ConsentState.GRANTED, proof=proof, actor=actor, reason="synthetic grant",
                effective_at=NOW - dt.timedelta(days=60),
            )  # fmt: skip
    container.contact.set_policies(POLICY, actor, "benchmark policy")
    return [i for i in ids if i is not None]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--hcps", type=int, default=5_000)
    parser.add_argument("--checks", type=int, default=5_000)
    parser.add_argument("--touches", type=int, default=8, help="touches per HCP")
    args = parser.parse_args(argv)
    if args.tiny:
        args.hcps, args.checks, args.touches = 300, 300, 4

    from counterpoint.consent.ledger import Purpose
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.guard import Candidate, decide
    from counterpoint.policy.guard_service import CheckRequest, _facts, _since

    root = Path(tempfile.mkdtemp(prefix="guard-single-"))
    container = open_store(root)
    try:
        seeded = time.perf_counter()
        ids = seed_store(container, args.hcps, args.touches)
        seeded = time.perf_counter() - seeded
        rng = random.Random(11)
        picks = [rng.choice(ids) for _ in range(args.checks)]
        requests = [CheckRequest(h, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, brand="ZENTROVA")
                    for h in picks]  # fmt: skip
        for r in requests[:50]:  # warm caches and connections
            container.guard.check(r, role=None)
        service: list[float] = []
        allowed = 0
        for r in requests:
            start = time.perf_counter()
            decision = container.guard.check(r, role=None)
            service.append((time.perf_counter() - start) * 1000)
            allowed += decision.allowed
        # the baseline: the pure decision over facts loaded beforehand
        policy = container.contact.policy("DE")
        loaded = {}
        for h in set(picks):
            ref = container.profiles.resolve(h)
            with container.sessions() as session:
                known = container.contact.facts_of(session, [ref], _since(policy, NOW))[ref.id]
            loaded[h] = _facts(ref, container.consents.records(ref), known)
        pure: list[float] = []
        for r in requests:
            candidate = Candidate(r.channel, r.purpose, NOW, brand=r.brand)
            start = time.perf_counter()
            decide(loaded[r.hcp_id], policy, candidate)
            pure.append((time.perf_counter() - start) * 1000)
    finally:
        container.close()
        shutil.rmtree(root, ignore_errors=True)

    p50, p99 = _percentiles(service)
    b50, b99 = _percentiles(pure)
    extra = {"hcps": args.hcps, "checks": args.checks, "allowed": allowed, "seed_s": seeded}
    results = [
        Result("GuardService.check p99", p99, "ms", "pure decide p99", b99,
               extra={**extra, "p50_ms": p50, "goal": "p99 <= 2 ms"}),
        Result("GuardService.check p50", p50, "ms", "pure decide p50", b50),
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
