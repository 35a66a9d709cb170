"""Bulk import of interaction events: one NDJSON file → event log → HCP profiles, end to end.

Everything runs in one process on one **synthetic** market, generated into a temporary
directory on the filesystem of the current working directory and removed at the end.

Setup (not timed): ``generate_market`` with ``duplicates=0.01, invalid=0.005`` sized to about
``--events`` rows (52 weeks of history; the number of HCPs is estimated, then corrected up to
three times so that the row count is within 5 % of the target); an embedded container
(SQLite + DuckDB) on a fresh data directory; hcos, hcps and affiliations through
``profiles.import_master_data``; the event parts concatenated into ONE NDJSON file (the
columns of docs/formats.md, timestamps ISO 8601 with ``Z``, ``properties`` kept as its JSON
text) by DuckDB's ``COPY … (FORMAT json)``.

Measured:

1. import: ``Container.import_events(ndjson)`` as ``counterpoint import events`` runs it
   (validation, de-duplication, quarantine, identities, profiles, engagement; the profile
   projector follows the append in a second thread, then finishes). Figure: input rows /
   total seconds; phase 1 until the last chunk is in the log, phase 2 the profile update
   left after it. Baseline in the same run: DuckDB's own
   ``CREATE TABLE t AS SELECT * FROM read_json(file, format='newline_delimited')`` of the same
   file into a fresh DuckDB file (DuckDB uses every core; so do the import's two threads).
   Also the import's CPU time (every thread of the process), against the CPU the goal
   leaves: the usable cores kept busy for rows / 150,000 seconds. An import that needs more
   CPU than that cannot reach the goal on this machine, however its work is spread.
2. HCP 360 read latency: ``profiles.get_hcp(id)`` for random live master-data HCPs (seeded),
   p50 / p99, each the median over the passes; baseline: a bare primary-key
   ``SELECT * FROM hcp WHERE id = ?`` through the same SQLAlchemy engine.
3. event → profile freshness: after ``start_background()``, one event at a time through the
   group committer for an existing HCP identifier, then ``get_hcp`` polled every 5 ms until
   its 90-day event count grows; p50 / p99 over the samples.
4. peak memory: ``ru_maxrss`` of the whole run (and after setup, after the import).

Goals (printed as PASS / MISS, never asserted): import ≥ 150,000 events/s, HCP 360 read p99
≤ 50 ms, freshness p99 ≤ 1 s. The script exits non-zero only when the pipeline misbehaves
(nothing accepted, no duplicate or no quarantined row found, counts that do not add up, an
event that never reaches its profile).

    .venv/bin/python bench/import_events.py --tiny              # ~20,000 events (CI)
    .venv/bin/python bench/import_events.py                     # 2,000,000 events
    .venv/bin/python bench/import_events.py --events 10000000   # the issue's target size
    .venv/bin/python bench/import_events.py --events 100000000 --input parquet --no-floor
                                            # 1M HCPs / 100M events: the HCP 360 read goal
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import pyarrow as pa
from sqlalchemy import select, text

from bench.common import (
    Result,
    add_common_args,
    command_line,
    format_figure,
    machine_info,
    usable_cores,
    write_json,
)
from counterpoint.container import Container, open_container
from counterpoint.event.canonical import LogEvent
from counterpoint.event.duckdb_log import DuckDBEventLog
from counterpoint.event.rows import validate_event_row
from counterpoint.event.service import IngestService
from counterpoint.profile.models import Hcp, Identity
from counterpoint.settings import Deployment, Settings
from counterpoint.simulate.market import (
    EVENTS_PER_HCP_YEAR,
    MarketConfig,
    MarketSummary,
    generate_market,
)

TINY_SUPPORTED = True

DUPLICATES = 0.01
INVALID = 0.005
WEEKS = 52
SIZE_TOLERANCE = 0.05
SIZE_ATTEMPTS = 4
GOAL_IMPORT_EPS = 150_000.0
GOAL_READ_P99_MS = 50.0
GOAL_FRESH_P99_MS = 1000.0
POLL_S = 0.005
FRESHNESS_TIMEOUT_S = 30.0
_NDJSON_SELECT = """
SELECT message_id, type, user_id, anonymous_id, channel, action, event,
       strftime(timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp,
       brand, content_id, slide, actor_type, actor_id, function, market, properties, synthetic
FROM read_parquet({files})
"""


class PipelineError(RuntimeError):
    """The pipeline itself misbehaved: the figures would measure the wrong thing."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise PipelineError(message)


@dataclass(frozen=True)
class Plan:
    events: int
    reads: int
    read_passes: int
    freshness_samples: int

    @classmethod
    def for_args(cls, tiny: bool, events: int | None) -> Plan:
        if tiny:
            return cls(events or 20_000, 100, 1, 10)
        return cls(events or 2_000_000, 1_000, 3, 50)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# setup (not timed)


def generate(out: Path, target: int, seed: int) -> MarketSummary:
    """A synthetic market of about ``target`` event rows.

    The HCP count is estimated from ``EVENTS_PER_HCP_YEAR``, then corrected in proportion
    (up to ``SIZE_ATTEMPTS`` generations) until the row count is within ``SIZE_TOLERANCE``;
    failing that, the closest attempt is kept.
    """
    per_hcp = EVENTS_PER_HCP_YEAR * WEEKS / 52.0 / (1.0 - DUPLICATES)
    hcps = max(10, round(target / per_hcp))
    rows_of: dict[int, int] = {}
    summary: MarketSummary | None = None
    for _attempt in range(SIZE_ATTEMPTS):
        summary = _generate(out, hcps, seed)
        rows_of[hcps] = summary.events
        if abs(summary.events - target) <= SIZE_TOLERANCE * target:
            return summary
        hcps = max(10, round(hcps * target / max(summary.events, 1)))
        if hcps in rows_of:
            break
    best = min(rows_of, key=lambda h: abs(rows_of[h] - target))
    assert summary is not None
    return summary if rows_of[best] == summary.events else _generate(out, best, seed)


def _generate(out: Path, hcps: int, seed: int) -> MarketSummary:
    config = MarketConfig(
        hcps=hcps, weeks=WEEKS, seed=seed, out=out, duplicates=DUPLICATES, invalid=INVALID
    )
    return generate_market(config)


def write_ndjson(market: Path, target: Path) -> int:
    """Concatenate the event parts into one NDJSON file; returns the rows written."""
    parts = sorted((market / "events").glob("part-*.parquet"))
    _check(bool(parts), f"the generator wrote no event parts in {market / 'events'}")
    files = "[" + ", ".join(_sql_string(p) for p in parts) + "]"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        query = _NDJSON_SELECT.format(files=files)
        row = con.execute(f"COPY ({query}) TO {_sql_string(target)} (FORMAT json)").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def write_parquet(market: Path, target: Path) -> int:
    """Concatenate the event parts into one Parquet file (typed columns); returns the rows."""
    parts = sorted((market / "events").glob("part-*.parquet"))
    _check(bool(parts), f"the generator wrote no event parts in {market / 'events'}")
    files = "[" + ", ".join(_sql_string(p) for p in parts) + "]"
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        row = con.execute(
            f"COPY (SELECT * FROM read_parquet({files})) TO {_sql_string(target)} (FORMAT parquet)"
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return lines


def open_embedded(data_dir: Path) -> Container:
    settings = Settings(data_dir=data_dir, database_url=None)
    _check(
        settings.deployment is Deployment.EMBEDDED,
        f"expected the embedded deployment, got {settings.deployment}",
    )
    return open_container(settings)


def import_master(container: Container, market: Path) -> dict[str, int]:
    imported: dict[str, int] = {}
    for kind in ("hcos", "hcps", "affiliations"):
        report = container.profiles.import_master_data(market / f"{kind}.parquet", kind)
        _check(not report.rejected, f"{kind}: {len(report.rejected)} master-data rows rejected")
        _check(report.imported > 0, f"{kind}: nothing imported")
        imported[kind] = report.imported
    return imported


# ---------------------------------------------------------------------------------------------
# 1. the import and its baseline


@dataclass
class ImportFigures:
    rows: int
    accepted: int
    duplicates: int
    quarantined: int
    applied: int
    append_s: float
    profile_s: float
    cpu_s: float
    """CPU time of the whole import (every thread of this process, user and system)."""

    @property
    def total_s(self) -> float:
        return self.append_s + self.profile_s


def cpu_seconds() -> float:
    """CPU time this process has used so far, every thread, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured_import(container: Container, ndjson: Path) -> ImportFigures:
    """``Container.import_events``, as ``counterpoint import events`` runs it: the projector
    follows the append in a second thread, then finishes. Phase 1 ends when the last chunk
    has landed in the log; phase 2 is what the projector still had to do after that."""
    applied = 0
    landed = 0.0

    def chunk_landed(_rows: int) -> None:
        nonlocal landed
        landed = time.perf_counter()

    def profiles(events: int) -> None:
        nonlocal applied
        applied += events

    started, cpu = time.perf_counter(), cpu_seconds()
    report = container.import_events(ndjson, progress=chunk_landed, profiles=profiles)
    finished = time.perf_counter()
    return ImportFigures(
        cpu_s=cpu_seconds() - cpu,
        rows=report.rows,
        accepted=report.accepted,
        duplicates=report.duplicates,
        quarantined=report.quarantined,
        applied=applied,
        append_s=landed - started,
        profile_s=finished - landed,
    )


def check_import(figures: ImportFigures, rows: int, summary: MarketSummary) -> None:
    """Counts that must hold whatever the speed; the injected fractions must show."""
    injected_invalid = sum(summary.invalid.values())
    _check(figures.accepted > 0, "no event was accepted")
    _check(figures.duplicates > 0, "no duplicate was found (1 % were injected)")
    _check(figures.quarantined > 0, "no row was quarantined (0.5 % invalid were injected)")
    _check(figures.rows == rows, f"the import read {figures.rows:,} rows of {rows:,}")
    total = figures.accepted + figures.duplicates + figures.quarantined
    _check(total == rows, f"accepted + duplicates + quarantined = {total:,}, not {rows:,}")
    _check(
        figures.applied == figures.accepted,
        f"the profile consumer applied {figures.applied:,} events, not {figures.accepted:,}",
    )
    for name, found, injected in (
        ("duplicates", figures.duplicates, summary.duplicates),
        ("quarantined", figures.quarantined, injected_invalid),
    ):
        _check(
            0.5 * injected <= found <= 2 * injected + 5,
            f"{name}: {found:,} found but {injected:,} injected",
        )


def _reader(source: Path) -> str:
    """DuckDB's table function reading the input file (Parquet or NDJSON)."""
    if source.suffix == ".parquet":
        return f"read_parquet({_sql_string(source)})"
    return f"read_json({_sql_string(source)}, format = 'newline_delimited')"


def duckdb_baseline(source: Path, scratch: Path) -> tuple[float, int]:
    """Seconds DuckDB takes to load the same file into a table of a fresh file."""
    reader = _reader(source)
    path = scratch / "baseline.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        started = time.perf_counter()
        con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}")
        seconds = time.perf_counter() - started
        row = con.execute("SELECT count(*) FROM t").fetchone()
    finally:
        con.close()
    path.unlink(missing_ok=True)
    Path(f"{path}.wal").unlink(missing_ok=True)
    return seconds, int(row[0]) if row else 0


_IMPORT_CHUNK = inspect.signature(IngestService.import_file).parameters["chunk_rows"].default
"""Rows per transaction of ``IngestService.import_file`` (its ``chunk_rows`` default)."""
_FLOOR_SELECT = """
SELECT message_id::VARCHAR AS message_id, type::VARCHAR AS kind,
       coalesce(user_id::VARCHAR, 'anonymous:' || anonymous_id::VARCHAR) AS subject,
       TRY_CAST(timestamp AS TIMESTAMPTZ) AS occurred_at, now() AS received_at,
       'import' AS source, channel::VARCHAR AS channel, action::VARCHAR AS action,
       event::VARCHAR AS event_name, anonymous_id::VARCHAR AS anonymous_id,
       brand::VARCHAR AS brand, content_id::VARCHAR AS content_id, slide::VARCHAR AS slide,
       actor_type::VARCHAR AS actor_type, actor_id::VARCHAR AS actor_id,
       function::VARCHAR AS function, market::VARCHAR AS market,
       properties::VARCHAR AS payload, TRY_CAST(synthetic AS BOOLEAN) AS synthetic
FROM {reader}
WHERE message_id IS NOT NULL AND coalesce(user_id::VARCHAR, anonymous_id::VARCHAR) IS NOT NULL
  AND TRY_CAST(timestamp AS TIMESTAMPTZ) IS NOT NULL
"""


def log_append_floor(source: Path, scratch: Path, chunk: int) -> tuple[float, int]:
    """Seconds to append the same file to a fresh event log by the log's own de-duplicating
    insert (``DuckDBEventLog.append_arrow``, one transaction per ``chunk`` rows, as the import
    does), with no validation, identities or profiles: what the import cannot beat."""
    reader = _reader(source)
    path = scratch / "floor.duckdb"
    path.unlink(missing_ok=True)
    log = DuckDBEventLog(path)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        started = time.perf_counter()
        batches = con.sql(_FLOOR_SELECT.format(reader=reader)).to_arrow_reader(chunk)
        accepted = 0
        for batch in batches:
            accepted += log.append_arrow(pa.Table.from_batches([batch])).accepted
        seconds = time.perf_counter() - started
    finally:
        con.close()
        log.close()
    path.unlink(missing_ok=True)
    Path(f"{path}.wal").unlink(missing_ok=True)
    return seconds, accepted


# ---------------------------------------------------------------------------------------------
# 2. HCP 360 reads


def live_hcp_ids(container: Container) -> list[str]:
    with container.sessions() as session:
        return list(
            session.scalars(
                select(Hcp.id)
                .where(Hcp.master_data.is_(True), Hcp.merged_into.is_(None))
                .order_by(Hcp.id)
            )
        )


@dataclass
class Latencies:
    p50_ms: float
    p99_ms: float
    passes_p99_ms: list[float]


def read_latencies(
    container: Container, ids: list[str], passes: int
) -> tuple[Latencies, Latencies]:
    """(get_hcp, bare SELECT) latencies; each percentile is the median over the passes."""
    statement = text("SELECT * FROM hcp WHERE id = :id")

    def ours(hcp_id: str) -> None:
        profile = container.profiles.get_hcp(hcp_id)
        _check(profile["id"] == hcp_id, f"get_hcp({hcp_id!r}) returned {profile['id']!r}")

    def bare(hcp_id: str) -> None:
        with container.engine.connect() as conn:
            _check(
                conn.execute(statement, {"id": hcp_id}).fetchone() is not None,
                f"no hcp row {hcp_id!r}",
            )

    for hcp_id in ids[: min(20, len(ids))]:  # warm-up: pool, statement caches
        bare(hcp_id)
        ours(hcp_id)
    measured: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}
    for _ in range(passes):
        for name, fn in (("bare", bare), ("ours", ours)):
            times = []
            for hcp_id in ids:
                started = time.perf_counter()
                fn(hcp_id)
                times.append((time.perf_counter() - started) * 1000)
            measured[name].append((percentile(times, 50), percentile(times, 99)))

    def summarise(pairs: list[tuple[float, float]]) -> Latencies:
        return Latencies(
            p50_ms=statistics.median(p for p, _ in pairs),
            p99_ms=statistics.median(p for _, p in pairs),
            passes_p99_ms=[round(p, 3) for _, p in pairs],
        )

    return summarise(measured["ours"]), summarise(measured["bare"])


