"""The eligible-content query: ``EligibleContent.query`` p50/p99 with 5,000 assets and variants.

Seeds an embedded deployment (SQLite + DuckDB in a temporary directory) with a synthetic
content library (5,000 approved global assets across markets, channels, languages, brands
and functions, their local variants, and some withdrawn, expired and draft items) and
synthetic HCPs in five markets with consents, then times ``EligibleContent.query`` (resolve
the HCP in scope, filter the in-memory catalog, one guard call for every (purpose, brand)
group) for random (HCP, channel) pairs: reps on rep channels, orchestration on automated ones.
The baseline, measured in the same run on the same HCPs, is one ``GuardService.check`` without
content. Goal: p99 <= 20 ms. All data is synthetic.

    .venv/bin/python bench/eligible_content.py            # 5,000 assets, 3,000 HCPs
    .venv/bin/python bench/eligible_content.py --tiny     # CI
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
MARKETS = {  # market -> (language, time zone)
    "DE": ("de", "Europe/Berlin"),
    "FR": ("fr", "Europe/Paris"),
    "IT": ("it", "Europe/Rome"),
    "ES": ("es", "Europe/Madrid"),
    "GB": ("en", "Europe/London"),
}
BRANDS = ["CARDIOMAX", "ZENTROVA", "PULMORA", "NEUVEXA", "OSTELIN", "DERMAVEL", "GLYCENTA"]
ASSET_CHANNELS = {
    "campaign_email": ["campaign_email"],
    "rep_email_template": ["rep_email"],
    "sms_text": ["sms"],
    "clm_deck": ["f2f_call", "remote_call"],
    "leaflet": ["f2f_call", "direct_mail"],
    "web_page": ["hcp_portal"],
    "event_invitation": ["campaign_email", "rep_email", "webinar"],
    "direct_mail": ["direct_mail"],
    "survey": ["campaign_email", "survey"],
}
REP_CHANNELS = ["rep_email", "f2f_call", "remote_call"]
SYSTEM_CHANNELS = ["campaign_email", "sms", "hcp_portal"]


def open_store(root: Path) -> Any:
    from counterpoint.container import open_container
    from counterpoint.kit.clock import FixedClock
    from counterpoint.settings import Settings

    settings = Settings(data_dir=root / "data", environment="test")
    return open_container(settings, clock=FixedClock(NOW))


def _row(rng: random.Random, i: int, code: str, **values: Any) -> dict[str, Any]:
    created = NOW - dt.timedelta(days=rng.randint(30, 400))
    row: dict[str, Any] = {
        "id": f"cnt_bench_{i:07d}",
        "code": code,
        "kind": "asset",
        "title": f"Synthetic asset {code}",
        "therapeutic_area": "synthetic",
        "topics": [],
        "journey_stage": rng.choice(["awareness", "consideration", "adoption", "advocacy"]),
        "claims": [],
        "minutes": rng.choice([0.5, 2.0, 5.0, 15.0]),
        "persona": rng.choice([None, "digital_first", "f2f_loyalist"]),
        "parent_id": None,
        "body": {},
        "fragment_codes": [],
        "version": 1,
        "content_hash": "0" * 64,
        "review_note": None,
        "author_id": "usr_bench",
        "author": "bench",
        "created_at": created,
        "updated_at": created,
        "approved_hash": "1" * 64,
        "withdrawn_at": None,
        "synthetic": True,
    }
    row.update(values)
    return row


def _state(rng: random.Random) -> str:
    """Mostly approved; some items withdrawn, expired or still in the workflow."""
    return rng.choices(["approved", "withdrawn", "expired", "draft", "in_review"],
                       [0.88, 0.04, 0.04, 0.02, 0.02])[0]  # fmt: skip


def content_rows(assets: int, seed: int = 5) -> list[dict[str, Any]]:
    """``assets`` approved global assets (plus ~12% in other states), each with 0-2 local
    variants (one market and its language each)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    total = int(assets / 0.88)
    for n in range(total):
        asset_type = rng.choice(list(ASSET_CHANNELS))
        markets = rng.sample(list(MARKETS), rng.randint(1, 3))
        function = rng.choices(["promotional", "educational", "medical"], [0.7, 0.15, 0.15])[0]
        approved_at = NOW - dt.timedelta(days=rng.randint(1, 300))
        common = {
            "asset_type": asset_type,
            "brand": None if function == "educational" and rng.random() < 0.5
                     else rng.choice(BRANDS),
            "function": function,
            "approval_channels": ASSET_CHANNELS[asset_type],
            "channels": ASSET_CHANNELS[asset_type],
            "valid_from": approved_at,
            "valid_until": NOW + dt.timedelta(days=rng.randint(-20, 500)),
            "approved_at": approved_at,
        }  # fmt: skip
        parent = _row(rng, len(rows), f"G{n:05d}", **common, state=_state(rng),
                      markets=markets, approval_markets=markets, job_code=f"JOB-G{n:05d}",
                      languages=sorted({"en", *(MARKETS[m][0] for m in markets)}))  # fmt: skip
        rows.append(parent)
        for v, market in enumerate(rng.sample(markets, min(len(markets), rng.randint(0, 2)))):
            rows.append(
                _row(rng, len(rows), f"G{n:05d}-{market}{v}", **common, state=_state(rng),
                     markets=[market], approval_markets=[market], parent_id=parent["id"],
                     job_code=f"JOB-G{n:05d}-{market}", languages=[MARKETS[market][0]])
            )  # fmt: skip
    return rows


