"""The synthetic world: markets, territories, reps, brands, content, and HCPs chunk by chunk.

All output is synthetic. ``build_world`` draws what is shared by the whole run (brands and
their markets, territories, reps, content ids, time-zone offsets, seasonality);
``build_hcp_chunk`` draws one block of HCPs with their HCOs, affiliations and consents, from a
random stream of its own so that memory stays bounded and every chunk is reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from counterpoint.consent.ledger import ConsentChannel, ConsentSource, ConsentState, Purpose
from counterpoint.simulate.reference import (
    BRANDS,
    CONGRESSES,
    CONTENT_KINDS,
    MARKETS,
    PERSONAS,
    SPECIALTIES,
    SPECIALTY_WEIGHTS,
    STAGES,
    US_FAMILY_MEDICINE,
    Brand,
    slug,
)

__all__ = [
    "AFFILIATION_SCHEMA",
    "CONSENT_CHANNELS",
    "CONSENT_EMAIL",
    "CONSENT_F2F",
    "CONSENT_PROMOTIONAL",
    "CONSENT_PURPOSES",
    "CONSENT_REASON",
    "CONSENT_REMOTE",
    "CONSENT_SCHEMA",
    "CONSENT_SMS",
    "HCO_SCHEMA",
    "HCP_SCHEMA",
    "REP_SCHEMA",
    "UID_SLOTS",
    "HcpChunk",
    "World",
    "build_hcp_chunk",
    "build_world",
]

I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

TS = pa.timestamp("us", tz="UTC")
HCP_SCHEMA = pa.schema(
    [
        ("npi", pa.string()),
        ("national_id", pa.string()),
        ("vendor_id", pa.string()),
        ("crm_id", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("title", pa.string()),
        ("specialty", pa.string()),
        ("market", pa.string()),
        ("territory", pa.string()),
        ("potential_decile", pa.int8()),
        ("segments", pa.string()),
        ("persona", pa.string()),
        ("adoption_stage", pa.string()),
        ("preferred_language", pa.string()),
        ("time_zone", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
HCO_SCHEMA = pa.schema(
    [
        ("hco_id", pa.string()),
        ("name", pa.string()),
        ("kind", pa.string()),
        ("market", pa.string()),
        ("city", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
AFFILIATION_SCHEMA = pa.schema(
    [
        ("hcp", pa.string()),
        ("hco_id", pa.string()),
        ("role", pa.string()),
        ("primary", pa.bool_()),
        ("synthetic", pa.bool_()),
    ]
)
REP_SCHEMA = pa.schema(
    [
        ("rep_id", pa.string()),
        ("name", pa.string()),
        ("role", pa.string()),
        ("market", pa.string()),
        ("territory", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
CONSENT_SCHEMA = pa.schema(
    [
        ("identifier", pa.string()),
        ("channel", pa.string()),
        ("purpose", pa.string()),
        ("market", pa.string()),
        ("state", pa.string()),
        ("effective_at", TS),
        ("source", pa.string()),
        ("captured_by", pa.string()),
        ("wording_version", pa.string()),
        ("wording_hash", pa.string()),
        ("evidence", pa.string()),
        ("reason", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
"""``consents.parquet``: the columns of ``counterpoint import consents`` (docs/formats.md)."""

CONSENT_CHANNELS: tuple[str, ...] = tuple(
    c.value
    for c in (
        ConsentChannel.EMAIL,  # campaign and rep e-mail alike
        ConsentChannel.SMS,
        ConsentChannel.F2F_CALL,
        ConsentChannel.REMOTE_CALL,  # also honoured by phone calls
    )
)
CONSENT_PURPOSES: tuple[str, ...] = (Purpose.PROMOTIONAL.value, Purpose.MEDICAL.value)
CONSENT_EMAIL, CONSENT_SMS, CONSENT_F2F, CONSENT_REMOTE = range(len(CONSENT_CHANNELS))
"""Indices of the consent channels in ``HcpChunk.consent``."""
CONSENT_PROMOTIONAL = 0
"""Index of the promotional purpose in ``HcpChunk.consent``."""
_CONSENT_STATE = tuple(
    s.value for s in (ConsentState.GRANTED, ConsentState.DENIED, ConsentState.PENDING)
)
_CONSENT_SOURCE = tuple(
    s.value for s in (ConsentSource.WEB_FORM, ConsentSource.REP_CAPTURE, ConsentSource.IMPORT)
)
_WORDING_VERSIONS = 9
CONSENT_REASON = "synthetic market"
UID_SLOTS = 5
"""Per HCP, the user ids events may carry: primary (npi/national), crm, email, phone, bad NPI."""

_HCO_KINDS = ("hospital", "clinic", "practice", "pharmacy", "university")
_HCO_KIND_P = np.array([0.22, 0.2, 0.42, 0.11, 0.05])
_EU = frozenset({"DE", "FR", "GB", "ES", "IT"})
_MARKET_CODES = tuple(m.code for m in MARKETS)
_US = _MARKET_CODES.index("US")
_PHARMACIST = SPECIALTIES.index("pharmacist")
_GP = SPECIALTIES.index("general_practice")
_FAMILY = SPECIALTIES.index("family_medicine")
_NURSE = SPECIALTIES.index("nurse_practitioner")
HCPS_PER_TERRITORY = 450


def _cdf(weights: npt.ArrayLike) -> F64:
    w = np.asarray(weights, dtype=np.float64)
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


def _draw(rng: np.random.Generator, cdf: F64, n: int) -> I64:
    out: I64 = np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)
    return np.minimum(out, len(cdf) - 1)


def _tz_offsets(name: str, fallback_min: int, start: dt.date, weeks: int) -> I64:
    """UTC offset in seconds at mid-week noon of every simulated week (DST-aware)."""
    try:
        zone = ZoneInfo(name)
    except ZoneInfoNotFoundError:  # no tz database: standard time all year
        return np.full(weeks, fallback_min * 60, dtype=np.int64)
    out = np.empty(weeks, dtype=np.int64)
    for w in range(weeks):
        day = start + dt.timedelta(days=7 * w + 3)
        local = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        offset = local.utcoffset()
        out[w] = int(offset.total_seconds()) if offset is not None else fallback_min * 60
    return out


def _seasonality(start: dt.date, weeks: int) -> F64:
    """Relative activity per week: dips in August and over the year-end holidays."""
    out = np.ones(weeks)
    for w in range(weeks):
        mid = start + dt.timedelta(days=7 * w + 3)
        if mid.month == 8:
            out[w] = 0.55
        elif (mid.month == 12 and mid.day >= 20) or (mid.month == 1 and mid.day <= 3):
            out[w] = 0.3
        elif mid.month == 7 or (mid.month == 12 and mid.day >= 13):
            out[w] = 0.85
    return out


@dataclass(frozen=True, slots=True)
class World:
    """Everything shared by all chunks of one run."""

    seed: int
    hcps: int
    weeks: int
    start: dt.date
    brands: tuple[Brand, ...]
    brand_markets: B
    """(brand, market): whether the brand is sold in the market."""
    brand_cdf: F64
    """(specialty, market, brand): cumulative probability of an interaction's brand."""
    content_ids: tuple[str, ...]
    content_base: I32
    """(brand, content kind): index of the first content id."""
    content_count: I32
    clm_slides: I32
    """Slides of each content id (decks only; 0 elsewhere)."""
    territories: tuple[str, ...]
    territory_base: I32
    territory_count: I32
    actors: tuple[str, ...]
    """Actor ids: one rep per territory (same index), then KAMs, MSLs, medical information."""
    kam_base: I32
    kam_count: I32
    msl_base: I32
    msl_count: I32
    medinfo: I32
    reps: pa.Table
    tz_names: tuple[str, ...]
    tz_base: I32
    tz_cdfs: tuple[F64, ...]
    tz_offset: I64
    """(time zone, week): UTC offset in seconds."""
    week_weight: F64
    congress_days: tuple[tuple[int, int], ...]
    """(congress index, first day as an offset from ``start``) inside the history."""
    affine: I64
    """Multiplier and increment of the bijections that make ids unique: row 0 for NPIs, rows
    1 … markets for national ids, the last for phone numbers."""

    @property
    def start_us(self) -> int:
        epoch = dt.date(1970, 1, 1)
        return (self.start - epoch).days * 86_400_000_000

    @property
    def end_us(self) -> int:
        return self.start_us + self.weeks * 7 * 86_400_000_000


