"""The MIME form the SMTP and SES providers send, read back by Python's own
`email` parser: both parts, non-ASCII names, subjects and bodies intact,
CRLF-only lines under the SMTP limit, and no defects."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from chatmesh.common.errors import InvalidArgument
from chatmesh.services.mail.message import OutgoingEmail, to_mime_bytes


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_non_ascii_names_subject_and_bodies_survive_the_round_trip() -> None:
    outgoing = OutgoingEmail(
        id="0f1e2d3c",
        sender="Zoë from ChatMesh <no-reply@chatmesh.example>",
        recipient="Ærøskøbing Ñame <Someone+tag@Example.COM>",
        subject="Grüße 🚀 " + "a long subject " * 12,
        text="héllo 🚀\nsecond line\n.\n" + "x" * 2000,
        html="<p>ünïcode <b>html</b></p>",
        headers={"List-Unsubscribe": "<https://chat.example/unsubscribe?token=t.s>"},
    )
    sender, recipient, raw = to_mime_bytes(outgoing)

    assert (sender, recipient) == ("no-reply@chatmesh.example", "Someone+tag@example.com")
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    message = parsed(raw)
    assert not message.defects
    assert message["From"].addresses[0].display_name == "Zoë from ChatMesh"
    assert message["To"].addresses[0].display_name == "Ærøskøbing Ñame"
    assert message["Subject"] == outgoing.subject
    assert message["Message-ID"] == "<0f1e2d3c@chatmesh.example>" == outgoing.message_id
    assert message["List-Unsubscribe"] == "<https://chat.example/unsubscribe?token=t.s>"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content() == outgoing.text
    assert html.get_content() == outgoing.html


def test_a_header_value_with_a_line_break_is_refused() -> None:
    outgoing = OutgoingEmail(
        id="1",
        sender="no-reply@chatmesh.example",
        recipient="a@example.com",
        subject="hi\r\nBcc: victim@example.com",
        text="",
        html="",
        headers={},
    )
    with pytest.raises(InvalidArgument) as raised:
        to_mime_bytes(outgoing)
    assert raised.value.code == "header_injection"