# ---------------------------------------------------------------------------------------------
# 3. event → profile freshness


def identifier_of(container: Container, hcp_id: str) -> str:
    with container.sessions() as session:
        keys = session.scalars(
            select(Identity.key).where(Identity.hcp_id == hcp_id).order_by(Identity.key)
        ).all()
    named = [k for k in keys if not k.startswith("anon:")]
    _check(bool(named), f"HCP {hcp_id} has no identifier")
    return named[0]


def _events_90d(container: Container, hcp_id: str) -> int:
    return int(container.profiles.get_hcp(hcp_id)["engagement"]["events"]["90d"])


def _one_event(identifier: str, number: int, now: dt.datetime) -> LogEvent:
    row = {
        "message_id": f"bench-fresh-{now.timestamp():.6f}-{number}",
        "user_id": identifier,
        "channel": "website",
        "action": "visited",
        "event": "Page Viewed",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "synthetic": True,
    }
    event = validate_event_row(
        row, row_number=number, file="bench", source="bench:freshness", received_at=now
    )
    _check(isinstance(event, LogEvent), f"the freshness event is invalid: {event}")
    assert isinstance(event, LogEvent)
    return event


def freshness(container: Container, hcp_ids: list[str]) -> list[float]:
    """Milliseconds from ``committer.submit`` until ``get_hcp`` shows the event, per sample."""
    samples: list[float] = []
    for number, hcp_id in enumerate(hcp_ids, 1):
        identifier = identifier_of(container, hcp_id)
        before = _events_90d(container, hcp_id)
        event = _one_event(identifier, number, container.clock.now())
        started = time.perf_counter()
        future = container.committer.submit([event])
        while True:
            if _events_90d(container, hcp_id) > before:
                break
            if time.perf_counter() - started > FRESHNESS_TIMEOUT_S:
                raise PipelineError(
                    f"an event for {identifier} ({hcp_id}) did not reach the profile within "
                    f"{FRESHNESS_TIMEOUT_S:.0f} s"
                )
            time.sleep(POLL_S)
        samples.append((time.perf_counter() - started) * 1000)
        result = future.result(timeout=FRESHNESS_TIMEOUT_S)
        _check(result.accepted == 1, f"the freshness event was not accepted: {result}")
    return samples


