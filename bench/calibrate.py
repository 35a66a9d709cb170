"""Machine calibration: the figures every other benchmark should be read against.

Measures, each as the median of repeated runs:

(a) memory bandwidth: numpy copy of a 256 MB array (GB/s, array bytes copied per second);
(b) fdatasync rate: 4 KB appends each followed by ``os.fdatasync`` to a file in a temporary
    directory on the filesystem of the current working directory (syncs/s);
(c) JSON decode rate of ~400-byte Segment-like track events: ``json.loads``, then
    ``msgspec.json.decode`` untyped and into a ``msgspec.Struct`` (events/s, ratio vs json);
(d) FastAPI hello world: uvicorn serving ``GET /hello`` in a subprocess on 127.0.0.1, driven by
    ``bench/loadgen.py`` over keep-alive connections (requests/s, p99 latency). This figure is
    the baseline for the HTTP benchmarks.

    .venv/bin/python bench/calibrate.py [--tiny] [--json PATH]

``--tiny`` keeps each measurement around a second so that CI can run the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import numpy as np

from bench.common import (
    Result,
    add_common_args,
    command_line,
    machine_info,
    median_of,
    uvicorn_server,
    write_json,
)
from bench.loadgen import LoadReport, build_get, run_load_processes

TINY_SUPPORTED = True


@dataclass(frozen=True)
class Plan:
    """How long and how often each measurement runs."""

    memory_mb: int
    memory_repeats: int
    sync_seconds: float
    sync_repeats: int
    json_events: int
    json_repeats: int
    http_warmup_s: float
    http_seconds: float
    http_repeats: int
    http_connections: int

    @classmethod
    def for_mode(cls, tiny: bool) -> Plan:
        if tiny:
            return cls(64, 3, 0.3, 3, 2_000, 3, 0.2, 0.5, 1, 4)
        return cls(256, 7, 2.0, 5, 50_000, 7, 2.0, 5.0, 5, 4)


# ---------------------------------------------------------------------------------------------
# (a) memory bandwidth


def memory_bandwidth(plan: Plan) -> Result:
    count = plan.memory_mb * 2**20 // 8
    source = np.ones(count, dtype=np.float64)
    target = np.zeros(count, dtype=np.float64)  # both pages touched before timing
    np.copyto(target, source)

    def once() -> float:
        start = time.perf_counter()
        np.copyto(target, source)
        return source.nbytes / (time.perf_counter() - start) / 1e9

    figure = median_of(once, plan.memory_repeats)
    return Result(
        f"memory bandwidth (numpy copy of {plan.memory_mb} MB)",
        figure,
        "GB/s",
        extra={"note": "bytes copied/s; read+write traffic is twice this"},
    )


# ---------------------------------------------------------------------------------------------
# (b) fdatasync rate


def filesystem_of(directory: Path) -> str:
    """``"ext4 on /dev/vda"``: the mount holding ``directory`` (from /proc/mounts), if known."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    target = str(directory.resolve())
    best = ("", "unknown")
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fs_type = fields[0], fields[1], fields[2]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, f"{fs_type} on {device}")
    return best[1]


def fdatasync_rate(plan: Plan, directory: Path) -> Result:
    block = os.urandom(4096)
    with tempfile.TemporaryDirectory(prefix=".calibrate-", dir=directory) as scratch:
        path = Path(scratch) / "wal.bin"

        def once() -> float:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
            try:
                syncs = 0
                start = time.perf_counter()
                deadline = start + plan.sync_seconds
                while True:
                    os.write(fd, block)
                    os.fdatasync(fd)
                    syncs += 1
                    now = time.perf_counter()
                    if now >= deadline:
                        return syncs / (now - start)
            finally:
                os.close(fd)

        figure = median_of(once, plan.sync_repeats)
    return Result(
        "fdatasync after 4 KB append",
        figure,
        "syncs/s",
        extra={
            "directory": str(directory),
            "filesystem": filesystem_of(directory),
            "mean_ms": 1000 / figure,
        },
    )


# ---------------------------------------------------------------------------------------------
# (c) JSON decode

_EVENTS = ["Email Opened", "Email Clicked", "Webinar Joined", "Sample Requested", "Page Viewed"]
_CHANNELS = ["email", "web", "rep_visit", "webinar", "remote_detailing"]


class _Context(msgspec.Struct):
    ip: str
    locale: str
    userAgent: str  # noqa: N815  (Segment field name)


class _Properties(msgspec.Struct):
    campaign_id: str
    channel: str
    brand: str
    specialty: str
    position: int


class _TrackEvent(msgspec.Struct):
    type: str
    event: str
    messageId: str  # noqa: N815
    userId: str  # noqa: N815
    anonymousId: str  # noqa: N815
    timestamp: str
    properties: _Properties
    context: _Context


