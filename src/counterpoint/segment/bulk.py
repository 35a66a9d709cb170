"""Segment conditions evaluated for every HCP at once, in SQL.

Three inputs, each read in one pass:

* the **population** (``PopulationReader``): every known HCP profile (``kind = 'hcp'``, not
  merged away) with the attributes the condition reads, and, for each consent key it asks
  about, whether the consent ledger allows it in the HCP's market now — decided by the very
  function the guard uses (``consent.ledger.decide``) over the HCP's records;
* the **identity map** (identifier → HCP), to attribute events to HCPs;
* the **event counts** per identifier, one column per distinct event filter
  (``EventLog.count_by_subject``: one scan of the log).

They are registered as Arrow tables in an in-memory DuckDB database, the condition tree is
compiled into one SQL boolean expression (``compile_condition``), and one query returns the
members. Every leaf is wrapped so that it is never NULL, which makes ``not`` behave exactly
as Python's (SQL's three-valued logic would turn ``not (NULL)`` into NULL, i.e. false). The
semantics are those of ``counterpoint.segment.conditions``; a property test holds this
evaluator and the one-HCP ``evaluate`` to the same answers.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, Text, cast, select

from counterpoint.consent.ledger import ConsentRecord, decide
from counterpoint.consent.models import ConsentRow
from counterpoint.consent.service import _row_record
from counterpoint.event.log import EventLog
from counterpoint.kit.heap import collector_paused
from counterpoint.policy.access import TERRITORY_ROLES, Principal
from counterpoint.profile.models import Hcp, Identity
from counterpoint.segment.conditions import (
    All,
    AnyOf,
    AttributeCondition,
    AttributeLeaf,
    AttributeName,
    Condition,
    ConsentKey,
    ConsentLeaf,
    EventFilter,
    EventsLeaf,
    FeatureCondition,
    FeatureLeaf,
    Not,
    Op,
    consent_keys,
    event_filters,
    leaves,
)

__all__ = [
    "BATCH",
    "BulkEvaluator",
    "CompiledCondition",
    "PopulationReader",
    "attributes_read",
    "compile_condition",
    "owners_of_records",
]

BATCH = 50_000
"""Rows fetched from the operational store per round trip."""

_IN_BATCH = 500
_SQL_OPS = {Op.EQ: "=", Op.NE: "<>", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_TEXT_ATTRIBUTES = (
    AttributeName.TERRITORY,
    AttributeName.SPECIALTY,
    AttributeName.PERSONA,
    AttributeName.PREFERRED_LANGUAGE,
    AttributeName.TIME_ZONE,
)


# --- the compiler (pure: SQL text and its parameters) -----------------------------------------
@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A condition as one SQL boolean over ``p`` (the population: ``hcp_id``, the attribute
    columns, ``k0`` … per consent key) and ``e`` (``c0`` … per event filter, per HCP; NULL
    for an HCP without events). ``params`` bind the ``?`` marks in order."""

    sql: str
    params: tuple[Any, ...]
    filters: tuple[EventFilter, ...]
    consent: tuple[ConsentKey, ...]


