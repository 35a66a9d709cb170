"""Synthetic market generation: time and peak memory, against the raw Parquet I/O floor.

Runs ``counterpoint.simulate.market.generate_market`` in a child process and reads that
child's peak RSS from ``os.wait4`` (the per-child form of ``getrusage(RUSAGE_CHILDREN)``).
Then, in another child, the baseline: the same number of rows with the same event schema,
random numpy columns turned into Arrow arrays once, written straight to Parquet with
``pyarrow.parquet.ParquetWriter`` (default options) in 1,000,000-row parts: the raw I/O floor.
Each figure is the median of ``--repeats`` runs; the ratio is generation time / baseline time.
The CPU time of each child (user + system, from the same ``wait4``) is reported too: on a
machine shared with other work it moves less than the wall-clock figures.
All data written is synthetic and goes to a temporary directory removed at the end.

    .venv/bin/python bench/market_generation.py --hcps 20000 --weeks 52
    .venv/bin/python bench/market_generation.py --tiny          # 2,000 HCPs, 4 weeks (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Result,
    add_common_args,
    command_line,
    format_figure,
    machine_info,
    write_json,
)

TINY_SUPPORTED = True
BASELINE_PART_ROWS = 1_000_000


# ---------------------------------------------------------------------------------------------
# children


def _child_generate(hcps: int, weeks: int, seed: int, out: Path) -> dict[str, Any]:
    from counterpoint.simulate.market import MarketConfig, generate_market

    start = time.perf_counter()
    summary = generate_market(MarketConfig(hcps=hcps, weeks=weeks, seed=seed, out=out))
    return {
        "seconds": time.perf_counter() - start,
        "events": summary.events,
        "hcps": hcps,
        "parts": sum(1 for name in summary.files if name.startswith("events/")),
        "bytes": sum(p.stat().st_size for p in (out / "events").glob("*.parquet")),
    }


def _baseline_batch(rows: int, seed: int) -> Any:
    """Random numpy columns with the event schema (cardinalities like the generator's)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from counterpoint.simulate.market import EVENT_SCHEMA

    rng = np.random.default_rng(seed)
    cardinality = {
        "type": 2,
        "user_id": max(10, rows // 30),
        "anonymous_id": max(10, rows // 200),
        "channel": 19,
        "action": 20,
        "event": 60,
        "brand": 5,
        "content_id": 165,
        "slide": 24,
        "actor_type": 7,
        "actor_id": 3_000,
        "function": 2,
        "market": 9,
    }
    arrays = []
    for f in EVENT_SCHEMA:
        if f.name == "timestamp":
            arrays.append(
                pa.array(rng.integers(1_700_000_000_000_000, 1_800_000_000_000_000, rows), f.type)
            )
        elif f.name == "synthetic":
            arrays.append(pa.array(np.ones(rows, dtype=np.bool_)))
        else:
            high = cardinality.get(f.name, 1 << 62)
            numbers = pc.cast(pa.array(rng.integers(0, high, rows)), pa.string())
            arrays.append(pc.binary_join_element_wise(f"{f.name}-", numbers, ""))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _child_baseline(rows: int, seed: int, out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    full = _baseline_batch(min(rows, BASELINE_PART_ROWS), seed)
    last = rows % BASELINE_PART_ROWS
    tail = full.slice(0, last) if rows > BASELINE_PART_ROWS and last else None
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    written, part = 0, 0
    while written < rows:
        table = tail if tail is not None and rows - written == last else full
        with pq.ParquetWriter(out / f"part-{part:05d}.parquet", table.schema) as writer:
            writer.write_table(table)
        written += table.num_rows
        part += 1
    return {
        "seconds": time.perf_counter() - start,
        "events": written,
        "parts": part,
        "bytes": sum(p.stat().st_size for p in out.glob("*.parquet")),
    }


def _run_child(arguments: list[str]) -> dict[str, Any]:
    """Run this script as a child; return its JSON result plus its peak RSS (MiB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    try:
        command = [sys.executable, str(Path(__file__).resolve()), *arguments]
        command += ["--result", str(result_path)]
        began = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        if process.returncode != 0:
            raise RuntimeError(f"{arguments[:2]} failed with status {process.returncode}")
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    finally:
        result_path.unlink(missing_ok=True)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # whole child, start-up included
    result["wall_seconds"] = wall
    return result


# ---------------------------------------------------------------------------------------------
# the measurement


def measure(hcps: int, weeks: int, seed: int, repeats: int, scratch: Path) -> list[Result]:
    generated: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for i in range(repeats):
        out = scratch / f"market-{i}"
        size = ["--hcps", str(hcps), "--weeks", str(weeks), "--seed", str(seed)]
        generated.append(_run_child(["--child", "generate", *size, "--out", str(out)]))
        shutil.rmtree(out, ignore_errors=True)
        rows = generated[-1]["events"]
        out = scratch / f"baseline-{i}"
        rows_args = ["--rows", str(rows), "--seed", str(seed), "--out", str(out)]
        baseline.append(_run_child(["--child", "baseline", *rows_args]))
        shutil.rmtree(out, ignore_errors=True)
        print(
            f"run {i + 1}/{repeats}: generated {rows:,} events in "
            f"{generated[-1]['seconds']:.2f} s (peak RSS {generated[-1]['peak_rss_mib']:.0f} MiB);"
            f" baseline wrote them in {baseline[-1]['seconds']:.2f} s"
            f" (peak RSS {baseline[-1]['peak_rss_mib']:.0f} MiB)",
            flush=True,
        )

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    events = int(median(generated, "events"))
    gen_s, base_s = median(generated, "seconds"), median(baseline, "seconds")
    label = f"{hcps:,} HCPs × {weeks} weeks, {events:,} events"
    return [
        Result(
            f"market generation throughput ({label})",
            events / gen_s,
            "events/s",
            baseline_name="raw Parquet write of random columns",
            baseline_figure=events / base_s,
            extra={
                "higher": "better",
                "events": events,
                "seconds": gen_s,
                "baseline_seconds": base_s,
            },
        ),
        Result(
            f"market generation time / raw write time ({label})",
            gen_s / base_s,
            "x",
            extra={"lower": "better"},
        ),
        Result(
            f"market generation CPU time per million events ({label})",
            median(generated, "cpu_seconds") / events * 1e6,
            "CPU s",
            baseline_name="raw Parquet write",
            baseline_figure=median(baseline, "cpu_seconds") / events * 1e6,
            extra={"lower": "better", "note": "user + system time of the whole child process"},
        ),
        Result(
            f"market generation peak RSS ({label})",
            median(generated, "peak_rss_mib"),
            "MiB",
            baseline_name="raw Parquet write",
            baseline_figure=median(baseline, "peak_rss_mib"),
            extra={"lower": "better"},
        ),
        Result(
            f"market event files ({label})",
            median(generated, "bytes") / 1e6,
            "MB",
            baseline_name="raw Parquet write",
            baseline_figure=median(baseline, "bytes") / 1e6,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--hcps", type=int, default=20_000, help="HCPs (default 20,000)")
    parser.add_argument("--weeks", type=int, default=52, help="weeks of history (default 52)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, help="runs to take the median of (default 3)")
    parser.add_argument("--child", choices=("generate", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        if args.child == "generate":
            figures = _child_generate(args.hcps, args.weeks, args.seed, args.out)
        else:
            figures = _child_baseline(args.rows, args.seed, args.out)
        args.result.write_text(json.dumps(figures), encoding="utf-8")
        return 0

    hcps, weeks = (2_000, 4) if args.tiny else (args.hcps, args.weeks)
    repeats = args.repeats or (1 if args.tiny else 3)
    machine = machine_info()
    print(
        f"machine: {machine['cpu_model']}, {machine['usable_cores']} cores, load "
        f"{machine['load_average_1min']}, CPU pressure {machine['cpu_pressure_avg60']} %"
    )
    with tempfile.TemporaryDirectory(prefix="market-bench-") as scratch:
        results = measure(hcps, weeks, args.seed, repeats, Path(scratch))
    for result in results:
        print(result.human_line())
    if args.json:
        write_json(args.json, results, extra={"command": command_line(), "tiny": args.tiny})
    throughput, ratio, _cpu, memory, _size = results
    print()
    print(
        "| Benchmark | HCPs | Weeks | Events | Events/s | Raw write rows/s | Time ratio "
        "| Peak RSS MiB (raw write) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    events = throughput.extra["events"]
    print(
        f"| market generation | {hcps:,} | {weeks} | {events:,} "
        f"| {format_figure(throughput.figure)} | {format_figure(throughput.baseline_figure)} "
        f"| {format_figure(ratio.figure)}x | {format_figure(memory.figure)} "
        f"({format_figure(memory.baseline_figure)}) |",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
