"""Real SMTP delivery to aiosmtpd: both parts, the headers, a working link; and
the auth events that produce account and security emails."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from chatmesh.common.bus import make_event
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.mail.v1 import mail_pb2


async def test_verification_email_arrives_with_both_parts_headers_and_link(
    db_url: str, smtp_sink: Any, kit: Any
) -> None:
    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        sent = await mail.send(
            "verify_email",
            "Ann Example <Ann@Example.COM>",
            {"display_name": "Ann <script>", "token": "tok/en+1"},
            key="k1",
        )
        assert sent.created
        [received] = await smtp_sink.wait_count(1)
        state = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)

    message = received.message
    assert received.envelope_to == ["Ann@example.com"]
    assert message["To"] == "Ann Example <Ann@example.com>"
    assert message["From"] == "ChatMesh <no-reply@chatmesh.local>"
    assert message["Subject"] == "Verify your email address"
    assert message["Message-ID"] == f"<{sent.email.id}@chatmesh.local>"
    # Account mail cannot be unsubscribed from.
    assert message["List-Unsubscribe"] is None
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    text_body = text.get_content()
    html_body = html.get_content()
    # HTML autoescaped, text as typed.
    assert "Ann &lt;script&gt;" in html_body
    assert "<script>" not in html_body
    assert "Hi Ann <script>," in text_body
    link = next(line for line in text_body.splitlines() if line.startswith(kit.public_url))
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{kit.public_url}/verify-email"
    assert parse_qs(parts.query) == {"token": ["tok/en+1"]}
    assert f'href="{link}"' in html_body
    assert state.attempts == 1
    assert state.send_time.seconds > 0


async def test_security_alert_carries_one_click_unsubscribe(
    db_url: str, smtp_sink: Any, kit: Any
) -> None:
    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        await mail.send(
            "new_device_login",
            "bob@example.com",
            {"display_name": "Bob", "ip_address": "203.0.113.9", "user_agent": "Firefox"},
            user_id="user-1",
        )
        [received] = await smtp_sink.wait_count(1)
        header = received.message["List-Unsubscribe"]
        assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert header.startswith(f"<{kit.public_url}/unsubscribe?token=")
        assert header.endswith(">")
        body = received.message.get_body(("plain",))
        assert body is not None
        assert "203.0.113.9" in body.get_content()


async def test_auth_events_become_emails_once(db_url: str, smtp_sink: Any, kit: Any) -> None:
    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        reset = make_event(
            "auth",
            ev.PasswordResetRequested(
                user_id="u1",
                email="carol@example.com",
                display_name="Carol",
                token="reset-token",
                ip_address="198.51.100.4",
            ),
        )
        reused = make_event(
            "auth",
            ev.RefreshTokenReused(
                user_id="u1", email="carol@example.com", display_name="Carol", ip_address="x"
            ),
        )
        registered = make_event("auth", ev.UserRegistered(user_id="u1", email="carol@example.com"))
        for event in (reset, reset, registered, reused):  # `reset` delivered twice
            await mail.bus.publish("events.auth", event)
        received = await smtp_sink.wait_count(2)
        subjects = sorted(r.message["Subject"] for r in received)
        assert subjects == ["Reset your password", "We signed out a device to protect your account"]
        reset_mail = next(r for r in received if r.message["Subject"] == "Reset your password")
        text = reset_mail.message.get_body(("plain",))
        assert text is not None
        assert f"{kit.public_url}/reset-password?token=reset-token" in text.get_content()
        # Nothing else trickles in (the duplicate event queued nothing).
        await mail.wait_state(
            (
                await mail.send(
                    "verify_email", "z@example.com", {"display_name": "Z", "token": "t"}
                )
            ).email.id,
            mail_pb2.EMAIL_STATE_SENT,
        )
        assert smtp_sink.handler.count() == 3