def segment_events(count: int, seed: int = 7) -> list[bytes]:
    """Distinct Segment-like ``track`` events, about 400 bytes each, as JSON bytes."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        event = {
            "type": "track",
            "event": rng.choice(_EVENTS),
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "userId": f"hcp_{rng.randrange(10**8):08d}",
            "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.123Z",
            "properties": {
                "campaign_id": f"cmp_{rng.randrange(10**6):06d}",
                "channel": rng.choice(_CHANNELS),
                "brand": rng.choice(["Cardiolex", "Neurovia", "Oncodra"]),
                "specialty": rng.choice(["cardiology", "oncology", "neurology"]),
                "position": rng.randint(1, 20),
            },
            "context": {
                "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "locale": rng.choice(["en-GB", "de-DE", "fr-FR", "es-ES"]),
                "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
            },
        }
        events.append(json.dumps(event, separators=(",", ":")).encode())
    return events


def json_decode_rates(plan: Plan) -> list[Result]:
    events = segment_events(plan.json_events)
    size = sum(map(len, events)) / len(events)
    typed = msgspec.json.Decoder(_TrackEvent)
    untyped = msgspec.json.Decoder()
    assert typed.decode(events[0]).properties.position >= 1  # the schema fits the events

    def rate(decode: Callable[[bytes], object]) -> float:
        start = time.perf_counter()
        for event in events:
            decode(event)
        return len(events) / (time.perf_counter() - start)

    # The decoders take turns within each repeat, so that a noisy neighbour weighs on all of
    # them alike; ratios are the medians of the per-repeat ratios.
    decoders: dict[str, Callable[[bytes], object]] = {
        "json.loads": json.loads,
        "msgspec.json.decode (untyped)": untyped.decode,
        "msgspec.json.decode (typed Struct)": typed.decode,
    }
    rates: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(plan.json_repeats):
        for name, decode in decoders.items():
            rates[name].append(rate(decode))
    baseline_rates = rates.pop("json.loads")
    baseline = statistics.median(baseline_rates)
    extra = {"events": len(events), "mean_event_bytes": round(size)}
    label = f"of {size:.0f} B Segment events"
    results = [Result(f"json.loads {label}", baseline, "events/s", extra=extra)]
    for name, figures in rates.items():
        ratio = statistics.median(f / b for f, b in zip(figures, baseline_rates, strict=True))
        figure = statistics.median(figures)
        results.append(
            Result(f"{name} {label}", figure, "events/s", "json.loads", baseline, ratio, extra)
        )
    return results


# ---------------------------------------------------------------------------------------------
# (d) FastAPI hello world

_HELLO_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "hello", "service": "counterpoint"}
    """
)


def fastapi_hello(plan: Plan, client_processes: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="calibrate-app-") as app_dir:
        (Path(app_dir) / "hello_app.py").write_text(_HELLO_APP, encoding="utf-8")
        with uvicorn_server("hello_app:app", app_dir=Path(app_dir), probe_path="/hello") as port:
            reports = _drive_hello(plan, client_processes, port)
    rps = statistics.median(r.rps for r in reports)
    p99 = statistics.median(r.latencies_ms.p99 for r in reports)
    p50 = statistics.median(r.latencies_ms.p50 for r in reports)
    extra = {
        "connections": plan.http_connections,
        "client_processes": client_processes,
        "seconds_per_run": plan.http_seconds,
        "runs": len(reports),
        "req_per_s_each_run": [round(r.rps) for r in reports],
    }
    return [
        Result("FastAPI hello world (uvicorn, 1 worker)", rps, "req/s", extra=extra),
        Result("FastAPI hello world p99 latency", p99, "ms", extra={"p50_ms": p50}),
    ]


def hello_world_baseline(
    seconds: float = 5.0, repeats: int = 3, connections: int = 4, client_processes: int = 1
) -> list[Result]:
    """The FastAPI hello-world figures, for an HTTP benchmark to measure in its own session.

    The machine is shared and its HTTP figures move with the neighbours' load, so a benchmark
    comparing with hello world should measure it next to its own figure rather than quote
    RESULTS.md. Returns ``[requests/s, p99 latency]`` like the calibration does.
    """
    full = Plan.for_mode(tiny=False)
    plan = dataclasses.replace(
        full,
        http_seconds=seconds,
        http_repeats=repeats,
        http_connections=connections,
        http_warmup_s=min(full.http_warmup_s, seconds),
    )
    return fastapi_hello(plan, client_processes)


def _drive_hello(plan: Plan, client_processes: int, port: int) -> list[LoadReport]:
    """A warm-up run, then ``plan.http_repeats`` measured runs of ``GET /hello``."""
    request = build_get("/hello", {"Accept": "application/json"})

    def drive(seconds: float) -> LoadReport:
        return run_load_processes(
            "127.0.0.1",
            port,
            [request],
            plan.http_connections,
            duration_s=seconds,
            processes=client_processes,
        )

    drive(plan.http_warmup_s)
    reports: list[LoadReport] = []
    for _ in range(plan.http_repeats):
        report = drive(plan.http_seconds)
        if report.errors or set(report.status_counts) != {200}:
            raise RuntimeError(f"hello world run went wrong: {report.summary()}")
        reports.append(report)
    return reports


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="load generator processes for the HTTP figure (default 1)",
    )
    args = parser.parse_args(argv)
    # On SIGTERM (run_all's timeout) unwind normally: stop uvicorn, remove the scratch files.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    plan = Plan.for_mode(args.tiny)
    machine = machine_info()
    command = command_line()
    print(f"machine: {machine}")
    print(f"command: {command}", flush=True)

    steps: list[Callable[[], list[Result]]] = [
        lambda: [memory_bandwidth(plan)],
        lambda: [fdatasync_rate(plan, Path.cwd())],
        lambda: json_decode_rates(plan),
        lambda: fastapi_hello(plan, args.client_processes),
    ]
    results: list[Result] = []
    started = time.perf_counter()
    for step in steps:
        for result in step():
            result.print()
            results.append(result)
    print(f"calibration took {time.perf_counter() - started:.1f} s")
    print()
    print(Result.markdown_header())
    for result in results:
        print(result.markdown_row())
    if args.json is not None:
        write_json(args.json, results, extra={"command": command, "tiny": args.tiny})
    return 0


if __name__ == "__main__":
    sys.exit(main())
