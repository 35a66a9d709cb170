"""From the commit of a consent withdrawal to the first refused guard check.

A sender thread polls ``GuardService.check`` for one HCP, as a send path would before each
send; the main thread grants consent, waits until the sender sees the contact allowed, then
commits a withdrawal (``ConsentService.withdraw``) and notes the time it returned. The
figure is the time from that commit to the first refusal the sender observes (0 when the
sender saw it before ``withdraw`` returned). Median and p99 over many trials; goal <= 1 s.

A second series withdraws through ingestion, as an e-mail unsubscribe or an SMS gateway
would: a ``Consent Revoked`` track event through the tracking API's code path (mapping,
group commit, acknowledgement), then the consent consumer (woken by the commit) records the
revocation; the figure runs from the acknowledgement to the first refusal.
Baseline, same run: the duration of one ``GuardService.check`` (the shortest possible
reaction of a sender polling back to back). Embedded deployment, synthetic data.

    .venv/bin/python bench/withdrawal.py                  # 200 trials
    .venv/bin/python bench/withdrawal.py --tiny           # CI
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, add_common_args, command_line, machine_info, write_json

TINY_SUPPORTED = True


class Sender(threading.Thread):
    """Polls the guard for one HCP and notes when each answer was first seen."""

    def __init__(self, check: object) -> None:
        super().__init__(daemon=True)
        self._check = check
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.allowed = True
        self.changed_at = time.perf_counter()
        self.durations: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            allowed = self._check()  # type: ignore[operator]
            end = time.perf_counter()
            self.durations.append(end - start)
            with self.lock:
                if allowed != self.allowed:
                    self.allowed, self.changed_at = allowed, end
            time.sleep(0.0005)

    def wait_for(self, allowed: bool, timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if self.allowed == allowed:
                    return self.changed_at
            time.sleep(0.0002)
        raise RuntimeError(f"the sender never saw allowed={allowed}")


def _event_series(container: Any, sender: Sender, target: str, trials: int) -> list[float]:
    """Withdrawals as ``Consent Revoked`` events through ingestion (background consumers)."""
    import asyncio
    import base64
    import json

    from counterpoint.consent.ledger import (
        ConsentChannel,
        ConsentScope,
        ConsentSource,
        ConsentState,
        Proof,
        Purpose,
    )
    from counterpoint.event.service import SegmentCall
    from counterpoint.policy.audit import Actor

    _, key = container.write_keys.create("bench unsubscribe source")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    subject = container.profiles.resolve(target).identifiers[0]
    container.start_background()
    latencies: list[float] = []
    for trial in range(trials):
        container.clock.advance(dt.timedelta(seconds=1))
        container.consents.record(
            hcp_id=target, subject=None,
            scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
            state=ConsentState.GRANTED,
            proof=Proof(ConsentSource.WEB_FORM, "bench", wording_version="v1"),
            actor=Actor.system("bench"), reason=f"synthetic re-grant (event series) {trial}",
        )  # fmt: skip
        sender.wait_for(True)
        container.clock.advance(dt.timedelta(seconds=1))
        body = {
            "type": "track", "event": "Consent Revoked", "userId": subject,
            "messageId": f"bench-unsubscribe-{trial}",
            "timestamp": container.clock.now().isoformat(),
            "properties": {"channel": "email", "purpose": "promotional", "market": "DE",
                           "synthetic": True},
        }  # fmt: skip
        call = SegmentCall(json.dumps(body).encode(), None, auth, "track")
        result = asyncio.run(container.ingest.ingest(call))
        if result.accepted != 1:
            raise RuntimeError(f"the unsubscribe event was not accepted: {result}")
        acknowledged = time.perf_counter()
        seen = sender.wait_for(False)
        latencies.append(max(0.0, seen - acknowledged) * 1000)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--hcps", type=int, default=2_000)
    args = parser.parse_args(argv)
    if args.tiny:
        args.trials, args.hcps = 10, 100

    from bench.guard_single import open_store, seed_store
    from counterpoint.consent.ledger import (
        ConsentChannel,
        ConsentScope,
        ConsentSource,
        ConsentState,
        Proof,
        Purpose,
    )
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.audit import Actor
    from counterpoint.policy.guard_service import CheckRequest

    root = Path(tempfile.mkdtemp(prefix="withdrawal-"))
    container = open_store(root)
    latencies: list[float] = []
    early = 0
    try:
        ids = seed_store(container, args.hcps, 2)
        target = ids[len(ids) // 2]
        ref = container.profiles.resolve(target)
        actor = Actor.system("bench")
        request = CheckRequest(target, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL)
        sender = Sender(lambda: container.guard.check(request, role=None).allowed)
        sender.start()
        for trial in range(args.trials):
            # grant (a little later each time: the ledger orders by effective time)
            container.clock.advance(dt.timedelta(seconds=1))
            container.consents.record(
                hcp_id=target, subject=None,
                scope=ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE"),
                state=ConsentState.GRANTED,
                proof=Proof(ConsentSource.WEB_FORM, "bench", wording_version="v1"),
                actor=actor, reason=f"synthetic re-grant {trial}",
            )  # fmt: skip
            sender.wait_for(True)
            container.clock.advance(dt.timedelta(seconds=1))
            container.consents.withdraw(
                ref, ConsentChannel.EMAIL, proof=Proof(ConsentSource.ONE_CLICK, "hcp"),
                actor=actor, reason="synthetic unsubscribe", purposes=[Purpose.PROMOTIONAL],
                markets=["DE"],
            )  # fmt: skip
            committed = time.perf_counter()
            seen = sender.wait_for(False)
            if seen < committed:
                early += 1
            latencies.append(max(0.0, seen - committed) * 1000)
        event_latencies = _event_series(container, sender, target, args.trials)
        sender.stop.set()
        sender.join()
        check_ms = statistics.median(sender.durations) * 1000
    finally:
        container.close()
        shutil.rmtree(root, ignore_errors=True)

    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    by_event = sorted(event_latencies)
    event_p99 = by_event[min(len(by_event) - 1, int(len(by_event) * 0.99))]
    extra = {"trials": args.trials, "seen_before_withdraw_returned": early, "goal": "<= 1 s"}
    results = [
        Result("withdrawal -> first refusal p99", p99, "ms", "one GuardService.check", check_ms,
               extra=extra),
        Result("withdrawal -> first refusal median", median, "ms", "one GuardService.check",
               check_ms),
        Result("unsubscribe event ack -> first refusal p99", event_p99, "ms",
               "one GuardService.check", check_ms, extra={"trials": len(by_event)}),
        Result("unsubscribe event ack -> first refusal median", statistics.median(by_event),
               "ms", "one GuardService.check", check_ms),
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
