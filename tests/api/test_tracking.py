"""Open pixel and click redirect through the real app, on both deployments: the events they
append, de-duplication of bursts, and refusal of forged, tampered, expired or foreign links
(no event, never a redirect). "No event" is the log's length, with the valid link (same
harness) as the negative control."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import struct
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from tests.conftest import TEST_ACTOR

from counterpoint.consent.ledger import ConsentChannel
from counterpoint.consent.links import ConsentLinks
from counterpoint.container import Container
from counterpoint.content.render import RenderContext, render
from counterpoint.delivery.tracking import (
    PIXEL_GIF,
    TRACKING_TTL,
    MessageTracker,
    TrackingLinks,
    TrackingRecorder,
    tracking_message_id,
)
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Action, ActorType, Channel, EventKind, Function, LogEvent
from counterpoint.event.log import TimelineQuery
from counterpoint.kit.clock import FixedClock
from counterpoint.kit.signing import LinkPurpose, LinkSigner

NPI = "1234567893"
SUBJECT = f"npi:{NPI}"
STUDY = "https://brand.example/study?utm_source=mail&x=1"
PROBLEM = "application/problem+json"


@pytest.fixture
def hcp_id(client: TestClient, basic: dict[str, str], container: Container) -> str:
    event = {
        "type": "identify",
        "messageId": "id-1",
        "userId": SUBJECT,
        "timestamp": "2026-11-01T08:00:00Z",
        "traits": {"email": "jane.doe@clinic.example", "last_name": "Doe", "market": "DE"},
    }
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic)
    assert response.status_code == 200, response.text
    container.projector.catch_up()
    found = container.profiles.find_by_identifier(SUBJECT)
    assert found is not None
    return found


@pytest.fixture
def links(container: Container) -> TrackingLinks:
    return TrackingLinks.from_settings(container.settings, container.clock)


@pytest.fixture
def tracker(links: TrackingLinks, hcp_id: str) -> MessageTracker:
    return links.for_message(
        outbox_id="out_1", hcp_id=hcp_id, channel="campaign_email", content_id="cnt_brx_1"
    )


def _path(url: str) -> str:
    assert url.startswith("http://127.0.0.1:8000/t/"), url
    return urlsplit(url).path


def _tracked(container: Container) -> list[LogEvent]:
    found = container.log.timeline(TimelineQuery(subjects=[SUBJECT], limit=100))
    return [s.event for s in found if s.event.source == "tracking"]


def _refused(response: Any, code: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "location" not in response.headers
    body = response.json()
    assert (body["code"], body["field"]) == (code, "token")
    assert body["fix"]


# --- the happy paths ----------------------------------------------------------------------


def test_the_open_pixel_is_a_gif_and_records_opened(
    client: TestClient, container: Container, tracker: MessageTracker
) -> None:
    response = client.get(_path(tracker.open_pixel()))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == "no-store"
    assert response.content == PIXEL_GIF
    assert response.content[:6] == b"GIF89a"
    assert struct.unpack("<HH", response.content[6:10]) == (1, 1)
    [event] = _tracked(container)
    assert (event.kind, event.action, event.channel) == (
        EventKind.TRACK,
        Action.OPENED,
        Channel.CAMPAIGN_EMAIL,
    )
    assert (event.subject, event.content_id, event.market) == (SUBJECT, "cnt_brx_1", "DE")
    assert (event.actor_type, event.function) == (ActorType.HCP, Function.COMMERCIAL)
    assert event.payload == {"properties": {"outbox_id": "out_1"}}
    assert event.message_id == tracking_message_id(
        Action.OPENED, "out_1", "", container.clock.now()
    )
    assert event.occurred_at == container.clock.now()


def test_a_click_redirects_to_the_signed_url_and_records_clicked(
    client: TestClient, container: Container, tracker: MessageTracker
) -> None:
    response = client.get(_path(tracker.click(STUDY)), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == STUDY
    assert response.headers["referrer-policy"] == "no-referrer"
    [event] = _tracked(container)
    assert event.action is Action.CLICKED
    assert event.payload == {"properties": {"outbox_id": "out_1", "url": STUDY}}
    assert event.message_id.startswith("track:clicked:out_1:")


def test_a_burst_records_one_event_per_link_and_minute(
    client: TestClient, container: Container, tracker: MessageTracker, clock: FixedClock
) -> None:
    other = "https://brand.example/other"
    for _ in range(3):  # a mail scanner opening everything at once
        assert client.get(_path(tracker.click(STUDY)), follow_redirects=False).status_code == 303
        assert client.get(_path(tracker.open_pixel())).status_code == 200
    client.get(_path(tracker.click(other)), follow_redirects=False)
    assert sorted(
        (e.action.value, e.payload["properties"].get("url"))
        for e in _tracked(container)
        if e.action
    ) == [
        ("clicked", other),
        ("clicked", STUDY),
        ("opened", None),
    ]
    clock.advance(dt.timedelta(minutes=1))
    client.get(_path(tracker.click(STUDY)), follow_redirects=False)
    assert len(_tracked(container)) == 4


def test_consumers_are_woken_after_an_event(container: Container, tracker: MessageTracker) -> None:
    woken: list[int] = []
    recorder = TrackingRecorder(
        TrackingLinks.from_settings(container.settings, container.clock),
        container.profiles,
        container.log,
        container.clock,
        wake=woken.append,
    )
    token = _path(tracker.click(STUDY)).rsplit("/", 1)[1]
    recorder.clicked(token)
    assert woken == [container.log.head()]
    recorder.clicked(token)  # a duplicate: nothing new, nobody woken
    assert woken == [container.log.head()]


def test_a_rendered_message_is_tracked_end_to_end(
    client: TestClient, container: Container, tracker: MessageTracker
) -> None:
    out = render(
        subject=None,
        text="{{ hcp.last_name }}",
        html='<body><a href="https://brand.example/study?utm_source=mail&amp;x=1">Study</a>'
        '<a href="{{ links.unsubscribe }}">Unsubscribe</a></body>',
        context=RenderContext(
            hcp={"last_name": "Doe"},
            links={"unsubscribe": "http://127.0.0.1:8000/consent/unsubscribe?token=t"},
        ),
        tracker=tracker,
    )
    assert out.html is not None
    assert "https://brand.example/study" not in out.html
    assert 'href="http://127.0.0.1:8000/consent/unsubscribe?token=t"' in out.html
    click_url = out.html.split('href="', 1)[1].split('"', 1)[0]
    pixel_url = out.html.split('<img src="', 1)[1].split('"', 1)[0]
    assert client.get(_path(click_url), follow_redirects=False).headers["location"] == STUDY
    assert client.get(_path(pixel_url)).status_code == 200
    assert {e.action for e in _tracked(container)} == {Action.CLICKED, Action.OPENED}


# --- refusals -------------------------------------------------------------------------------


def test_forged_tampered_and_foreign_tokens_are_refused_and_record_nothing(
    client: TestClient, container: Container, tracker: MessageTracker, hcp_id: str
) -> None:
    click = _path(tracker.click(STUDY))
    pixel = _path(tracker.open_pixel())
    token = click.rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    claims = {
        "o": "out_1",
        "h": hcp_id,
        "c": "campaign_email",
        "x": None,
        "u": "https://evil.example/",
    }
    forged = LinkSigner("another-secret", container.clock).dump(
        LinkPurpose.TRACK_CLICK, claims, ttl=TRACKING_TTL
    )
    unsubscribe = ConsentLinks.from_settings(container.settings, container.clock).unsubscribe(
        hcp_id, ConsentChannel.EMAIL
    )
    head = container.log.count()
    for path in (
        f"/t/c/{tampered}",
        f"/t/c/{forged}",
        "/t/c/not-a-token",
        f"/t/c/{unsubscribe.token}",  # another purpose's token
        "/t/c/" + pixel.rsplit("/", 1)[1].removesuffix(".gif"),  # the open token as a click
        f"/t/o/{token}.gif",  # the click token as an open
        "/t/o/x.gif",
        "/t/c/" + "a" * 5000,
    ):
        _refused(client.get(path, follow_redirects=False), "invalid_link")
    assert container.log.count() == head
    # negative control: the same harness sees the valid link's event
    assert client.get(click, follow_redirects=False).status_code == 303
    assert container.log.count() == head + 1


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "//evil.example/",
        "/relative",
        "https:/\\evil.example",
        "ftp://evil.example/",
        "data:text/html,<script>alert(1)</script>",
        "https://evil.example/\r\nSet-Cookie: x=1",
        "",
    ],
)
def test_only_http_urls_are_signed_or_followed(
    client: TestClient, container: Container, tracker: MessageTracker, hcp_id: str, url: str
) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        tracker.click(url)
    assert caught.value.field == "url"
    # a token signed with our own key around such a URL is still refused: never an open redirect
    claims = {"o": "out_1", "h": hcp_id, "c": "campaign_email", "x": None, "u": url}
    token = LinkSigner(container.settings.secret_key, container.clock).dump(
        LinkPurpose.TRACK_CLICK, claims, ttl=TRACKING_TTL
    )
    head = container.log.count()
    _refused(client.get(f"/t/c/{token}", follow_redirects=False), "invalid_link")
    assert container.log.count() == head


def test_links_expire_after_a_year(
    client: TestClient, container: Container, tracker: MessageTracker, clock: FixedClock
) -> None:
    click = _path(tracker.click(STUDY))
    pixel = _path(tracker.open_pixel())
    clock.advance(dt.timedelta(days=364))
    assert client.get(click, follow_redirects=False).status_code == 303  # months later: works
    head = container.log.count()
    clock.advance(dt.timedelta(days=2))
    for path in (click, pixel):
        response = client.get(path, follow_redirects=False)
        _refused(response, "expired_link")
        assert "expired_at" in response.json()
    assert container.log.count() == head


def test_an_unknown_or_erased_hcp_gets_the_answer_but_nothing_is_recorded(
    client: TestClient, container: Container, links: TrackingLinks, hcp_id: str
) -> None:
    nobody = links.for_message(
        outbox_id="out_2", hcp_id="hcp_nobody", channel="rep_email", content_id=None
    )
    known = links.for_message(
        outbox_id="out_3", hcp_id=hcp_id, channel="rep_email", content_id=None
    )
    container.privacy.erase(hcp_id, TEST_ACTOR, "erasure request 12")
    head = container.log.count()
    for tracker in (nobody, known):
        response = client.get(_path(tracker.click(STUDY)), follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, STUDY)
        pixel = client.get(_path(tracker.open_pixel()))
        assert (pixel.status_code, pixel.content) == (200, PIXEL_GIF)
    assert container.log.count() == head


def test_bad_message_details_are_refused_naming_the_field(links: TrackingLinks) -> None:
    for kwargs, field in (
        ({"channel": "pigeon"}, "channel"),
        ({"outbox_id": " "}, "outbox_id"),
        ({"hcp_id": ""}, "hcp_id"),
    ):
        arguments: dict[str, Any] = {
            "outbox_id": "out_1",
            "hcp_id": "hcp_1",
            "channel": "campaign_email",
            "content_id": None,
            **kwargs,
        }
        with pytest.raises(ValidationFailedError) as caught:
            links.for_message(**arguments)
        assert caught.value.field == field
        assert caught.value.fix


def test_a_url_too_long_to_sign_stays_direct(tracker: MessageTracker) -> None:
    noise = b"".join(hashlib.sha512(bytes([i])).digest() for i in range(60))
    long_url = "https://brand.example/?q=" + base64.urlsafe_b64encode(noise).decode()
    assert tracker.click(long_url) == long_url
    assert tracker.click(STUDY) != STUDY
    assert tracker.click(STUDY) == tracker.click(STUDY)  # one token per link and message