class _Compiler:
    def __init__(self, filters: Sequence[EventFilter], keys: Sequence[ConsentKey]) -> None:
        self.params: list[Any] = []
        self._filter = {f.key(): i for i, f in enumerate(filters)}
        self._consent = {k: i for i, k in enumerate(keys)}

    def bind(self, *values: Any) -> str:
        self.params.extend(values)
        return ", ".join("?" for _ in values)

    def node(self, condition: Condition) -> str:
        if isinstance(condition, All):
            return "(" + " AND ".join(self.node(c) for c in condition.all) + ")"
        if isinstance(condition, AnyOf):
            return "(" + " OR ".join(self.node(c) for c in condition.any) + ")"
        if isinstance(condition, Not):
            return f"(NOT {self.node(condition.not_)})"
        if isinstance(condition, AttributeLeaf):
            return self.attribute(condition.attribute)
        if isinstance(condition, EventsLeaf):
            cond = condition.events
            count = self.count(cond.filter())
            return f"({count} {_SQL_OPS[cond.op]} {self.bind(cond.count)})"
        if isinstance(condition, FeatureLeaf):
            return self.feature(condition.feature)
        if isinstance(condition, ConsentLeaf):
            return f"coalesce(p.k{self._consent[condition.consent.key()]}, false)"
        raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover

    def count(self, f: EventFilter) -> str:
        return f"coalesce(e.c{self._filter[f.key()]}, 0)"

    def feature(self, cond: FeatureCondition) -> str:
        top, bottom = cond.filters()
        numerator = f"CAST({self.count(top)} AS DOUBLE)"
        if bottom is None:
            return f"({numerator} {_SQL_OPS[cond.op]} {self.bind(cond.value)})"
        # response_rate: false when there was no touch (Python: None -> false)
        denominator = self.count(bottom)
        rate = f"({numerator} / CAST({denominator} AS DOUBLE))"
        return (
            f"coalesce({denominator} > 0 AND {rate} {_SQL_OPS[cond.op]} {self.bind(cond.value)}, "
            "false)"
        )

    def attribute(self, cond: AttributeCondition) -> str:
        if cond.name is AttributeName.SEGMENTS:
            return self.segments(cond)
        if cond.name is AttributeName.ADOPTION_STAGE:
            column = f"p.adoption_stage[{self.bind(cond.brand)}]"
        else:
            column = f"p.{cond.name.value}"
        if cond.op is Op.MISSING:
            return f"({column} IS NULL)"
        if cond.op is Op.EXISTS:
            return f"({column} IS NOT NULL)"
        values = cond.values()
        if cond.op in (Op.IN, Op.NOT_IN):
            negation = "NOT " if cond.op is Op.NOT_IN else ""
            return f"coalesce({column} {negation}IN ({self.bind(*values)}), false)"
        return f"coalesce({column} {_SQL_OPS[cond.op]} {self.bind(values[0])}, false)"

    def segments(self, cond: AttributeCondition) -> str:
        """``segments`` is a set: missing when NULL or empty; ``eq`` contains, ``in`` shares
        any value, ``ne`` / ``not_in`` their negations (on a present set)."""
        present = "coalesce(len(p.segments) > 0, false)"
        if cond.op is Op.MISSING:
            return f"(NOT {present})"
        if cond.op is Op.EXISTS:
            return f"({present})"
        values = cond.values()
        if cond.op in (Op.EQ, Op.NE):
            test = f"list_contains(p.segments, {self.bind(values[0])})"
        elif cond.op in (Op.IN, Op.NOT_IN):
            test = f"list_has_any(p.segments, [{self.bind(*values)}]::VARCHAR[])"
        else:  # ordered operators do not apply to a set (refused when parsed)
            return "false"
        negation = "NOT " if cond.op in (Op.NE, Op.NOT_IN) else ""
        return f"({present} AND coalesce({negation}{test}, false))"


def compile_condition(condition: Condition) -> CompiledCondition:
    """The condition as SQL over the population ``p`` and the per-HCP event counts ``e``."""
    filters = event_filters(condition)
    keys = consent_keys(condition)
    compiler = _Compiler(filters, keys)
    sql = compiler.node(condition)
    return CompiledCondition(sql, tuple(compiler.params), tuple(filters), tuple(keys))


def attributes_read(condition: Condition) -> frozenset[AttributeName]:
    """The attributes the condition reads (``market`` is always loaded)."""
    return frozenset(
        leaf.attribute.name for leaf in leaves(condition) if isinstance(leaf, AttributeLeaf)
    )


# --- the population from the operational store ------------------------------------------------
_HCP = Hcp.__table__
_IDENTITY = Identity.__table__
_CONSENT = ConsentRow.__table__