# ---------------------------------------------------------------------------------------------


def _import_results(
    figures: ImportFigures, summary: MarketSummary, base_s: float, label: str, kind: str
) -> list[Result]:
    rows = summary.events
    injected_invalid = sum(summary.invalid.values())
    rate = figures.rows / figures.total_s
    cores = usable_cores()
    budget_s = figures.rows / GOAL_IMPORT_EPS * cores
    return [
        Result(
            f"event import {kind} → log + profiles ({label})",
            rate,
            "events/s",
            "DuckDB read_parquet → table" if kind == "Parquet" else "DuckDB read_json → table",
            rows / base_s,
            extra={
                "higher": "better",
                "seconds": figures.total_s,
                "baseline_seconds": base_s,
                "accepted": figures.accepted,
                "duplicates": figures.duplicates,
                "quarantined": figures.quarantined,
                "injected_duplicates": summary.duplicates,
                "injected_invalid": injected_invalid,
                "distinct_valid_generated": summary.generated - injected_invalid,
                "goal": f"≥ {GOAL_IMPORT_EPS:,.0f}",
                "status": _status(rate >= GOAL_IMPORT_EPS),
            },
        ),
        Result(
            f"  CPU of the import, every thread (budget: {cores} cores busy for as long as "
            f"the goal allows)",
            figures.cpu_s,
            "s",
            "CPU budget at the goal",
            budget_s,
            extra={
                "lower": "better",
                "cores_busy": figures.cpu_s / figures.total_s,
                "usable_cores": cores,
            },
        ),
        Result(
            f"  phase 1: the append (validate, dedupe, quarantine), profiles following ({label})",
            figures.rows / figures.append_s,
            "events/s",
            extra={"seconds": figures.append_s, "share": figures.append_s / figures.total_s},
        ),
        Result(
            f"  phase 2: the profile update left after the append ({label})",
            figures.profile_s,
            "s",
            extra={
                "applied (both phases)": figures.applied,
                "seconds": figures.profile_s,
                "share": figures.profile_s / figures.total_s,
            },
        ),
    ]


