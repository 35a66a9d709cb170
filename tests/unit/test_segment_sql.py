"""The pieces of bulk segment evaluation: the condition compiled to SQL (values bound, never
in the text; every leaf non-NULL, so ``not`` is Python's ``not``), the query over the
population and the per-HCP counts, the one-scan count of the event log, the owners of
consent records, and the viewer's scope.

The compiled SQL is run in an in-memory DuckDB over random HCP facts (attributes present,
missing and empty; counts; consent) and must select exactly the HCPs for which the one-HCP
``evaluate`` holds."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.integration.test_segment_agreement import (
    BRANDS,
    CHANNELS,
    DECILES,
    SEGMENT_TAGS,
    STAGES,
    TEXT,
    conditions,
)

from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.event.canonical import Action, Function
from counterpoint.event.duckdb_log import count_by_subject_sql
from counterpoint.policy.access import Principal, Role
from counterpoint.segment.bulk import (
    BulkEvaluator,
    _population_view,
    _scope_sql,
    attributes_read,
    compile_condition,
    owners_of_records,
)
from counterpoint.segment.conditions import (
    ATTRIBUTES,
    AttributeName,
    ConsentKey,
    EventFact,
    HcpFacts,
    count_of,
    evaluate,
    parse_condition,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def run(condition: Any, people: list[HcpFacts]) -> set[str]:
    """The compiled condition over ``people``: counts computed per HCP in Python (what
    ``count_by_subject`` returns, one subject per HCP), consent as ``k`` columns."""
    compiled = compile_condition(condition)
    attributes = frozenset(ATTRIBUTES)
    population: dict[str, list[Any]] = {"hcp_id": [h.hcp_id for h in people]}
    for name in AttributeName:
        values = [h.attributes.get(name.value) for h in people]
        if name in (AttributeName.SEGMENTS, AttributeName.ADOPTION_STAGE):
            values = [None if v is None else json.dumps(v) for v in values]
        population[name.value] = values
    for i, key in enumerate(compiled.consent):
        population[f"k{i}"] = [key in h.consent for h in people]
    counts: dict[str, list[Any]] = {"subject": [h.hcp_id for h in people]}
    for i, f in enumerate(compiled.filters):
        counts[f"c{i}"] = [count_of(f, h.events, NOW) for h in people]
    schema = pa.schema(
        [("hcp_id", pa.string()), ("market", pa.string())]
        + [(n.value, pa.string()) for n in AttributeName if n.value not in ("market",)]
    )
    schema = schema.set(
        schema.get_field_index("potential_decile"), pa.field("potential_decile", pa.int64())
    )
    table = pa.table({f.name: pa.array(population[f.name], f.type) for f in schema})
    for i in range(len(compiled.consent)):
        table = table.append_column(f"k{i}", pa.array(population[f"k{i}"], pa.bool_()))
    key_schema = pa.schema([("key", pa.string()), ("hcp_id", pa.string())])
    identities = pa.table(
        {"key": population["hcp_id"], "hcp_id": population["hcp_id"]}, schema=key_schema
    )
    sql = BulkEvaluator._query(compiled, attributes, "true")
    con = duckdb.connect()
    try:
        con.register("population", table)
        con.register("identities", identities)
        if compiled.filters:
            con.register("counts", pa.table(counts) if people else _empty_counts(compiled))
        rows = con.execute(sql, list(compiled.params)).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def _empty_counts(compiled: Any) -> pa.Table:
    fields = [("subject", pa.string())] + [
        (f"c{i}", pa.int64()) for i in range(len(compiled.filters))
    ]
    return pa.schema(fields).empty_table()


# --- random facts -----------------------------------------------------------------------------
def _attributes() -> st.SearchStrategy[dict[str, Any]]:
    parts: dict[str, st.SearchStrategy[Any]] = {
        name: st.one_of(st.none(), st.sampled_from(values)) for name, values in TEXT.items()
    }
    parts["potential_decile"] = st.one_of(st.none(), st.sampled_from(DECILES))
    parts["segments"] = st.one_of(
        st.none(), st.lists(st.sampled_from(SEGMENT_TAGS), max_size=2, unique=True)
    )
    parts["adoption_stage"] = st.one_of(
        st.none(), st.dictionaries(st.sampled_from(BRANDS), st.sampled_from(STAGES), max_size=2)
    )
    return st.fixed_dictionaries(parts)


event_fact = st.builds(
    EventFact,
    st.sampled_from([1, 7, 30]).flatmap(
        lambda d: st.sampled_from(
            [NOW - dt.timedelta(days=d) + dt.timedelta(microseconds=m) for m in (-1, 0, 1)]
        )
    )
    | st.sampled_from([NOW, NOW + dt.timedelta(seconds=1), NOW - dt.timedelta(hours=3)]),
    st.one_of(st.none(), st.sampled_from([c.value for c in CHANNELS])),
    st.one_of(
        st.none(), st.sampled_from([a.value for a in (Action.OPENED, Action.SENT, Action.ATTENDED)])
    ),
    st.one_of(st.none(), st.sampled_from(BRANDS)),
    st.one_of(st.none(), st.sampled_from(["C1", "C2"])),
    st.one_of(st.none(), st.sampled_from([f.value for f in Function])),
)
consent_key = st.builds(
    ConsentKey,
    st.sampled_from([ConsentChannel.EMAIL, ConsentChannel.F2F_CALL]),
    st.sampled_from([Purpose.PROMOTIONAL, Purpose.MEDICAL]),
    st.one_of(st.none(), st.sampled_from(BRANDS)),
)
people = st.lists(
    st.builds(
        lambda i, attrs, consent, events: HcpFacts(f"h{i}", attrs, consent, tuple(events)),
        st.integers(min_value=0, max_value=10_000),
        _attributes(),
        st.frozensets(consent_key, max_size=3),
        st.lists(event_fact, max_size=5),
    ),
    max_size=6,
    unique_by=lambda h: h.hcp_id,
)


@settings(max_examples=150, deadline=None)
@given(condition=conditions, population=people)
def test_the_compiled_condition_selects_what_evaluate_says(
    condition: dict[str, Any], population: list[HcpFacts]
) -> None:
    parsed = parse_condition(condition)
    expected = {h.hcp_id for h in population if evaluate(parsed, h, NOW)}
    assert run(parsed, population) == expected


# --- targeted cases ---------------------------------------------------------------------------
def test_values_are_bound_never_written_into_the_sql() -> None:
    hostile = "x'); DROP TABLE population; --"
    compiled = compile_condition(
        parse_condition(
            {"any": [
                {"attribute": {"name": "specialty", "op": "in", "value": [hostile, "b"]}},
                {"attribute": {"name": "adoption_stage", "brand": hostile, "op": "eq",
                               "value": hostile}},
                {"events": {"brand": hostile, "within_days": 3, "op": "gte", "count": 2}},
            ]}
        )
    )  # fmt: skip
    assert hostile not in compiled.sql
    assert compiled.params.count(hostile) == 3
    assert compiled.sql.count("?") == len(compiled.params)
    sql, params = count_by_subject_sql(compiled.filters, NOW)
    assert hostile not in sql
    assert hostile in params
    assert sql.count("?") == len(params)


def test_every_leaf_is_never_null_so_not_is_pythons_not() -> None:
    missing = HcpFacts("h-missing", {}, frozenset(), ())
    for leaf in (
        {"attribute": {"name": "persona", "op": "ne", "value": "x"}},
        {"attribute": {"name": "segments", "op": "not_in", "value": ["kol"]}},
        {"attribute": {"name": "adoption_stage", "brand": "B", "op": "ne", "value": "x"}},
        {"attribute": {"name": "potential_decile", "op": "lt", "value": 5}},
        {"feature": {"name": "response_rate", "window_days": 7, "op": "lt", "value": 1}},
        {"consent": {"channel": "email", "purpose": "promotional"}},
    ):
        parsed = parse_condition(leaf)
        assert "coalesce" in compile_condition(parsed).sql
        assert run(parsed, [missing]) == set()  # missing: false (as in Python) …
        assert run(parse_condition({"not": leaf}), [missing]) == {"h-missing"}  # … not NULL


def test_a_response_rate_without_touches_is_false_whatever_the_operator() -> None:
    responded = HcpFacts("h1", {}, frozenset(), (EventFact(NOW, "campaign_email", "opened"),))
    for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
        rate = {"feature": {"name": "response_rate", "window_days": 7, "op": op, "value": 0}}
        assert run(parse_condition(rate), [responded]) == set()


def test_one_count_per_distinct_filter_and_one_scan() -> None:
    condition = parse_condition(
        {"all": [
            {"events": {"channel": ["webinar", "campaign_email"], "action": "opened",
                        "within_days": 30}},
            {"events": {"channel": ["campaign_email", "webinar"], "action": ["opened"],
                        "within_days": 30, "op": "lt", "count": 5}},  # the same filter
            {"feature": {"name": "response_rate", "window_days": 90, "op": "gte", "value": 0.2}},
        ]}
    )  # fmt: skip
    compiled = compile_condition(condition)
    assert len(compiled.filters) == 3  # shared count; responses and touches over 90 days
    sql, params = count_by_subject_sql(compiled.filters, NOW)
    assert sql.count("FROM event_log") == 1
    assert sql.count("count(*) FILTER (WHERE") == 3
    assert "GROUP BY subject" in sql
    assert params[-2:] == [NOW - dt.timedelta(days=90), NOW]  # the longest window, then now


def test_only_the_attributes_read_are_loaded() -> None:
    condition = parse_condition(
        {"any": [{"attribute": {"name": "segments", "op": "exists"}},
                 {"not": {"attribute": {"name": "territory", "op": "eq", "value": "T1"}}}]}
    )  # fmt: skip
    assert attributes_read(condition) == {AttributeName.SEGMENTS, AttributeName.TERRITORY}
    view = _population_view(attributes_read(condition), 2)
    assert "from_json(segments" in view
    assert "specialty" not in view
    assert view.endswith("k0, k1 FROM population")


def test_consent_records_belong_to_every_hcp_the_guard_would_read_them_for() -> None:
    merged_into = {"old": "mid", "mid": "live", "loop-a": "loop-b", "loop-b": "loop-a"}
    identity = {"email:a@x.example": "other", "crm:1": "live"}
    owners = owners_of_records(
        [
            ("old", None),  # merged twice: the live profile
            ("live", "email:a@x.example"),  # by id and by identifier: both
            (None, "crm:1"),
            (None, "email:unknown@x.example"),
            ("loop-a", None),  # a cycle ends
        ],
        merged_into,
        identity,
    )
    assert owners[0] == {"live"}
    assert owners[1] == {"live", "other"}
    assert owners[2] == {"live"}
    assert owners[3] == set()
    assert owners[4] in ({"loop-a"}, {"loop-b"})


def test_the_viewer_scope_as_sql() -> None:
    assert _scope_sql(None) == ("true", [])
    admin = Principal("a", "a", Role.ADMIN)
    assert _scope_sql(admin) == ("(true)", [])
    de = Principal("b", "b", Role.BRAND_MANAGER, markets=frozenset({"FR", "DE"}))
    sql, params = _scope_sql(de)
    assert "p.market IN (?, ?)" in sql
    assert params == ["DE", "FR"]
    rep = Principal("r", "r", Role.SALES_REP, territories=frozenset({"T1"}))
    sql, params = _scope_sql(rep)
    assert "p.territory IN (?)" in sql
    assert params == ["T1"]
    nowhere = Principal("n", "n", Role.SALES_REP)
    assert _scope_sql(nowhere) == ("false", [])