def _string_column(name: str) -> tuple[str, pa.DataType]:
    return name, pa.string()


def owners_of_records(
    rows: Sequence[tuple[str | None, str | None]],
    merged_into: Mapping[str, str],
    identity: Mapping[str, str],
) -> list[set[str]]:
    """For each ledger row (``hcp_id``, ``subject``), the live HCPs it belongs to, exactly as
    the guard reads one HCP's records: the row's HCP id is one of its ids (its own, or one
    merged into it, through any chain), or the row's subject is one of its identifiers."""
    out: list[set[str]] = []
    for hcp_id, subject in rows:
        owners: set[str] = set()
        if hcp_id:
            owners.add(_root(hcp_id, merged_into))
        if subject and (holder := identity.get(subject)) is not None:
            owners.add(holder)
        out.append(owners)
    return out


def _root(hcp_id: str, merged_into: Mapping[str, str]) -> str:
    seen = {hcp_id}
    current = hcp_id
    while (into := merged_into.get(current)) is not None and into not in seen:
        seen.add(into)
        current = into
    return current


class PopulationReader:
    """Facts about every HCP, read from the operational store in batches (SQLAlchemy Core)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def hcps(self, attributes: frozenset[AttributeName]) -> pa.Table:
        """``hcp_id``, ``market`` and the attributes asked for (``segments``
        and ``adoption_stage`` as JSON text) of every live, known HCP."""
        columns: list[Any] = [_HCP.c.id, _HCP.c.market]
        fields: list[tuple[str, pa.DataType]] = [("hcp_id", pa.string()), ("market", pa.string())]
        for name in _TEXT_ATTRIBUTES:
            if name in attributes:
                columns.append(_HCP.c[name.value])
                fields.append(_string_column(name.value))
        if AttributeName.POTENTIAL_DECILE in attributes:
            columns.append(_HCP.c.potential_decile)
            fields.append(("potential_decile", pa.int64()))
        for name in (AttributeName.SEGMENTS, AttributeName.ADOPTION_STAGE):
            if name in attributes:  # parsed by DuckDB, not row by row in Python
                columns.append(cast(_HCP.c[name.value], Text))
                fields.append(_string_column(name.value))
        query = select(*columns).where(_HCP.c.kind == "hcp", _HCP.c.merged_into.is_(None))
        return self._table(query, pa.schema(fields))

    def identities(self) -> pa.Table:
        """``key`` → ``hcp_id`` for every identifier."""
        schema = pa.schema([("key", pa.string()), ("hcp_id", pa.string())])
        return self._table(select(_IDENTITY.c.key, _IDENTITY.c.hcp_id), schema)

    def _table(self, query: Any, schema: pa.Schema) -> pa.Table:
        """The rows of a Core ``query`` as Arrow, fetched ``BATCH`` at a time straight from the
        driver's cursor (no result objects per row: several times faster for plain columns).
        The statement is compiled by the dialect; its values stay bound parameters."""
        batches: list[pa.RecordBatch] = []
        with self._engine.connect() as conn:
            compiled = query.compile(dialect=conn.dialect)
            params: Any = compiled.params
            if compiled.positiontup is not None:  # qmark / format styles
                params = tuple(compiled.params[name] for name in compiled.positiontup)
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), params)
                # the many tuples of a large read would trigger full collections of the
                # whole heap (measured: up to 4x slower); rows hold no reference cycles
                with collector_paused():
                    while part := cursor.fetchmany(BATCH):
                        columns = zip(*part, strict=True)
                        arrays = [
                            pa.array(v, type=f.type) for v, f in zip(columns, schema, strict=True)
                        ]
                        batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            finally:
                cursor.close()
        return pa.Table.from_batches(batches, schema=schema)

    def consent(
        self, keys: Sequence[ConsentKey], markets: Mapping[str, str | None], now: dt.datetime
    ) -> dict[str, set[int]]:
        """HCP id → the indexes of ``keys`` the ledger allows now in the HCP's market, for the
        HCPs of ``markets`` (brand = the key's brand, no content type; no market, no
        consent). The decision is ``consent.ledger.decide``: the guard's own."""
        if not keys:
            return {}
        records = self._records(keys, markets)
        allowed: dict[str, set[int]] = {}
        for hcp_id, own in records.items():
            market = markets.get(hcp_id)
            if market is None:
                continue
            for i, key in enumerate(keys):
                verdict = decide(
                    own,
                    channel=key.channel,
                    purpose=key.purpose,
                    market=market,
                    brand=key.brand,
                    content_type=None,
                    at=now,
                )
                if verdict.allowed:
                    allowed.setdefault(hcp_id, set()).add(i)
        return allowed

    def _records(
        self, keys: Sequence[ConsentKey], population: Mapping[str, object]
    ) -> dict[str, list[ConsentRecord]]:
        """Ledger records on the keys' channels and purposes, per live HCP of ``population``."""
        channels = sorted({k.channel.value for k in keys})
        purposes = sorted({k.purpose.value for k in keys})
        with self._engine.connect() as conn:
            merged: dict[str, str] = dict(
                conn.execute(
                    select(_HCP.c.id, _HCP.c.merged_into).where(_HCP.c.merged_into.is_not(None))
                ).all()
            )
            rows = conn.execute(
                select(_CONSENT)
                .where(_CONSENT.c.channel.in_(channels), _CONSENT.c.purpose.in_(purposes))
                .order_by(_CONSENT.c.seq)
            ).all()
            subjects = sorted({r.subject for r in rows if r.subject})
            identity: dict[str, str] = {}
            for start in range(0, len(subjects), _IN_BATCH):
                part = subjects[start : start + _IN_BATCH]
                found = conn.execute(
                    select(_IDENTITY.c.key, _IDENTITY.c.hcp_id).where(_IDENTITY.c.key.in_(part))
                ).all()
                identity.update((key, hcp_id) for key, hcp_id in found)
        owners = owners_of_records([(r.hcp_id, r.subject) for r in rows], merged, identity)
        out: dict[str, list[ConsentRecord]] = defaultdict(list)
        for row, held_by in zip(rows, owners, strict=True):
            record: ConsentRecord | None = None
            for hcp_id in held_by:
                if hcp_id in population:
                    record = record or _row_record(row)
                    out[hcp_id].append(record)
        return out


