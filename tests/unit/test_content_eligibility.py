"""The content checks and the eligible-content filter, pure: each reason alone, the filter
proven equal to the checks (plus role and brand scope) on random inputs, and the order."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.consent.ledger import Purpose
from counterpoint.content.catalog import build_snapshot
from counterpoint.content.eligibility import (
    PURPOSE_OF_FUNCTION,
    ContentReason,
    ContentRef,
    content_refusals,
    eligible,
    language_of,
    sort_key,
)
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.guard import Candidate, HcpFacts, role_allows

AT = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
STATES = [
    "draft",
    "submitted",
    "in_review",
    "approved",
    "changes_requested",
    "rejected",
    "expired",
    "withdrawn",
]
MARKETS = ["DE", "FR", "AT"]
LANGUAGES = ["de", "fr", "en"]
CHANNELS = [Channel.CAMPAIGN_EMAIL, Channel.REP_EMAIL, Channel.F2F_CALL, Channel.SMS]
BRANDS = ["ZENTROVA", "CARDIOMAX"]


def _ref(**changes: object) -> ContentRef:
    """An approved promotional e-mail for DE in German, valid around ``AT``."""
    base = ContentRef(
        id="cnt_1",
        code="ZEN-DE-001",
        kind="asset",
        asset_type="campaign_email",
        title="Synthetic test e-mail",
        brand="ZENTROVA",
        function="promotional",
        languages=frozenset({"de"}),
        channels=frozenset({"campaign_email", "rep_email"}),
        markets=frozenset({"DE"}),
        persona=None,
        parent_id=None,
        state="approved",
        job_code="JOB-1",
        valid_from=AT - dt.timedelta(days=10),
        valid_until=AT + dt.timedelta(days=10),
        minutes=2.0,
        journey_stage="awareness",
        approved_at=AT - dt.timedelta(days=11),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _candidate(**changes: object) -> Candidate:
    base = Candidate(
        Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, AT, brand="ZENTROVA", content_id="cnt_1"
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _facts(market: str | None = "DE", language: str | None = "de") -> HcpFacts:
    return HcpFacts("hcp_1", market, "Europe/Berlin", language=language)


def _codes(ref: ContentRef | None, candidate: Candidate, facts: HcpFacts) -> list[str]:
    return [r.code for r in content_refusals(ref, candidate, facts)]


# --- each reason alone ----------------------------------------------------------------------


def test_the_base_case_passes() -> None:
    assert content_refusals(_ref(), _candidate(), _facts()) == []


@pytest.mark.parametrize(
    ("ref", "candidate", "facts", "code"),
    [
        (None, _candidate(), _facts(), ContentReason.UNKNOWN),
        (_ref(kind="fragment"), _candidate(), _facts(), ContentReason.UNKNOWN),
        (_ref(state="withdrawn"), _candidate(), _facts(), ContentReason.NOT_APPROVED),
        (_ref(state="draft"), _candidate(), _facts(), ContentReason.NOT_APPROVED),
        (
            _ref(valid_from=AT + dt.timedelta(seconds=1)),
            _candidate(),
            _facts(),
            "content_not_yet_valid",
        ),
        (_ref(valid_until=AT), _candidate(), _facts(), ContentReason.EXPIRED),
        (_ref(valid_until=AT - dt.timedelta(days=1)), _candidate(), _facts(), "content_expired"),
        (_ref(), _candidate(), _facts(market="FR"), ContentReason.MARKET),
        (_ref(), _candidate(), _facts(market=None), ContentReason.MARKET),
        (_ref(), _candidate(channel=Channel.SMS), _facts(), ContentReason.CHANNEL),
        (_ref(), _candidate(), _facts(language="fr"), ContentReason.LANGUAGE),
        (_ref(), _candidate(purpose=Purpose.MEDICAL), _facts(), ContentReason.PURPOSE),
        (_ref(function="medical"), _candidate(), _facts(), ContentReason.PURPOSE),
        (_ref(function="unknown"), _candidate(), _facts(), ContentReason.PURPOSE),
        (_ref(), _candidate(brand="CARDIOMAX"), _facts(), ContentReason.BRAND),
        (_ref(brand=None), _candidate(), _facts(), ContentReason.BRAND),
    ],
)
def test_each_reason_triggers_alone(
    ref: ContentRef | None, candidate: Candidate, facts: HcpFacts, code: str
) -> None:
    refusals = content_refusals(ref, candidate, facts)
    assert [r.code for r in refusals] == [code]
    assert refusals[0].detail


def test_the_state_is_named_in_the_detail() -> None:
    for state in STATES:
        refusals = content_refusals(_ref(state=state), _candidate(), _facts())
        if state == "approved":
            assert refusals == []
        else:
            assert [r.code for r in refusals] == ["content_not_approved"]
            assert state in refusals[0].detail


def test_expiry_takes_effect_at_valid_until_even_while_the_state_says_approved() -> None:
    ref = _ref(valid_until=AT + dt.timedelta(hours=1))
    assert _codes(ref, _candidate(at=AT + dt.timedelta(minutes=59)), _facts()) == []
    assert _codes(ref, _candidate(at=AT + dt.timedelta(hours=1)), _facts()) == ["content_expired"]


def test_every_reason_is_reported_together() -> None:
    ref = _ref(state="withdrawn", valid_until=AT - dt.timedelta(days=1), function="medical")
    candidate = _candidate(channel=Channel.SMS, brand="CARDIOMAX")
    codes = _codes(ref, candidate, _facts(market="FR", language="fr"))
    expected = {r.value for r in ContentReason} - {"content_unknown", "content_not_yet_valid"}
    assert set(codes) == expected


def test_languages() -> None:
    assert _codes(_ref(), _candidate(), _facts(language=None)) == []  # unknown: allowed
    assert _codes(_ref(languages=frozenset()), _candidate(), _facts(language="fr")) == []
    assert _codes(_ref(), _candidate(), _facts(language="de-AT")) == []
    assert _codes(_ref(), _candidate(), _facts(language="DE")) == []
    assert language_of("pt_BR") == "pt"
    assert language_of("") is None
    assert language_of(None) is None


def test_no_brand_on_the_candidate_accepts_any_brand() -> None:
    assert _codes(_ref(), _candidate(brand=None), _facts()) == []
    assert _codes(_ref(brand=None), _candidate(brand=None), _facts()) == []


def test_functions_map_to_purposes() -> None:
    assert PURPOSE_OF_FUNCTION == {
        "promotional": Purpose.PROMOTIONAL,
        "medical": Purpose.MEDICAL,
        "educational": Purpose.EDUCATIONAL,
    }


def test_every_reason_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "guard.md").read_text(encoding="utf-8")
    for reason in ContentReason:
        assert f"`{reason.value}`" in docs, reason


# --- the filter equals the checks -------------------------------------------------------


def _moment() -> st.SearchStrategy[dt.datetime | None]:
    return st.none() | st.integers(-5, 5).map(lambda d: AT + dt.timedelta(days=d))


@st.composite
def refs(draw: st.DrawFn, index: int = 0) -> ContentRef:
    return ContentRef(
        id=f"cnt_{index}_{draw(st.integers(0, 10**6))}",
        code=draw(st.sampled_from(["A-1", "A-2", "B-1", "C-9"])),
        kind=draw(st.sampled_from(["asset", "asset", "asset", "fragment"])),
        asset_type="campaign_email",
        title="synthetic",
        brand=draw(st.sampled_from([None, *BRANDS])),
        function=draw(st.sampled_from([*PURPOSE_OF_FUNCTION, "other"])),
        languages=frozenset(draw(st.sets(st.sampled_from(LANGUAGES), max_size=2))),
        channels=frozenset(c.value for c in draw(st.sets(st.sampled_from(CHANNELS), max_size=3))),
        markets=frozenset(draw(st.sets(st.sampled_from(MARKETS), max_size=2))),
        persona=None,
        parent_id=draw(st.none() | st.just("cnt_parent")),
        state=draw(st.sampled_from([*STATES, "approved", "approved"])),
        job_code=None,
        valid_from=draw(_moment()),
        valid_until=draw(_moment()),
        minutes=1.0,
        journey_stage=None,
        approved_at=draw(_moment()),
    )


def _oracle(
    items: list[ContentRef],
    market: str | None,
    language: str | None,
    channel: Channel,
    brands: frozenset[str],
    role: Role | None,
) -> list[ContentRef]:
    facts = _facts(market, language)
    out = []
    for ref in items:
        purpose = PURPOSE_OF_FUNCTION.get(ref.function)
        if purpose is None or not role_allows(role, channel, purpose):
            continue
        if brands and ref.brand is not None and ref.brand not in brands:
            continue
        candidate = Candidate(channel, purpose, AT, brand=ref.brand, content_id=ref.id, role=role)
        if not content_refusals(ref, candidate, facts):
            out.append(ref)
    return sorted(out, key=sort_key)


ROLES = [None, Role.SALES_REP, Role.MSL, Role.MARKETING_OPS, Role.ADMIN]


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(refs(), max_size=12),
    market=st.none() | st.sampled_from(MARKETS),
    language=st.none() | st.sampled_from([*LANGUAGES, "DE-at"]),
    channel=st.sampled_from(CHANNELS),
    brands=st.frozensets(st.sampled_from(BRANDS), max_size=2),
    role=st.sampled_from(ROLES),
)
def test_eligible_is_exactly_the_refs_the_checks_accept(
    items: list[ContentRef],
    market: str | None,
    language: str | None,
    channel: Channel,
    brands: frozenset[str],
    role: Role | None,
) -> None:
    got = eligible(
        items, market=market, language=language, channel=channel, at=AT, brands=brands, role=role
    )
    assert got == _oracle(items, market, language, channel, brands, role)
    keys = [sort_key(r) for r in got]
    assert keys == sorted(keys)


@settings(max_examples=100, deadline=None)
@given(items=st.lists(refs(), max_size=12), channel=st.sampled_from(CHANNELS))
def test_the_catalog_index_holds_what_the_filter_needs(
    items: list[ContentRef], channel: Channel
) -> None:
    """Filtering one (market, channel) bucket of the index equals filtering everything."""
    unique = list({r.id: r for r in items}.values())
    snapshot = build_snapshot(1, unique)
    for market in MARKETS:
        bucket = snapshot.approved.get((market, channel.value), ())
        assert all(r.state == "approved" for r in bucket)
        whole = eligible(unique, market=market, language="de", channel=channel, at=AT)
        assert eligible(bucket, market=market, language="de", channel=channel, at=AT) == whole
        offered = snapshot.offered.get((market, channel.value), ())
        assert {r.id for r in bucket} <= {r.id for r in offered}


def test_a_filter_that_forgot_a_rule_would_be_caught() -> None:
    """Negative control: the oracle tells an expired item apart."""
    expired = _ref(valid_until=AT)
    assert _oracle([expired], "DE", "de", Channel.CAMPAIGN_EMAIL, frozenset(), None) == []
    assert _oracle([_ref()], "DE", "de", Channel.CAMPAIGN_EMAIL, frozenset(), None) == [_ref()]


def test_order_is_newest_approval_first_then_code() -> None:
    old_b = _ref(id="1", code="B", approved_at=AT - dt.timedelta(days=9))
    new_z = _ref(id="2", code="Z", approved_at=AT - dt.timedelta(days=1))
    new_a = _ref(id="3", code="A", approved_at=AT - dt.timedelta(days=1))
    got = eligible(
        [old_b, new_z, new_a], market="DE", language="de", channel=Channel.CAMPAIGN_EMAIL, at=AT
    )
    assert [r.code for r in got] == ["A", "Z", "B"]


def test_roles_and_brand_scope() -> None:
    medical = _ref(id="m", function="medical", channels=frozenset({"rep_email"}))
    promo = _ref(id="p", channels=frozenset({"rep_email"}))
    other = _ref(id="o", brand="CARDIOMAX", channels=frozenset({"rep_email"}))
    unbranded = _ref(id="u", brand=None, channels=frozenset({"rep_email"}))
    items = [medical, promo, other, unbranded]

    def ids(role: Role | None, brands: frozenset[str] = frozenset()) -> set[str]:
        found = eligible(
            items,
            market="DE",
            language="de",
            channel=Channel.REP_EMAIL,
            at=AT,
            brands=brands,
            role=role,
        )
        return {r.id for r in found}

    assert ids(Role.SALES_REP) == {"p", "o", "u"}
    assert ids(Role.MSL) == {"m"}
    assert ids(None) == set()  # orchestration does not send rep e-mail
    assert ids(Role.ADMIN) == set()
    assert ids(Role.SALES_REP, frozenset({"ZENTROVA"})) == {"p", "u"}
