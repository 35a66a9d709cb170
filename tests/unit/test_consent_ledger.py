"""The consent ledger's pure rules (fold, decide), exhaustively with Hypothesis, and the
consent-event rules of ingestion (read_consent_event, check_consent_event, grant_trusted)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.consent.importer import validate_consent_row
from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentDecision,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
    decide,
    fold,
)
from counterpoint.consent.schemas import (
    ConsentEventProblem,
    ConsentEventSpec,
    check_consent_event,
    consent_state_of,
    grant_trusted,
    read_consent_event,
)
from counterpoint.event.canonical import Channel
from counterpoint.profile.records import RowError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PROOF = Proof(ConsentSource.API, "tests", wording_version="v1")
CHANNELS = [ConsentChannel.EMAIL, ConsentChannel.SMS]
PURPOSES = [Purpose.PROMOTIONAL, Purpose.MEDICAL]
MARKETS = ["DE", "FR"]
BRANDS = [None, "ALPHA", "BETA"]
RECORDED = [ConsentState.GRANTED, ConsentState.DENIED, ConsentState.REVOKED, ConsentState.PENDING]


def _minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


@st.composite
def scopes(draw: st.DrawFn) -> ConsentScope:
    return ConsentScope(
        draw(st.sampled_from(CHANNELS)),
        draw(st.sampled_from(PURPOSES)),
        draw(st.sampled_from(MARKETS)),
        draw(st.sampled_from(BRANDS)),
        draw(st.sampled_from([None, None, "detail_aid"])),
    )


@st.composite
def record_lists(draw: st.DrawFn, max_size: int = 12) -> list[ConsentRecord]:
    n = draw(st.integers(0, max_size))
    out = []
    for seq in range(1, n + 1):
        effective = draw(st.integers(0, 200))
        state = draw(st.sampled_from(RECORDED))
        expires = draw(st.none() | st.integers(1, 100)) if state is ConsentState.GRANTED else None
        out.append(
            ConsentRecord(
                seq=seq,
                hcp_id="hcp_1",
                scope=draw(scopes()),
                state=state,
                effective_at=_minutes(effective),
                recorded_at=_minutes(effective + draw(st.integers(0, 30))),
                proof=PROOF,
                expires_at=None if expires is None else _minutes(effective + expires),
            )
        )
    return out


contacts = st.tuples(
    st.sampled_from(CHANNELS),
    st.sampled_from(PURPOSES),
    st.sampled_from(MARKETS),
    st.sampled_from(["ALPHA", "BETA", "GAMMA"]),
    st.sampled_from([None, "detail_aid"]),
)


def _decide(
    records: Sequence[ConsentRecord], contact: tuple[object, ...], at: dt.datetime
) -> ConsentDecision:
    channel, purpose, market, brand, content_type = contact
    return decide(
        records,
        channel=channel,  # type: ignore[arg-type]
        purpose=purpose,  # type: ignore[arg-type]
        market=market,  # type: ignore[arg-type]
        brand=brand,  # type: ignore[arg-type]
        content_type=content_type,  # type: ignore[arg-type]
        at=at,
    )


def _record(
    seq: int,
    scope: ConsentScope,
    state: ConsentState,
    at: int,
    expires: int | None = None,
) -> ConsentRecord:
    return ConsentRecord(
        seq=seq,
        hcp_id="hcp_1",
        scope=scope,
        state=state,
        effective_at=_minutes(at),
        recorded_at=_minutes(at),
        proof=PROOF,
        expires_at=None if expires is None else _minutes(expires),
    )


def _covering(contact: tuple[object, ...], brand: str | None) -> ConsentScope:
    channel, purpose, market = contact[:3]
    return ConsentScope(channel, purpose, market, brand, None)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(records=record_lists(), data=st.data(), contact=contacts, at=st.integers(0, 400))
def test_fold_and_decide_do_not_depend_on_the_order_of_records(
    records: list[ConsentRecord], data: st.DataObject, contact: tuple[object, ...], at: int
) -> None:
    shuffled = data.draw(st.permutations(records))
    assert fold(shuffled, _minutes(at)) == fold(records, _minutes(at))
    assert _decide(shuffled, contact, _minutes(at)) == _decide(records, contact, _minutes(at))


@settings(max_examples=300)
@given(
    records=record_lists(),
    later=record_lists(max_size=5),
    contact=contacts,
    at=st.integers(0, 300),
)
def test_the_state_as_of_a_date_uses_only_records_known_then(
    records: list[ConsentRecord],
    later: list[ConsentRecord],
    contact: tuple[object, ...],
    at: int,
) -> None:
    when = _minutes(at)
    known = [r for r in records if r.recorded_at <= when and r.effective_at <= when]
    # records learnt after ``when`` (recorded later, whatever their effective time)
    offset = len(records)
    learnt = [
        dataclasses.replace(
            r,
            seq=offset + i + 1,
            recorded_at=when + dt.timedelta(minutes=1 + i),
            effective_at=min(r.effective_at, when + dt.timedelta(minutes=1 + i)),
        )
        for i, r in enumerate(later)
    ]
    assert fold(records + learnt, when) == fold(known, when)
    assert _decide(records + learnt, contact, when) == _decide(known, contact, when)


@settings(max_examples=300)
@given(
    records=record_lists(),
    contact=contacts,
    brand=st.sampled_from([None, "own"]),
    state=st.sampled_from([ConsentState.REVOKED, ConsentState.DENIED]),
    after=st.integers(0, 100),
)
def test_a_withdrawal_newer_than_every_covering_record_refuses(
    records: list[ConsentRecord],
    contact: tuple[object, ...],
    brand: str | None,
    state: ConsentState,
    after: int,
) -> None:
    newest = max((r.effective_at for r in records), default=T0)
    at = int((newest - T0).total_seconds() // 60) + 1
    scope = _covering(contact, contact[3] if brand == "own" else None)  # type: ignore[arg-type]
    withdrawal = _record(len(records) + 1, scope, state, at)
    decision = _decide([*records, withdrawal], contact, _minutes(at + after))
    assert not decision.allowed
    assert decision.reason == f"consent_{state.value}"
    assert decision.seq == withdrawal.seq


@settings(max_examples=300)
@given(records=record_lists(), contact=contacts, after=st.integers(0, 100))
def test_a_grant_for_all_brands_allows_any_brand_unless_a_newer_withdrawal_covers_it(
    records: list[ConsentRecord], contact: tuple[object, ...], after: int
) -> None:
    newest = max((r.effective_at for r in records), default=T0)
    at = int((newest - T0).total_seconds() // 60) + 1
    grant = _record(len(records) + 1, _covering(contact, None), ConsentState.GRANTED, at)
    assert _decide([*records, grant], contact, _minutes(at + after)).allowed
    # a newer withdrawal, for this brand only or for all, closes it again
    for brand in (None, contact[3]):
        revoke = _record(
            len(records) + 2,
            _covering(contact, brand),  # type: ignore[arg-type]
            ConsentState.REVOKED,
            at + 1,
        )
        decision = _decide([*records, grant, revoke], contact, _minutes(at + 1 + after))
        assert not decision.allowed
        assert decision.reason == "consent_revoked"
    # a withdrawal for another brand does not
    other = _record(
        len(records) + 2,
        _covering(contact, "OTHER"),
        ConsentState.REVOKED,
        at + 1,
    )
    assert _decide([*records, grant, other], contact, _minutes(at + 1 + after)).allowed


@settings(max_examples=300)
@given(contact=contacts, general_at=st.integers(0, 50), gap=st.integers(1, 50))
def test_an_expired_grant_does_not_allow_nor_hide_an_older_general_grant(
    contact: tuple[object, ...], general_at: int, gap: int
) -> None:
    brand_scope = _covering(contact, contact[3])  # type: ignore[arg-type]
    brand_at = general_at + gap
    brand_grant = _record(2, brand_scope, ConsentState.GRANTED, brand_at, expires=brand_at + 10)
    after_expiry = _minutes(brand_at + 10)
    alone = _decide([brand_grant], contact, after_expiry)
    assert not alone.allowed
    assert alone.reason == "consent_expired"
    assert _decide([brand_grant], contact, _minutes(brand_at + 9)).allowed
    general = _record(1, _covering(contact, None), ConsentState.GRANTED, general_at)
    decision = _decide([general, brand_grant], contact, after_expiry)
    assert decision.allowed
    assert decision.seq == general.seq


@settings(max_examples=300)
@given(records=record_lists(), contact=contacts, at=st.integers(0, 400))
def test_pending_alone_never_allows(
    records: list[ConsentRecord], contact: tuple[object, ...], at: int
) -> None:
    pending = [dataclasses.replace(r, state=ConsentState.PENDING, expires_at=None) for r in records]
    decision = _decide(pending, contact, _minutes(at))
    assert not decision.allowed
    assert decision.reason in ("consent_pending", "no_consent")


@settings(max_examples=300)
@given(records=record_lists(), contact=contacts, at=st.integers(0, 400))
def test_an_allowed_contact_rests_on_a_grant_in_date(
    records: list[ConsentRecord], contact: tuple[object, ...], at: int
) -> None:
    decision = _decide(records, contact, _minutes(at))
    if decision.allowed:
        (record,) = [r for r in records if r.seq == decision.seq]
        assert record.state is ConsentState.GRANTED
        assert record.expires_at is None or record.expires_at > _minutes(at)
        assert record.scope.covers(*contact)  # type: ignore[arg-type]


def test_a_pending_confirmation_does_not_reopen_a_revoked_brand() -> None:
    contact = (ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE", "ALPHA", None)
    general = _record(1, _covering(contact, None), ConsentState.GRANTED, 0)
    revoke = _record(2, _covering(contact, "ALPHA"), ConsentState.REVOKED, 10)
    assert not _decide([general, revoke], contact, _minutes(30)).allowed
    pending = _record(3, _covering(contact, "ALPHA"), ConsentState.PENDING, 20)
    assert not _decide([general, revoke, pending], contact, _minutes(30)).allowed


# --- examples of each refusal -----------------------------------------------------------------

CONTACT = (ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE", "ALPHA", None)
SCOPE = _covering(CONTACT, None)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "no_consent"),
        ([_record(1, SCOPE, ConsentState.PENDING, 0)], "consent_pending"),
        ([_record(1, SCOPE, ConsentState.GRANTED, 0, expires=5)], "consent_expired"),
        ([_record(1, SCOPE, ConsentState.DENIED, 0)], "consent_denied"),
        (
            [
                _record(1, SCOPE, ConsentState.GRANTED, 0),
                _record(2, SCOPE, ConsentState.REVOKED, 5),
            ],
            "consent_revoked",
        ),
        (  # another channel, purpose or market does not count
            [
                _record(i, scope, ConsentState.GRANTED, 0)
                for i, scope in enumerate(
                    [
                        dataclasses.replace(SCOPE, channel=ConsentChannel.SMS),
                        dataclasses.replace(SCOPE, purpose=Purpose.MEDICAL),
                        dataclasses.replace(SCOPE, market="FR"),
                        dataclasses.replace(SCOPE, brand="BETA"),
                    ],
                    1,
                )
            ],
            "no_consent",
        ),
    ],
)
def test_each_refusal_reason(records: list[ConsentRecord], reason: str) -> None:
    decision = _decide(records, CONTACT, _minutes(10))
    assert not decision.allowed
    assert decision.reason == reason


def test_a_newer_brand_grant_overrides_an_older_general_withdrawal() -> None:
    records = [
        _record(1, SCOPE, ConsentState.REVOKED, 0),
        _record(2, _covering(CONTACT, "ALPHA"), ConsentState.GRANTED, 5),
    ]
    assert _decide(records, CONTACT, _minutes(10)).allowed
    other_brand = (*CONTACT[:3], "BETA", None)
    assert _decide(records, other_brand, _minutes(10)).reason == "consent_revoked"


def test_the_state_as_of_yesterday_ignores_todays_withdrawal() -> None:
    records = [
        _record(1, SCOPE, ConsentState.GRANTED, 0),
        _record(2, SCOPE, ConsentState.REVOKED, 100),
    ]
    assert _decide(records, CONTACT, _minutes(99)).allowed
    assert not _decide(records, CONTACT, _minutes(100)).allowed


# --- consent events at ingestion --------------------------------------------------------------

GOOD = {
    "channel": "email",
    "purpose": "promotional",
    "wording_version": "v3",
    "wording_hash": "a" * 64,
}


def _read(props: dict[str, object], state: ConsentState = ConsentState.GRANTED, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"market": "DE", "brand": None, "occurred_at": T0} | kw
    return read_consent_event(state, props, **args)  # type: ignore[arg-type]


def test_consent_event_names_are_case_insensitive() -> None:
    assert consent_state_of("Consent Granted") is ConsentState.GRANTED
    assert consent_state_of("consent REVOKED ") is ConsentState.REVOKED
    assert consent_state_of("Consent Denied") is ConsentState.DENIED
    assert consent_state_of("Email Opened") is None
    assert consent_state_of(None) is None


def test_a_valid_consent_event_reads_as_its_record() -> None:
    spec = _read(GOOD | {"brand": "ignored", "expires_at": "2027-01-01T00:00:00Z"}, brand="ALPHA")
    assert isinstance(spec, ConsentEventSpec)
    assert spec.scope == ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE", "ALPHA")
    assert spec.expires_at == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    # an interaction channel is read as the consent channel it needs
    mapped = _read(GOOD | {"channel": "campaign_email"})
    assert isinstance(mapped, ConsentEventSpec)
    assert mapped.scope.channel is ConsentChannel.EMAIL
    fallback = _read({k: v for k, v in GOOD.items() if k != "channel"}, channel=Channel.SMS)
    assert isinstance(fallback, ConsentEventSpec)
    assert fallback.scope.channel is ConsentChannel.SMS


@pytest.mark.parametrize(
    ("props", "kw", "field"),
    [
        (GOOD | {"channel": "pigeon"}, {}, "properties.channel"),
        (GOOD | {"channel": "website"}, {}, "properties.channel"),  # needs no consent
        ({k: v for k, v in GOOD.items() if k != "channel"}, {}, "properties.channel"),
        (GOOD | {"purpose": "lunch"}, {}, "properties.purpose"),
        ({k: v for k, v in GOOD.items() if k != "purpose"}, {}, "properties.purpose"),
        (GOOD, {"market": None}, "properties.market"),
        (GOOD, {"brand": "a b"}, "properties.brand"),
        (
            GOOD | {"content_type": "x'; DROP TABLE consent_record;--"},
            {},
            "properties.content_type",
        ),
        (GOOD | {"wording_hash": "abc"}, {}, "properties.wording_hash"),
        (
            {k: v for k, v in GOOD.items() if k != "wording_version"},
            {},
            "properties.wording_version",
        ),
        (GOOD | {"wording_version": "v" * 65}, {}, "properties.wording_version"),
        (GOOD | {"expires_at": "tomorrow"}, {}, "properties.expires_at"),
        (GOOD | {"expires_at": "2025-01-01T00:00:00Z"}, {}, "properties.expires_at"),
        (GOOD | {"evidence": {"nested": True}}, {}, "properties.evidence"),
    ],
)
def test_invalid_consent_events_name_the_field_and_the_fix(
    props: dict[str, object], kw: dict[str, object], field: str
) -> None:
    found = _read(props, **kw)
    assert isinstance(found, ConsentEventProblem)
    assert found.code == "invalid_consent"
    assert found.field == field
    assert found.fix


def test_a_withdrawal_needs_no_wording() -> None:
    props = {"channel": "email", "purpose": "promotional"}
    assert isinstance(_read(props, ConsentState.REVOKED), ConsentEventSpec)
    assert isinstance(_read(props, ConsentState.GRANTED), ConsentEventProblem)


@pytest.mark.parametrize("trusted", [False, None, 1, "yes"])
def test_grants_from_sources_not_known_to_be_trusted_are_refused(trusted: object) -> None:
    assert grant_trusted(trusted) is False  # type: ignore[arg-type]
    for state in (ConsentState.GRANTED, ConsentState.PENDING):
        problem = check_consent_event(
            state,
            GOOD,
            trusted=trusted,
            market="DE",
            brand=None,
            occurred_at=T0,  # type: ignore[arg-type]
        )
        assert problem is not None
        assert problem.code == "untrusted_consent_grant"
        assert problem.field == "event"
    for state in (ConsentState.DENIED, ConsentState.REVOKED):
        assert (
            check_consent_event(
                state,
                GOOD,
                trusted=trusted,
                market="DE",
                brand=None,
                occurred_at=T0,  # type: ignore[arg-type]
            )
            is None
        )


def test_grants_from_trusted_sources_are_checked_like_any_other() -> None:
    assert grant_trusted(True)
    ok = check_consent_event(
        ConsentState.GRANTED, GOOD, trusted=True, market="DE", brand=None, occurred_at=T0
    )
    assert ok is None
    bad = check_consent_event(
        ConsentState.GRANTED,
        GOOD | {"purpose": "x"},
        trusted=True,
        market="DE",
        brand=None,
        occurred_at=T0,
    )
    assert bad is not None
    assert bad.field == "properties.purpose"


# --- consent file rows --------------------------------------------------------------------------

ROW = {
    "identifier": "npi:1234567893",
    "channel": "email",
    "purpose": "promotional",
    "market": "de",
    "state": "granted",
    "wording_version": "v1",
    "effective_at": "2026-01-01",
}


def test_a_valid_consent_row() -> None:
    found = validate_consent_row(ROW, row_number=2, file="c.csv", now=T0)
    assert not isinstance(found, list)
    assert found.identifier == "npi:1234567893"
    assert found.scope.market == "DE"
    assert found.source is ConsentSource.IMPORT
    assert found.effective_at == T0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"identifier": "npi:1234567894"}, "identifier"),
        ({"identifier": ""}, "identifier"),
        ({"channel": "fax"}, "channel"),
        ({"purpose": ""}, "purpose"),
        ({"market": "XX"}, "market"),
        ({"state": "expired"}, "state"),
        ({"brand": "<script>"}, "brand"),
        ({"wording_version": ""}, "wording_version"),
        ({"wording_hash": "not-a-hash"}, "wording_hash"),
        ({"source": "rep_capture"}, "evidence"),
        ({"source": "event"}, "source"),
        ({"effective_at": "2026-02-01"}, "effective_at"),
        ({"expires_at": "2025-12-31"}, "expires_at"),
        ({"effective_at": "soon"}, "effective_at"),
    ],
)
def test_bad_consent_rows_name_the_field(change: dict[str, str], field: str) -> None:
    found = validate_consent_row(ROW | change, row_number=7, file="c.csv", now=T0)
    assert isinstance(found, list)
    assert all(isinstance(e, RowError) and e.row == 7 and e.fix for e in found)
    assert field in {e.field for e in found}