# --- the evaluator -----------------------------------------------------------------------------
def _population_view(attributes: frozenset[AttributeName], keys: int) -> str:
    """The population as the compiled condition reads it: JSON parsed once per HCP."""
    columns = ["hcp_id", "market"]
    for name in (*_TEXT_ATTRIBUTES, AttributeName.POTENTIAL_DECILE):
        if name in attributes:
            columns.append(name.value)
    if AttributeName.SEGMENTS in attributes:
        columns.append("from_json(segments, '[\"VARCHAR\"]') AS segments")
    if AttributeName.ADOPTION_STAGE in attributes:
        columns.append(
            "json_transform(adoption_stage, '\"MAP(VARCHAR, VARCHAR)\"') AS adoption_stage"
        )
    columns.extend(f"k{i}" for i in range(keys))
    return f"SELECT {', '.join(columns)} FROM population"


def _with_consent(
    table: pa.Table, keys: Sequence[ConsentKey], allowed: Mapping[str, set[int]]
) -> pa.Table:
    ids = table.column("hcp_id").to_pylist()
    for i in range(len(keys)):
        column = pa.array([i in allowed.get(h, ()) for h in ids], type=pa.bool_())
        table = table.append_column(f"k{i}", column)
    return table


@dataclass(frozen=True, slots=True)
class _Registered:
    name: str
    table: pa.Table