def _affine(rng: np.random.Generator, count: int) -> I64:
    out = np.empty((count, 2), dtype=np.int64)
    for i in range(count):
        a = int(rng.integers(1_000_003, 99_999_989))
        while a % 2 == 0 or a % 5 == 0:
            a += 1
        out[i] = (a, int(rng.integers(0, 10**8)))
    return out


def build_world(seed: int, hcps: int, weeks: int, start: dt.date) -> World:
    """Draw the run-wide parts of the market from ``seed``."""
    rng = np.random.default_rng([seed, 1])
    n_brands = int(rng.integers(3, 6))
    brands = BRANDS[:n_brands]
    n_m = len(MARKETS)
    brand_markets = np.ones((n_brands, n_m), dtype=np.bool_)
    for b in range(1, n_brands):
        brand_markets[b] = rng.random(n_m) < 0.75
        brand_markets[b, _US] = True
    relevance = np.array(
        [[1.0 if s in br.specialties else 0.08 for br in brands] for s in SPECIALTIES]
    )
    weights = relevance[:, None, :] * brand_markets.T[None, :, :]
    brand_cdf = np.cumsum(weights / weights.sum(axis=2, keepdims=True), axis=2)
    brand_cdf[..., -1] = 1.0

    content_ids: list[str] = []
    slides: list[int] = []
    content_base = np.zeros((n_brands, len(CONTENT_KINDS)), dtype=np.int32)
    for b, brand in enumerate(brands):
        for k, (code, _channel, count) in enumerate(CONTENT_KINDS):
            content_base[b, k] = len(content_ids)
            for i in range(count):
                content_ids.append(f"CNT-{brand.ta_code}-{code}-{i + 1:03d}")
                slides.append(int(rng.integers(10, 25)) if code == "CLM" else 0)
    content_count = np.array([c for _, _, c in CONTENT_KINDS], dtype=np.int32)

    territories: list[str] = []
    t_base = np.zeros(n_m, dtype=np.int32)
    t_count = np.zeros(n_m, dtype=np.int32)
    for m, market in enumerate(MARKETS):
        count = max(1, math.ceil(hcps * market.share / HCPS_PER_TERRITORY))
        width = max(3, len(str(count)))
        t_base[m], t_count[m] = len(territories), count
        territories.extend(f"{market.code}-T{i + 1:0{width}d}" for i in range(count))

    rep_rows: dict[str, list[object]] = {name: [] for name in REP_SCHEMA.names}
    actors: list[str] = []

    def add(rep_id: str, role: str, m: int, territory: str | None) -> None:
        market = MARKETS[m]
        first = market.first_names[int(rng.integers(len(market.first_names)))]
        last = market.last_names[int(rng.integers(len(market.last_names)))]
        actors.append(rep_id)
        for key, value in zip(
            REP_SCHEMA.names,
            (rep_id, f"{first} {last}", role, market.code, territory, True),
            strict=True,
        ):
            rep_rows[key].append(value)

    for m in range(len(MARKETS)):
        for i in range(int(t_count[m])):
            code = territories[t_base[m] + i]
            add(f"REP-{code}", "rep", m, code)
    kam_base = np.zeros(n_m, dtype=np.int32)
    kam_count = np.zeros(n_m, dtype=np.int32)
    msl_base = np.zeros(n_m, dtype=np.int32)
    msl_count = np.zeros(n_m, dtype=np.int32)
    for m, market in enumerate(MARKETS):
        kam_base[m], kam_count[m] = len(actors), max(1, int(t_count[m]) // 15)
        for i in range(int(kam_count[m])):
            add(f"KAM-{market.code}-{i + 1:02d}", "kam", m, None)
    for m, market in enumerate(MARKETS):
        msl_base[m], msl_count[m] = len(actors), max(1, int(t_count[m]) // 8)
        for i in range(int(msl_count[m])):
            add(f"MSL-{market.code}-{i + 1:02d}", "msl", m, None)
    medinfo = np.arange(len(actors), len(actors) + n_m, dtype=np.int32)
    actors.extend(f"MEDINFO-{market.code}" for market in MARKETS)

    tz_names: list[str] = []
    tz_base = np.zeros(n_m, dtype=np.int32)
    tz_cdfs: list[F64] = []
    offsets: list[I64] = []
    for m, market in enumerate(MARKETS):
        tz_base[m] = len(tz_names)
        tz_cdfs.append(_cdf([w for _, w, _ in market.time_zones]))
        for name, _w, fallback in market.time_zones:
            tz_names.append(name)
            offsets.append(_tz_offsets(name, fallback, start, weeks))

    end = start + dt.timedelta(weeks=weeks)
    congress_days: list[tuple[int, int]] = []
    for year in range(start.year, end.year + 1):
        for c, congress in enumerate(CONGRESSES):
            day = dt.date(year, congress.month, congress.day)
            if start <= day and day + dt.timedelta(days=congress.days) <= end:
                congress_days.append((c, (day - start).days))
    congress_days.sort(key=lambda item: item[1])

    return World(
        seed=seed,
        hcps=hcps,
        weeks=weeks,
        start=start,
        brands=brands,
        brand_markets=brand_markets,
        brand_cdf=brand_cdf,
        content_ids=tuple(content_ids),
        content_base=content_base,
        content_count=content_count,
        clm_slides=np.array(slides, dtype=np.int32),
        territories=tuple(territories),
        territory_base=t_base,
        territory_count=t_count,
        actors=tuple(actors),
        kam_base=kam_base,
        kam_count=kam_count,
        msl_base=msl_base,
        msl_count=msl_count,
        medinfo=medinfo,
        reps=pa.table(rep_rows, schema=REP_SCHEMA),
        tz_names=tuple(tz_names),
        tz_base=tz_base,
        tz_cdfs=tuple(tz_cdfs),
        tz_offset=np.stack(offsets),
        week_weight=_seasonality(start, weeks),
        congress_days=tuple(congress_days),
        affine=_affine(rng, n_m + 2),
    )


@dataclass(slots=True)
class HcpChunk:
    """One block of HCPs: per-HCP arrays for the behaviour model and the tables to write."""

    first: int
    n: int
    market: I8
    tz: I32
    specialty: I8
    decile: I8
    persona: I8
    territory: I32
    activity: F64
    has_email: B
    has_phone: B
    consent: B
    """(hcp, consent channel, purpose): consent granted."""
    web_user: B
    identified_at: I64
    """Microseconds since the epoch of the ``identify`` call, or -1 when never identified."""
    user_ids: pa.Array
    """``UID_SLOTS`` strings per HCP (nulls where the HCP has no such identifier)."""
    anonymous_ids: pa.Array
    traits: pa.Array
    """Per HCP, the ``identify`` traits as JSON text."""
    hcps: pa.Table
    hcos: pa.Table
    affiliations: pa.Table
    consents: pa.Table


def _npi_check(nine: I64) -> I64:
    """Luhn check digit over ``80840`` followed by nine digits (vectorised)."""
    digits = np.empty((len(nine), 14), dtype=np.int64)
    digits[:, :5] = (8, 0, 8, 4, 0)
    for i in range(9):
        digits[:, 5 + i] = (nine // 10 ** (8 - i)) % 10
    rev = digits[:, ::-1]
    doubled = rev[:, 0::2] * 2
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = doubled.sum(axis=1) + rev[:, 1::2].sum(axis=1)
    out: I64 = (10 - total % 10) % 10
    return out


def _str(values: I64) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _padded(values: I64, width: I64 | int) -> pa.Array:
    """Decimal strings zero-padded to ``width`` digits (``width`` ≤ 17)."""
    return pc.utf8_slice_codeunits(_str(values + 10 ** np.asarray(width, dtype=np.int64)), 1)


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation; null where any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def _where(mask: B, values: pa.Array, other: pa.Array | str | None) -> pa.Array:
    if not isinstance(other, pa.Array):
        other = pa.scalar(other, pa.string())
    return pc.if_else(pa.array(mask), values, other)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    """Random version-4 UUID strings (the anonymous ids of web visitors)."""
    nib = rng.integers(0, 16, (n, 32), dtype=np.uint8)
    nib[:, 12] = 4
    nib[:, 16] = 8 + nib[:, 16] % 4
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    cols = [c for c in range(36) if c not in (8, 13, 18, 23)]
    chars[:, cols] = _HEX[nib]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())]
    )


