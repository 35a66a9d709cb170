"""HTTP ingestion: POST /v1/batch with 100 events per request, acknowledged only when durable.

Figure: events/s accepted by the real API on the embedded deployment (DuckDB log, group
commit). Baseline, measured in the same run: a FastAPI endpoint that decodes the same bodies
and discards them. All events are synthetic.

    .venv/bin/python bench/ingest_http.py            # 2,000 requests x 100 events, 16 and 64
                                                     # connections
    .venv/bin/python bench/ingest_http.py --tiny     # CI
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from fastapi import FastAPI, Request

from bench.common import Result, add_common_args, uvicorn_server, write_json
from bench.loadgen import build_post, run_load_sync

TINY_SUPPORTED = True
EVENTS_PER_REQUEST = 100

baseline_app = FastAPI()


@baseline_app.post("/v1/batch")
async def _decode_and_discard(request: Request) -> dict[str, bool]:
    msgspec.json.decode(await request.body())
    return {"success": True}


@baseline_app.get("/health")
def _health() -> dict[str, str]:
    return {"status": "ok"}


def _npi(n: int) -> str:
    body = f"{100_000_000 + n % 800_000_000:09d}"
    digits = [int(c) for c in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _bodies(requests: int, run: str) -> list[bytes]:
    channels = [("Email Opened", {}), ("Call", {"channel": "f2f_call", "action": "call_completed"})]
    bodies = []
    for r in range(requests):
        batch: list[dict[str, Any]] = []
        for i in range(EVENTS_PER_REQUEST):
            n = r * EVENTS_PER_REQUEST + i
            name, props = channels[n % 2]
            batch.append(
                {
                    "type": "track",
                    "messageId": f"bench-{run}-{n}",
                    "userId": f"npi:{_npi(n % 50_000)}",
                    "event": name,
                    "timestamp": "2026-11-20T09:00:00.000Z",
                    "properties": {
                        "brand": "ZENTROVA",
                        "content_id": "CNT-7",
                        "synthetic": True,
                        **props,
                    },
                    "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
                }
            )
        bodies.append(json.dumps({"batch": batch, "sentAt": "2026-11-20T09:00:01.000Z"}).encode())
    return bodies


def _drive(
    port: int, bodies: list[bytes], key: str, connections: int
) -> tuple[float, float, dict[int, int]]:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    requests = [build_post("/v1/batch", body, headers) for body in bodies]
    report = run_load_sync("127.0.0.1", port, requests, connections, total=len(requests))
    events_per_s = report.requests_done * EVENTS_PER_REQUEST / report.seconds
    return events_per_s, report.latencies_ms.p99, dict(report.status_counts)


def _connection_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--connections {text!r}: give positive whole numbers separated by commas, e.g. 16,64"
        )
    return list(dict.fromkeys(counts))  # each count once: a repeat would send the same ids


def main() -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument(
        "--connections",
        type=_connection_counts,
        default=[16, 64],
        help="the concurrent client connections, one measurement per count (comma-separated; "
        "default 16,64): throughput is a server's rate once enough requests are in flight to "
        "keep it busy, and the latency each count costs is reported beside it",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="an API process of the server deployment: no in-process consumers, delivery or "
        "journeys (workers run them)",
    )
    parser.add_argument(
        "--mapping-processes",
        type=int,
        default=None,
        help="COUNTERPOINT_MAPPING_PROCESSES of the API process (default: the setting's own)",
    )
    args = parser.parse_args()
    requests = 40 if args.tiny else args.requests
    repeats = 1 if args.tiny else args.repeats
    counts: list[int] = args.connections

    from counterpoint.container import open_container
    from counterpoint.settings import Settings

    ours: dict[int, list[float]] = {c: [] for c in counts}
    ours_p99: dict[int, list[float]] = {c: [] for c in counts}
    base: dict[int, list[float]] = {c: [] for c in counts}
    stored = 0
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        data_dir = Path(tmp) / "data"
        built = open_container(Settings(data_dir=data_dir))
        key = built.write_keys.create("bench (synthetic)")[1]
        built.close()
        env = {
            "COUNTERPOINT_DATA_DIR": str(data_dir),
            **(
                {
                    "COUNTERPOINT_RUN_CONSUMERS": "false",
                    "COUNTERPOINT_RUN_DELIVERY": "false",
                    "COUNTERPOINT_RUN_JOURNEYS": "false",
                }
                if args.ingest_only
                else {}
            ),
            **(
                {"COUNTERPOINT_MAPPING_PROCESSES": str(args.mapping_processes)}
                if args.mapping_processes is not None
                else {}
            ),
        }
        for attempt in range(repeats):
            for connections in counts:
                bodies = _bodies(requests, f"{attempt}-{connections}")
                with uvicorn_server("bench.ingest_http:baseline_app", probe_path="/health") as port:
                    rate, _, _ = _drive(port, bodies, key, connections)
                    base[connections].append(rate)
                with uvicorn_server(
                    "counterpoint.api.main:app_factory",
                    extra_args=["--factory"],
                    env=env,
                    probe_path="/health",
                ) as port:
                    rate, p99, statuses = _drive(port, bodies, key, connections)
                    if set(statuses) != {200}:
                        print(f"unexpected statuses: {statuses}", file=sys.stderr)
                        return 1
                    ours[connections].append(rate)
                    ours_p99[connections].append(p99)
        built = open_container(Settings(data_dir=data_dir))
        stored = built.log.count()
        built.close()
    expected = requests * EVENTS_PER_REQUEST * repeats * len(counts)
    if stored != expected:
        print(
            f"stored {stored} events, expected {expected}: acknowledged events were lost",
            file=sys.stderr,
        )
        return 1
    results: list[Result] = []
    for connections in counts:
        results += [
            Result(
                name=(
                    f"HTTP /v1/batch, 100 events/request, durable ack, {connections} connections "
                    "(events/s)"
                ),
                figure=statistics.median(ours[connections]),
                unit="events/s",
                baseline_name="FastAPI decode-and-discard",
                baseline_figure=statistics.median(base[connections]),
                extra={
                    "goal": 50_000,
                    "repeats": repeats,
                    "runs": ours[connections],
                    "baseline_runs": base[connections],
                },
            ),
            Result(
                name=f"HTTP /v1/batch request latency p99, {connections} connections",
                figure=statistics.median(ours_p99[connections]),
                unit="ms",
                extra={"connections": connections},
            ),
        ]
    for r in results:
        r.print()
    best = max(counts, key=lambda c: statistics.median(ours[c]))
    peak = statistics.median(ours[best])
    print(
        f"all {stored} acknowledged events stored; peak {peak:,.0f} events/s at {best} "
        f"connections; goal 50,000 events/s: {'PASS' if peak >= 50_000 else 'MISS'}"
    )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
