"""The synthetic market generator: a whole invented pharma market as Parquet files.

Everything written here is synthetic: invented people, organisations, brands and numbers, with
``synthetic = true`` in every row and ``"synthetic": true`` in the catalogue. E-mail
addresses use the reserved ``.example`` domain (RFC 2606); phone numbers are well-formed E.164
numbers (area code 555 in North America); NPIs are nine scrambled digits with a correct check
digit. NPIs, national ids, CRM ids and e-mail addresses are unique; phone numbers are unique up
to ten million HCPs.

``generate_market`` writes into ``out``:

- ``hcps.parquet``: the HCP columns of docs/formats.md. 40% of HCPs are in the US and have an
  NPI; the others have a ``national_id`` (``DE-…``); all have a ``crm_id`` (``CRM-<n>``).
- ``hcos.parquet`` and ``affiliations.parquet``: organisations and places of work (``hcp`` is
  ``npi:…`` for US HCPs, ``crm:…`` elsewhere).
- ``reps.parquet``: ``rep_id``, ``name``, ``role`` (rep, kam, msl), ``market``, ``territory``,
  ``synthetic``: one rep per territory, KAMs and MSLs per market.
- ``consents.parquet``: one consent record per HCP, consent channel (``email``, ``sms``,
  ``f2f_call``, ``remote_call``) and purpose (``promotional``, ``medical``), in the format of
  ``counterpoint import consents`` (docs/formats.md, "Consent"), so it imports as it is:

  ===================  =========================================================
  ``identifier``       the HCP, ``npi:…`` or ``crm:…`` (as in affiliations)
  ``channel``          the consent channel; campaign and rep e-mail share ``email``
  ``purpose``          ``promotional`` or ``medical``
  ``market``           ISO 3166-1 alpha-2
  ``state``            ``granted``, ``denied`` or ``pending`` (awaiting double opt-in;
                       more of these in the EU)
  ``effective_at``     when the consent was captured (UTC, before the history)
  ``source``           ``web_form``, ``rep_capture`` or ``import``
  ``captured_by``      the territory's rep (``REP-…``) for rep captures, ``web`` for web
                       forms, ``synthetic-import`` for imports
  ``wording_version``  the version of the consent text shown, e.g. ``DE-v4``
  ``wording_hash``     SHA-256 of that (synthetic) text
  ``evidence``         for rep captures, a synthetic signature reference ``SYN-SIG-…``
  ``reason``           ``synthetic market``
  ``synthetic``        always true (kept on the ledger's records)
  ===================  =========================================================

  The behaviour honours it: campaign and rep e-mails, SMS and calls go only to HCPs whose
  promotional consent for that channel is granted (phone calls honour ``remote_call``).
- ``catalog.json``: brands (therapeutic area, markets, content ids per channel), markets,
  congresses, ``"synthetic": true``.
- ``events/part-00000.parquet`` …: the interaction columns of docs/formats.md, about
  ``rows_per_part`` rows per file. ``duplicates`` and ``invalid`` add repeated and broken
  rows; the kinds of broken rows (``INVALID_KINDS``) are:

  - ``unknown_channel``: ``channel`` is ``carrier_pigeon``, which is no channel code;
  - ``missing_identity``: neither ``user_id`` nor ``anonymous_id``;
  - ``bad_npi``: ``user_id`` is ``npi:`` and ten digits whose check digit is wrong;
  - ``missing_timestamp``: ``timestamp`` is null.

HCPs are generated in chunks, each from its own random stream derived from the seed, and
written as they are made, so memory stays bounded whatever the number of HCPs; the same
arguments give the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from counterpoint.simulate.behaviour import CHANNELS, simulate_chunk
from counterpoint.simulate.events import (
    EVENT_SCHEMA,
    INVALID_KINDS,
    UNKNOWN_CHANNEL,
    WRITER_OPTIONS,
    encode_chunk,
)
from counterpoint.simulate.population import (
    AFFILIATION_SCHEMA,
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    CONSENT_SCHEMA,
    HCO_SCHEMA,
    HCP_SCHEMA,
    REP_SCHEMA,
    World,
    build_hcp_chunk,
    build_world,
)
from counterpoint.simulate.reference import (
    CONGRESSES,
    CONTENT_KINDS,
    MARKETS,
    PERSONAS,
    SPECIALTIES,
)

__all__ = [
    "AFFILIATION_SCHEMA",
    "CONSENT_CHANNELS",
    "CONSENT_PURPOSES",
    "CONSENT_SCHEMA",
    "EVENTS_PER_HCP_YEAR",
    "EVENT_SCHEMA",
    "HCO_SCHEMA",
    "HCP_SCHEMA",
    "INVALID_KINDS",
    "MARKET_CODES",
    "PERSONAS",
    "REFERENCE_DATE",
    "REP_SCHEMA",
    "SPECIALTIES",
    "UNKNOWN_CHANNEL",
    "MarketConfig",
    "MarketSummary",
    "chunk_size",
    "default_start",
    "expected_events",
    "generate_market",
]

REFERENCE_DATE = dt.date(2026, 11, 2)
"""The default history ends here (a Monday), so that default output is deterministic."""
EVENTS_PER_HCP_YEAR = 100.0
"""Average generated interactions per HCP and year (before duplicates)."""
MARKET_CODES: tuple[str, ...] = tuple(m.code for m in MARKETS)
MAX_HCPS = 100_000_000
_TARGET_CHUNK_EVENTS = 300_000


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """What to generate. The same configuration always gives the same rows."""

    hcps: int
    weeks: int = 52
    seed: int = 0
    out: Path = Path(".counterpoint/market")
    duplicates: float = 0.0
    """Fraction of event rows that repeat an earlier row's message id (0 ≤ p < 0.5)."""
    invalid: float = 0.0
    """Fraction of event rows made invalid (0 ≤ q ≤ 0.5), see ``INVALID_KINDS``."""
    start: dt.date | None = None
    """First day of the history; by default ``weeks`` weeks before ``REFERENCE_DATE``."""
    rows_per_part: int = 1_000_000
    chunk_hcps: int | None = None
    """HCPs generated (and held in memory) at a time; by default about 300,000 events' worth."""

    def validated(self) -> MarketConfig:
        if not 1 <= self.hcps <= MAX_HCPS:
            raise ValueError(f"hcps must be between 1 and {MAX_HCPS:,}")
        if not 1 <= self.weeks <= 520:
            raise ValueError("weeks must be between 1 and 520")
        if self.seed < 0:
            raise ValueError("seed must not be negative")
        if not 0.0 <= self.duplicates < 0.5:
            raise ValueError("duplicates must be a fraction in [0, 0.5)")
        if not 0.0 <= self.invalid <= 0.5:
            raise ValueError("invalid must be a fraction in [0, 0.5]")
        if self.rows_per_part < 1:
            raise ValueError("rows_per_part must be positive")
        if self.chunk_hcps is not None and self.chunk_hcps < 1:
            raise ValueError("chunk_hcps must be positive")
        return self