_FIRST = pa.array([x for m in MARKETS for x in m.first_names])
_LAST = pa.array([x for m in MARKETS for x in m.last_names])
_FIRST_SLUG = pa.array([slug(x) for m in MARKETS for x in m.first_names])
_LAST_SLUG = pa.array([slug(x) for m in MARKETS for x in m.last_names])
_PHONES = [p for m in MARKETS for p in m.phone_patterns]
_PHONE_HEAD = pa.array([p.rstrip("#") for p in _PHONES])
_PHONE_WIDTH = np.array([p.count("#") for p in _PHONES], dtype=np.int64)
_PHONE_COUNT = np.array([len(m.phone_patterns) for m in MARKETS], dtype=np.int64)
_PHONE_BASE = np.concatenate([[0], np.cumsum(_PHONE_COUNT)[:-1]]).astype(np.int64)
_NATIONAL_PREFIX = pa.array([m.national_prefix for m in MARKETS])
_MARKET_ARR = pa.array(_MARKET_CODES)
_LANGUAGES = sorted({code for m in MARKETS for code, _ in m.languages})
_TITLES = pa.array([None, "Dr", "Prof"], pa.string())
_SEGMENTS = pa.array(
    [
        ";".join(
            [cls]
            + (["kol"] if kol else [])
            + (["digital_engaged"] if digital else [])
            + ["hospital_based" if hospital else "office_based"]
        )
        for cls in ("high_potential", "growth", "core")
        for kol in (False, True)
        for digital in (False, True)
        for hospital in (False, True)
    ]
)


