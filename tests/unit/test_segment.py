"""Segment tracking-spec messages to LogEvents: every rule, valid and invalid."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.event import segment
from counterpoint.event.canonical import (
    Action,
    ActorType,
    Channel,
    EventKind,
    Function,
    LogEvent,
)
from counterpoint.event.segment import (
    EMAIL_EVENTS,
    REASON_CODES,
    BatchContext,
    Rejection,
    map_message,
    parse_timestamp,
)

RECEIVED = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
CTX = BatchContext(received_at=RECEIVED, sent_at=None, source="wk_test")
NPI = "1234567893"


def track(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "userId": f"npi:{NPI}",
        "event": "Slide Viewed",
        "timestamp": "2026-04-01T11:00:00Z",
        "properties": {"channel": "f2f_call", "action": "content_viewed"},
    }
    message.update(overrides)
    return message


def props(**extra: Any) -> dict[str, Any]:
    return {"channel": "f2f_call", "action": "content_viewed", **extra}


def run(
    message: object, ctx: BatchContext = CTX, implied_type: str | None = None
) -> LogEvent | Rejection:
    return map_message(message, len(msgspec.json.encode(message)), ctx, implied_type)


def ok(message: object, ctx: BatchContext = CTX, implied_type: str | None = None) -> LogEvent:
    result = run(message, ctx, implied_type)
    assert isinstance(result, LogEvent), result
    return result


def refused(
    message: object, code: str, field: str | None = None, ctx: BatchContext = CTX
) -> Rejection:
    result = run(message, ctx)
    assert isinstance(result, Rejection), result
    assert result.reason_code == code, result
    assert result.field == field, result
    assert result.reason_code in REASON_CODES
    assert result.detail
    assert result.fix
    return result


# --- the message as a whole -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, 1, "text", [], [{"type": "track"}], True, 1.5])
def test_not_an_object(raw: object) -> None:
    refused(raw, "not_an_object")


def test_event_too_large_names_the_limit() -> None:
    result = map_message(track(), 40_000, CTX)
    assert isinstance(result, Rejection)
    assert result.reason_code == "event_too_large"
    assert "32768" in result.detail
    assert "40000" in result.detail
    small = dataclasses.replace(CTX, max_event_bytes=100)
    assert map_message(track(), 100, small).__class__ is LogEvent
    assert map_message(track(), 101, small).__class__ is Rejection


def test_a_complete_track_event() -> None:
    event = ok(
        track(
            anonymousId="a-1",
            properties=props(
                brand="cardiozen",
                content_id="deck-7",
                slide="s-3",
                actor_type="rep",
                actor_id="rep-12",
                market="de",
                duration_s=42,
            ),
            context={"ip": "10.0.0.1", "library": {"name": "analytics-python"}, "screen": {}},
        )
    )
    assert event == LogEvent(
        message_id="m-1",
        kind=EventKind.TRACK,
        subject=f"npi:{NPI}",
        occurred_at=dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC),
        received_at=RECEIVED,
        source="wk_test",
        channel=Channel.F2F_CALL,
        action=Action.CONTENT_VIEWED,
        event_name="Slide Viewed",
        anonymous_id="a-1",
        brand="cardiozen",
        content_id="deck-7",
        slide="s-3",
        actor_type=ActorType.REP,
        actor_id="rep-12",
        function=Function.COMMERCIAL,
        market="DE",
        payload={
            "properties": {"duration_s": 42},
            "context": {"ip": "10.0.0.1", "library": {"name": "analytics-python"}},
        },
        synthetic=False,
    )


def test_fast_builder_makes_the_same_object_as_the_constructor() -> None:
    values: tuple[Any, ...] = (
        "m",
        EventKind.TRACK,
        "crm:A",
        RECEIVED,
        RECEIVED,
        "s",
        Channel.SMS,
        Action.SENT,
        "e",
        None,
        "b",
        "c",
        None,
        ActorType.REP,
        None,
        Function.COMMERCIAL,
        "US",
        {"properties": {}},
        True,
    )
    built = segment._new_event(*values)
    assert built == LogEvent(*values)
    assert type(built) is LogEvent
    builder: object = segment._new_event
    assert builder is segment._UnfrozenLogEvent  # the fast path is in use
    assert [f.name for f in dataclasses.fields(LogEvent)] == list(segment._EVENT_FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.subject = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(built)) == built
    assert copy.deepcopy(built) == built
    assert dataclasses.replace(built, subject="crm:B").subject == "crm:B"
    assert dataclasses.asdict(built)["market"] == "US"


# --- type --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_segment_type_is_accepted(kind: EventKind) -> None:
    message = track(type=kind.value, previousId="crm:OLD", groupId="hco-1", name="Home")
    if kind is EventKind.SCREEN:
        message["properties"] = {}
    if kind is EventKind.PAGE:
        message["properties"] = {"url": "https://x.example/"}
    assert ok(message).kind is kind


def test_type_rejections() -> None:
    refused(track(type="batch"), "unsupported_type", "type")
    refused(track(type=3), "invalid_field", "type")
    message = track()
    del message["type"]
    refused(message, "unsupported_type", "type")


def test_implied_type_applies_only_when_the_body_has_none() -> None:
    message = track()
    del message["type"]
    assert ok(message, implied_type="track").kind is EventKind.TRACK
    assert ok(track(type="identify"), implied_type="track").kind is EventKind.IDENTIFY
    assert ok(track(type="Track")).kind is EventKind.TRACK


# --- messageId ---------------------------------------------------------------------------------


def test_message_id_is_kept_or_generated() -> None:
    assert ok(track(messageId="  abc  ")).message_id == "abc"
    message = track()
    del message["messageId"]
    generated = ok(message).message_id
    assert generated.startswith("gen-")
    assert len(generated) == 4 + 32
    assert ok(message).message_id != generated
    assert ok(track(messageId=None)).message_id.startswith("gen-")
    assert ok(track(messageId=" ")).message_id.startswith("gen-")
    assert ok(track(messageId="x" * 200)).message_id == "x" * 200


def test_message_id_rejections() -> None:
    result = refused(track(messageId="x" * 201), "invalid_field", "messageId")
    assert "201" in result.detail
    refused(track(messageId=12), "invalid_field", "messageId")
    refused(track(messageId={"a": 1}), "invalid_field", "messageId")


# --- identity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "subject"),
    [
        (f"npi:{NPI}", f"npi:{NPI}"),
        (NPI, f"npi:{NPI}"),
        (int(NPI), f"npi:{NPI}"),
        (float(NPI), f"npi:{NPI}"),
        (" Jane.Doe@Clinic.org ", "email:jane.doe@clinic.org"),
        ("+14155550100", "phone:+14155550100"),
        ("CRM:A-1", "crm:A-1"),
        ("A-1", "crm:A-1"),
        (42, "crm:42"),
        ("national:fr-810001234567", "national:FR-810001234567"),
    ],
)
def test_user_id_forms(user_id: object, subject: str) -> None:
    event = ok(track(userId=user_id))
    assert event.subject == subject
    assert event.anonymous_id is None


@pytest.mark.parametrize(
    "user_id", ["1234567890", "npi:123", "email:not-an-address", "a b", "x" * 300]
)
def test_invalid_user_id_gives_the_fix(user_id: str) -> None:
    result = refused(track(userId=user_id), "invalid_user_id", "userId")
    assert "userId" in result.detail


def test_invalid_npi_names_the_value_and_the_check_digit() -> None:
    result = refused(track(userId="1234567890"), "invalid_user_id", "userId")
    assert "1234567890" in result.detail
    assert "Luhn" in result.fix


@pytest.mark.parametrize("user_id", [True, [NPI], {"npi": NPI}, 1.5, float("inf")])
def test_user_id_of_the_wrong_type(user_id: object) -> None:
    refused(track(userId=user_id), "invalid_field", "userId")


def test_anonymous_only() -> None:
    message = track(anonymousId="  3f2c-9a  ")
    del message["userId"]
    event = ok(message)
    assert event.subject == "anon:3f2c-9a"
    assert event.anonymous_id == "3f2c-9a"
    assert ok(track(userId=None, anonymousId="a b")).subject == "anon:a b"
    assert ok(track(userId="", anonymousId="x" * 200)).subject == "anon:" + "x" * 200


def test_user_and_anonymous_ids_are_linked() -> None:
    event = ok(track(anonymousId="3f2c"))
    assert event.subject == f"npi:{NPI}"
    assert event.anonymous_id == "3f2c"


def test_identity_rejections() -> None:
    message = track()
    del message["userId"]
    refused(message, "missing_identity")
    refused(track(userId=None, anonymousId=" "), "missing_identity")
    refused(track(anonymousId="x" * 201), "invalid_field", "anonymousId")
    refused(track(anonymousId=7), "invalid_field", "anonymousId")


def test_alias() -> None:
    alias = {"type": "alias", "messageId": "al-1", "userId": f"npi:{NPI}", "anonymousId": "a-9"}
    for previous, key in [
        ("crm:A-1", "crm:A-1"),
        ("jane@clinic.org", "email:jane@clinic.org"),
        ("anon:3f2c", "anon:3f2c"),
        ("anon:has space", "anon:has space"),
        ("3f2c 9a", "anon:3f2c 9a"),
        ("1234567890", "anon:1234567890"),
    ]:
        event = ok(alias | {"previousId": previous})
        assert event.subject == f"npi:{NPI}"
        assert event.payload == {"previous_id": key}
        assert event.channel is None
        assert event.action is None
    refused(alias, "invalid_field", "previousId")
    refused(alias | {"previousId": ["x"]}, "invalid_field", "previousId")
    refused(alias | {"previousId": "x" * 300}, "invalid_field", "previousId")
    refused(
        {"type": "alias", "previousId": "crm:A", "anonymousId": "a"}, "missing_identity", "userId"
    )


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-04-01T11:00:00Z", dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)),
        ("2026-04-01T11:00:00.250Z", dt.datetime(2026, 4, 1, 11, 0, 0, 250000, tzinfo=dt.UTC)),
        ("2026-04-01T13:00:00+02:00", dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)),
        ("2026-04-01T06:00:00-05:00", dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)),
        ("2026-04-01T11:00:00", dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)),
        ("2026-04-01T11:00:00+00:00", dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)),
    ],
)
def test_timestamp_forms(stamp: str, expected: dt.datetime) -> None:
    occurred = ok(track(timestamp=stamp)).occurred_at
    assert occurred == expected
    assert occurred.tzinfo is dt.UTC


def test_timestamp_fallbacks() -> None:
    message = track(originalTimestamp="2026-04-01T10:00:00Z")
    del message["timestamp"]
    assert ok(message).occurred_at == dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC)
    del message["originalTimestamp"]
    assert ok(message).occurred_at == RECEIVED
    both = track(originalTimestamp="2026-04-01T10:00:00Z")
    assert ok(both).occurred_at == dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC)


def test_clock_skew_correction_shifts_back_a_fast_client_clock() -> None:
    # The device clock is 10 minutes ahead of the server: it says the event happened at
    # 12:05 and the batch was sent at 12:10, but the server received it at 12:00.
    ctx = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 12, 10, tzinfo=dt.UTC))
    event = ok(track(timestamp="2026-04-01T12:05:00Z"), ctx)
    assert event.occurred_at == dt.datetime(2026, 4, 1, 11, 55, tzinfo=dt.UTC)
    assert event.received_at == RECEIVED


def test_clock_skew_correction_for_a_slow_clock_and_offsets() -> None:
    ctx = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 13, 30, tzinfo=dt.UTC))
    # received 12:00 - (sent 13:30 - event 13:00 in +02:00 → 11:00 UTC) = 09:30
    event = ok(track(timestamp="2026-04-01T13:00:00+02:00"), ctx)
    assert event.occurred_at == dt.datetime(2026, 4, 1, 9, 30, tzinfo=dt.UTC)
    slow = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 11, 0, tzinfo=dt.UTC))
    assert ok(track(timestamp="2026-04-01T10:59:00Z"), slow).occurred_at == RECEIVED - dt.timedelta(
        minutes=1
    )


def test_message_level_sent_at_wins_over_the_batch() -> None:
    ctx = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 12, 10, tzinfo=dt.UTC))
    message = track(timestamp="2026-04-01T12:05:00Z", sentAt="2026-04-01T12:05:30Z")
    assert ok(message, ctx).occurred_at == dt.datetime(2026, 4, 1, 11, 59, 30, tzinfo=dt.UTC)
    refused(track(sentAt="yesterday"), "invalid_timestamp", "sentAt", ctx)


def test_naive_batch_sent_at_is_utc() -> None:
    ctx = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 12, 10))
    event = ok(track(timestamp="2026-04-01T12:05:00Z"), ctx)
    assert event.occurred_at == dt.datetime(2026, 4, 1, 11, 55, tzinfo=dt.UTC)


def test_no_correction_without_a_timestamp() -> None:
    ctx = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 1, 12, 10, tzinfo=dt.UTC))
    message = track()
    del message["timestamp"]
    assert ok(message, ctx).occurred_at == RECEIVED


@pytest.mark.parametrize("stamp", ["yesterday", "2026-13-01T00:00:00Z", "", 1711972800, ["x"]])
def test_invalid_timestamps(stamp: object) -> None:
    refused(track(timestamp=stamp), "invalid_timestamp", "timestamp")
    message = track(originalTimestamp=stamp)
    del message["timestamp"]
    refused(message, "invalid_timestamp", "originalTimestamp")


def test_future_timestamps() -> None:
    assert ok(track(timestamp="2026-04-02T12:00:00Z")).occurred_at == RECEIVED + dt.timedelta(
        days=1
    )
    result = refused(track(timestamp="2026-04-02T12:00:01Z"), "invalid_timestamp", "timestamp")
    assert "future" in result.detail
    strict = dataclasses.replace(CTX, max_future=dt.timedelta(minutes=5))
    refused(track(timestamp="2026-04-01T12:06:00Z"), "invalid_timestamp", "timestamp", strict)
    # The check applies after correction: a clock a day ahead is fine when sentAt says so.
    skewed = dataclasses.replace(CTX, sent_at=dt.datetime(2026, 4, 3, 12, 0, tzinfo=dt.UTC))
    assert ok(track(timestamp="2026-04-03T11:00:00Z"), skewed).occurred_at == dt.datetime(
        2026, 4, 1, 11, 0, tzinfo=dt.UTC
    )


def test_timestamps_out_of_range() -> None:
    refused(track(timestamp="0001-01-01T00:00:00+05:00"), "invalid_timestamp", "timestamp")
    skewed = dataclasses.replace(CTX, sent_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    refused(track(timestamp="0001-01-01T00:00:00Z"), "invalid_timestamp", "timestamp", skewed)


def test_parse_timestamp_for_the_batch_sent_at() -> None:
    assert parse_timestamp("2026-04-01T12:00:00Z") == RECEIVED
    with pytest.raises(ValueError, match="sentAt"):
        parse_timestamp("nope", "sentAt")


# --- track -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "action"), list(EMAIL_EVENTS.items()))
def test_semantic_email_events(name: str, action: Action) -> None:
    event = ok(track(event=name, properties={"campaign_id": "c-1"}))
    assert event.channel is Channel.CAMPAIGN_EMAIL
    assert event.action is action
    assert event.event_name == name
    assert event.function is Function.COMMERCIAL
    assert event.payload["properties"] == {"campaign_id": "c-1"}
    rep = ok(track(event=name, properties={"channel": "rep_email"}))
    assert rep.channel is Channel.REP_EMAIL
    assert rep.action is action


def test_email_event_table() -> None:
    assert EMAIL_EVENTS["Email Marked as Spam"] is Action.UNSUBSCRIBED
    assert EMAIL_EVENTS["Email Link Clicked"] is Action.CLICKED


def test_semantic_email_event_rejections() -> None:
    refused(
        track(event="Email Opened", properties={"channel": "sms"}),
        "invalid_field",
        "properties.channel",
    )
    refused(
        track(event="Email Opened", properties={"channel": "fax"}),
        "unknown_channel",
        "properties.channel",
    )
    refused(
        track(event="Email Opened", properties={"action": "clicked"}),
        "invalid_field",
        "properties.action",
    )
    same = ok(track(event="Email Opened", properties={"action": "opened"}))
    assert same.action is Action.OPENED
    # Names are matched as Segment spells them; a near miss is not magic but gets a hint.
    result = refused(
        track(event="email opened", properties={}), "missing_channel", "properties.channel"
    )
    assert "Email Opened" in result.fix


def test_bounce_type_is_kept() -> None:
    for given_type, kept in [("hard", "hard"), ("Soft", "soft")]:
        event = ok(track(event="Email Bounced", properties={"bounce_type": given_type}))
        assert event.action is Action.BOUNCED
        assert event.payload["properties"] == {"bounce_type": kept}
    refused(
        track(event="Email Bounced", properties={"bounce_type": "bouncy"}),
        "invalid_field",
        "properties.bounce_type",
    )
    refused(
        track(event="Email Bounced", properties={"bounce_type": 1.5}),
        "invalid_field",
        "properties.bounce_type",
    )


def test_other_events_name_channel_and_action() -> None:
    event = ok(
        track(event="Webinar Attended", properties={"channel": "Webinar", "action": "attended"})
    )
    assert (event.channel, event.action) == (Channel.WEBINAR, Action.ATTENDED)
    refused(
        track(event="Webinar Attended", properties={"action": "attended"}),
        "missing_channel",
        "properties.channel",
    )
    refused(
        track(event="Webinar Attended", properties={"channel": "webinar"}),
        "missing_action",
        "properties.action",
    )
    result = refused(
        track(properties={"channel": "carrier_pigeon", "action": "sent"}),
        "unknown_channel",
        "properties.channel",
    )
    assert "f2f_call" in result.fix
    assert "carrier_pigeon" in result.detail
    result = refused(
        track(properties={"channel": "sms", "action": "yelled"}),
        "unknown_action",
        "properties.action",
    )
    assert "content_viewed" in result.fix
    refused(
        track(properties={"channel": 3, "action": "sent"}), "unknown_channel", "properties.channel"
    )
    refused(
        track(properties={"channel": ["sms"], "action": "sent"}),
        "invalid_field",
        "properties.channel",
    )


def test_event_name_rules() -> None:
    assert ok(track(event="  Slide Viewed ")).event_name == "Slide Viewed"
    refused(track(event=None), "missing_event_name", "event")
    refused(track(event="  "), "missing_event_name", "event")
    message = track()
    del message["event"]
    refused(message, "missing_event_name", "event")
    refused(track(event={"a": 1}), "invalid_field", "event")
    refused(track(event="x" * 201), "invalid_field", "event")


# --- page and screen ---------------------------------------------------------------------------


def page(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "page",
        "messageId": "p-1",
        "anonymousId": "3f2c",
        "name": "Dosing",
        "timestamp": "2026-04-01T11:00:00Z",
        "properties": {
            "url": "https://cardiozen.example/dosing?x=1",
            "path": "/dosing",
            "title": "Dosing | Cardiozen",
            "referrer": "https://search.example/",
            "content_id": "page-dosing",
            "brand": "cardiozen",
        },
        "context": {"userAgent": "Mozilla/5.0", "page": {"path": "/dosing"}, "locale": "de-DE"},
    }
    message.update(overrides)
    return message


def test_page() -> None:
    event = ok(page())
    assert event.kind is EventKind.PAGE
    assert event.channel is Channel.WEBSITE
    assert event.action is Action.VISITED
    assert event.event_name == "Dosing"
    assert event.content_id == "page-dosing"
    assert event.brand == "cardiozen"
    assert event.subject == "anon:3f2c"
    assert event.function is Function.COMMERCIAL
    assert event.payload == {
        "properties": {
            "url": "https://cardiozen.example/dosing?x=1",
            "path": "/dosing",
            "title": "Dosing | Cardiozen",
            "referrer": "https://search.example/",
        },
        "context": {"userAgent": "Mozilla/5.0", "page": {"path": "/dosing"}, "locale": "de-DE"},
    }


def test_page_channels_and_extras() -> None:
    assert ok(page(properties={"channel": "hcp_portal"})).channel is Channel.HCP_PORTAL
    assert ok(page(properties={"channel": "website"})).channel is Channel.WEBSITE
    refused(page(properties={"channel": "sms"}), "invalid_field", "properties.channel")
    refused(page(properties={"channel": "moon"}), "unknown_channel", "properties.channel")
    kept = ok(page(properties={"action": "login"}, category="Docs", name=None))
    assert kept.action is Action.VISITED
    assert kept.event_name is None
    assert kept.payload["properties"] == {"action": "login"}
    assert kept.payload["category"] == "Docs"
    refused(page(name=["x"]), "invalid_field", "name")


def test_screen() -> None:
    screen = page(type="screen", properties={}, name="Agenda")
    event = ok(screen)
    assert (event.kind, event.channel, event.action) == (
        EventKind.SCREEN,
        Channel.HCP_PORTAL,
        Action.VISITED,
    )
    assert event.event_name == "Agenda"
    assert ok(screen | {"properties": {"channel": "event_app"}}).channel is Channel.EVENT_APP
    refused(screen | {"properties": {"channel": "website"}}, "invalid_field", "properties.channel")


# --- identify and group ------------------------------------------------------------------------


def test_identify() -> None:
    message = {
        "type": "identify",
        "messageId": "i-1",
        "userId": f"npi:{NPI}",
        "anonymousId": "3f2c",
        "traits": {"email": "jane@clinic.org", "specialty": "cardiology"},
        "timestamp": "2026-04-01T11:00:00Z",
    }
    event = ok(message)
    assert event.kind is EventKind.IDENTIFY
    assert event.subject == f"npi:{NPI}"
    assert event.anonymous_id == "3f2c"
    assert event.payload == {"traits": {"email": "jane@clinic.org", "specialty": "cardiology"}}
    assert event.channel is None
    assert event.action is None
    assert event.function is None
    refused(message | {"traits": ["x"]}, "invalid_field", "traits")
    assert ok(message | {"traits": None}).payload == {"traits": {}}


def test_rudderstack_identify_with_context_traits() -> None:
    # RudderStack's SDKs put identify traits under context.traits and send originalTimestamp
    # and sentAt on every message.
    message = {
        "type": "identify",
        "messageId": "rs-1",
        "userId": "jane.doe@clinic.org",
        "anonymousId": "0c2f-rs",
        "originalTimestamp": "2026-04-01T12:04:00.000Z",
        "sentAt": "2026-04-01T12:05:00.000Z",
        "context": {
            "traits": {"email": "jane.doe@clinic.org", "specialty": "oncology", "market": "DE"},
            "library": {"name": "rudder-sdk-python", "version": "2.1.0"},
        },
        "traits": {"specialty": "haematology"},
    }
    event = ok(message)
    assert event.subject == "email:jane.doe@clinic.org"
    assert event.payload == {
        "traits": {"email": "jane.doe@clinic.org", "specialty": "haematology", "market": "DE"}
    }
    assert event.occurred_at == RECEIVED - dt.timedelta(minutes=1)
    del message["traits"]
    assert ok(message).payload["traits"]["specialty"] == "oncology"
    message["context"] = {"traits": "x"}
    refused(message, "invalid_field", "context.traits")


def test_anonymous_identify_is_accepted() -> None:
    event = ok({"type": "identify", "anonymousId": "a-1", "traits": {"specialty": "gp"}})
    assert event.subject == "anon:a-1"


def test_group() -> None:
    message = {
        "type": "group",
        "userId": f"npi:{NPI}",
        "groupId": "hco-17",
        "traits": {"name": "St Mary", "kind": "hospital"},
        "context": {"traits": {"ignored": True}},
    }
    event = ok(message)
    assert event.kind is EventKind.GROUP
    assert event.payload == {
        "group_id": "hco-17",
        "traits": {"name": "St Mary", "kind": "hospital"},
    }
    assert ok(message | {"groupId": 17}).payload["group_id"] == "17"
    refused(message | {"groupId": None}, "invalid_field", "groupId")
    refused(message | {"groupId": " "}, "invalid_field", "groupId")
    refused(message | {"groupId": {"id": 1}}, "invalid_field", "groupId")
    refused(message | {"groupId": "x" * 201}, "invalid_field", "groupId")


# --- enrichment --------------------------------------------------------------------------------


def test_text_enrichment_types_and_lengths() -> None:
    event = ok(track(properties=props(brand=" cardiozen ", slide=7, content_id="", actor_id=None)))
    assert event.brand == "cardiozen"
    assert event.slide == "7"
    assert event.content_id is None
    assert event.actor_id is None
    for key, limit in [("brand", 100), ("slide", 100), ("content_id", 200), ("actor_id", 200)]:
        assert ok(track(properties=props(**{key: "x" * limit}))) is not None
        refused(
            track(properties=props(**{key: "x" * (limit + 1)})),
            "invalid_field",
            f"properties.{key}",
        )
        refused(track(properties=props(**{key: {"a": 1}})), "invalid_field", f"properties.{key}")
        refused(track(properties=props(**{key: True})), "invalid_field", f"properties.{key}")


@pytest.mark.parametrize("actor", list(ActorType))
def test_actor_types(actor: ActorType) -> None:
    assert ok(track(properties=props(actor_type=actor.value.upper()))).actor_type is actor


def test_actor_type_rejections() -> None:
    result = refused(
        track(properties=props(actor_type="pilot")), "invalid_field", "properties.actor_type"
    )
    assert "msl" in result.fix
    refused(track(properties=props(actor_type=1)), "invalid_field", "properties.actor_type")


def test_function_defaults_and_separation() -> None:
    def function(**properties: Any) -> Function | None:
        return ok(track(properties=props(**properties))).function

    assert function() is Function.COMMERCIAL
    assert function(actor_type="rep") is Function.COMMERCIAL
    assert function(actor_type="msl") is Function.MEDICAL
    assert function(actor_type="medical_affairs") is Function.MEDICAL
    assert function(channel="medical_inquiry", action="inquiry_received") is Function.MEDICAL
    assert function(function="medical") is Function.MEDICAL
    assert function(function="Commercial", actor_type="kam") is Function.COMMERCIAL
    refused(
        track(
            properties=props(
                channel="medical_inquiry", action="inquiry_received", function="commercial"
            )
        ),
        "invalid_field",
        "properties.function",
    )
    refused(
        track(properties=props(actor_type="msl", function="commercial")),
        "invalid_field",
        "properties.function",
    )
    refused(track(properties=props(function="sales")), "invalid_field", "properties.function")


def test_market() -> None:
    assert ok(track(properties=props(market="de"))).market == "DE"
    assert ok(track(properties=props(market=" fr "))).market == "FR"
    assert ok(track(properties=props(market=""))).market is None
    result = refused(track(properties=props(market="UK")), "invalid_field", "properties.market")
    assert "GB" in result.fix
    assert "'UK'" in result.detail
    refused(track(properties=props(market="Germany")), "invalid_field", "properties.market")
    refused(track(properties=props(market=49)), "invalid_field", "properties.market")


def test_synthetic() -> None:
    assert ok(track(properties=props(synthetic=True))).synthetic is True
    assert ok(track(context={"synthetic": True})).synthetic is True
    assert ok(track(context={"synthetic": True}, properties=props(synthetic=False))).synthetic
    assert ok(track(properties=props(synthetic=False))).synthetic is False
    assert ok(track()).synthetic is False
    identify = {"type": "identify", "userId": "crm:A", "traits": {"synthetic": True}}
    assert ok(identify).synthetic is True
    assert ok(identify | {"traits": {}, "context": {"synthetic": True}}).synthetic is True
    refused(track(properties=props(synthetic="true")), "invalid_field", "properties.synthetic")
    refused(track(context={"synthetic": 1}), "invalid_field", "context.synthetic")
    refused(identify | {"traits": {"synthetic": "yes"}}, "invalid_field", "traits.synthetic")
    assert "synthetic" not in ok(track(context={"synthetic": True})).payload["context"]


def test_payload_context_keeps_the_useful_keys() -> None:
    context = {
        "ip": "10.0.0.1",
        "userAgent": "UA",
        "page": {"url": "u"},
        "campaign": {"name": "spring"},
        "library": {"name": "analytics.js"},
        "traits": {"email": "x@y.org"},
        "screen": {"width": 1},
        "network": {"wifi": True},
        "integrations": {},
    }
    kept = ok(track(context=context)).payload["context"]
    assert kept == {k: context[k] for k in ("ip", "userAgent", "page", "campaign", "library")}
    assert ok(track(context=None)).payload["context"] == {}
    refused(track(context="x"), "invalid_field", "context")


def test_properties_must_be_an_object() -> None:
    refused(track(properties=["channel", "sms"]), "invalid_field", "properties")
    refused(track(properties="{}"), "invalid_field", "properties")
    refused(track(properties=None), "missing_channel", "properties.channel")
    assert ok(track(event="Email Sent", properties=None)).payload["properties"] == {}


def test_the_message_is_not_changed() -> None:
    message = track(
        properties=props(brand="b", note="n"),
        context={"ip": "1", "traits": {"a": 1}},
    )
    before = msgspec.json.encode(message)
    ok(message)
    assert msgspec.json.encode(message) == before


# --- never raises ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "track", "Email Opened", NPI, "2026-04-01T11:00:00Z", "de"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
segment_keys = st.sampled_from(
    [
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "event",
        "name",
        "category",
        "properties",
        "traits",
        "context",
        "timestamp",
        "originalTimestamp",
        "sentAt",
    ]
)
property_keys = st.sampled_from(
    [
        "channel",
        "action",
        "brand",
        "content_id",
        "slide",
        "actor_type",
        "actor_id",
        "function",
        "market",
        "synthetic",
        "bounce_type",
        "traits",
        "url",
    ]
)
segment_like = st.dictionaries(
    segment_keys,
    json_values | st.dictionaries(property_keys, json_values, max_size=6),
    max_size=10,
)
code_values = st.sampled_from(
    [c.value for c in Channel]
    + [a.value for a in Action]
    + [a.value for a in ActorType]
    + ["medical", "commercial", "hard", "Soft", "DE", "uk", True, False]
)
typed_track = st.builds(
    lambda kind, name, fields, properties, context: {
        "type": kind,
        "userId": NPI,
        "event": name,
        "timestamp": "2026-04-01T11:00:00Z",
        **fields,
        "properties": properties,
        "context": context,
    },
    st.sampled_from([k.value for k in EventKind] + ["bogus"]),
    st.sampled_from([*EMAIL_EVENTS, "Slide Viewed"]),
    st.dictionaries(segment_keys, json_values, max_size=3),
    st.dictionaries(property_keys, code_values | json_values, max_size=8),
    st.dictionaries(
        st.sampled_from(["synthetic", "traits", "ip", "page"]),
        json_values | st.booleans(),
        max_size=3,
    ),
)
ctx_strategy = st.builds(
    BatchContext,
    received_at=st.just(RECEIVED) | st.datetimes(timezones=st.just(dt.UTC)),
    sent_at=st.none()
    | st.just(RECEIVED)
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.datetimes(),
    source=st.just("wk_prop"),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=json_values | segment_like | typed_track,
    ctx=ctx_strategy,
    implied=st.none() | st.sampled_from(["track", "page", "nope"]),
)
def test_never_raises(raw: object, ctx: BatchContext, implied: str | None) -> None:
    result = map_message(raw, 100, ctx, implied)
    assert isinstance(result, LogEvent | Rejection)
    if isinstance(result, Rejection):
        assert result.reason_code in REASON_CODES
        assert result.detail
        assert result.fix
    else:
        assert result.occurred_at.tzinfo is not None
        assert result.subject
        assert 0 < len(result.message_id) <= 200
        msgspec.json.encode(result.payload)  # stays JSON


@settings(max_examples=200, deadline=None)
@given(raw=typed_track)
def test_decoded_json_never_raises(raw: dict[str, Any]) -> None:
    encoded = msgspec.json.encode(raw)
    result = map_message(msgspec.json.decode(encoded), len(encoded), CTX)
    assert isinstance(result, LogEvent | Rejection)
