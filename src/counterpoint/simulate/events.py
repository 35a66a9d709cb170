"""Encoded interaction rows → Arrow tables in the interaction import format (docs/formats.md).

All output is synthetic (``synthetic = true`` in every row). Rows of one chunk of HCPs are
ordered by timestamp, so every HCP's history reads in order (sent before delivered before
opened). ``message_id`` is ``syn-<seed>-<n>``, unique per generated row.

Duplicates (``duplicates = p``): a fraction p of the written rows repeat an earlier row of the
same chunk with the same ``message_id`` and the same content, placed later in the file as a
redelivery would be.

Invalid rows (``invalid = q``): a fraction q of the track rows is broken, each in one of
``INVALID_KINDS``, chosen uniformly:

- ``unknown_channel``: ``channel`` is ``carrier_pigeon``, which is no channel code;
- ``missing_identity``: neither ``user_id`` nor ``anonymous_id``;
- ``bad_npi``: ``user_id`` is ``npi:`` and ten digits whose check digit is wrong;
- ``missing_timestamp``: ``timestamp`` is null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from counterpoint.simulate.behaviour import (
    ACTIONS,
    ACTOR_TYPES,
    CHANNELS,
    EVENT_NAMES,
    FUNCTIONS,
    T_IDENTIFY,
    TEMPLATES,
    UID_BAD_NPI,
    EventRows,
)
from counterpoint.simulate.population import TS, UID_SLOTS, HcpChunk, World
from counterpoint.simulate.reference import MARKETS

__all__ = [
    "EVENT_SCHEMA",
    "INVALID_KINDS",
    "UNKNOWN_CHANNEL",
    "WRITER_OPTIONS",
    "ChunkEvents",
    "encode_chunk",
]

EVENT_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("channel", pa.string()),
        ("action", pa.string()),
        ("event", pa.string()),
        ("timestamp", TS),
        ("brand", pa.string()),
        ("content_id", pa.string()),
        ("slide", pa.string()),
        ("actor_type", pa.string()),
        ("actor_id", pa.string()),
        ("function", pa.string()),
        ("market", pa.string()),
        ("properties", pa.string()),
        ("synthetic", pa.bool_()),
    ]
)
"""The interaction columns of docs/formats.md, as the event files hold them. In memory every
string column but ``message_id`` is dictionary-encoded; the files are written without the Arrow
schema, so readers see plain strings."""

_UNIQUE = frozenset({"message_id", "timestamp"})

INVALID_KINDS: tuple[str, ...] = (
    "unknown_channel",
    "missing_identity",
    "bad_npi",
    "missing_timestamp",
)
UNKNOWN_CHANNEL = "carrier_pigeon"

_TYPES = pa.array(["track", "identify"])
_CHANNELS = pa.array([*CHANNELS, UNKNOWN_CHANNEL])
_ACTIONS = pa.array(ACTIONS)
_EVENT_NAMES = pa.array(EVENT_NAMES)
_ACTOR_TYPES = pa.array(ACTOR_TYPES)
_FUNCTIONS = pa.array(FUNCTIONS)
_MARKETS = pa.array([m.code for m in MARKETS])
_SLIDES = pa.array([str(i) for i in range(100)])
_SUFFIXES = pa.array([s for _, s in TEMPLATES])
_PREFIXES = pa.array([p for p, _ in TEMPLATES], pa.string())
_FULL = pa.array(["" if p is None else p + s for p, s in TEMPLATES], pa.string())

Ints = npt.NDArray[np.integer]


@dataclass(frozen=True, slots=True)
class ChunkEvents:
    table: pa.Table
    generated: int
    """Rows generated (each with its own message id)."""
    duplicates: int
    invalid: dict[str, int]


def _dict(indices: Ints, dictionary: pa.Array, *, compact: bool = False) -> pa.Array:
    """A dictionary array; negative indices are nulls. ``compact`` drops unused entries."""
    valid = indices >= 0
    if compact and len(indices):
        used = np.zeros(len(dictionary), dtype=np.bool_)
        used[indices[valid]] = True
        remap = (np.cumsum(used) - 1).astype(np.int32)
        dictionary = dictionary.filter(pa.array(used))
        indices = remap[np.where(valid, indices, 0)]
    mask = None if valid.all() else ~valid
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), dictionary)


WRITER_OPTIONS: dict[str, object] = {
    "use_dictionary": [n for n in EVENT_SCHEMA.names if n not in _UNIQUE],
    "write_statistics": ["timestamp"],
    "dictionary_pagesize_limit": 8 << 20,
}
"""ParquetWriter options for event files: no dictionary for unique columns, statistics for
``timestamp`` only (string statistics cost a third of the writing time)."""


def _message_ids(seed: int, numbers: Ints) -> pa.Array:
    return pc.binary_join_element_wise(f"syn-{seed}-", pc.cast(pa.array(numbers), pa.string()), "")


def _properties(
    seed: int, row_base: int, take: Ints, h: Ints, tpl: Ints, link: Ints, chunk: HcpChunk
) -> pa.Array:
    """JSON text: a whole template, the HCP's traits, or prefix + linked message id + suffix.

    ``link`` and ``tpl`` are in generation order and ``take`` orders the rows; the result is
    dictionary-encoded, each distinct text once (the writer keeps dictionary encoding only
    for a dictionary without repeated values)."""
    linked = link >= 0
    # one text per (linked row, template): a send's delivered and opened rows share it
    key = link[linked].astype(np.int64) * len(TEMPLATES) + tpl[linked]
    unique, inverse = np.unique(key, return_inverse=True)
    t = pa.array(unique % len(TEMPLATES))
    pieces = pc.binary_join_element_wise(
        _PREFIXES.take(t),
        _message_ids(seed, row_base + unique // len(TEMPLATES)),
        _SUFFIXES.take(t),
        "",
    )
    rank = np.zeros(len(link), dtype=np.int64)
    rank[linked] = inverse
    row_tpl = tpl[take].astype(np.int64)
    index = np.where(row_tpl == T_IDENTIFY, len(TEMPLATES) + h, row_tpl)
    index = np.where(linked[take], len(TEMPLATES) + chunk.n + rank[take], index)
    index[row_tpl == 0] = -1  # no properties
    dictionary = pa.concat_arrays([_FULL, chunk.traits, pieces])
    return _dict(index, dictionary, compact=True)


def encode_chunk(
    world: World,
    chunk: HcpChunk,
    rows: EventRows,
    *,
    row_base: int,
    duplicates: float,
    invalid: float,
    rng: np.random.Generator,
) -> ChunkEvents:
    """Order one chunk's rows, add duplicates and invalid rows, and build the Arrow table."""
    cols = rows.finish()
    n = rows.n
    ts = cols["ts"]
    kind = cols["kind"]
    chan = cols["chan"]
    act = cols["act"]
    uid = cols["uid"]
    anon = cols["anon"]
    event = np.where(
        (chan >= 0) & (act >= 0), chan.astype(np.int16) * len(ACTIONS) + act, -1
    ).astype(np.int16)

    counts = dict.fromkeys(INVALID_KINDS, 0)
    no_ts = np.zeros(n, dtype=np.bool_)
    if invalid > 0 and n:
        track = np.flatnonzero(kind == 0)
        share = min(1.0, invalid * n / max(1, len(track)))
        bad = track[rng.random(len(track)) < share]
        how = rng.integers(0, len(INVALID_KINDS), len(bad))
        for k, name in enumerate(INVALID_KINDS):
            sel = bad[how == k]
            counts[name] = len(sel)
            if name == "unknown_channel":
                chan[sel] = len(CHANNELS)
            elif name == "missing_identity":
                uid[sel] = -1
                anon[sel] = False
            elif name == "bad_npi":
                uid[sel] = UID_BAD_NPI
            else:
                no_ts[sel] = True

    extra = 0
    if duplicates > 0 and n:
        extra = round(n * duplicates / (1.0 - duplicates))
        src = rng.choice(n, size=extra, replace=extra > n)
        key = np.concatenate([ts, ts[src] + rng.integers(1, 6 * 3600, extra) * 1_000_000])
        take = np.concatenate([np.arange(n), src])[np.argsort(key)]
    else:
        take = np.argsort(ts)

    h = cols["hcp"][take].astype(np.int64)
    u = uid[take]
    arrays = [
        _message_ids(world.seed, row_base + take),
        _dict(kind[take], _TYPES),
        _dict(np.where(u >= 0, h * UID_SLOTS + u, -1), chunk.user_ids, compact=True),
        _dict(np.where(anon[take], h, -1), chunk.anonymous_ids, compact=True),
        _dict(chan[take], _CHANNELS),
        _dict(act[take], _ACTIONS),
        _dict(event[take], _EVENT_NAMES),
        pa.array(ts[take], TS, mask=no_ts[take] if counts["missing_timestamp"] else None),
        _dict(cols["brand"][take], pa.array([b.code for b in world.brands])),
        _dict(cols["content"][take], pa.array(world.content_ids)),
        _dict(cols["slide"][take], _SLIDES),
        _dict(cols["actor_type"][take], _ACTOR_TYPES),
        _dict(cols["actor"][take], pa.array(world.actors)),
        _dict(cols["func"][take], _FUNCTIONS),
        _dict(chunk.market[h], _MARKETS),
        _properties(world.seed, row_base, take, h, cols["tpl"], cols["link"], chunk),
        pa.array(np.ones(len(take), dtype=np.bool_)),
    ]
    table = pa.Table.from_arrays(arrays, names=EVENT_SCHEMA.names)
    return ChunkEvents(table=table, generated=n, duplicates=extra, invalid=counts)