def _stages(rng: np.random.Generator, world: World, spec: I8, market: I8) -> pa.Array:
    """``BRAND:stage`` for every brand sold in the HCP's market, joined by semicolons."""
    relevant = np.array(
        [[s in br.specialties for br in world.brands] for s in SPECIALTIES], dtype=np.bool_
    )
    rel_cdf = _cdf([0.1, 0.25, 0.2, 0.15, 0.22, 0.08])
    other_cdf = _cdf([0.55, 0.3, 0.1, 0.03, 0.02, 0.0])
    n = len(spec)
    parts: list[pa.Array] = []
    for b, brand in enumerate(world.brands):
        sold = world.brand_markets[b][market]
        stage = np.where(relevant[spec, b], _draw(rng, rel_cdf, n), _draw(rng, other_cdf, n))
        names = pa.array([f"{brand.code}:{st}" for st in STAGES])
        parts.append(_where(sold, names.take(pa.array(stage)), None))
    return pc.binary_join_element_wise(*parts, ";", null_handling="skip")


def build_hcp_chunk(world: World, chunk: int, first: int, n: int, hco_first: int) -> HcpChunk:
    """Draw HCPs ``first`` … ``first + n - 1`` with their organisations and consents."""
    rng = np.random.default_rng([world.seed, 2, chunk])
    g = np.arange(first, first + n, dtype=np.int64)
    num = g + 1
    market = _draw(rng, _cdf([m.share for m in MARKETS]), n).astype(np.int8)
    spec = _draw(rng, _cdf([w for _, w in SPECIALTY_WEIGHTS]), n).astype(np.int8)
    family = (spec == _GP) & (market == _US) & (rng.random(n) < US_FAMILY_MEDICINE)
    spec[family] = _FAMILY
    decile = rng.integers(1, 11, n).astype(np.int8)
    persona_p = np.array([0.22, 0.24, 0.3, 0.16, 0.08])
    persona = _draw(rng, _cdf(persona_p), n).astype(np.int8)
    u = rng.random(n)
    territory = (world.territory_base[market] + u * world.territory_count[market]).astype(np.int32)
    tz = np.empty(n, dtype=np.int32)
    for m in range(len(MARKETS)):
        sel = np.flatnonzero(market == m)
        tz[sel] = world.tz_base[m] + _draw(rng, world.tz_cdfs[m], len(sel))
    # Pareto activity (mean 1): most HCPs are quiet, a few are very active
    activity = np.minimum(rng.pareto(1.25, n) + 1.0, 80.0) / 3.66
    has_email = rng.random(n) < 0.85
    has_phone = rng.random(n) < 0.35
    web_p = np.array([0.85, 0.2, 0.55, 0.15, 0.7])[persona]
    web_user = rng.random(n) < web_p
    identified = web_user & (rng.random(n) < 0.65)
    identified_at = np.where(
        identified,
        world.start_us + (rng.random(n) * (world.end_us - world.start_us)).astype(np.int64),
        -1,
    )
    first_i = market.astype(np.int64) * 16 + rng.integers(0, 16, n)
    last_i = market.astype(np.int64) * 16 + rng.integers(0, 16, n)
    lang_u = rng.random(n)
    title_u = rng.random(n)
    vendor_u = rng.random(n)
    phone_pat = rng.integers(0, 1 << 30, n)

    # identifiers: unique by construction (affine bijections of the global index)
    a_npi, c_npi = (int(x) for x in world.affine[0])
    nine = 100_000_000 + (a_npi * g + c_npi) % 100_000_000
    check = _npi_check(nine)
    bad_check = (check + 1 + rng.integers(0, 9, n)) % 10
    national_num = np.empty(n, dtype=np.int64)
    for m in range(len(MARKETS)):
        a, c = (int(x) for x in world.affine[m + 1])
        sel = market == m
        national_num[sel] = (a * g[sel] + c) % 1_000_000_000

    # organisations of this chunk: a few per market, practices and pharmacies most common
    hco_rows: dict[str, list[object]] = {k: [] for k in HCO_SCHEMA.names}
    hco_market: list[int] = []
    hco_kind: list[int] = []
    hco_domain: list[str] = []
    for m, mk in enumerate(MARKETS):
        count = int(np.count_nonzero(market == m))
        if count == 0:
            continue
        k_n = max(2, math.ceil(count / 18))
        kinds = _draw(rng, _cdf(_HCO_KIND_P), k_n)
        kinds[0] = 3  # at least one pharmacy per market and chunk
        cities = rng.integers(0, len(mk.cities), k_n)
        dirs = rng.integers(0, len(mk.directions), k_n)
        for k, city_i, dir_i in zip(kinds, cities, dirs, strict=True):
            word = mk.hco_words[int(k)]
            city = mk.cities[int(city_i)]
            direction = mk.directions[int(dir_i)]
            name = f"{word} {city} {direction}" if mk.kind_first else f"{city} {direction} {word}"
            hco_rows["hco_id"].append(f"HCO-{hco_first + len(hco_market) + 1:07d}")
            hco_rows["name"].append(name)
            hco_rows["kind"].append(_HCO_KINDS[int(k)])
            hco_rows["market"].append(mk.code)
            hco_rows["city"].append(city)
            hco_rows["synthetic"].append(True)
            hco_market.append(m)
            hco_kind.append(int(k))
            hco_domain.append(slug(name, "-") + ".example")
    h_market = np.array(hco_market)
    h_kind = np.array(hco_kind)
    primary = np.empty(n, dtype=np.int64)
    secondary = np.full(n, -1, dtype=np.int64)
    second_u = rng.random(n)
    for m in range(len(MARKETS)):
        sel = np.flatnonzero(market == m)
        if len(sel) == 0:
            continue
        pharmacies = np.flatnonzero((h_market == m) & (h_kind == 3))
        others = np.flatnonzero((h_market == m) & (h_kind != 3))
        pool = others if len(others) else pharmacies
        pick = rng.integers(0, 1 << 30, len(sel))
        is_ph = spec[sel] == _PHARMACIST
        primary[sel] = np.where(is_ph, pharmacies[pick % len(pharmacies)], pool[pick % len(pool)])
        alt = pool[(pick // 7 + 1) % len(pool)]
        has_second = (second_u[sel] < 0.3) & ~is_ph & (alt != primary[sel])
        secondary[sel] = np.where(has_second, alt, -1)

    us = market == _US
    mk_arr = pa.array(market)
    number = _str(num)
    crm = _join("CRM-", number)
    npi_all = _str(nine * 10 + check)
    npi = _where(us, npi_all, None)
    national = _where(~us, _join(_NATIONAL_PREFIX.take(mk_arr), _padded(national_num, 9)), None)
    domain = pa.array(hco_domain, pa.string()).take(pa.array(primary))
    email = _where(
        has_email,
        _join(
            _FIRST_SLUG.take(pa.array(first_i)),
            ".",
            _LAST_SLUG.take(pa.array(last_i)),
            ".",
            number,
            "@",
            domain,
        ),
        None,
    )
    pat = _PHONE_BASE[market] + phone_pat % _PHONE_COUNT[market]
    width = _PHONE_WIDTH[pat]
    a_ph, c_ph = (int(x) for x in world.affine[len(MARKETS) + 1])
    phone_digits = (a_ph * g + c_ph) % 10**width  # unique while HCPs < 10**7
    phone = _where(
        has_phone,
        _join(_PHONE_HEAD.take(pa.array(pat)), _padded(phone_digits % 10**width, width)),
        None,
    )
    first_name = _FIRST.take(pa.array(first_i))
    last_name = _LAST.take(pa.array(last_i))
    physician = (spec != _PHARMACIST) & (spec != _NURSE)
    title = np.where(physician, np.where(title_u < 0.04, 2, 1), 0)
    language = np.empty(n, dtype=np.int64)
    for m, mk in enumerate(MARKETS):
        sel = np.flatnonzero(market == m)
        cdf = _cdf([w for _, w in mk.languages])
        pick = np.minimum(np.searchsorted(cdf, lang_u[sel], side="right"), len(cdf) - 1)
        language[sel] = np.array([_LANGUAGES.index(code) for code, _ in mk.languages])[pick]
    hospital = np.isin(h_kind[primary], (0, 4))
    segment = (
        np.where(decile >= 8, 0, np.where(decile >= 5, 1, 2)) * 8
        + ((decile == 10) & (title == 2)) * 4
        + web_user * 2
        + hospital
    )
    primary_uid = _where(us, _join("npi:", npi_all), _join("national:", national.fill_null("")))
    uid_parts = [
        primary_uid,
        _join("crm:", crm),
        _join("email:", email),
        _join("phone:", phone),
        _join("npi:", _str(nine * 10 + bad_check)),
    ]
    interleave = (np.arange(UID_SLOTS)[None, :] * n + np.arange(n)[:, None]).reshape(-1)
    user_ids = pa.concat_arrays(uid_parts).take(pa.array(interleave))
    specialty = pa.array(SPECIALTIES).take(pa.array(spec))
    traits = _where(
        has_email,
        _join('{"email":"', email.fill_null(""), '",'),
        _join('{"crm_id":"', crm, '",'),
    )
    traits = _join(
        traits,
        '"first_name":"',
        first_name,
        '","last_name":"',
        last_name,
        '","specialty":"',
        specialty,
        '"}',
    )
    keys = _where(us, _join("npi:", npi_all), _join("crm:", crm))

    market_arr = _MARKET_ARR.take(mk_arr)
    hcps = pa.table(
        {
            "npi": npi,
            "national_id": national,
            "vendor_id": _where(vendor_u < 0.5, _join("V", market_arr, _padded(num, 9)), None),
            "crm_id": crm,
            "email": email,
            "phone": phone,
            "first_name": first_name,
            "last_name": last_name,
            "title": _TITLES.take(pa.array(title)),
            "specialty": specialty,
            "market": market_arr,
            "territory": pa.array(world.territories).take(pa.array(territory)),
            "potential_decile": pa.array(decile, pa.int8()),
            "segments": _SEGMENTS.take(pa.array(segment)),
            "persona": pa.array(PERSONAS).take(pa.array(persona)),
            "adoption_stage": _stages(rng, world, spec, market),
            "preferred_language": pa.array(_LANGUAGES).take(pa.array(language)),
            "time_zone": pa.array(world.tz_names).take(pa.array(tz)),
            "synthetic": pa.array(np.ones(n, dtype=np.bool_)),
        },
        schema=HCP_SCHEMA,
    )
    # affiliations: the primary place of work and, for some, a second one
    key_arr = keys
    sec_rows = np.flatnonzero(secondary >= 0)
    aff_hcp = np.concatenate([np.arange(n), sec_rows])
    aff_hco = np.concatenate([primary, secondary[sec_rows]])
    aff_primary = np.concatenate([np.ones(n, np.bool_), np.zeros(len(sec_rows), np.bool_)])
    aff_kind = h_kind[aff_hco]
    role_u = rng.random(len(aff_hcp))
    a_spec = spec[aff_hcp]
    role = np.where(
        np.isin(aff_kind, (0, 4)),
        np.where((decile[aff_hcp] >= 9) & (role_u < 0.25), 1, 0),
        np.where(role_u < 0.4, 2, 0),
    )
    role = np.where(a_spec == _PHARMACIST, 3, np.where(a_spec == _NURSE, 4, role))
    roles = ("attending", "head_of_department", "practice_owner", "pharmacist", "nurse")
    affiliations = pa.table(
        {
            "hcp": key_arr.take(pa.array(aff_hcp)),
            "hco_id": pa.array(hco_rows["hco_id"], pa.string()).take(pa.array(aff_hco)),
            "role": pa.array(roles).take(pa.array(role)),
            "primary": pa.array(aff_primary),
            "synthetic": pa.array(np.ones(len(aff_hcp), dtype=np.bool_)),
        },
        schema=AFFILIATION_SCHEMA,
    )

    consent, consents = _consents(rng, world, g, market, territory, has_email, key_arr, market_arr)
    return HcpChunk(
        first=first,
        n=n,
        market=market,
        tz=tz,
        specialty=spec,
        decile=decile,
        persona=persona,
        territory=territory,
        activity=activity,
        has_email=has_email,
        has_phone=has_phone,
        consent=consent,
        web_user=web_user,
        identified_at=identified_at.astype(np.int64),
        user_ids=user_ids,
        anonymous_ids=_uuids(rng, n),
        traits=traits,
        hcps=hcps,
        hcos=pa.table(hco_rows, schema=HCO_SCHEMA),
        affiliations=affiliations,
        consents=consents,
    )


def _wording_hashes() -> pa.Array:
    """SHA-256 of the synthetic consent wording of every market and version (``m * 9 + v``)."""
    return pa.array(
        [
            hashlib.sha256(
                f"Synthetic consent wording, market {code}, version {v + 1}. "
                "Invented text for synthetic data; no one agreed to it.".encode()
            ).hexdigest()
            for code in _MARKET_CODES
            for v in range(_WORDING_VERSIONS)
        ]
    )


_WORDING = pa.array(
    [f"{code}-v{v + 1}" for code in _MARKET_CODES for v in range(_WORDING_VERSIONS)]
)
_WORDING_HASH = _wording_hashes()


def _consents(
    rng: np.random.Generator,
    world: World,
    g: I64,
    market: I8,
    territory: I32,
    has_email: B,
    key_arr: pa.Array,
    market_arr: pa.Array,
) -> tuple[B, pa.Table]:
    """One ledger record per HCP, consent channel and purpose, in the import format of
    ``counterpoint import consents``; returns (granted mask, table)."""
    n = len(g)
    n_ch, n_pu = len(CONSENT_CHANNELS), len(CONSENT_PURPOSES)
    eu = np.isin(market, [_MARKET_CODES.index(c) for c in _EU])
    base = np.array([0.72, 0.35, 0.9, 0.8])[None, :, None] * np.ones((n, 1, n_pu))
    base[:, :, 1] += 0.08  # medical information is more readily accepted
    base[eu, CONSENT_EMAIL, :] -= 0.14  # double opt-in: more pending in the EU
    base[eu, CONSENT_SMS, :] -= 0.1
    base[~has_email, CONSENT_EMAIL, :] = 0.05
    u = rng.random((n, n_ch, n_pu))
    pending_share = np.where(eu, 0.5, 0.25)[:, None, None]
    state = np.where(u < base, 0, np.where(u < base + (1 - base) * pending_share, 2, 1))
    rows = n * n_ch * n_pu
    hcp_idx = np.repeat(np.arange(n), n_ch * n_pu)
    ch_idx = np.tile(np.repeat(np.arange(n_ch), n_pu), n)
    pu_idx = np.tile(np.arange(n_pu), n * n_ch)
    days_before = rng.integers(14, 1100, rows)
    secs = rng.integers(8 * 3600, 19 * 3600, rows)
    captured = world.start_us - days_before * 86_400_000_000 + secs * 1_000_000
    # calls' consent is captured by the rep, e-mail's sometimes; a share comes from old systems
    rep_channel = np.isin(ch_idx, (CONSENT_F2F, CONSENT_REMOTE)) | (
        (ch_idx == CONSENT_EMAIL) & (rng.random(rows) < 0.35)
    )
    source = np.where(rng.random(rows) < 0.22, 2, np.where(rep_channel, 1, 0))
    rep = source == 1
    year = (captured // 86_400_000_000 // 365.25 + 1970).astype(np.int64)
    version = np.clip(year - 2021, 1, _WORDING_VERSIONS) - 1
    wording = pa.array(market[hcp_idx].astype(np.int64) * _WORDING_VERSIONS + version)
    rep_ids = pa.array(world.actors[: len(world.territories)]).take(pa.array(territory[hcp_idx]))
    channel = pa.array(CONSENT_CHANNELS).take(pa.array(ch_idx))
    purpose = pa.array(CONSENT_PURPOSES).take(pa.array(pu_idx))
    signature = _join(f"SYN-SIG-{world.seed}-", _str(g[hcp_idx] + 1), "-", channel, "-", purpose)
    table = pa.table(
        {
            "identifier": key_arr.take(pa.array(hcp_idx)),
            "channel": channel,
            "purpose": purpose,
            "market": market_arr.take(pa.array(hcp_idx)),
            "state": pa.array(_CONSENT_STATE).take(pa.array(state.reshape(-1))),
            "effective_at": pa.array(captured, TS),
            "source": pa.array(_CONSENT_SOURCE).take(pa.array(source)),
            "captured_by": _where(
                rep, rep_ids, pc.if_else(pa.array(source == 2), "synthetic-import", "web")
            ),
            "wording_version": _WORDING.take(wording),
            "wording_hash": _WORDING_HASH.take(wording),
            "evidence": _where(rep, signature, None),
            "reason": pa.repeat(pa.scalar(CONSENT_REASON, pa.string()), rows),
            "synthetic": pa.array(np.ones(rows, dtype=np.bool_)),
        },
        schema=CONSENT_SCHEMA,
    )
    granted: B = state == 0
    return granted, table
