"""Signed link tokens: round trip, purpose binding, tampering, forgery and expiry (by the
injected clock), and the links and headers built from them."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterpoint.consent.ledger import ConsentChannel, ConsentScope, Purpose
from counterpoint.consent.links import (
    STOP_KEYWORDS,
    ConsentLinks,
    hash_wording,
    parse_choice,
    preference_changes,
    stop_keyword,
)
from counterpoint.errors import CounterpointError, ValidationFailedError
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.signing import (
    MAX_TOKEN_CHARS,
    ExpiredLinkError,
    InvalidLinkError,
    LinkPurpose,
    LinkSigner,
)

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SECRET = "unit-test-secret-0123456789"
DAY = dt.timedelta(days=1)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=40)
)
claims_strategy = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k not in ("n", "e")),
    st.one_of(json_scalars, st.lists(json_scalars, max_size=4)),
    max_size=6,
)


def _signer(clock: FixedClock | None = None, secret: str = SECRET) -> LinkSigner:
    return LinkSigner(secret, clock or FixedClock(NOW))


@settings(max_examples=200, deadline=None)
@given(claims=claims_strategy, purpose=st.sampled_from(list(LinkPurpose)))
def test_a_token_loads_back_its_claims_for_its_own_purpose_only(
    claims: dict[str, Any], purpose: LinkPurpose
) -> None:
    signer = _signer()
    token = signer.dump(purpose, claims, ttl=DAY)
    loaded = signer.load(purpose, token)
    assert dict(loaded.claims) == claims
    assert loaded.nonce
    assert loaded.expires_at == NOW + DAY
    for other in LinkPurpose:
        if other is not purpose:
            with pytest.raises(InvalidLinkError) as caught:
                signer.load(other, token)
            assert caught.value.field == "token"
            assert caught.value.fix


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0),
    replacement=st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    ),
)
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    signer = _signer()
    token = signer.dump(LinkPurpose.UNSUBSCRIBE, {"h": "hcp_1", "c": "email"}, ttl=DAY)
    i = position % len(token)
    if token[i] == replacement:
        return
    tampered = token[:i] + replacement + token[i + 1 :]
    try:
        loaded = signer.load(LinkPurpose.UNSUBSCRIBE, tampered)
    except InvalidLinkError as exc:
        caught: InvalidLinkError | None = exc
    else:
        caught = None
        # base64 padding bits: a change that decodes to the same bytes is the same token
        assert dict(loaded.claims) == {"h": "hcp_1", "c": "email"}
    if caught is not None:
        assert (caught.status, caught.code, caught.field) == (400, "invalid_link", "token")


def test_each_nonce_is_fresh() -> None:
    signer = _signer()
    nonces = {
        signer.load(LinkPurpose.CONFIRM, signer.dump(LinkPurpose.CONFIRM, {}, ttl=DAY)).nonce
        for _ in range(50)
    }
    assert len(nonces) == 50


def test_a_token_signed_with_another_key_is_refused() -> None:
    forged = _signer(secret="someone-elses-secret").dump(LinkPurpose.CONFIRM, {"h": "x"}, ttl=DAY)
    with pytest.raises(InvalidLinkError):
        _signer().load(LinkPurpose.CONFIRM, forged)
    # negative control: the same token loads with the key it was made with
    assert _signer(secret="someone-elses-secret").load(LinkPurpose.CONFIRM, forged).claims


@pytest.mark.parametrize(
    "token", [None, "", "   ", "abc", "a.b.c", "x" * (MAX_TOKEN_CHARS + 1), "<script>"]
)
def test_garbage_is_invalid_not_a_crash(token: str | None) -> None:
    with pytest.raises(InvalidLinkError):
        _signer().load(LinkPurpose.PREFERENCES, token)


def test_expiry_follows_the_injected_clock() -> None:
    clock = FixedClock(NOW)
    signer = _signer(clock)
    token = signer.dump(LinkPurpose.CONFIRM, {"h": "hcp_1"}, ttl=dt.timedelta(days=7))
    clock.advance(dt.timedelta(days=7) - dt.timedelta(seconds=1))
    assert signer.load(LinkPurpose.CONFIRM, token).claims["h"] == "hcp_1"
    clock.advance(dt.timedelta(seconds=1))
    with pytest.raises(ExpiredLinkError) as caught:
        signer.load(LinkPurpose.CONFIRM, token)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "expired_link",
        "token",
    )


def test_a_token_from_the_future_is_refused() -> None:
    later = _signer(FixedClock(NOW + DAY)).dump(LinkPurpose.CONFIRM, {}, ttl=DAY * 30)
    with pytest.raises(InvalidLinkError):
        _signer(FixedClock(NOW)).load(LinkPurpose.CONFIRM, later)


def test_reserved_claims_and_bad_lifetimes_are_refused_when_building() -> None:
    with pytest.raises(ValueError, match="reserved"):
        _signer().dump(LinkPurpose.CONFIRM, {"n": "mine"}, ttl=DAY)
    with pytest.raises(ValueError, match="positive"):
        _signer().dump(LinkPurpose.CONFIRM, {}, ttl=dt.timedelta(0))
    with pytest.raises(ValueError, match="empty"):
        LinkSigner("", FixedClock(NOW))


# --- links --------------------------------------------------------------------------------


def _links(clock: FixedClock | None = None) -> ConsentLinks:
    return ConsentLinks(_signer(clock), "https://consent.example.org/", clock or FixedClock(NOW))


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_links_point_at_the_public_base_url_and_read_back() -> None:
    links = _links()
    scope = ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE", "ZENTROVA")
    confirm = links.confirmation(
        "hcp_1", scope, wording_version="v3", wording_hash=hash_wording("text"), wording="text"
    )
    assert confirm.url.startswith("https://consent.example.org/consent/confirm?token=")
    assert confirm.expires_at == NOW + dt.timedelta(days=7)
    read = links.read_confirmation(_token(confirm.url))
    assert (read.hcp_id, read.scope, read.wording_version, read.wording) == (
        "hcp_1",
        scope,
        "v3",
        "text",
    )
    assert read.nonce == confirm.nonce

    unsub = links.unsubscribe(
        "hcp_1", ConsentChannel.SMS, purposes=[Purpose.PROMOTIONAL], market="FR"
    )
    assert unsub.url.startswith("https://consent.example.org/consent/unsubscribe?token=")
    got = links.read_unsubscribe(unsub.token)
    assert (got.hcp_id, got.channel, got.purposes, got.market) == (
        "hcp_1",
        ConsentChannel.SMS,
        (Purpose.PROMOTIONAL,),
        "FR",
    )
    assert (
        links.read_unsubscribe(links.unsubscribe("h", ConsentChannel.EMAIL).token).purposes is None
    )

    prefs = links.preferences("hcp_1", market="DE")
    assert prefs.url.startswith("https://consent.example.org/consent/preferences?token=")
    assert links.read_preferences(prefs.token).market == "DE"


def test_a_link_of_one_kind_is_not_accepted_as_another() -> None:
    links = _links()
    unsub = links.unsubscribe("hcp_1", ConsentChannel.EMAIL)
    with pytest.raises(InvalidLinkError):
        links.read_confirmation(unsub.token)
    with pytest.raises(InvalidLinkError):
        links.read_preferences(unsub.token)
    prefs = links.preferences("hcp_1")
    with pytest.raises(InvalidLinkError):
        links.read_unsubscribe(prefs.token)


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    links = _links()
    headers = links.list_unsubscribe_headers("hcp_1", purposes=[Purpose.PROMOTIONAL])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith("<https://consent.example.org/consent/unsubscribe?token=")
    assert value.endswith(">")
    claims = links.read_unsubscribe(_token(value[1:-1]))
    assert claims.channel is ConsentChannel.EMAIL
    assert claims.purposes == (Purpose.PROMOTIONAL,)


def test_a_wording_too_long_for_a_link_is_refused() -> None:
    import secrets

    scope = ConsentScope(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, "DE")
    wording = secrets.token_hex(3000)  # incompressible
    with pytest.raises(ValidationFailedError) as caught:
        _links().confirmation("h", scope, wording_version="v", wording_hash=None, wording=wording)
    assert caught.value.field == "wording"


# --- pure helpers -------------------------------------------------------------------------


@given(
    word=st.sampled_from(sorted(STOP_KEYWORDS)),
    case=st.sampled_from([str.upper, str.lower, str.title]),
    pad=st.sampled_from(["", " ", "\n", "\t ", "  \r\n"]),
)
def test_stop_keywords_are_the_whole_message_in_any_case(word: str, case: Any, pad: str) -> None:
    assert stop_keyword(pad + case(word) + pad) == word


@given(text=st.text(max_size=30))
def test_other_texts_are_not_keywords(text: str) -> None:
    if text.strip().upper() not in STOP_KEYWORDS:
        assert stop_keyword(text) is None


@pytest.mark.parametrize("text", ["STOP please", "please stop", "S T O P", "STOP!", "STOPP", ""])
def test_near_misses_are_not_keywords(text: str) -> None:
    assert stop_keyword(text) is None


def test_choices_parse_or_name_the_field() -> None:
    assert parse_choice("email:promotional", field="consent") == (
        ConsentChannel.EMAIL,
        Purpose.PROMOTIONAL,
    )
    for bad in ("email", "email:", "fax:promotional", "<script>:x", "email:promotional:x"):
        with pytest.raises(CounterpointError) as caught:
            parse_choice(bad, field="consent")
        assert caught.value.field == "consent"


KEYS = [(c, p) for c in ConsentChannel for p in Purpose]


@settings(max_examples=300)
@given(
    current=st.dictionaries(st.sampled_from(KEYS), st.booleans()),
    shown=st.sets(st.sampled_from(KEYS)),
    chosen=st.sets(st.sampled_from(KEYS)),
)
def test_the_preference_form_changes_exactly_what_differs(
    current: dict[tuple[ConsentChannel, Purpose], bool],
    shown: set[tuple[ConsentChannel, Purpose]],
    chosen: set[tuple[ConsentChannel, Purpose]],
) -> None:
    chosen &= shown  # the service refuses ticks the page did not show
    grant, revoke = preference_changes(current, shown, chosen)
    assert len(set(grant)) == len(grant)
    assert len(set(revoke)) == len(revoke)
    assert not set(grant) & set(revoke)
    assert all(not current.get(k, False) for k in grant)  # never re-grants: only changes
    assert all(current.get(k, False) for k in revoke)
    after = {k: current.get(k, False) for k in KEYS}
    after.update(dict.fromkeys(grant, True))
    after.update(dict.fromkeys(revoke, False))
    for key in KEYS:
        expected = key in chosen if key in shown else current.get(key, False)
        assert after[key] == expected, key