@dataclass(slots=True)
class MarketSummary:
    """What was written: rows per file (paths relative to ``out``) and event figures."""

    out: Path
    start: dt.date
    weeks: int
    files: dict[str, int] = field(default_factory=dict)
    events: int = 0
    """Event rows written, duplicates and invalid rows included."""
    generated: int = 0
    """Distinct generated events (distinct message ids)."""
    duplicates: int = 0
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVALID_KINDS, 0))
    elapsed_s: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def default_start(weeks: int) -> dt.date:
    """``weeks`` weeks before ``REFERENCE_DATE``."""
    return REFERENCE_DATE - dt.timedelta(weeks=weeks)


def expected_events(hcps: int, weeks: int, duplicates: float = 0.0) -> int:
    """A rough estimate of the event rows a run will write (for progress bars)."""
    return round(hcps * EVENTS_PER_HCP_YEAR * weeks / 52.0 / (1.0 - duplicates))


def chunk_size(hcps: int, weeks: int) -> int:
    """HCPs per chunk: about 300,000 events each, whatever the size of the run (small enough
    for generating one chunk to overlap with writing the one before)."""
    per_hcp = EVENTS_PER_HCP_YEAR * weeks / 52.0
    return max(1, min(hcps, max(500, min(50_000, int(_TARGET_CHUNK_EVENTS / per_hcp)))))


class _Sink:
    """Writes tables on a background thread, in the order given, so that generating the next
    chunk overlaps with compressing and writing the last one. Memory stays bounded: at most
    ``depth`` tables wait."""

    def __init__(
        self, out: Path, rows_per_part: int, on_events: Callable[[int], None] | None, depth: int
    ) -> None:
        self.out = out
        self.rows_per_part = rows_per_part
        self.on_events = on_events
        self.rows: dict[str, int] = {}
        self.error: BaseException | None = None
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._part = -1
        self._part_rows = 0
        self._queue: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="market-writer", daemon=True)
        self._thread.start()

    def put(self, name: str, table: pa.Table) -> None:
        if self.error is not None:
            raise RuntimeError("writing the market failed") from self.error
        self._queue.put((name, table))

    def close(self) -> dict[str, int]:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError("writing the market failed") from self.error
        return self.rows

    def _writer(self, name: str, schema: pa.Schema) -> pq.ParquetWriter:
        writer = self._writers.get(name)
        if writer is None:
            options = WRITER_OPTIONS if name.startswith("events/") else {}
            writer = pq.ParquetWriter(self.out / name, schema, store_schema=False, **options)
            self._writers[name] = writer
            self.rows[name] = 0
        return writer

    def _write(self, name: str, table: pa.Table) -> None:
        self._writer(name, table.schema).write_table(table)
        self.rows[name] += table.num_rows

    def _events(self, table: pa.Table) -> None:
        done = 0
        while done < table.num_rows:
            if self._part < 0 or self._part_rows >= self.rows_per_part:
                if self._part >= 0:
                    self._writers.pop(self._part_name()).close()
                self._part += 1
                self._part_rows = 0
            room = self.rows_per_part - self._part_rows
            piece = table.slice(done, room)
            self._write(self._part_name(), piece)
            self._part_rows += piece.num_rows
            done += piece.num_rows
        if self.on_events is not None:
            self.on_events(table.num_rows)

    def _part_name(self) -> str:
        return f"events/part-{self._part:05d}.parquet"

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                name, table = item
                if name == "events":
                    self._events(table)
                else:
                    self._write(name, table)
        except BaseException as exc:  # handed to the producer
            self.error = exc
            while self._queue.get() is not None:  # unblock the producer until it closes
                pass
        finally:
            for writer in self._writers.values():
                writer.close()


