"""The profile projector: identity stitching, guards, attribute precedence, engagement
features and replay, on both deployments. Events go through the real Segment mapping
(``IngestService.prepare``) and the real log; the projector is driven with ``catch_up``."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from counterpoint.container import Container
from counterpoint.event.service import SegmentCall
from counterpoint.kit.clock import FixedClock
from counterpoint.profile.merge import AttributeValue
from counterpoint.profile.repository import ProfileRepository

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
NPI_A = "1234567893"
NPI_B = "1245319599"
NPI_C = "1111111112"


def _stamp(delta: dt.timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


def _ago(days: float = 0, hours: float = 0) -> str:
    return _stamp(dt.timedelta(days=days, hours=hours))


class Sender:
    """Maps Segment messages with the real ingest service and appends them to the log."""

    def __init__(self, container: Container) -> None:
        self.container = container
        key = container.write_keys.create("projector tests")[1]
        self.auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def send(self, *messages: dict[str, Any]) -> int:
        body = json.dumps({"batch": list(messages)}).encode()
        _, events, quarantine, errors = self.container.ingest.prepare(
            SegmentCall(body, None, self.auth, None)
        )
        assert errors == [], errors
        assert quarantine == []
        self.container.log.append(events)
        return self.container.projector.catch_up()


@pytest.fixture
def sender(container: Container) -> Sender:
    return Sender(container)


def _identify(message_id: str, user_id: str, when: str, **traits: object) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id,
        "userId": user_id,
        "traits": traits,
        "timestamp": when,
    }


def _track(
    message_id: str, when: str, channel: str, action: str, user: str = f"npi:{NPI_A}", **props: Any
) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": message_id,
        "userId": user,
        "event": f"{channel} {action}",
        "timestamp": when,
        "properties": {"channel": channel, "action": action, **props},
    }


def _page(message_id: str, anonymous_id: str, when: str, name: str) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": message_id,
        "anonymousId": anonymous_id,
        "name": name,
        "timestamp": when,
    }


def _keys(profile: dict[str, Any]) -> set[str]:
    return {f"{i['type']}:{i['value']}" for i in profile["identifiers"]}


def _timeline(container: Container, hcp_id: str) -> list[str]:
    _, items = container.profiles.timeline(
        hcp_id, channel=None, brand=None, function=None, before=None, limit=500
    )
    return [i.event.message_id for i in items]


def _master_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _without_times(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in ("created_at", "updated_at")}


# --- identities -------------------------------------------------------------------------


def test_identify_creates_one_profile_with_identifiers_and_attributes(
    container: Container, sender: Sender
) -> None:
    applied = sender.send(
        _identify(
            "i1",
            f"npi:{NPI_A}",
            _ago(days=1),
            email="Jane.Doe@Clinic.org",
            first_name="Jane",
            last_name="Doe",
            specialty="cardiology",
            title="Dr",
        )
    )
    assert applied == 1
    profile = container.profiles.get_by_identifier(f"npi:{NPI_A}")
    assert _keys(profile) == {f"npi:{NPI_A}", "email:jane.doe@clinic.org"}
    assert (profile["first_name"], profile["last_name"], profile["specialty"]) == (
        "Jane",
        "Doe",
        "cardiology",
    )
    assert profile["title"] == "Dr"
    assert profile["kind"] == "hcp"
    assert profile["master_data"] is False
    assert profile["merges"] == []
    by_email = container.profiles.get_by_identifier("email:jane.doe@clinic.org")
    assert by_email["id"] == profile["id"]
    assert container.profiles.get_hcp(profile["id"])["id"] == profile["id"]


def test_anonymous_visits_join_the_hcp_when_identified(
    container: Container, sender: Sender
) -> None:
    sender.send(_identify("i1", f"npi:{NPI_A}", _ago(days=3), first_name="Jane"))
    sender.send(_page("p1", "anon-1", _ago(days=2), "Home"))
    sender.send(_page("p2", "anon-1", _ago(days=2, hours=-1), "Dosing"))
    anonymous = container.profiles.get_by_identifier("anon:anon-1")
    hcp = container.profiles.get_by_identifier(f"npi:{NPI_A}")
    assert anonymous["kind"] == "anonymous"
    assert anonymous["id"] != hcp["id"]
    assert _timeline(container, hcp["id"]) == ["i1"]

    sender.send(
        {
            "type": "identify",
            "messageId": "i2",
            "userId": f"npi:{NPI_A}",
            "anonymousId": "anon-1",
            "timestamp": _ago(days=1),
        }
    )
    joined = container.profiles.get_by_identifier("anon:anon-1")
    assert joined["id"] == container.profiles.get_by_identifier(f"npi:{NPI_A}")["id"]
    assert joined["kind"] == "hcp"
    assert _keys(joined) == {f"npi:{NPI_A}", "anon:anon-1"}
    assert joined["first_name"] == "Jane"
    assert _timeline(container, joined["id"]) == ["i2", "p2", "p1", "i1"]
    assert joined["engagement"]["channels"]["website"]["events"]["7d"] == 2
    # Both profiles existed: one absorbed the other, and both old ids lead to the survivor.
    absorbed = {m["other"] for m in joined["merges"] if m["kind"] == "merge"}
    assert absorbed | {joined["id"]} == {anonymous["id"], hcp["id"]}
    assert len(absorbed) == 1
    for old in (anonymous["id"], hcp["id"]):
        assert container.profiles.get_hcp(old)["id"] == joined["id"]


def test_a_shared_inbox_never_merges_two_hcps(container: Container, sender: Sender) -> None:
    sender.send(
        _identify("i1", f"npi:{NPI_A}", _ago(days=2), email="info@clinic.org", first_name="Ann"),
        _identify("i2", "crm:C-2", _ago(days=1), email="INFO@clinic.org", first_name="Bob"),
    )
    sender.send(_identify("i3", "crm:C-3", _ago(hours=1), email="info@clinic.org"))
    a = container.profiles.get_by_identifier(f"npi:{NPI_A}")
    b = container.profiles.get_by_identifier("crm:C-2")
    c = container.profiles.get_by_identifier("crm:C-3")
    assert len({a["id"], b["id"], c["id"]}) == 3
    for profile in (a, b, c):
        assert "email:info@clinic.org" not in _keys(profile)
    assert (a["first_name"], b["first_name"]) == ("Ann", "Bob")
    inbox = container.profiles.find_by_identifier("email:info@clinic.org")
    assert inbox not in {a["id"], b["id"], c["id"]}


def test_two_npis_sharing_an_email_stay_apart(container: Container, sender: Sender) -> None:
    sender.send(_identify("i1", f"npi:{NPI_A}", _ago(days=2), email="team@clinic.org"))
    sender.send(_identify("i2", f"npi:{NPI_B}", _ago(days=1), email="team@clinic.org"))
    sender.send(
        {
            "type": "alias",
            "messageId": "al",
            "userId": f"npi:{NPI_B}",
            "previousId": f"npi:{NPI_A}",
            "timestamp": _ago(hours=1),
        }
    )
    a = container.profiles.get_by_identifier(f"npi:{NPI_A}")
    b = container.profiles.get_by_identifier(f"npi:{NPI_B}")
    assert a["id"] != b["id"]
    assert sum(1 for i in a["identifiers"] if i["type"] == "npi") == 1
    assert sum(1 for i in b["identifiers"] if i["type"] == "npi") == 1
    # The e-mail stays with the NPI it was seen with first.
    assert "email:team@clinic.org" in _keys(a)
    assert "email:team@clinic.org" not in _keys(b)


# --- attributes -------------------------------------------------------------------------


def test_master_data_wins_non_empty_attributes_over_identify(
    container: Container, sender: Sender, tmp_path: Path
) -> None:
    sender.send(
        _identify(
            "i-before",
            f"npi:{NPI_A}",
            _ago(days=5),
            first_name="Janet",
            specialty="oncology",
            title="Prof",
            persona="skeptic",
        )
    )
    path = _master_csv(
        tmp_path / "hcps.csv",
        [
            {
                "npi": NPI_A,
                "email": "jane.doe@clinic.org",
                "first_name": "Jane",
                "last_name": "Doe",
                "title": "",
                "specialty": "cardiology",
                "market": "US",
            }
        ],
    )
    report = container.profiles.import_master_data(path, "hcps")
    assert (report.imported, report.rejected) == (1, [])
    # A later identify (after the import) states other values: master data still wins.
    sender.send(
        _identify(
            "i-after",
            f"npi:{NPI_A}",
            _ago(hours=-2),
            first_name="Jenny",
            last_name="Smith",
            specialty="neurology",
            market="DE",
        )
    )
    profile = container.profiles.get_by_identifier(f"npi:{NPI_A}")
    assert profile["master_data"] is True
    assert (profile["first_name"], profile["last_name"]) == ("Jane", "Doe")
    assert profile["specialty"] == "cardiology"
    assert profile["market"] == "US"
    # Master data left the title empty: the identify's value fills it.
    assert profile["title"] == "Prof"
    assert profile["persona"] == "skeptic"
    assert _keys(profile) == {f"npi:{NPI_A}", "email:jane.doe@clinic.org"}
    assert (
        container.profiles.get_by_identifier("email:jane.doe@clinic.org")["id"] == (profile["id"])
    )


# --- engagement -------------------------------------------------------------------------


def _engagement_events() -> list[dict[str, Any]]:
    return [
        _track("e1", _ago(days=2), "campaign_email", "sent", brand="ZENTROVA"),
        _track(
            "e2", _ago(days=2), "campaign_email", "opened", brand="ZENTROVA", content_id="CNT-1"
        ),
        _track(
            "e3", _ago(days=1), "campaign_email", "clicked", brand="ZENTROVA", content_id="CNT-1"
        ),
        _track("e4", _ago(days=10), "f2f_call", "call_completed", actor_type="rep"),
        _track("e5", _ago(days=40), "campaign_email", "opened", content_id="CNT-2", brand="B2"),
        _track("e6", _ago(days=5), "webinar", "attended", brand="ZENTROVA"),
        _track("e7", _ago(days=100), "website", "visited"),
    ]


def test_engagement_features_after_a_handful_of_events(
    container: Container, sender: Sender
) -> None:
    events = _engagement_events()
    sender.send(*events[:3])
    sender.send(*events[3:])
    e = container.profiles.get_by_identifier(f"npi:{NPI_A}")["engagement"]
    assert e["events"] == {"7d": 4, "30d": 5, "90d": 6}
    assert e["touches"] == {"7d": 2, "30d": 3, "90d": 3}
    assert e["preferred_channel"] == "campaign_email"
    email = e["channels"]["campaign_email"]
    assert email["events"] == {"7d": 3, "30d": 3, "90d": 4}
    assert email["touches"] == {"7d": 1, "30d": 1, "90d": 1}
    assert email["responses_90d"] == 3
    assert email["response_rate_90d"] == 3.0
    assert email["last"] == {"at": NOW - dt.timedelta(days=1), "action": "clicked"}
    call = e["channels"]["f2f_call"]
    assert call["events"] == {"7d": 0, "30d": 1, "90d": 1}
    assert call["response_rate_90d"] == 0.0
    assert call["last"] == {"at": NOW - dt.timedelta(days=10), "action": "call_completed"}
    webinar = e["channels"]["webinar"]
    assert (webinar["responses_90d"], webinar["response_rate_90d"]) == (1, 1.0)
    # Older than 90 days: no counts, but the last contact on the channel is kept.
    assert e["channels"]["website"] == {
        "last": {"at": NOW - dt.timedelta(days=100), "action": "visited"}
    }
    assert [(c["content_id"], c["count"]) for c in e["content"]] == [("CNT-1", 2), ("CNT-2", 1)]
    assert [c["brand"] for c in e["content"]] == ["ZENTROVA", "B2"]


def test_engagement_lists_the_brands_of_engaged_content(
    container: Container, sender: Sender
) -> None:
    sender.send(*_engagement_events())
    e = container.profiles.get_by_identifier(f"npi:{NPI_A}")["engagement"]
    assert [c["brand"] for c in e["content"]] == ["ZENTROVA", "B2"]
    assert e["brands"] == ["B2", "ZENTROVA"]


def test_windows_slide_with_the_clock(
    container: Container, sender: Sender, clock: FixedClock
) -> None:
    sender.send(*_engagement_events())
    clock.advance(dt.timedelta(days=6))
    e = container.profiles.get_by_identifier(f"npi:{NPI_A}")["engagement"]
    # e1/e2 are 8 days old now, e3 7 days, e6 11 days: none left in the 7-day window.
    assert e["events"]["7d"] == 0
    assert e["events"]["30d"] == 5


def test_a_late_older_event_does_not_replace_the_last_contact(
    container: Container, sender: Sender
) -> None:
    sender.send(_track("new", _ago(days=1), "sms", "sent"))
    sender.send(_track("old", _ago(days=20), "sms", "delivered"))
    last = container.profiles.get_by_identifier(f"npi:{NPI_A}")["engagement"]["channels"]["sms"]
    assert last["last"] == {"at": NOW - dt.timedelta(days=1), "action": "sent"}
    assert last["events"]["30d"] == 2


# --- replay -----------------------------------------------------------------------------


def _scenario(sender: Sender, tmp_path: Path) -> None:
    sender.send(
        _identify(
            "i1",
            f"npi:{NPI_A}",
            _ago(days=6),
            email="jane.doe@clinic.org",
            first_name="Janet",
            specialty="oncology",
            segments=["early"],
        )
    )
    sender.send(*_engagement_events()[:4])
    sender.container.profiles.import_master_data(
        _master_csv(
            tmp_path / "hcps.csv",
            [
                {
                    "npi": NPI_A,
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "specialty": "cardiology",
                    "market": "US",
                    "segments": "kol;high",
                },
                {
                    "npi": NPI_C,
                    "first_name": "Carl",
                    "last_name": "Cole",
                    "specialty": "neurology",
                    "market": "US",
                    "segments": "",
                },
            ],
        ),
        "hcps",
    )
    sender.send(_identify("i2", f"npi:{NPI_B}", _ago(days=2), email="jane.doe@clinic.org"))
    sender.send(*_engagement_events()[4:])
    sender.send(
        _identify("i3", f"npi:{NPI_C}", _ago(days=1), email="info@practice.org"),
        _identify("i4", "crm:X-9", _ago(days=1), email="info@practice.org"),
        _track("c1", _ago(days=3), "rep_email", "sent", user=f"npi:{NPI_C}"),
        _track("c2", _ago(days=3), "rep_email", "replied", user="crm:X-9"),
    )


def _snapshot(container: Container) -> dict[str, dict[str, Any]]:
    return {
        key: _without_times(container.profiles.get_by_identifier(key))
        for key in (f"npi:{NPI_A}", f"npi:{NPI_B}", f"npi:{NPI_C}", "crm:X-9")
    }


def test_rebuild_gives_the_same_hcp_360_as_incremental_processing(
    container: Container, sender: Sender, tmp_path: Path
) -> None:
    _scenario(sender, tmp_path)
    incremental = _snapshot(container)
    assert incremental[f"npi:{NPI_A}"]["first_name"] == "Jane"
    assert incremental[f"npi:{NPI_A}"]["segments"] == ["early", "high", "kol"]
    assert incremental[f"npi:{NPI_A}"]["engagement"]["events"]["90d"] == 6
    assert len({p["id"] for p in incremental.values()}) == 4

    applied = container.projector.rebuild()
    assert applied == container.log.count()
    assert _snapshot(container) == incremental

    # A second rebuild changes nothing either (and counts are not doubled).
    container.projector.rebuild()
    assert _snapshot(container) == incremental


def test_catch_up_twice_applies_nothing_the_second_time(
    container: Container, sender: Sender
) -> None:
    body = json.dumps({"batch": _engagement_events()}).encode()
    _, events, _, _ = container.ingest.prepare(SegmentCall(body, None, sender.auth, None))
    container.log.append(events)
    position = container.projector.position()
    assert container.projector.catch_up() == len(events)
    assert container.projector.position() == container.log.head() > position
    first = _without_times(container.profiles.get_by_identifier(f"npi:{NPI_A}"))
    assert container.projector.catch_up() == 0
    assert _without_times(container.profiles.get_by_identifier(f"npi:{NPI_A}")) == first
    assert first["engagement"]["events"]["90d"] == 6


def test_rebuild_keeps_the_id_of_an_hcp_first_seen_anonymously(
    container: Container, sender: Sender
) -> None:
    sender.send(_page("p1", "anon-9", _ago(days=2), "Home"))
    sender.send(
        {
            "type": "identify",
            "messageId": "i1",
            "userId": f"npi:{NPI_A}",
            "anonymousId": "anon-9",
            "traits": {"first_name": "Jane"},
            "timestamp": _ago(days=1),
        }
    )
    before = _without_times(container.profiles.get_by_identifier(f"npi:{NPI_A}"))
    container.projector.rebuild()
    after = _without_times(container.profiles.get_by_identifier(f"npi:{NPI_A}"))
    assert after["id"] == before["id"]
    assert after == before


def test_attribute_statements_read_back_as_written(container: Container) -> None:
    """The attribute store's fast paths (through the driver, converted by hand) give back
    exactly what was stated: JSON values of every shape and aware UTC times, on both
    deployments; a later statement replaces an earlier one, an older one does not."""
    at = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.UTC)
    values: list[Any] = [
        "Cardiology",
        7,
        2.5,
        True,
        None,
        ["a", "b"],
        {"ZENTROVA": "adopter", "nested": {"ü": [1, None]}},
    ]
    rows = [
        {
            "identifier": "npi:1234567893",
            "name": f"a{i}",
            "source": "identify",
            "value": value,
            "observed_at": at + dt.timedelta(hours=i),
            "seq": 10,
        }
        for i, value in enumerate(values)
    ]
    with container.sessions.begin() as session:
        repo = ProfileRepository(session)
        repo.add_attribute_observations(rows)
        repo.add_attribute_observations(
            [
                {**rows[0], "value": "Oncology", "seq": 11},  # later: replaces
                {**rows[1], "value": 99, "seq": 9},  # older: ignored
            ]
        )
    with container.sessions() as session:
        found = ProfileRepository(session).attribute_values(["npi:1234567893", "npi:none"])
    assert list(found) == ["npi:1234567893"]
    got = sorted(found["npi:1234567893"], key=lambda v: v.name)
    expected = [
        AttributeValue(r["name"], r["value"], r["observed_at"], r["seq"], "identify") for r in rows
    ]
    expected[0] = AttributeValue("a0", "Oncology", at, 11, "identify")
    assert got == expected
    assert all(v.observed_at.utcoffset() == dt.timedelta(0) for v in got)


def test_identity_evidence_reads_back_as_written_and_repeats_are_kept_once(
    container: Container,
) -> None:
    """Observations go through the driver (JSON text, hand-converted times): the component
    walk gives back exactly what was stored, on both deployments, and a repeated fingerprint
    (the same evidence again, as in a replay) keeps one row: the earliest sighting."""
    at = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.UTC)
    keys = [f"npi:{NPI_A}", "email:jane@clinic.example", "anon:a-1"]
    first = ("f-1", keys, at, 10, "identify")
    with container.sessions.begin() as session:
        ProfileRepository(session).add_observations([first, ("f-2", ["anon:a-2"], at, 11, "page")])
    with container.sessions.begin() as session:
        repeat = ("f-1", keys, at + dt.timedelta(days=1), 99, "alias")
        ProfileRepository(session).add_observations([repeat])
    with container.sessions() as session:
        found, observations = ProfileRepository(session).component([f"npi:{NPI_A}"])
    assert found == set(keys)
    assert [
        (sorted(i.key for i in o.identifiers), o.observed_at, o.seq, o.source) for o in observations
    ] == [(sorted(keys), at, 10, "identify")]
    assert observations[0].observed_at.utcoffset() == dt.timedelta(0)

    earlier = at - dt.timedelta(microseconds=1)
    same_time = ("f-1", keys, at, 9, "identify")
    with container.sessions.begin() as session:
        ProfileRepository(session).add_observations([same_time, ("f-1", keys, earlier, 50, "x")])
    with container.sessions() as session:
        _, observations = ProfileRepository(session).component([f"npi:{NPI_A}"])
    assert [(o.observed_at, o.seq) for o in observations] == [(earlier, 50)]


def _visits_named(user: str, anonymous_id: str, hours: list[int]) -> list[dict[str, Any]]:
    """Page views of a visitor known by name: each names the user and the anonymous id."""
    return [
        {
            "type": "page",
            "messageId": f"named-{h}",
            "userId": user,
            "anonymousId": anonymous_id,
            "name": "Dosing",
            "timestamp": _ago(hours=h),
        }
        for h in hours
    ]


@pytest.mark.parametrize("order", ["oldest first", "newest first", "mixed"])
def test_a_pair_named_by_many_page_views_is_one_piece_of_evidence(
    container: Container, sender: Sender, order: str
) -> None:
    """Every page view of a known visitor states the same link again: it is stored once, as
    its earliest sighting, whatever order the views arrive in, and the visitor's anonymous id
    joins the profile."""
    hours = {"oldest first": [9, 7, 5, 3], "newest first": [3, 5, 7, 9], "mixed": [5, 9, 3, 7]}
    views = _visits_named(f"npi:{NPI_A}", "web-1", hours[order])
    sender.send(*views[:2])
    sender.send(*views[2:])
    with container.sessions() as session:
        found, observations = ProfileRepository(session).component([f"npi:{NPI_A}"])
    assert found == {f"npi:{NPI_A}", "anon:web-1"}
    assert len(observations) == 1
    assert observations[0].observed_at == NOW - dt.timedelta(hours=9)
    assert observations[0].source == "track"  # a page call states the link as track does
    profile = container.profiles.get_by_identifier("anon:web-1")
    assert _keys(profile) == {f"npi:{NPI_A}", "anon:web-1"}
    assert profile["engagement"]["channels"]["website"]["events"]["7d"] == 4