def _read_results(ours: Latencies, bare: Latencies, reads: int, live: int) -> list[Result]:
    return [
        Result(
            f"HCP 360 read p99, get_hcp ({reads:,} random live HCPs of {live:,})",
            ours.p99_ms,
            "ms",
            "SQLite PK SELECT p99",
            bare.p99_ms,
            extra={
                "lower": "better",
                "passes_p99_ms": ours.passes_p99_ms,
                "baseline_passes_p99_ms": bare.passes_p99_ms,
                "goal": f"≤ {GOAL_READ_P99_MS:.0f} ms",
                "status": _status(ours.p99_ms <= GOAL_READ_P99_MS),
            },
        ),
        Result(
            f"HCP 360 read p50, get_hcp ({reads:,} random live HCPs)",
            ours.p50_ms,
            "ms",
            "SQLite PK SELECT p50",
            bare.p50_ms,
            extra={"lower": "better"},
        ),
    ]


def _freshness_result(fresh: list[float]) -> Result:
    p99 = percentile(fresh, 99)
    return Result(
        f"event → profile freshness p99 (committer → get_hcp, {len(fresh)} samples)",
        p99,
        "ms",
        extra={
            "p50_ms": percentile(fresh, 50),
            "max_ms": max(fresh),
            "poll_ms": POLL_S * 1000,
            "goal": f"≤ {GOAL_FRESH_P99_MS:.0f} ms",
            "status": _status(p99 <= GOAL_FRESH_P99_MS),
        },
    )