def _catalog(world: World, config: MarketConfig) -> dict[str, object]:
    brands = []
    for b, brand in enumerate(world.brands):
        content: dict[str, list[str]] = {}
        for k, (_code, channel, count) in enumerate(CONTENT_KINDS):
            first = int(world.content_base[b, k])
            content[channel] = list(world.content_ids[first : first + count])
        brands.append(
            {
                "code": brand.code,
                "name": brand.name,
                "therapeutic_area": brand.therapeutic_area,
                "markets": [m.code for i, m in enumerate(MARKETS) if world.brand_markets[b, i]],
                "specialties": list(brand.specialties),
                "content": content,
            }
        )
    decks = {world.content_ids[i]: int(s) for i, s in enumerate(world.clm_slides.tolist()) if s > 0}
    return {
        "synthetic": True,
        "seed": config.seed,
        "start": world.start.isoformat(),
        "weeks": world.weeks,
        "brands": brands,
        "clm_slides": decks,
        "markets": [
            {
                "code": m.code,
                "languages": [lang for lang, _ in m.languages],
                "time_zones": [tz for tz, _, _ in m.time_zones],
                "territories": int(world.territory_count[i]),
            }
            for i, m in enumerate(MARKETS)
        ],
        "channels": list(CHANNELS),
        "specialties": list(SPECIALTIES),
        "personas": list(PERSONAS),
        "congresses": [
            {
                "name": CONGRESSES[c].name,
                "start": (world.start + dt.timedelta(days=day)).isoformat(),
                "days": CONGRESSES[c].days,
                "therapeutic_area": CONGRESSES[c].ta_code,
            }
            for c, day in world.congress_days
        ],
    }


def generate_market(
    config: MarketConfig, *, on_events: Callable[[int], None] | None = None
) -> MarketSummary:
    """Write the synthetic market described by ``config``; ``on_events(k)`` is called (from
    the writer thread) each time ``k`` more event rows are written."""
    config = config.validated()
    began = time.perf_counter()
    start = config.start or default_start(config.weeks)
    out = config.out
    (out / "events").mkdir(parents=True, exist_ok=True)
    for stale in (out / "events").glob("part-*.parquet"):
        stale.unlink()
    world = build_world(config.seed, config.hcps, config.weeks, start)
    summary = MarketSummary(out=out, start=start, weeks=config.weeks)
    size = config.chunk_hcps or chunk_size(config.hcps, config.weeks)
    sink = _Sink(out, config.rows_per_part, on_events, depth=2)
    hco_first = 0
    try:
        for index, first in enumerate(range(0, config.hcps, size)):
            n = min(size, config.hcps - first)
            chunk = build_hcp_chunk(world, index, first, n, hco_first)
            hco_first += chunk.hcos.num_rows
            for name, table in (
                ("hcps.parquet", chunk.hcps),
                ("hcos.parquet", chunk.hcos),
                ("affiliations.parquet", chunk.affiliations),
                ("consents.parquet", chunk.consents),
            ):
                sink.put(name, table)
            rows = simulate_chunk(world, chunk, np.random.default_rng([config.seed, 3, index]))
            encoded = encode_chunk(
                world,
                chunk,
                rows,
                row_base=summary.generated,
                duplicates=config.duplicates,
                invalid=config.invalid,
                rng=np.random.default_rng([config.seed, 4, index]),
            )
            summary.generated += encoded.generated
            summary.duplicates += encoded.duplicates
            summary.events += encoded.table.num_rows
            for kind, count in encoded.invalid.items():
                summary.invalid[kind] += count
            sink.put("events", encoded.table)
            del chunk, rows, encoded
        sink.put("reps.parquet", world.reps)
    finally:
        summary.files = sink.close()
    (out / "catalog.json").write_text(
        json.dumps(_catalog(world, config), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    summary.files["catalog.json"] = len(world.brands)
    summary.elapsed_s = time.perf_counter() - began
    return summary


assert math.isclose(sum(m.share for m in MARKETS), 1.0)
