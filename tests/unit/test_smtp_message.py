"""The e-mail the SMTP adapter puts on the wire reads back exactly as it was meant."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counterpoint.channel.base import OutboundMessage, PermanentDeliveryError
from counterpoint.channel.smtp import email_bytes, message_id
from counterpoint.event.canonical import Channel

DATE = "Mon, 23 Nov 2026 12:00:00 +0000"
SENDER = "Cardiomax Team <news@pharma.example>"
bodies = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85"),
    max_size=300,
)
subjects = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=120).map(
    lambda t: " ".join(t.split())
)


def _message(**over: object) -> OutboundMessage:
    values: dict[str, object] = {
        "outbox_id": "o1",
        "idempotency_key": "key-1",
        "channel": Channel.CAMPAIGN_EMAIL,
        "hcp_id": "h1",
        "address": "a.mueller@praxis.example",
        "subject": "Guten Tag Dr. Müller, neue Daten",
        "text": "Grüße\n.a line starting with a dot\n",
        "html": "<p>Grüße</p>",
        "headers": {"List-Unsubscribe": "<https://x.example/u?t=" + "a" * 300 + ">"},
    }
    values.update(over)
    return OutboundMessage(**values)  # type: ignore[arg-type]


@given(subject=subjects, body=bodies)
def test_subject_and_parts_read_back_unchanged(subject: str, body: str) -> None:
    html_source = f"<p>{body}</p>"
    data, mid = email_bytes(_message(subject=subject, text=body, html=html_source), SENDER, DATE)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    parsed = message_from_bytes(data, policy=policy.default)
    assert str(parsed["Subject"]) == subject
    assert parsed["Message-ID"] == mid == message_id("key-1", SENDER)
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n") == body
    assert html.get_content().replace("\r\n", "\n") == html_source


def test_headers_and_parts_for_a_typical_email() -> None:
    data, _ = email_bytes(_message(), SENDER, DATE)
    parsed = message_from_bytes(data, policy=policy.default)
    assert str(parsed["Subject"]) == "Guten Tag Dr. Müller, neue Daten"
    assert str(parsed["From"]) == SENDER
    assert parsed["List-Unsubscribe"].startswith("<https://x.example/u?t=aaa")
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == "Grüße\n.a line starting with a dot\n"


@pytest.mark.parametrize(
    "bad",
    [
        {"subject": "hi\r\nBcc: victim@example.org"},
        {"headers": {"X-Tag": "a\nBcc: victim@example.org"}},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"From": "other@example.org"}},
        {"sender": "x <a@b.example>\r\nBcc: v@example.org"},
    ],
)
def test_header_injection_and_adapter_headers_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        email_bytes(_message(**bad), SENDER, DATE)
    assert caught.value.code == "bad_message"