def seed_content(container: Any, rows: list[dict[str, Any]]) -> None:
    from counterpoint.content.models import ContentGeneration, ContentItem

    with container.sessions.begin() as session:
        for start in range(0, len(rows), 2_000):
            session.execute(ContentItem.__table__.insert(), rows[start : start + 2_000])
        session.add(ContentGeneration(id=1, value=1))  # as the library does with each change


def seed_hcps(container: Any, hcps: int, seed: int = 9) -> list[str]:
    """Synthetic HCPs across the markets (some without a known language), with e-mail and
    visit consents for most purposes."""
    from counterpoint.consent.ledger import (
        ConsentChannel,
        ConsentScope,
        ConsentSource,
        ConsentState,
        Proof,
        Purpose,
    )
    from counterpoint.event.canonical import EventKind, LogEvent
    from counterpoint.policy.audit import Actor

    rng = random.Random(seed)
    events = []
    for i in range(hcps):
        market = list(MARKETS)[i % len(MARKETS)]
        language, zone = MARKETS[market]
        traits = {"market": market, "territory": f"T{i % 10}", "time_zone": zone}
        if rng.random() < 0.9:
            traits["preferred_language"] = language
        events.append(LogEvent(f"bench-el-{i}", EventKind.IDENTIFY, f"crm:ELIG{i:07d}", NOW, NOW,
                               "bench", payload={"traits": traits}, synthetic=True))  # fmt: skip
    container.log.append(events)
    container.catch_up()
    ids = [container.profiles.find_by_identifier(f"crm:ELIG{i:07d}") for i in range(hcps)]
    proof = Proof(ConsentSource.IMPORT, "bench", wording_version="v1")
    actor = Actor.system("bench")
    email, sms, visit = ConsentChannel.EMAIL, ConsentChannel.SMS, ConsentChannel.F2F_CALL
    grants = [(email, Purpose.PROMOTIONAL), (email, Purpose.MEDICAL), (email, Purpose.EDUCATIONAL),
              (sms, Purpose.PROMOTIONAL), (visit, Purpose.PROMOTIONAL)]  # fmt: skip
    with container.sessions.begin() as session:
        for i, hcp_id in enumerate(ids):
            market = list(MARKETS)[i % len(MARKETS)]
            for channel, purpose in grants:
                if rng.random() < 0.8:
                    container.consents.record_in(
                        session, hcp_id=hcp_id, subject=None,
                        scope=ConsentScope(channel, purpose, market),
                        state=ConsentState.GRANTED, proof=proof, actor=actor,
                        reason="synthetic grant", effective_at=NOW - dt.timedelta(days=60),
                        synthetic=True,
                    )  # fmt: skip
    return [i for i in ids if i is not None]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--assets", type=int, default=5_000, help="approved global assets")
    parser.add_argument("--hcps", type=int, default=3_000)
    parser.add_argument("--queries", type=int, default=3_000)
    args = parser.parse_args(argv)
    if args.tiny:
        args.assets, args.hcps, args.queries = 300, 100, 200

    from counterpoint.consent.ledger import Purpose
    from counterpoint.event.canonical import Channel
    from counterpoint.policy.access import Principal, Role
    from counterpoint.policy.guard_service import CheckRequest

    root = Path(tempfile.mkdtemp(prefix="eligible-content-"))
    container = open_store(root)
    try:
        seeded = time.perf_counter()
        rows = content_rows(args.assets)
        seed_content(container, rows)
        ids = seed_hcps(container, args.hcps)
        seeded = time.perf_counter() - seeded
        reload_s = time.perf_counter()
        container.catalog.refresh_if_stale()  # the first load (then only when the library moves)
        reload_s = time.perf_counter() - reload_s
        territories = frozenset(f"T{i}" for i in range(10))
        rep = Principal("usr_bench_rep", "bench rep", Role.SALES_REP, territories=territories)
        rng = random.Random(13)
        picks = []
        for _ in range(args.queries):
            if rng.random() < 0.5:
                picks.append((rng.choice(ids), Channel(rng.choice(REP_CHANNELS)), rep))
            else:
                picks.append((rng.choice(ids), Channel(rng.choice(SYSTEM_CHANNELS)), None))
        for hcp_id, channel, who in picks[:50]:  # warm caches and connections
            container.eligible.query(hcp_id, channel, who)
        timings: list[float] = []
        baseline: list[float] = []
        returned = 0
        for hcp_id, channel, who in picks:
            start = time.perf_counter()
            result = container.eligible.query(hcp_id, channel, who)
            timings.append((time.perf_counter() - start) * 1000)
            returned += len(result.items)
            request = CheckRequest(hcp_id, channel, Purpose.PROMOTIONAL)
            start = time.perf_counter()
            container.guard.check(request, role=who.role if who else None, viewer=who)
            baseline.append((time.perf_counter() - start) * 1000)
        refused: list[float] = []
        for hcp_id, channel, who in picks[: max(1, len(picks) // 5)]:
            start = time.perf_counter()
            container.eligible.query(hcp_id, channel, who, include_refused=True)
            refused.append((time.perf_counter() - start) * 1000)
    finally:
        container.close()
        shutil.rmtree(root, ignore_errors=True)

    p50, p99 = _percentiles(timings)
    b50, b99 = _percentiles(baseline)
    r50, r99 = _percentiles(refused)
    approved = sum(1 for r in rows if r["state"] == "approved")
    extra = {
        "items": len(rows),
        "approved_items": approved,
        "hcps": args.hcps,
        "queries": args.queries,
        "mean_items_returned": returned / len(picks),
        "p50_ms": p50,
        "catalog_load_s": reload_s,
        "seed_s": seeded,
        "goal": "p99 <= 20 ms",
    }
    results = [
        Result("EligibleContent.query p99", p99, "ms", "GuardService.check p99", b99, extra=extra),
        Result("EligibleContent.query p50", p50, "ms", "GuardService.check p50", b50),
        Result("EligibleContent.query include_refused p99", r99, "ms", "GuardService.check p99",
               b99, extra={"p50_ms": r50}),
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