def _floor_result(source: Path, scratch: Path, figures: ImportFigures, label: str) -> Result:
    floor_s, floor_rows = log_append_floor(source, scratch, _IMPORT_CHUNK)
    _check(floor_rows >= 0.9 * figures.accepted, f"the floor appended {floor_rows:,} rows")
    return Result(
        f"  floor: the same file appended by the log's own insert alone ({label})",
        figures.rows / floor_s,
        "events/s",
        "the import above",
        figures.rows / figures.total_s,
        extra={"seconds": floor_s, "appended": floor_rows, "chunk": _IMPORT_CHUNK,
               "goal": f"≥ {GOAL_IMPORT_EPS:,.0f}"},
    )  # fmt: skip


def run(
    plan: Plan, seed: int, scratch: Path, kind: str = "NDJSON", *, floor: bool = True
) -> tuple[list[Result], dict[str, Any]]:
    """Setup, then every measurement; each figure is printed as soon as it is known.
    ``floor=False`` skips the floor (a second append of the whole file)."""
    rng = random.Random(seed)
    info: dict[str, Any] = {"data": "synthetic market (counterpoint.simulate.market)"}
    results: list[Result] = []

    def report(*new: Result) -> None:
        for result in new:
            result.print()
        results.extend(new)

    began = time.perf_counter()
    market = scratch / "market"
    summary = generate(market, plan.events, seed)
    if kind == "Parquet":
        ndjson = scratch / "events.parquet"
        written = lines = write_parquet(market, ndjson)
    else:
        ndjson = scratch / "events.ndjson"
        written = write_ndjson(market, ndjson)
        lines = count_lines(ndjson)
    _check(
        written == summary.events == lines,
        f"{kind} rows: COPY wrote {written:,}, {lines:,} rows, generator {summary.events:,}",
    )
    hcps = summary.files.get("hcps.parquet", 0)
    label = f"synthetic market, {written:,} rows"
    container = open_embedded(scratch / "data")
    try:
        master = import_master(container, market)
        setup_s = time.perf_counter() - began
        info.update(
            hcps=hcps,
            weeks=WEEKS,
            rows=written,
            generated_distinct=summary.generated,
            injected_duplicates=summary.duplicates,
            injected_invalid=dict(summary.invalid),
            ndjson_bytes=ndjson.stat().st_size,
            master_data=master,
            setup_seconds=round(setup_s, 1),
            peak_rss_after_setup_mib=round(peak_rss_mib()),
        )
        print(
            f"setup (synthetic market, not timed): {hcps:,} HCPs × {WEEKS} weeks → "
            f"{written:,} event rows ({summary.duplicates:,} duplicates, "
            f"{sum(summary.invalid.values()):,} invalid injected), NDJSON "
            f"{ndjson.stat().st_size / 1e6:,.0f} MB; master data {master}; {setup_s:.1f} s",
            flush=True,
        )

        figures = measured_import(container, ndjson)
        info["peak_rss_after_import_mib"] = round(peak_rss_mib())
        load = machine_info()
        info["load_after_import"] = load["load_average_1min"]
        info["cpu_pressure_after_import"] = load["cpu_pressure_avg60"]
        check_import(figures, written, summary)
        print(
            f"import: {figures.rows:,} rows → {figures.accepted:,} accepted, "
            f"{figures.duplicates:,} duplicates, {figures.quarantined:,} quarantined; append "
            f"{figures.append_s:.1f} s, profiles {figures.profile_s:.1f} s",
            flush=True,
        )
        _check(ndjson.is_file(), f"{ndjson} vanished (was the scratch directory removed?)")
        base_s, base_rows = duckdb_baseline(ndjson, scratch)
        _check(base_rows == written, f"DuckDB loaded {base_rows:,} of {written:,}")
        report(*_import_results(figures, summary, base_s, label, kind))
        if floor:
            report(_floor_result(ndjson, scratch, figures, label))

        ids = live_hcp_ids(container)
        _check(len(ids) >= min(hcps, 10), f"only {len(ids)} live master-data HCPs")
        read_ids = rng.sample(ids, min(plan.reads, len(ids)))
        ours, bare = read_latencies(container, read_ids, plan.read_passes)
        report(*_read_results(ours, bare, len(read_ids), len(ids)))

        container.start_background()
        fresh_ids = rng.sample(ids, min(plan.freshness_samples, len(ids)))
        report(_freshness_result(freshness(container, fresh_ids)))
    finally:
        container.close()

    report(
        Result(
            f"peak memory, whole run (ru_maxrss; {label})",
            peak_rss_mib(),
            "MiB",
            extra={
                "after_setup_mib": info["peak_rss_after_setup_mib"],
                "after_import_mib": info["peak_rss_after_import_mib"],
            },
        )
    )
    return results, info


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument(
        "--events",
        type=int,
        help="event rows to generate (default 2,000,000; 20,000 with --tiny; target 10,000,000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="market and sampling seed")
    parser.add_argument(
        "--input",
        choices=["ndjson", "parquet"],
        default="ndjson",
        help="the file format imported (baseline: DuckDB's own reader of the same file)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor (a second append of the whole file; about 12 min at 100M events)",
    )
    parser.add_argument(
        "--scratch-dir",
        type=Path,
        default=Path.cwd(),
        help="where the temporary directory is made (default: the current directory)",
    )
    args = parser.parse_args(argv)
    if args.events is not None and args.events < 1_000:
        parser.error("--events must be at least 1,000")
    # On SIGTERM (run_all's timeout) unwind normally: close the stores, remove the scratch dir.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    plan = Plan.for_args(args.tiny, args.events)
    command = command_line()
    print(f"machine (start): {machine_info()}")
    print(f"command: {command}")
    print(f"plan: {plan}; data: synthetic market", flush=True)

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=".bench-import-events-", dir=args.scratch_dir))
    try:
        kind = "Parquet" if args.input == "parquet" else "NDJSON"
        results, info = run(plan, args.seed, scratch, kind, floor=not args.no_floor)
    except PipelineError as exc:
        print(f"PIPELINE FAILURE: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    machine = machine_info()
    print(f"machine (end): {machine}")
    print(f"run took {time.perf_counter() - started:.1f} s")
    print()
    print("goals (reported, not asserted):")
    for result in results:
        if "status" in result.extra:
            print(
                f"  {result.extra['status']}  {result.name.strip()}: "
                f"{format_figure(result.figure)} {result.unit} (goal {result.extra['goal']})"
            )
    print()
    print(Result.markdown_header())
    for result in results:
        print(result.markdown_row())
    if args.json is not None:
        write_json(
            args.json,
            results,
            extra={"command": command, "tiny": args.tiny, "plan": plan.__dict__, **info},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
