"""The pure guard: one test per refusal reason, time zones and DST, the role table, and the
batch kernel proven equal to the single decision on random inputs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.contact import Cap, CapScope, ContactPolicy, QuietHours
from counterpoint.policy.guard import (
    HCP_FREQUENCY_DAYS,
    REASON_BITS,
    ROLE_RULES,
    Candidate,
    DncEntry,
    HcpFacts,
    Reason,
    Refusal,
    TouchDay,
    decide,
    encode,
    kernel,
    promotional_usage,
    reasons_of,
    role_allows,
)
from counterpoint.policy.touches import is_promotional

# Monday 2026-11-23, 12:00 UTC = 13:00 in Berlin
AT = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
PROOF = Proof(ConsentSource.API, "tests", wording_version="v1")


def _record(
    state: ConsentState,
    channel: ConsentChannel = ConsentChannel.EMAIL,
    purpose: Purpose = Purpose.PROMOTIONAL,
    *,
    seq: int = 1,
    at: dt.datetime = AT - dt.timedelta(days=400),
    brand: str | None = None,
    expires_at: dt.datetime | None = None,
) -> ConsentRecord:
    return ConsentRecord(
        seq, "hcp_1", ConsentScope(channel, purpose, "DE", brand), state, at, at, PROOF, expires_at
    )


GRANTED = (_record(ConsentState.GRANTED),)
POLICY = ContactPolicy(market="DE", time_zone="Europe/Berlin")


def _facts(**over: Any) -> HcpFacts:
    base: dict[str, Any] = {
        "hcp_id": "hcp_1",
        "market": "DE",
        "time_zone": "Europe/Berlin",
        "consents": GRANTED,
    }
    base.update(over)
    return HcpFacts(**base)


def _email(**over: Any) -> Candidate:
    base: dict[str, Any] = {
        "channel": Channel.CAMPAIGN_EMAIL,
        "purpose": Purpose.PROMOTIONAL,
        "at": AT,
        "brand": "ZENTROVA",
        "role": None,
    }
    base.update(over)
    return Candidate(**base)


def _codes(facts: HcpFacts | None, policy: ContactPolicy, candidate: Candidate) -> list[str]:
    decision = decide(facts, policy, candidate)
    assert decision.allowed is (not decision.refusals)
    assert all(r.detail for r in decision.refusals)
    return decision.codes


def test_allowed_when_nothing_stands_in_the_way() -> None:
    assert _codes(_facts(), POLICY, _email()) == []


@pytest.mark.parametrize(
    ("records", "code"),
    [
        ((), "no_consent"),
        ((_record(ConsentState.PENDING),), "consent_pending"),
        ((_record(ConsentState.GRANTED, expires_at=AT - dt.timedelta(days=1)),), "consent_expired"),
        ((_record(ConsentState.DENIED),), "consent_denied"),
        (
            (_record(ConsentState.GRANTED), _record(ConsentState.REVOKED, seq=2, at=AT)),
            "consent_revoked",
        ),
        ((_record(ConsentState.GRANTED, ConsentChannel.SMS),), "no_consent"),
        ((_record(ConsentState.GRANTED, purpose=Purpose.MEDICAL),), "no_consent"),
    ],
)
def test_consent_reasons(records: tuple[ConsentRecord, ...], code: str) -> None:
    assert _codes(_facts(consents=records), POLICY, _email()) == [code]


def test_hcp_without_market_has_no_consent() -> None:
    assert _codes(_facts(market=None), POLICY, _email()) == ["no_consent"]


def test_channels_needing_no_consent() -> None:
    call = _email(channel=Channel.MEDICAL_INQUIRY, purpose=Purpose.MEDICAL, role=Role.MSL)
    assert _codes(_facts(consents=()), POLICY, call) == []  # the HCP asked
    visit = _email(channel=Channel.F2F_CALL, role=Role.SALES_REP)
    assert _codes(_facts(consents=()), POLICY, visit) == ["no_consent"]
    local = ContactPolicy("DE", "Europe/Berlin", no_consent_channels=frozenset({Channel.F2F_CALL}))
    assert _codes(_facts(consents=()), local, visit) == []


def test_unknown_hcp() -> None:
    assert _codes(None, POLICY, _email()) == ["unknown_hcp"]


def test_do_not_contact_on_all_or_one_channel() -> None:
    everywhere = _facts(dnc=(DncEntry(None, "asked by phone"),))
    assert _codes(everywhere, POLICY, _email()) == ["do_not_contact"]
    sms_only = _facts(dnc=(DncEntry(Channel.SMS, "no texts"),))
    assert _codes(sms_only, POLICY, _email()) == []
    assert "do_not_contact" in _codes(sms_only, POLICY, _email(channel=Channel.SMS))


def test_suppressed_after_hard_bounce_on_the_consent_channel() -> None:
    facts = _facts(suppressed=frozenset({ConsentChannel.EMAIL}))
    assert _codes(facts, POLICY, _email()) == ["suppressed"]
    rep_mail = _email(channel=Channel.REP_EMAIL, role=Role.SALES_REP)
    assert _codes(facts, POLICY, rep_mail) == ["suppressed"]  # both e-mails share ``email``
    assert "suppressed" not in _codes(facts, POLICY, _email(channel=Channel.SMS))


def _touch(
    days_ago: int, channel: Channel, n: int = 1, brand: str | None = None, promotional: int = 0
) -> TouchDay:
    day = (AT - dt.timedelta(days=days_ago)).date()
    return TouchDay(day, channel.value, brand, n, promotional=promotional)


def _promo(days_ago: int, channel: Channel = Channel.F2F_CALL, n: int = 1) -> TouchDay:
    return _touch(days_ago, channel, n, brand="OTHER", promotional=n)


def test_over_cap_counts_every_channel_and_brand_in_the_window() -> None:
    policy = ContactPolicy("DE", "Europe/Berlin", caps=(Cap(CapScope.ALL, 7, max_touches=3),))
    touches = (
        _touch(0, Channel.F2F_CALL),
        _touch(3, Channel.WEBINAR, brand="OTHER"),
        _touch(6, Channel.CAMPAIGN_EMAIL),
    )
    assert _codes(_facts(touches=touches), policy, _email()) == ["over_cap"]
    # the touch 7 days ago is outside a 7-day window (today and the 6 days before)
    older = (*touches[:2], _touch(7, Channel.CAMPAIGN_EMAIL))
    assert _codes(_facts(touches=older), policy, _email()) == []


def test_channel_and_brand_caps_apply_only_to_their_key() -> None:
    policy = ContactPolicy(
        "DE",
        "Europe/Berlin",
        caps=(
            Cap(CapScope.CHANNEL, 30, key="sms", max_touches=1),
            Cap(CapScope.BRAND, 30, key="ZENTROVA", max_touches=2),
        ),
    )
    touches = (_touch(1, Channel.SMS), _touch(2, Channel.F2F_CALL, 2, brand="ZENTROVA"))
    facts = _facts(touches=touches)
    assert _codes(facts, policy, _email()) == ["over_cap"]  # the brand's budget is spent
    assert _codes(facts, policy, _email(brand="OTHER")) == []
    sms = _email(channel=Channel.SMS, brand=None)
    assert "over_cap" in _codes(facts, policy, sms)


def test_over_minutes_counts_reported_and_estimated_minutes() -> None:
    policy = ContactPolicy(
        "DE",
        "Europe/Berlin",
        caps=(Cap(CapScope.ALL, 30, max_minutes=60),),
        minutes={Channel.F2F_CALL: 15, Channel.CAMPAIGN_EMAIL: 2},
    )
    # two calls, one reported 40 minutes, the other estimated at 15: 55 used
    touches = (TouchDay(AT.date(), "f2f_call", None, 2, 1, 40.0),)
    assert _codes(_facts(touches=touches), policy, _email()) == []  # 55 + 2 <= 60
    visit = _email(channel=Channel.F2F_CALL, role=Role.SALES_REP)
    facts = _facts(
        touches=touches,
        consents=(*GRANTED, _record(ConsentState.GRANTED, ConsentChannel.F2F_CALL, seq=2)),
    )
    assert _codes(facts, policy, visit) == ["over_minutes"]  # 55 + 15 > 60


def test_hcp_frequency_cap_counts_promotional_touches_of_the_last_30_days() -> None:
    two = (_promo(0, Channel.F2F_CALL), _promo(29, Channel.WEBINAR))  # every channel and brand
    decision = decide(_facts(touches=two, max_promotional_per_month=2), POLICY, _email())
    assert decision.codes == ["hcp_frequency_cap"]
    assert "at most 2 promotional" in decision.refusals[0].detail
    assert "2 in the last 30 days" in decision.refusals[0].detail
    # one below the limit, or the older touch outside the 30-day window: allowed
    assert _codes(_facts(touches=two, max_promotional_per_month=3), POLICY, _email()) == []
    outside = (_promo(0), _promo(HCP_FREQUENCY_DAYS))
    assert _codes(_facts(touches=outside, max_promotional_per_month=2), POLICY, _email()) == []
    # touches that were not promotional (medical function) do not count
    medical = (_promo(0), _touch(1, Channel.F2F_CALL, 5))
    assert _codes(_facts(touches=medical, max_promotional_per_month=2), POLICY, _email()) == []
    # no limit of the HCP's own: never this reason
    many = (_promo(0, n=50),)
    assert _codes(_facts(touches=many), POLICY, _email()) == []


def test_hcp_frequency_cap_applies_to_promotional_purposes_only() -> None:
    facts = _facts(
        touches=(_promo(1, n=3),),
        max_promotional_per_month=1,
        consents=(*GRANTED, _record(ConsentState.GRANTED, purpose=Purpose.EDUCATIONAL, seq=2)),
    )
    assert _codes(facts, POLICY, _email()) == ["hcp_frequency_cap"]
    assert _codes(facts, POLICY, _email(purpose=Purpose.EDUCATIONAL)) == []
    visit = _email(channel=Channel.F2F_CALL, role=Role.SALES_REP)  # a rep's visit is limited too
    call = _facts(
        touches=(_promo(1, n=3),),
        max_promotional_per_month=1,
        consents=(_record(ConsentState.GRANTED, ConsentChannel.F2F_CALL),),
    )
    assert _codes(call, POLICY, visit) == ["hcp_frequency_cap"]


def test_hcp_frequency_cap_and_company_caps_both_refuse() -> None:
    policy = ContactPolicy("DE", "Europe/Berlin", caps=(Cap(CapScope.ALL, 7, max_touches=2),))
    touches = (_promo(0, n=2),)
    both = _codes(_facts(touches=touches, max_promotional_per_month=2), policy, _email())
    assert both == ["over_cap", "hcp_frequency_cap"]
    assert _codes(_facts(touches=touches, max_promotional_per_month=4), policy, _email()) == [
        "over_cap"
    ]
    loose = ContactPolicy("DE", "Europe/Berlin", caps=(Cap(CapScope.ALL, 7, max_touches=9),))
    assert _codes(_facts(touches=touches, max_promotional_per_month=2), loose, _email()) == [
        "hcp_frequency_cap"
    ]


def test_promotional_usage_uses_utc_days_up_to_the_candidate() -> None:
    touches = (_promo(0, n=2), _promo(29), _promo(30, n=7), _promo(-1, n=5))
    assert promotional_usage(touches, AT) == 3  # the future day and day 30 are outside
    assert promotional_usage(touches, AT + dt.timedelta(days=1)) == 7


@pytest.mark.parametrize(
    ("function", "channel", "actor", "promotional"),
    [
        ("commercial", Channel.CAMPAIGN_EMAIL, None, True),
        ("commercial", Channel.F2F_CALL, "rep", True),
        ("medical", Channel.F2F_CALL, "msl", False),
        ("medical", Channel.CAMPAIGN_EMAIL, None, False),
        (None, Channel.CAMPAIGN_EMAIL, None, True),  # the tracking API's default: commercial
        (None, Channel.F2F_CALL, "rep", True),
        (None, Channel.MEDICAL_INQUIRY, None, False),
        (None, Channel.F2F_CALL, "msl", False),
        (None, Channel.REMOTE_CALL, "medical_affairs", False),
    ],
)
def test_which_touches_are_promotional(
    function: str | None, channel: Channel, actor: str | None, promotional: bool
) -> None:
    assert is_promotional(function, channel, actor) is promotional


def test_min_gap() -> None:
    policy = ContactPolicy("DE", "Europe/Berlin", min_gap_hours={Channel.CAMPAIGN_EMAIL: 48})
    recent = _facts(last_touch={"campaign_email": AT - dt.timedelta(hours=47, minutes=59)})
    assert _codes(recent, policy, _email()) == ["min_gap"]
    enough = _facts(last_touch={"campaign_email": AT - dt.timedelta(hours=48)})
    assert _codes(enough, policy, _email()) == []
    other = _facts(last_touch={"sms": AT - dt.timedelta(hours=1)})
    assert _codes(other, policy, _email()) == []


NIGHT = ContactPolicy("DE", "Europe/Berlin", quiet_hours=QuietHours(dt.time(20), dt.time(8)))


@pytest.mark.parametrize(
    ("utc", "quiet"),
    [
        ("2026-11-23T18:59", False),  # 19:59 Berlin (winter, UTC+1)
        ("2026-11-23T19:00", True),  # 20:00
        ("2026-11-23T23:30", True),  # 00:30 the next day: over midnight
        ("2026-11-24T06:59", True),  # 07:59
        ("2026-11-24T07:00", False),  # 08:00
        ("2026-07-01T18:00", True),  # 20:00 in summer (UTC+2)
        ("2026-07-01T06:00", False),  # 08:00 in summer
        ("2026-03-29T00:30", True),  # 01:30 CET, before the spring change
        ("2026-03-29T06:00", False),  # 08:00 CEST, the first morning of summer time
        ("2026-10-25T00:30", True),  # 02:30 CEST, the first pass of the repeated hour
        ("2026-10-25T01:30", True),  # 02:30 CET, the second pass
        ("2026-10-25T07:00", False),  # 08:00 CET
        ("2026-10-25T06:59", True),  # 07:59 CET
    ],
)
def test_quiet_hours_in_the_hcp_zone_with_dst(utc: str, quiet: bool) -> None:
    at = dt.datetime.fromisoformat(utc).replace(tzinfo=dt.UTC)
    codes = _codes(_facts(), NIGHT, _email(at=at))
    assert (codes == ["quiet_hours"]) is quiet
    if not quiet:
        assert codes == []


def test_quiet_hours_use_the_hcp_zone_then_the_market_zone() -> None:
    at = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)  # 15:00 Berlin, 06:00 Los Angeles
    assert _codes(_facts(), NIGHT, _email(at=at)) == []
    west = _facts(time_zone="America/Los_Angeles")
    assert _codes(west, NIGHT, _email(at=at)) == ["quiet_hours"]
    # no zone, or one that does not exist: the market's zone (Berlin) applies
    assert _codes(_facts(time_zone=None), NIGHT, _email(at=at)) == []
    assert _codes(_facts(time_zone="Nowhere/Land"), NIGHT, _email(at=at)) == []


def test_quiet_weekdays_are_local() -> None:
    policy = ContactPolicy("DE", "Europe/Berlin", quiet_weekdays=frozenset({6}))  # Sunday
    saturday_night = dt.datetime(2026, 11, 28, 23, 30, tzinfo=dt.UTC)  # Sunday 00:30 Berlin
    assert _codes(_facts(), policy, _email(at=saturday_night)) == ["quiet_hours"]
    assert _codes(_facts(time_zone="America/New_York"), policy, _email(at=saturday_night)) == []


def test_role_not_allowed() -> None:
    promo_by_msl = _email(channel=Channel.F2F_CALL, role=Role.MSL)
    facts = _facts(consents=(_record(ConsentState.GRANTED, ConsentChannel.F2F_CALL),))
    assert _codes(facts, POLICY, promo_by_msl) == ["role_not_allowed"]
    assert _codes(_facts(), POLICY, _email(role=Role.SALES_REP)) == ["role_not_allowed"]
    assert _codes(_facts(), POLICY, _email(role=Role.MARKETING_OPS)) == []


def test_every_reason_is_reported_together() -> None:
    policy = ContactPolicy(
        "DE",
        "Europe/Berlin",
        caps=(Cap(CapScope.ALL, 7, max_touches=1, max_minutes=1),),
        min_gap_hours={Channel.CAMPAIGN_EMAIL: 24},
        quiet_hours=QuietHours(dt.time(12), dt.time(14)),
    )
    facts = _facts(
        consents=(),
        touches=(_touch(0, Channel.CAMPAIGN_EMAIL),),
        last_touch={"campaign_email": AT - dt.timedelta(hours=1)},
        dnc=(DncEntry(None, "asked"),),
        suppressed=frozenset({ConsentChannel.EMAIL}),
        max_promotional_per_month=1,
    )
    codes = _codes(facts, policy, _email(role=Role.DATA_ANALYST))
    assert set(codes) == {
        "role_not_allowed", "no_consent", "do_not_contact", "suppressed", "over_cap",
        "over_minutes", "min_gap", "quiet_hours",
    }  # fmt: skip
    assert "hcp_frequency_cap" not in codes  # the touch was not promotional
    facts = replace(facts, touches=(_promo(0, Channel.CAMPAIGN_EMAIL),))
    again = _codes(facts, policy, _email(role=Role.DATA_ANALYST))
    assert set(again) == {*codes, "hcp_frequency_cap"}


def test_role_table() -> None:
    for role in (Role.SALES_REP, Role.KAM, Role.BRAND_MANAGER, Role.MARKETING_OPS, None):
        for channel in Channel:
            assert not role_allows(role, channel, Purpose.MEDICAL), (role, channel)
    for role in (Role.DATA_ANALYST, Role.COMPLIANCE_AUDITOR, Role.MLR_REVIEWER, Role.ADMIN):
        assert not ROLE_RULES[role].channels
    assert role_allows(Role.SALES_REP, Channel.SAMPLES, Purpose.PROMOTIONAL)
    assert role_allows(Role.KAM, Channel.REP_EMAIL, Purpose.EDUCATIONAL)
    assert not role_allows(Role.SALES_REP, Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL)
    assert role_allows(Role.MSL, Channel.REMOTE_CALL, Purpose.MEDICAL)
    assert not role_allows(Role.MEDICAL_AFFAIRS, Channel.F2F_CALL, Purpose.PROMOTIONAL)
    assert role_allows(None, Channel.SMS, Purpose.MARKET_RESEARCH)
    assert not role_allows(None, Channel.F2F_CALL, Purpose.PROMOTIONAL)
    assert set(ROLE_RULES) == {*Role, None}


def test_content_checks_plug_in() -> None:
    def expired(candidate: Candidate, facts: HcpFacts) -> Sequence[Refusal]:
        if candidate.content_id == "old-deck":
            return [Refusal("content_expired", "the approval of old-deck ended")]
        return []

    refused = decide(_facts(), POLICY, _email(content_id="old-deck"), [expired])
    assert refused.codes == ["content_expired"]
    assert refused.mask == 0  # not a built-in reason: no bit
    assert decide(_facts(), POLICY, _email(content_id="new"), [expired]).allowed


# --- batch == single ---------------------------------------------------------------------
CHANNELS = [Channel.CAMPAIGN_EMAIL, Channel.REP_EMAIL, Channel.SMS, Channel.F2F_CALL,
            Channel.WEBINAR, Channel.MEDICAL_INQUIRY, Channel.SAMPLES]  # fmt: skip
BRANDS = [None, "ZENTROVA", "OTHER"]
ZONES = [None, "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata", "Not/AZone"]

times = st.integers(0, 60 * 24 * 40).map(lambda m: AT - dt.timedelta(minutes=m))
records = st.builds(
    lambda seq, ch, pu, state, at, exp, brand: ConsentRecord(
        seq, "hcp_1", ConsentScope(ch, pu, "DE", brand), state, at, at, PROOF,
        at + dt.timedelta(days=exp) if exp and state is ConsentState.GRANTED else None,
    ),
    st.integers(1, 10**6), st.sampled_from([ConsentChannel.EMAIL, ConsentChannel.SMS,
                                            ConsentChannel.F2F_CALL, ConsentChannel.WEBINAR]),
    st.sampled_from(list(Purpose)),
    st.sampled_from([s for s in ConsentState if s is not ConsentState.EXPIRED]),
    times, st.sampled_from([None, 5, 60]), st.sampled_from(BRANDS),
)  # fmt: skip
touch_days = st.builds(
    lambda ago, ch, brand, n, rep, mins, promo: TouchDay(
        (AT - dt.timedelta(days=ago)).date(), ch.value, brand, n, min(rep, n), mins if rep else 0.0,
        min(promo, n),
    ),
    st.integers(-1, 40), st.sampled_from(CHANNELS), st.sampled_from(BRANDS),
    st.integers(1, 3), st.integers(0, 2), st.floats(0, 120), st.integers(0, 3),
)  # fmt: skip
facts_st = st.builds(
    HcpFacts,
    hcp_id=st.just("hcp_1"),
    market=st.sampled_from(["DE", "DE", None]),
    time_zone=st.sampled_from(ZONES),
    consents=st.lists(records, max_size=5).map(tuple),
    touches=st.lists(touch_days, max_size=6).map(tuple),
    last_touch=st.dictionaries(st.sampled_from([c.value for c in CHANNELS]), times, max_size=3),
    dnc=st.lists(st.builds(DncEntry, st.sampled_from([None, *CHANNELS]), st.just("r")),
                 max_size=2).map(tuple),
    suppressed=st.frozensets(st.sampled_from([ConsentChannel.EMAIL, ConsentChannel.SMS])),
    max_promotional_per_month=st.none() | st.integers(1, 8),
)  # fmt: skip
caps_st = st.lists(
    st.one_of(
        st.builds(Cap, st.just(CapScope.ALL), st.integers(1, 35), st.none(),
                  st.none() | st.integers(0, 6), st.none() | st.floats(0, 300)),
        st.builds(Cap, st.just(CapScope.CHANNEL), st.integers(1, 35),
                  st.sampled_from([c.value for c in CHANNELS]), st.integers(0, 4), st.none()),
        st.builds(Cap, st.just(CapScope.BRAND), st.integers(1, 35),
                  st.sampled_from(["ZENTROVA", "OTHER"]), st.integers(0, 4),
                  st.none() | st.floats(0, 300)),
    ),
    max_size=4,
)  # fmt: skip
clock_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
policy_st = st.builds(
    ContactPolicy,
    market=st.just("DE"),
    time_zone=st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
    caps=caps_st.map(tuple),
    min_gap_hours=st.dictionaries(st.sampled_from(CHANNELS), st.floats(0, 200), max_size=3),
    quiet_hours=st.none() | st.builds(QuietHours, clock_times, clock_times).filter(
        lambda q: q.start != q.end
    ),
    quiet_weekdays=st.frozensets(st.integers(0, 6), max_size=3),
    no_consent_channels=st.frozensets(st.sampled_from(CHANNELS), max_size=2),
)  # fmt: skip
candidate_st = st.builds(
    Candidate,
    channel=st.sampled_from(CHANNELS),
    purpose=st.sampled_from(list(Purpose)),
    at=st.integers(-60 * 24 * 3, 60 * 24 * 3).map(lambda m: AT + dt.timedelta(minutes=m)),
    brand=st.sampled_from(BRANDS),
    role=st.sampled_from([None, *Role]),
)
rows_st = st.lists(st.tuples(st.none() | facts_st, policy_st, candidate_st), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_st)
def test_batch_kernel_agrees_with_the_single_decision(
    rows: list[tuple[HcpFacts | None, ContactPolicy, Candidate]],
) -> None:
    allowed, masks = kernel(encode(rows))
    for i, (facts, policy, candidate) in enumerate(rows):
        single = decide(facts, policy, candidate)
        assert bool(allowed[i]) == single.allowed, (i, single)
        assert int(masks[i]) == single.mask, (reasons_of(int(masks[i])), single.codes)


def test_the_batch_property_reaches_the_hcp_frequency_cap() -> None:
    """The random rows of the property above do produce the new reason (not vacuous)."""
    seen: set[bool] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=rows_st)
    def collect(rows: list[tuple[HcpFacts | None, ContactPolicy, Candidate]]) -> None:
        _, masks = kernel(encode(rows))
        seen.update(bool(int(m) & REASON_BITS[Reason.HCP_FREQUENCY_CAP]) for m in masks)

    collect()
    assert seen == {True, False}


def test_kernel_on_empty_and_cap_free_batches() -> None:
    allowed, masks = kernel(encode([]))
    assert allowed.shape == (0,)
    assert masks.dtype == np.uint32
    allowed, masks = kernel(encode([(_facts(), POLICY, _email())]))
    assert allowed.tolist() == [True]
    assert reasons_of(REASON_BITS[Reason.MIN_GAP] | REASON_BITS[Reason.SUPPRESSED]) == [
        Reason.MIN_GAP,
        Reason.SUPPRESSED,
    ]
