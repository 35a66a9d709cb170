"""Segment evaluation in bulk against the equivalent hand-written DuckDB query, same run.

Setup (not timed), all data **synthetic**: an embedded store (SQLite + DuckDB) in a temporary
directory with ``--hcps`` HCP profiles (specialty, potential decile, market) and two
identifiers each (``crm:…`` and ``email:…``), written to the operational store with
SQLAlchemy Core; ``--events`` interactions (channel, an action that fits the channel, brand,
function, times over the last 400 days, each under one of the HCP's two identifiers)
generated inside DuckDB from hashes of the event number (the same data every run) and
appended to the log file by the log's own insert statement, in chunks of 10,000,000. The HCP
and identity tables are also copied into the DuckDB file for the baseline.

Measured, median of 3 after one warm-up each:

1. ``BulkEvaluator.evaluate`` of one realistic condition: two attributes, two event counts,
   a response-rate feature and a ``not``, as ``segment count`` runs it (the population and
   the identity map read from SQLite, the event counts by one scan of the log, the condition
   compiled to SQL in an in-memory DuckDB database);
2. baseline: one hand-written DuckDB query over the same data (``event_log`` joined to the
   identity table, grouped per HCP, filtered with the HCP table), on its own connection to
   the same DuckDB file.

Both must return the same number of members (else the script fails). Goal: the bulk
evaluation takes at most 1.25 times the hand-written query (printed as PASS / MISS).

    .venv/bin/python bench/segments.py --tiny      # 2,000 HCPs, 50,000 events (CI)
    .venv/bin/python bench/segments.py             # 100,000 HCPs, 10,000,000 events
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, add_common_args, command_line, machine_info, write_json

TINY_SUPPORTED = True
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
GOAL = 1.25
REPEATS = 3

CONDITION: dict[str, Any] = {
    "all": [
        {"attribute": {"name": "specialty", "op": "in",
                       "value": ["cardiology", "internal_medicine"]}},
        {"attribute": {"name": "potential_decile", "op": "gte", "value": 6}},
        {"events": {"channel": "campaign_email", "action": ["opened", "clicked"],
                    "within_days": 90, "op": "gte", "count": 2}},
        {"events": {"channel": ["f2f_call", "remote_call"], "action": "call_completed",
                    "within_days": 180, "op": "gte", "count": 1}},
        {"feature": {"name": "response_rate", "channel": "campaign_email", "window_days": 90,
                     "op": "gte", "value": 0.2}},
        {"not": {"events": {"channel": "webinar", "action": "attended", "within_days": 30}}},
    ]
}  # fmt: skip

SPECIALTIES = ["cardiology", "internal_medicine", "oncology", "general_practice", "neurology"]
MARKETS = ["DE", "FR", "IT", "ES"]
CHANNELS = ["campaign_email", "f2f_call", "remote_call", "webinar", "website", "sms"]
CHANNEL_P = [0.45, 0.12, 0.05, 0.08, 0.2, 0.1]
ACTIONS_BY_CHANNEL = {  # (actions, probabilities)
    "campaign_email": (["sent", "delivered", "opened", "clicked"], [0.4, 0.35, 0.18, 0.07]),
    "f2f_call": (["planned", "call_completed"], [0.3, 0.7]),
    "remote_call": (["planned", "call_completed"], [0.3, 0.7]),
    "webinar": (["registered", "attended", "no_show"], [0.5, 0.35, 0.15]),
    "website": (["visited"], [1.0]),
    "sms": (["sent", "delivered", "clicked"], [0.5, 0.45, 0.05]),
}


def baseline_sql(now: dt.datetime) -> tuple[str, dict[str, dt.datetime]]:
    """The condition written by hand as one DuckDB query (what an analyst would write)."""
    from counterpoint.event.canonical import ENGAGEMENT_ACTIONS, TOUCH_ACTIONS

    touches = ", ".join(f"'{a.value}'" for a in sorted(TOUCH_ACTIONS))
    responses = ", ".join(f"'{a.value}'" for a in sorted(ENGAGEMENT_ACTIONS))
    d30, d90, d180 = (now - dt.timedelta(days=d) for d in (30, 90, 180))
    sql = f"""
        WITH ev AS (
            SELECT i.hcp_id,
                count(*) FILTER (WHERE channel = 'campaign_email'
                    AND action IN ('opened', 'clicked') AND occurred_at > $d90) AS opens,
                count(*) FILTER (WHERE channel IN ('f2f_call', 'remote_call')
                    AND action = 'call_completed') AS calls,
                count(*) FILTER (WHERE channel = 'campaign_email' AND action IN ({responses})
                    AND occurred_at > $d90) AS responses,
                count(*) FILTER (WHERE channel = 'campaign_email' AND action IN ({touches})
                    AND occurred_at > $d90) AS touches,
                count(*) FILTER (WHERE channel = 'webinar' AND action = 'attended'
                    AND occurred_at > $d30) AS webinars
            FROM event_log e JOIN bench_identity i ON i.key = e.subject
            WHERE occurred_at > $d180 AND occurred_at <= $now
              AND channel IS NOT NULL AND action IS NOT NULL
            GROUP BY i.hcp_id
        )
        SELECT count(*) FROM bench_hcp h JOIN ev ON ev.hcp_id = h.hcp_id
        WHERE h.specialty IN ('cardiology', 'internal_medicine') AND h.potential_decile >= 6
          AND ev.opens >= 2 AND ev.calls >= 1 AND ev.webinars = 0
          AND ev.touches > 0 AND ev.responses / ev.touches >= 0.2
    """
    return sql, {"d30": d30, "d90": d90, "d180": d180, "now": now}


# --- synthetic data ------------------------------------------------------------------------------
def population(n: int, rng: np.random.Generator) -> pa.Table:
    ids = pc.binary_join_element_wise("hcp_bench", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    specialty = rng.choice(len(SPECIALTIES), n, p=[0.25, 0.2, 0.2, 0.25, 0.1])
    return pa.table(
        {
            "hcp_id": ids,
            "market": pa.array(np.array(MARKETS)[rng.integers(0, len(MARKETS), n)]),
            "specialty": pa.array(np.array(SPECIALTIES)[specialty]),
            "potential_decile": pa.array(rng.integers(1, 11, n), pa.int64()),
        }
    )


def identities(n: int) -> pa.Table:
    numbers = pc.cast(pa.array(np.arange(n)), pa.string())
    crm = pc.binary_join_element_wise("crm:B", numbers, "")
    email = pc.binary_join_element_wise("email:b", numbers, "@x.example", "")
    hcp = pc.binary_join_element_wise("hcp_bench", numbers, "")
    return pa.table({"key": pa.concat_arrays([crm, email]), "hcp_id": pa.concat_arrays([hcp, hcp])})


def _pick(uniform: str, names: list[str], weights: list[float]) -> str:
    """A SQL ``CASE`` that maps a uniform ``[0, 1)`` column to a name with these weights."""
    if len(names) == 1:
        return f"'{names[0]}'"
    cases, edge = [], 0.0
    for name, weight in zip(names[:-1], weights[:-1], strict=True):
        edge += weight
        cases.append(f"WHEN {uniform} < {edge:.6f} THEN '{name}'")
    return f"CASE {' '.join(cases)} ELSE '{names[-1]}' END"


def events_sql(hcps: int, lo: int, hi: int) -> str:
    """Synthetic interactions ``lo`` to ``hi - 1`` of ``hcps`` HCPs, in the log's columns.

    Generated inside DuckDB (100,000,000 rows would take an hour through Python): every
    random draw is a hash of the event number and a salt, so the data is the same every run.
    Each event is under one of its HCP's two identifiers, at a time in the last 400 days.
    """
    actions = " ".join(
        f"WHEN '{channel}' THEN {_pick('u_act', acts, p)}"
        for channel, (acts, p) in ACTIONS_BY_CHANNEL.items()
    )
    now = NOW.isoformat(sep=" ")
    return f"""
        WITH g AS (
            SELECT range AS n, hash(range, 1) % {hcps} AS who, hash(range, 2) % 2 = 0 AS by_email,
                (hash(range, 3) % 1000000) / 1e6 AS u_ch, (hash(range, 4) % 1000000) / 1e6 AS u_act,
                (hash(range, 5) % {400 * 86_400 * 1_000_000})::BIGINT AS ago_us,
                hash(range, 6) % 10 AS u_brand, hash(range, 7) % 100 AS u_fn
            FROM range({lo}, {hi})
        ), c AS (
            SELECT *, {_pick("u_ch", CHANNELS, CHANNEL_P)} AS channel,
                TIMESTAMPTZ '{now}' - to_microseconds(ago_us) AS at_time
            FROM g
        )
        SELECT 'bench-' || n AS message_id, 'track' AS kind,
            CASE WHEN by_email THEN 'email:b' || who || '@x.example' ELSE 'crm:B' || who END
                AS subject,
            at_time AS occurred_at, at_time AS received_at, 'bench' AS source, channel,
            CASE channel {actions} END AS action,
            NULL::VARCHAR AS event_name, NULL::VARCHAR AS anonymous_id,
            CASE WHEN u_brand < 5 THEN 'Cardiomax' WHEN u_brand < 8 THEN 'Zentrova' END AS brand,
            NULL::VARCHAR AS content_id, NULL::VARCHAR AS slide, NULL::VARCHAR AS actor_type,
            NULL::VARCHAR AS actor_id,
            CASE WHEN u_fn < 5 THEN 'medical' ELSE 'commercial' END AS function,
            NULL::VARCHAR AS market, '{{}}' AS payload, true AS synthetic
        FROM c
    """


def append_generated(log_path: Path, hcps: int, total: int) -> None:
    """Append ``total`` generated events to the log file through the log's own insert.

    The statement is the one ``append_arrow`` runs for new rows (message-id digest, subject
    hash; numbered 1, 2, … as the log numbers them), fed from ``events_sql`` in chunks of
    10,000,000 (the generated ids are unique).
    """
    import duckdb

    from counterpoint.event.duckdb_log import _PLAIN

    con = duckdb.connect(str(log_path))
    try:
        chunk = 10_000_000
        for lo in range(0, total, chunk):
            hi = min(total, lo + chunk)
            started = time.perf_counter()
            numbered = (
                f"SELECT {lo} + row_number() OVER () AS seq, * FROM ({events_sql(hcps, lo, hi)})"
            )
            con.execute(f"CREATE OR REPLACE TEMP VIEW incoming AS {numbered}")
            con.execute(_PLAIN.format(table="incoming"))
            if total > chunk:
                print(f"# setup: {hi:,} events ({time.perf_counter() - started:.0f} s)", flush=True)
        con.execute("CHECKPOINT")
        stored = con.execute("SELECT count(*) FROM event_log").fetchone()
        assert stored is not None
        assert stored[0] == total, stored
    finally:
        con.close()


def build_store(root: Path, hcps: int, total: int) -> tuple[Path, pa.Table, pa.Table]:
    """The synthetic store; returns the DuckDB file and the HCP and identity tables."""
    from counterpoint.container import open_container
    from counterpoint.kit.clock import FixedClock
    from counterpoint.profile.models import Hcp, Identity
    from counterpoint.settings import Settings

    rng = np.random.default_rng(11)
    people = population(hcps, rng)
    keys = identities(hcps)
    settings = Settings(data_dir=root / "data", environment="test", run_delivery=False)
    container = open_container(settings, clock=FixedClock(NOW))
    try:
        rows = [
            {"id": h, "kind": "hcp", "master_data": True, "market": m, "specialty": s,
             "potential_decile": d, "segments": [], "adoption_stage": {}, "synthetic": True,
             "created_at": NOW, "updated_at": NOW}
            for h, m, s, d in zip(*(people.column(c).to_pylist() for c in people.column_names),
                                  strict=True)
        ]  # fmt: skip
        idents = [
            {"key": k, "type": k.partition(":")[0], "hcp_id": h, "first_seen": NOW}
            for k, h in zip(keys.column("key").to_pylist(), keys.column("hcp_id").to_pylist(),
                            strict=True)
        ]  # fmt: skip
        with container.engine.begin() as conn:
            for start in range(0, len(rows), 20_000):
                conn.execute(Hcp.__table__.insert(), rows[start : start + 20_000])
            for start in range(0, len(idents), 20_000):
                conn.execute(Identity.__table__.insert(), idents[start : start + 20_000])
    finally:
        container.close()
    append_generated(settings.event_log_path, hcps, total)
    return settings.event_log_path, people, keys


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--hcps", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    if args.tiny:
        args.hcps, args.events = 2_000, 50_000

    import duckdb

    from counterpoint.container import open_container
    from counterpoint.kit.clock import FixedClock
    from counterpoint.segment.conditions import event_filters, parse_condition
    from counterpoint.settings import Settings

    condition = parse_condition(CONDITION)
    root = Path(tempfile.mkdtemp(prefix="segments-bench-", dir=Path.cwd()))
    try:
        setup = time.perf_counter()
        log_path, people, keys = build_store(root, args.hcps, args.events)
        con = duckdb.connect(str(log_path))
        con.register("people", people)
        con.register("keys", keys)
        con.execute("CREATE TABLE bench_hcp AS SELECT * FROM people")
        con.execute("CREATE TABLE bench_identity AS SELECT * FROM keys")
        con.close()
        setup_s = time.perf_counter() - setup

        settings = Settings(data_dir=root / "data", environment="test", run_delivery=False)
        container = open_container(settings, clock=FixedClock(NOW))
        try:
            bulk_times: list[float] = []
            scan_times: list[float] = []
            members = 0
            for run in range(REPEATS + 1):  # the first is the warm-up
                start = time.perf_counter()
                members = container.segments.bulk.evaluate(condition, NOW).num_rows
                took = time.perf_counter() - start
                scan = time.perf_counter()
                container.log.count_by_subject(event_filters(condition), NOW)
                scan_took = time.perf_counter() - scan
                if run:
                    bulk_times.append(took)
                    scan_times.append(scan_took)
        finally:
            container.close()

        sql, params = baseline_sql(NOW)
        con = duckdb.connect(str(log_path), read_only=True)
        try:
            hand_times: list[float] = []
            expected = -1
            for run in range(REPEATS + 1):
                start = time.perf_counter()
                expected = int(con.execute(sql, params).fetchall()[0][0])
                if run:
                    hand_times.append(time.perf_counter() - start)
        finally:
            con.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    bulk_s = float(np.median(bulk_times))
    hand_s = float(np.median(hand_times))
    ratio = bulk_s / hand_s
    print(f"# {command_line()}")
    print(f"# machine: {machine_info()}")
    print(f"# setup (synthetic store, not timed): {setup_s:.1f} s")
    results = [
        Result(
            "segment evaluation in bulk (BulkEvaluator.evaluate)", bulk_s, "s",
            "hand-written DuckDB query", hand_s, ratio,
            extra={"hcps": args.hcps, "events": args.events, "members": members,
                   "log_scan_s (count_by_subject alone)": float(np.median(scan_times)),
                   "goal": f"<= {GOAL}x", "verdict": "PASS" if ratio <= GOAL else "MISS"},
        ),
    ]  # fmt: skip
    for result in results:
        result.print()
    if args.json:
        write_json(args.json, results)
    if members != expected:
        print(f"member counts differ: bulk {members}, hand-written {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
