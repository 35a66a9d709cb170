"""The synthetic market generator: determinism, formats, validity and plausible behaviour."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from tests.conftest import TEST_ACTOR

from counterpoint.consent.importer import (
    CONSENT_COLUMNS,
    ConsentImportReport,
    ConsentImportRow,
    import_consents,
    validate_consent_row,
)
from counterpoint.consent.ledger import ConsentChannel, Purpose
from counterpoint.consent.models import ConsentRow
from counterpoint.consent.service import record_dict
from counterpoint.container import Container
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Action, ActorType, Channel, Function, LogEvent
from counterpoint.event.rows import validate_event_row
from counterpoint.profile.identifiers import npi_is_valid, parse_identifier, parse_user_id
from counterpoint.profile.validation import (
    validate_affiliation_row,
    validate_hco_row,
    validate_hcp_row,
)
from counterpoint.simulate.market import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    CONSENT_SCHEMA,
    EVENT_SCHEMA,
    INVALID_KINDS,
    MARKET_CODES,
    PERSONAS,
    REP_SCHEMA,
    SPECIALTIES,
    UNKNOWN_CHANNEL,
    MarketConfig,
    MarketSummary,
    default_start,
    generate_market,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"
SEED = 7
START = dt.date(2025, 6, 2)
WEEKS = 52
HCPS = 800
CHANNELS = {c.value for c in Channel}
ACTIONS = {a.value for a in Action}
ACTOR_TYPES = {a.value for a in ActorType}
FUNCTIONS = {f.value for f in Function}
TZ_PREFIX = {
    "US": "America/",
    "CA": "America/",
    "BR": "America/",
    "JP": "Asia/Tokyo",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "GB": "Europe/London",
    "ES": "Europe/Madrid",
    "IT": "Europe/Rome",
}


def _generate(out: Path, **overrides: Any) -> MarketSummary:
    args: dict[str, Any] = {"hcps": HCPS, "weeks": WEEKS, "seed": SEED, "start": START}
    args |= overrides
    return generate_market(MarketConfig(out=out, **args))


def _events(out: Path) -> pa.Table:
    parts = sorted((out / "events").glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in parts)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MarketSummary]:
    out = tmp_path_factory.mktemp("market")
    return out, _generate(out, chunk_hcps=300, rows_per_part=25_000)


@pytest.fixture(scope="module")
def events(market: tuple[Path, MarketSummary]) -> pa.Table:
    return _events(market[0])


@pytest.fixture(scope="module")
def rows(events: pa.Table) -> list[dict[str, Any]]:
    return events.to_pylist()


@pytest.fixture(scope="module")
def hcps(market: tuple[Path, MarketSummary]) -> pa.Table:
    return pq.read_table(market[0] / "hcps.parquet")


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, MarketSummary]:
    out = tmp_path_factory.mktemp("dirty")
    summary = _generate(out, hcps=600, weeks=26, duplicates=0.05, invalid=0.04)
    return _events(out), summary


@pytest.fixture(scope="module")
def dirty_rows(dirty: tuple[pa.Table, MarketSummary]) -> list[dict[str, Any]]:
    return dirty[0].to_pylist()


def _documented_columns() -> dict[str, list[str]]:
    """Column names of each section of docs/formats.md, in order."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].split("(")[0].strip()
            sections[current] = []
        elif line.startswith("| `") and current:
            first_cell = line.split("|")[1]
            sections[current].extend(re.findall(r"`([^`]+)`", first_cell))
    return sections


# -- determinism ---------------------------------------------------------------------------


def test_same_arguments_give_identical_tables(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        _generate(out, hcps=400, weeks=10, duplicates=0.03, invalid=0.02, chunk_hcps=150)
    names = [
        "hcps.parquet",
        "hcos.parquet",
        "affiliations.parquet",
        "reps.parquet",
        "consents.parquet",
    ]
    for name in names:
        assert pq.read_table(a / name).equals(pq.read_table(b / name)), name
    assert _events(a).equals(_events(b))
    assert (a / "catalog.json").read_bytes() == (b / "catalog.json").read_bytes()
    _generate(tmp_path / "c", hcps=400, weeks=10, seed=SEED + 1, chunk_hcps=150)
    assert not _events(a).equals(_events(tmp_path / "c"))


def test_default_start_is_fixed_weeks_before_reference() -> None:
    assert default_start(52) == dt.date(2025, 11, 3)
    assert default_start(4).weekday() == 0


# -- formats ---------------------------------------------------------------------------


def test_columns_match_docs_formats(market: tuple[Path, MarketSummary]) -> None:
    out, _ = market
    documented = _documented_columns()
    assert pq.read_schema(out / "hcps.parquet").names == documented["HCPs"]
    assert pq.read_schema(out / "hcos.parquet").names == documented["HCOs"]
    assert pq.read_schema(out / "affiliations.parquet").names == documented["Affiliations"]
    for part in (out / "events").glob("part-*.parquet"):
        schema = pq.read_schema(part)
        assert schema.names == documented["Interactions"]
        assert schema.equals(EVENT_SCHEMA)
        assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert pq.read_schema(out / "reps.parquet").names == REP_SCHEMA.names
    assert pq.read_schema(out / "consents.parquet").equals(CONSENT_SCHEMA)
    assert set(CONSENT_SCHEMA.names) <= set(documented["Consent"])


def test_summary_counts_files_and_parts(market: tuple[Path, MarketSummary]) -> None:
    out, summary = market
    parts = sorted((out / "events").glob("part-*.parquet"))
    assert len(parts) >= 3
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    assert all(pq.read_metadata(p).num_rows == 25_000 for p in parts[:-1])
    assert sum(pq.read_metadata(p).num_rows for p in parts) == summary.events
    for name, rows in summary.files.items():
        if name.endswith(".parquet"):
            assert pq.read_metadata(out / name).num_rows == rows


def test_every_row_is_synthetic(market: tuple[Path, MarketSummary]) -> None:
    out, _ = market
    for path in [*out.glob("*.parquet"), *(out / "events").glob("*.parquet")]:
        column = pq.read_table(path, columns=["synthetic"]).column("synthetic")
        assert column.null_count == 0
        assert pc.all(column).as_py() is True, path
    assert json.loads((out / "catalog.json").read_text(encoding="utf-8"))["synthetic"] is True


# -- HCPs and the rest of the world -----------------------------------------------------------


def test_hcp_identifiers(hcps: pa.Table) -> None:
    rows = hcps.to_pylist()
    us = [r for r in rows if r["market"] == "US"]
    assert 0.33 < len(us) / len(rows) < 0.47
    npis = [r["npi"] for r in us]
    assert all(npi is not None and npi_is_valid(npi) for npi in npis)
    assert len(set(npis)) == len(npis)
    assert all(r["npi"] is None for r in rows if r["market"] != "US")
    for r in rows:
        if r["market"] != "US":
            assert r["national_id"].startswith(r["market"] + "-")
            parse_identifier("national", r["national_id"])
    nationals = [r["national_id"] for r in rows if r["national_id"]]
    assert len(set(nationals)) == len(nationals)
    crms = [r["crm_id"] for r in rows]
    assert all(re.fullmatch(r"CRM-\d+", c) for c in crms)
    assert len(set(crms)) == len(crms)
    emails = [r["email"] for r in rows if r["email"]]
    assert 0.7 < len(emails) / len(rows) < 0.95
    assert len(set(emails)) == len(emails)
    assert all(e.endswith(".example") for e in emails)
    for email in emails:
        parse_identifier("email", email)
    phones = [r["phone"] for r in rows if r["phone"]]
    assert 0.2 < len(phones) / len(rows) < 0.5
    for phone in phones:
        assert parse_identifier("phone", phone).value == phone


def test_hcp_attributes(hcps: pa.Table) -> None:
    rows = hcps.to_pylist()
    assert {r["market"] for r in rows} == set(MARKET_CODES)
    specialties = Counter(r["specialty"] for r in rows)
    assert set(specialties) <= set(SPECIALTIES)
    assert specialties.most_common(1)[0][0] == "general_practice"
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", s) for s in SPECIALTIES)
    for r in rows:
        assert 1 <= r["potential_decile"] <= 10
        assert r["persona"] in PERSONAS
        assert r["territory"].startswith(r["market"] + "-T")
        assert r["time_zone"].startswith(TZ_PREFIX[r["market"]])
        assert re.fullmatch(r"[a-z]{2}", r["preferred_language"])
        assert r["first_name"]
        assert r["last_name"]
        for pair in r["adoption_stage"].split(";"):
            brand, stage = pair.split(":")
            assert brand.isupper()
            assert stage in {"unaware", "aware", "interested", "trial", "adopter", "advocate"}
    assert Counter(r["preferred_language"] for r in rows if r["market"] == "DE") == Counter(
        {"de": sum(r["market"] == "DE" for r in rows)}
    )


def test_hcos_affiliations_reps_consents(
    market: tuple[Path, MarketSummary], hcps: pa.Table
) -> None:
    out, _ = market
    keys = {f"npi:{r['npi']}" if r["npi"] else f"crm:{r['crm_id']}" for r in hcps.to_pylist()}
    hcos = pq.read_table(out / "hcos.parquet").to_pylist()
    hco_ids = {h["hco_id"] for h in hcos}
    assert len(hco_ids) == len(hcos)
    assert {h["kind"] for h in hcos} <= {"hospital", "clinic", "practice", "pharmacy", "university"}
    affiliations = pq.read_table(out / "affiliations.parquet").to_pylist()
    assert {a["hcp"] for a in affiliations} == keys
    assert all(a["hco_id"] in hco_ids for a in affiliations)
    assert sum(a["primary"] for a in affiliations) == hcps.num_rows
    reps = pq.read_table(out / "reps.parquet").to_pylist()
    territories = set(hcps.column("territory").to_pylist())
    rep_territories = {r["territory"] for r in reps if r["role"] == "rep"}
    assert territories <= rep_territories
    assert {r["role"] for r in reps} == {"rep", "kam", "msl"}
    assert {r["market"] for r in reps if r["role"] == "msl"} == set(MARKET_CODES)
    consents = pq.read_table(out / "consents.parquet")
    assert consents.num_rows == hcps.num_rows * 4 * 2
    assert set(consents.column("identifier").to_pylist()) == keys


def test_consents_are_ledger_records(market: tuple[Path, MarketSummary], hcps: pa.Table) -> None:
    out, _ = market
    rows = pq.read_table(out / "consents.parquet").to_pylist()
    info = {f"npi:{r['npi']}" if r["npi"] else f"crm:{r['crm_id']}": r for r in hcps.to_pylist()}
    assert Counter((r["identifier"], r["channel"], r["purpose"]) for r in rows) == Counter(
        {(k, c, p): 1 for k in info for c in CONSENT_CHANNELS for p in CONSENT_PURPOSES}
    )
    assert set(CONSENT_CHANNELS) == {"email", "sms", "f2f_call", "remote_call"}
    assert set(CONSENT_CHANNELS) <= {c.value for c in ConsentChannel}
    assert {r["state"] for r in rows} == {"granted", "denied", "pending"}
    assert {r["source"] for r in rows} == {"web_form", "rep_capture", "import"}
    start = dt.datetime.combine(START, dt.time(), tzinfo=dt.UTC)
    hashes: dict[str, str] = {}
    for r in rows:
        hcp = info[r["identifier"]]
        assert r["market"] == hcp["market"]
        assert r["effective_at"] < start
        assert r["reason"] == "synthetic market"
        assert r["synthetic"] is True
        assert r["wording_version"].startswith(r["market"] + "-v")
        assert re.fullmatch(r"[0-9a-f]{64}", r["wording_hash"])
        assert hashes.setdefault(r["wording_version"], r["wording_hash"]) == r["wording_hash"]
        if r["source"] == "rep_capture":
            assert r["evidence"]
            assert r["evidence"].startswith("SYN-SIG-")
            assert r["captured_by"] == f"REP-{hcp['territory']}"
        else:
            assert r["evidence"] is None
            assert r["captured_by"] == ("web" if r["source"] == "web_form" else "synthetic-import")
    assert len(set(hashes.values())) == len(hashes)  # one wording text per market and version
    signatures = [r["evidence"] for r in rows if r["evidence"]]
    assert len(set(signatures)) == len(signatures)
    # calls' consent is captured by reps (or imported), never on a web form
    assert all(r["source"] != "web_form" for r in rows if r["channel"].endswith("_call"))
    # the EU asks for double opt-in: more e-mail consent is pending than elsewhere
    eu = {"DE", "FR", "GB", "ES", "IT"}

    def pending(inside: bool) -> float:
        chosen = [r for r in rows if r["channel"] == "email" and (r["market"] in eu) == inside]
        return sum(r["state"] == "pending" for r in chosen) / len(chosen)

    assert pending(True) > 1.5 * pending(False)
    granted = Counter(r["channel"] for r in rows if r["state"] == "granted")
    assert granted["f2f_call"] > granted["email"] > granted["sms"]


def _contact_violations(
    rows: list[dict[str, Any]], hcps: pa.Table, consents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Promotional contacts (e-mails, SMS, calls) to an HCP without a granted promotional
    consent for the channel's consent channel."""
    owner: dict[str, str] = {}
    for h in hcps.to_pylist():
        key = f"npi:{h['npi']}" if h["npi"] else f"crm:{h['crm_id']}"
        owner[f"crm:{h['crm_id']}"] = key
        for kind in ("npi", "email", "phone"):
            if h[kind]:
                owner[f"{kind}:{h[kind]}"] = key
    granted = {
        (c["identifier"], c["channel"])
        for c in consents
        if c["purpose"] == "promotional" and c["state"] == "granted"
    }
    needs = {
        "campaign_email": "email",
        "rep_email": "email",
        "sms": "sms",
        "f2f_call": "f2f_call",
        "remote_call": "remote_call",
        "phone": "remote_call",
    }
    return [
        r
        for r in rows
        if r["channel"] in needs
        and r["action"] in ("sent", "call_completed")
        and (owner[r["user_id"]], needs[r["channel"]]) not in granted
    ]


def test_sends_and_calls_honour_the_consents(
    market: tuple[Path, MarketSummary], rows: list[dict[str, Any]], hcps: pa.Table
) -> None:
    out, _ = market
    consents = pq.read_table(out / "consents.parquet").to_pylist()
    gated = ("campaign_email", "rep_email", "sms", "f2f_call", "remote_call", "phone")
    contacts = Counter(r["channel"] for r in rows if r["action"] in ("sent", "call_completed"))
    for channel in gated:
        assert contacts[channel] > 0, channel
    assert _contact_violations(rows, hcps, consents) == []
    # negative control: against consents with grants and denials swapped, the same check fails
    swapped = [
        c | {"state": {"granted": "denied", "denied": "granted"}.get(c["state"], c["state"])}
        for c in consents
    ]
    assert len(_contact_violations(rows, hcps, swapped)) == sum(contacts[c] for c in gated)


def test_consents_pass_the_importers_validation(market: tuple[Path, MarketSummary]) -> None:
    out, _ = market
    table = pq.read_table(out / "consents.parquet")
    assert set(table.column_names) <= set(CONSENT_COLUMNS)
    for number, row in enumerate(table.to_pylist(), 1):
        result = validate_consent_row(row, row_number=number, file="consents", now=RECEIVED)
        assert isinstance(result, ConsentImportRow), (row, result)
        assert result.synthetic


def test_the_market_imports_into_the_ledger(container: Container, tmp_path: Path) -> None:
    out = tmp_path / "market"
    _generate(out, hcps=60, weeks=2)
    for kind in ("hcos", "hcps"):
        report = container.profiles.import_master_data(out / f"{kind}.parquet", kind)
        assert report.imported == 60 if kind == "hcps" else report.imported > 0
    path = out / "consents.parquet"
    expected = pq.read_metadata(path).num_rows
    assert expected == 60 * 8

    def run(file: Path) -> ConsentImportReport:
        return import_consents(
            file,
            consents=container.consents,
            profiles=container.profiles,
            audit=container.audit,
            clock=container.clock,
            actor=TEST_ACTOR,
        )

    report = run(path)
    assert (report.rows, report.recorded, report.rejected) == (expected, expected, [])
    assert report.reject_file is None
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsentRow)) == expected
        synthetic = select(func.count()).select_from(ConsentRow).where(ConsentRow.synthetic)
        assert session.scalar(synthetic) == expected
    rows = pq.read_table(path).to_pylist()
    granted = next(r for r in rows if r["state"] == "granted" and r["source"] == "rep_capture")
    hcp_id = container.profiles.find_by_identifier(granted["identifier"])
    assert hcp_id is not None
    ref = container.profiles.resolve(hcp_id)
    records = container.consents.records(ref)
    assert len(records) == 8
    assert all(record_dict(r)["synthetic"] is True for r in records)
    decision = container.consents.decide(
        ref,
        channel=ConsentChannel(granted["channel"]),
        purpose=Purpose(granted["purpose"]),
        market=granted["market"],
    )
    assert decision.allowed
    again = run(path)
    assert (again.recorded, again.unchanged) == (0, expected)
    assert container.audit.verify()[1] == []
    # negative control: rep captures without their signature, pending without wording
    broken = pq.read_table(path).to_pylist()
    spoilt = set()
    for number, r in enumerate(broken, 1):
        if r["source"] == "rep_capture" and len(spoilt) < 5:
            r["evidence"] = None
            spoilt.add(number)
        elif r["state"] == "pending" and len(spoilt) < 8:
            r["wording_version"] = None
            spoilt.add(number)
    pq.write_table(pa.Table.from_pylist(broken, schema=CONSENT_SCHEMA), tmp_path / "broken.parquet")
    refused = run(tmp_path / "broken.parquet")
    assert {e.row for e in refused.rejected} == spoilt
    assert {e.field for e in refused.rejected} == {"evidence", "wording_version"}
    assert refused.recorded == expected - len(spoilt)  # a new file: the rest is recorded again


def test_catalog(market: tuple[Path, MarketSummary], events: pa.Table) -> None:
    out, _ = market
    catalog = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    assert 3 <= len(catalog["brands"]) <= 5
    assert {m["code"] for m in catalog["markets"]} == set(MARKET_CODES)
    content = set()
    for brand in catalog["brands"]:
        assert brand["therapeutic_area"]
        assert "US" in brand["markets"]
        for channel, ids in brand["content"].items():
            assert channel in CHANNELS
            content.update(ids)
    assert all(re.fullmatch(r"CNT-[A-Z]+-[A-Z]+-\d{3}", c) for c in content)
    used = set(events.column("content_id").drop_null().to_pylist())
    assert used <= content
    brands = {b["code"] for b in catalog["brands"]}
    assert set(events.column("brand").drop_null().to_pylist()) <= brands


# -- events ----------------------------------------------------------------------------------


@functools.cache
def _user_id_ok(user_id: str) -> bool:
    try:
        parse_user_id(user_id)
    except ValidationFailedError:
        return False
    return True


@functools.cache
def _properties_ok(text: str) -> bool:
    return isinstance(json.loads(text), dict)


def _invalid_reason(row: dict[str, Any], start: dt.datetime, end: dt.datetime) -> str | None:
    """Why an event row would be refused, or None when it is valid."""
    if row["timestamp"] is None:
        return "missing_timestamp"
    if row["user_id"] is None and row["anonymous_id"] is None:
        return "missing_identity"
    if row["user_id"] is not None and not _user_id_ok(row["user_id"]):
        return "bad_npi" if row["user_id"].startswith("npi:") else "bad_user_id"
    if row["anonymous_id"] is not None:
        assert _user_id_ok("anon:" + row["anonymous_id"])
    if row["type"] == "track":
        if row["channel"] not in CHANNELS:
            return "unknown_channel"
        assert row["action"] in ACTIONS
        assert row["event"]
    else:
        assert row["type"] == "identify"
        assert row["user_id"]
        assert row["anonymous_id"]
    assert start <= row["timestamp"] < end
    assert row["actor_type"] is None or row["actor_type"] in ACTOR_TYPES
    assert row["function"] is None or row["function"] in FUNCTIONS
    assert row["market"] in MARKET_CODES
    if row["properties"] is not None:
        assert _properties_ok(row["properties"])
    return None


def _window(weeks: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(START, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(weeks=weeks)


def test_every_event_is_valid_without_invalid_fraction(
    events: pa.Table, rows: list[dict[str, Any]]
) -> None:
    start, end = _window(WEEKS)
    reasons = Counter(_invalid_reason(row, start, end) for row in rows)
    assert reasons == Counter({None: events.num_rows})
    ids = events.column("message_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"syn-{SEED}-\d+", i) for i in ids[:1000])


def test_volume_and_channel_mix(events: pa.Table) -> None:
    per_hcp_year = events.num_rows / HCPS / (WEEKS / 52)
    assert 70 < per_hcp_year < 140
    channels = Counter(events.column("channel").drop_null().to_pylist())
    expected = {
        "f2f_call",
        "remote_call",
        "rep_email",
        "campaign_email",
        "sms",
        "website",
        "hcp_portal",
        "webinar",
        "event",
        "congress",
        "event_app",
        "direct_mail",
        "samples",
        "medical_inquiry",
        "survey",
    }
    assert expected <= set(channels)
    pairs = set(
        zip(events.column("channel").to_pylist(), events.column("action").to_pylist(), strict=True)
    )
    for pair in [
        ("webinar", "registered"),
        ("webinar", "attended"),
        ("webinar", "no_show"),
        ("samples", "sample_dropped"),
        ("medical_inquiry", "inquiry_received"),
        ("medical_inquiry", "inquiry_answered"),
        ("survey", "survey_answered"),
        ("direct_mail", "sent"),
        ("sms", "clicked"),
        ("campaign_email", "bounced"),
        ("campaign_email", "unsubscribed"),
    ]:
        assert pair in pairs, pair


def test_rep_calls_come_from_the_territory_rep(rows: list[dict[str, Any]], hcps: pa.Table) -> None:
    territory = {f"crm:{r['crm_id']}": r["territory"] for r in hcps.to_pylist()}
    calls = [
        r for r in rows if r["channel"] in ("f2f_call", "remote_call") and r["actor_type"] == "rep"
    ]
    assert calls
    for r in calls:
        assert r["actor_id"] == f"REP-{territory[r['user_id']]}"
        assert r["function"] == "commercial"
        assert r["content_id"]
        assert "-CLM-" in r["content_id"]
        if r["action"] == "content_viewed":
            assert r["slide"] is not None
            assert int(r["slide"]) >= 1
    assert Counter(r["action"] for r in calls)["content_viewed"] > 0


def test_medical_inquiries_are_answered_by_medical(rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if r["channel"] == "medical_inquiry"]
    assert rows
    assert all(r["function"] == "medical" for r in rows)
    answered = [r for r in rows if r["action"] == "inquiry_answered"]
    assert {r["actor_type"] for r in answered} == {"msl", "medical_affairs"}


def test_call_frequency_rises_with_potential_decile(
    rows: list[dict[str, Any]], hcps: pa.Table
) -> None:
    decile = {f"crm:{r['crm_id']}": r["potential_decile"] for r in hcps.to_pylist()}
    calls = Counter(
        decile[r["user_id"]]
        for r in rows
        if r["action"] == "call_completed" and r["actor_type"] in ("rep", "kam")
    )
    per_decile = Counter(decile.values())
    low = sum(calls[d] for d in (1, 2, 3)) / sum(per_decile[d] for d in (1, 2, 3))
    high = sum(calls[d] for d in (8, 9, 10)) / sum(per_decile[d] for d in (8, 9, 10))
    assert high > 1.8 * low


def test_activity_is_skewed_across_hcps(events: pa.Table) -> None:
    web = events.filter(pc.is_valid(events.column("anonymous_id")))
    counts = np.sort(pc.value_counts(web.column("anonymous_id")).field("counts").to_numpy())
    top = counts[::-1][: max(1, len(counts) // 10)].sum()
    assert top / counts.sum() > 0.3  # the top tenth of web visitors make >30% of web events


def test_email_funnel_order(rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if r["channel"] in ("campaign_email", "rep_email")]
    sends = {r["message_id"]: r for r in rows if r["action"] == "sent"}
    steps: dict[str, dict[str, dt.datetime]] = {}
    for r in rows:
        if r["action"] == "sent":
            continue
        send_id = json.loads(r["properties"])["send_id"]
        sent = sends[send_id]
        assert sent["user_id"] == r["user_id"]
        assert sent["content_id"] == r["content_id"]
        assert r["timestamp"] > sent["timestamp"]
        steps.setdefault(send_id, {})[r["action"]] = r["timestamp"]
    for found in steps.values():
        assert not ("delivered" in found and "bounced" in found)
        if "opened" in found:
            assert "delivered" in found
            assert found["opened"] > found["delivered"]
        if "clicked" in found:
            assert "opened" in found
            assert found["clicked"] > found["opened"]
        if "unsubscribed" in found:
            assert "opened" in found
    campaign = Counter(r["action"] for r in rows if r["channel"] == "campaign_email")
    assert 0.95 < campaign["delivered"] / campaign["sent"] < 0.99
    assert 0.18 < campaign["opened"] / campaign["delivered"] < 0.37
    assert 0.08 < campaign["clicked"] / campaign["opened"] < 0.22
    assert 0 < campaign["unsubscribed"] < 0.01 * campaign["sent"]


def test_no_campaign_email_after_unsubscribe(rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if r["channel"] == "campaign_email"]
    unsubscribed = {}
    for r in rows:
        if r["action"] == "unsubscribed":
            unsubscribed[r["user_id"]] = min(
                r["timestamp"], unsubscribed.get(r["user_id"], r["timestamp"])
            )
    assert unsubscribed
    for r in rows:
        if r["action"] == "sent" and r["user_id"] in unsubscribed:
            assert r["timestamp"] < unsubscribed[r["user_id"]]


def test_anonymous_visits_are_joined_by_a_later_identify(rows: list[dict[str, Any]]) -> None:
    identified = {r["anonymous_id"]: r for r in rows if r["type"] == "identify"}
    assert identified
    joined = 0
    for r in rows:
        if r["type"] == "track" and r["user_id"] is None and r["anonymous_id"] in identified:
            identify = identified[r["anonymous_id"]]
            assert r["timestamp"] < identify["timestamp"]
            joined += 1
    assert joined > 0
    for identify in identified.values():
        traits = json.loads(identify["properties"])
        assert "email" in traits or "crm_id" in traits
    later = [
        r
        for r in rows
        if r["channel"] == "hcp_portal" and r["action"] == "visited" and r["user_id"] is not None
    ]
    assert later
    assert all(r["anonymous_id"] is not None for r in later)


def test_seasonality_and_congress_spikes(
    events: pa.Table, market: tuple[Path, MarketSummary]
) -> None:
    out, _ = market
    ts = events.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    start = int(dt.datetime.combine(START, dt.time(), tzinfo=dt.UTC).timestamp())
    weekly = np.bincount((ts - start) // (7 * 86400), minlength=WEEKS)[:WEEKS]
    dates = [START + dt.timedelta(weeks=w, days=3) for w in range(WEEKS)]
    august = np.mean([weekly[w] for w, d in enumerate(dates) if d.month == 8])
    normal = np.median(weekly)
    assert august < 0.8 * normal
    christmas = [w for w, d in enumerate(dates) if d.month == 12 and d.day >= 22]
    assert weekly[christmas].mean() < 0.5 * normal
    catalog = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    congress = events.filter(
        pc.is_in(events.column("channel"), pa.array(["congress", "event_app"]))
    )
    cts = congress.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    assert catalog["congresses"]
    for item in catalog["congresses"]:
        first = dt.datetime.fromisoformat(item["start"]).replace(tzinfo=dt.UTC).timestamp()
        first -= 86400  # the congress days are local dates
        last = first + (item["days"] + 2) * 86400
        during = np.count_nonzero((cts >= first) & (cts < last))
        before = np.count_nonzero((cts >= first - 14 * 86400) & (cts < last - 14 * 86400))
        assert during > 5 * max(before, 1), item["name"]


def test_most_events_fall_in_local_working_hours(
    rows: list[dict[str, Any]], hcps: pa.Table
) -> None:
    from zoneinfo import ZoneInfo

    zone = {f"crm:{r['crm_id']}": r["time_zone"] for r in hcps.to_pylist()}
    calls = [r for r in rows if r["action"] == "call_completed"]
    local_hours = [r["timestamp"].astimezone(ZoneInfo(zone[r["user_id"]])).hour for r in calls]
    inside = sum(7 <= h <= 19 for h in local_hours) / len(local_hours)
    assert inside > 0.95
    weekdays = [r["timestamp"].astimezone(ZoneInfo(zone[r["user_id"]])).weekday() for r in calls]
    assert sum(d < 5 for d in weekdays) / len(weekdays) > 0.95


# -- duplicates and invalid rows ----------------------------------------------------------


def test_duplicate_fraction_and_content(
    dirty: tuple[pa.Table, MarketSummary], dirty_rows: list[dict[str, Any]]
) -> None:
    table, summary = dirty
    ids = table.column("message_id").to_pylist()
    repeated = len(ids) - len(set(ids))
    assert repeated == summary.duplicates
    assert abs(repeated / len(ids) - 0.05) < 0.005
    first: dict[str, dict[str, Any]] = {}
    for position, row in enumerate(dirty_rows):
        seen = first.get(row["message_id"])
        if seen is None:
            first[row["message_id"]] = row | {"_pos": position}
        else:
            assert row == {k: v for k, v in seen.items() if k != "_pos"}
            assert position > seen["_pos"]


def test_invalid_fraction_and_kinds(
    dirty: tuple[pa.Table, MarketSummary], dirty_rows: list[dict[str, Any]]
) -> None:
    table, summary = dirty
    start, end = _window(26)
    reasons = Counter(_invalid_reason(row, start, end) for row in dirty_rows)
    invalid = table.num_rows - reasons[None]
    assert abs(invalid / table.num_rows - 0.04) < 0.006
    assert set(reasons) - {None} == set(INVALID_KINDS)
    for kind in INVALID_KINDS:
        assert reasons[kind] >= 0.15 * invalid
    assert sum(summary.invalid.values()) <= invalid  # duplicates of invalid rows add more
    unknown = table.filter(pc.equal(table.column("channel"), UNKNOWN_CHANNEL))
    assert unknown.num_rows == reasons["unknown_channel"]
    bad = [u for u in table.column("user_id").drop_null().to_pylist() if u.startswith("npi:")]
    assert any(not npi_is_valid(u[4:]) for u in bad)


RECEIVED = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_master_data_passes_the_importers_validation(market: tuple[Path, MarketSummary]) -> None:
    out, _ = market
    for name, validate in (
        ("hcps", validate_hcp_row),
        ("hcos", validate_hco_row),
        ("affiliations", validate_affiliation_row),
    ):
        for number, row in enumerate(pq.read_table(out / f"{name}.parquet").to_pylist(), 1):
            result = validate(row, row_number=number, file=name)
            assert not isinstance(result, list), (row, result)


def _sample(rows: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Every kind of row (channel, action, type) at least once, then an even sample."""
    first: dict[tuple[object, object, object], dict[str, Any]] = {}
    for row in rows:
        first.setdefault((row["channel"], row["action"], row["type"]), row)
    return list(first.values()) + rows[:: max(1, len(rows) // size)]


def test_events_pass_the_importers_validation(rows: list[dict[str, Any]]) -> None:
    for number, row in enumerate(_sample(rows, 15_000), 1):
        result = validate_event_row(
            row, row_number=number, file="events", source="test", received_at=RECEIVED
        )
        assert isinstance(result, LogEvent), (row, result)
        assert result.synthetic


def test_invalid_rows_are_exactly_those_the_importer_refuses(
    dirty_rows: list[dict[str, Any]],
) -> None:
    start, end = _window(26)
    for number, row in enumerate(_sample(dirty_rows, 12_000), 1):
        result = validate_event_row(
            row, row_number=number, file="events", source="test", received_at=RECEIVED
        )
        assert isinstance(result, LogEvent) == (_invalid_reason(row, start, end) is None), row


def test_rejects_bad_configuration(tmp_path: Path) -> None:
    for bad in (
        {"hcps": 0},
        {"weeks": 0},
        {"duplicates": 0.6},
        {"invalid": -0.1},
        {"seed": -1},
    ):
        args: dict[str, Any] = {"hcps": 10, "out": tmp_path} | bad
        with pytest.raises(ValueError, match="must"):
            generate_market(MarketConfig(**args))


# -- bounded memory ----------------------------------------------------------------------------


def _peak_arrow_bytes(out: Path, hcps: int) -> tuple[int, MarketSummary]:
    before = pa.total_allocated_bytes()  # other tests' tables may still be alive
    peak = 0

    def sample(_rows: int) -> None:
        nonlocal peak
        peak = max(peak, pa.total_allocated_bytes() - before)

    summary = generate_market(
        MarketConfig(hcps=hcps, weeks=6, seed=3, out=out, chunk_hcps=1_500),
        on_events=sample,
    )
    return peak, summary


def test_memory_is_bounded_by_the_chunk_not_the_market(tmp_path: Path) -> None:
    small_peak, small = _peak_arrow_bytes(tmp_path / "small", 3_000)
    large_peak, large = _peak_arrow_bytes(tmp_path / "large", 15_000)
    assert large.events > 4 * small.events
    # every chunk is written as it is made: one row group per chunk, not one at the end
    assert pq.read_metadata(tmp_path / "large" / "hcps.parquet").num_row_groups == 10
    events = pq.ParquetFile(tmp_path / "large" / "events" / "part-00000.parquet")
    assert events.metadata.num_row_groups >= 10
    # Arrow memory in use while writing stays at a few chunks' worth, whatever the size
    assert large_peak < 2 * small_peak
    all_events_bytes = pq.read_table(tmp_path / "large" / "events").nbytes
    assert large_peak < 0.4 * all_events_bytes  # holding every chunk would need ~100%