class BulkEvaluator:
    """``evaluate(condition, now)``: the members of a condition among all HCPs."""

    def __init__(self, engine: Engine, log: EventLog) -> None:
        self.population = PopulationReader(engine)
        self._log = log
        self._memory = duckdb.connect(":memory:")  # opening one costs ~10 ms: keep it
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="segment-scan")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._memory.close()

    def evaluate(
        self, condition: Condition, now: dt.datetime, *, within: Principal | None = None
    ) -> pa.Table:
        """Members as an Arrow table (``hcp_id``, ``market``), ordered by ``hcp_id``; with
        ``within``, only the HCPs that user may see (``policy.access.can_see_hcp``)."""
        compiled = compile_condition(condition)
        attributes = attributes_read(condition)
        scope, scope_params = _scope_sql(within)
        if within is not None and within.role in TERRITORY_ROLES:
            attributes |= {AttributeName.TERRITORY}
        scan: Future[pa.Table] | None = None
        if compiled.filters:  # the log scan runs beside the store reads (DuckDB frees the GIL)
            scan = self._pool.submit(self._log.count_by_subject, compiled.filters, now)
        try:
            population = self.population.hcps(attributes)
            if compiled.consent:
                markets = dict(
                    zip(
                        population.column("hcp_id").to_pylist(),
                        population.column("market").to_pylist(),
                        strict=True,
                    )
                )
                allowed = self.population.consent(compiled.consent, markets, now)
                population = _with_consent(population, compiled.consent, allowed)
            tables = [_Registered("population", population)]
            if scan is not None:
                identities = self.population.identities()
                tables += [
                    _Registered("counts", scan.result()),
                    _Registered("identities", identities),
                ]
        finally:
            if scan is not None:
                scan.cancel()
        sql = self._query(compiled, attributes, scope)
        with self._lock:  # the tables are registered under fixed names: one at a time
            con = self._memory
            try:
                for t in tables:
                    con.register(t.name, t.table)
                return con.sql(sql, params=[*compiled.params, *scope_params]).to_arrow_table()
            finally:
                for t in tables:
                    con.unregister(t.name)

    @staticmethod
    def _query(
        compiled: CompiledCondition, attributes: frozenset[AttributeName], scope: str
    ) -> str:
        view = _population_view(attributes, len(compiled.consent))
        where = f"{compiled.sql} AND {scope}"
        if not compiled.filters:
            return (
                f"WITH p AS ({view}) SELECT p.hcp_id, p.market FROM p "
                f"WHERE {where} ORDER BY p.hcp_id"
            )
        sums = ", ".join(
            f"CAST(sum(c.c{i}) AS BIGINT) AS c{i}" for i in range(len(compiled.filters))
        )
        return (
            f"WITH p AS ({view}), "
            f"e AS (SELECT i.hcp_id, {sums} FROM counts c "
            "JOIN identities i ON i.key = c.subject GROUP BY i.hcp_id) "
            "SELECT p.hcp_id, p.market FROM p LEFT JOIN e ON e.hcp_id = p.hcp_id "
            f"WHERE {where} ORDER BY p.hcp_id"
        )


def _scope_sql(viewer: Principal | None) -> tuple[str, list[Any]]:
    """``can_see_hcp`` as SQL over ``p``: the viewer's markets, and for field roles their
    territories (a field role without territories sees no HCP)."""
    if viewer is None:
        return "true", []
    parts = ["true"]
    params: list[Any] = []
    if viewer.markets:
        markets = sorted(viewer.markets)
        parts.append(f"coalesce(p.market IN ({', '.join('?' for _ in markets)}), false)")
        params += markets
    if viewer.role in TERRITORY_ROLES:
        territories = sorted(viewer.territories)
        if not territories:
            return "false", []
        parts.append(f"coalesce(p.territory IN ({', '.join('?' for _ in territories)}), false)")
        params += territories
    return "(" + " AND ".join(parts) + ")", params
