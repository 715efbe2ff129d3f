"""With the real auth service on the same bus: sign-up verification mail lands in
the dev mailbox with a link that verifies; preferences need an access token;
one-click unsubscribe turns a category off."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.bus import InProcessEventBus
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.testing import free_port
from chatmesh.mail.v1 import mail_pb2, mail_pb2_grpc
from chatmesh.services.auth.app import serve as serve_auth
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.mail.app import serve as serve_mail


async def _dev_mail(http: Any, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        messages: list[dict[str, Any]] = (await http.get("/dev/mail")).json()["messages"]
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.05)
    raise AssertionError("dev mail did not arrive")


async def test_signup_preferences_and_unsubscribe(tmp_path: Any, kit: Any) -> None:
    bus = InProcessEventBus()
    auth = await serve_auth(
        AuthSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
            grpc_port=0,
            metrics_port=0,
            argon2_memory_kib=8 * 1024,
            argon2_time_cost=1,
        ),
        bus=bus,
        limiter=InMemoryRateLimiter(),
    )
    settings = kit.settings_for(
        f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}",
        auth_address=f"127.0.0.1:{auth.port}",
        rest_port=free_port(),
    )
    mail = await serve_mail(settings, bus=bus, limiter=InMemoryRateLimiter())
    auth_channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}")
    mail_channel = grpc.aio.insecure_channel(f"127.0.0.1:{mail.port}")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{mail.rest_port}")
    try:
        auth_stub = auth_pb2_grpc.AuthServiceStub(auth_channel)
        mail_stub = mail_pb2_grpc.MailServiceStub(mail_channel)
        registered = await auth_stub.Register(
            auth_pb2.RegisterRequest(
                email="kim@example.com",
                username="kim",
                password="correct horse battery",
                display_name="Kim",
            )
        )
        [verification] = await _dev_mail(http, 1)
        assert verification["to"] == "kim@example.com"
        assert verification["subject"] == "Verify your email address"
        link = next(line for line in verification["text"].splitlines() if "/verify-email?" in line)
        token = parse_qs(urlsplit(link).query)["token"][0]
        await auth_stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token))
        me = await auth_stub.GetAccount(
            auth_pb2.GetAccountRequest(),
            metadata=(("authorization", f"Bearer {registered.tokens.access_token}"),),
        )
        assert me.account.email_verified

        # Preferences are the caller's own: no token, no answer.
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await mail_stub.GetNotificationPreferences(mail_pb2.GetNotificationPreferencesRequest())
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        bearer = (("authorization", f"Bearer {registered.tokens.access_token}"),)
        prefs = await mail_stub.GetNotificationPreferences(
            mail_pb2.GetNotificationPreferencesRequest(), metadata=bearer
        )
        assert prefs.preferences == mail_pb2.NotificationPreferences(
            security_alerts=True, missed_messages=True, weekly_digest=True, digest_day=1
        )
        updated = await mail_stub.UpdateNotificationPreferences(
            mail_pb2.UpdateNotificationPreferencesRequest(
                preferences=mail_pb2.NotificationPreferences(digest_day=5),
                update_mask=["digest_day"],
            ),
            metadata=bearer,
        )
        assert updated.preferences.digest_day == 5
        assert updated.preferences.weekly_digest
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await mail_stub.UpdateNotificationPreferences(
                mail_pb2.UpdateNotificationPreferencesRequest(
                    preferences=mail_pb2.NotificationPreferences(digest_day=9),
                    update_mask=["digest_day"],
                ),
                metadata=bearer,
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A new-device login sends a security alert with a one-click unsubscribe link.
        await auth_stub.Login(
            auth_pb2.LoginRequest(
                login="kim",
                password="correct horse battery",
                client=auth_pb2.ClientContext(ip_address="198.51.100.77", user_agent="NewPhone/1"),
            )
        )
        alert = (await _dev_mail(http, 2))[0]
        assert alert["subject"] == "New sign-in to your account"
        unsubscribe = alert["headers"]["List-Unsubscribe"].strip("<>")
        assert alert["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        path = urlsplit(unsubscribe)
        assert f"{path.scheme}://{path.netloc}{path.path}" == f"{kit.public_url}/unsubscribe"
        query = parse_qs(path.query)
        # The BFF forwards {public_url}/unsubscribe to the mail REST API.
        tampered = query["token"][0][:-2] + "AA"
        response = await http.post("/v1/unsubscribe", params={"token": tampered})
        assert response.status_code == 422
        response = await http.post(
            "/v1/unsubscribe",
            params={"token": query["token"][0]},
            content=b"List-Unsubscribe=One-Click",
        )
        assert response.status_code == 200
        assert response.json() == {"unsubscribed": "security"}
        prefs = await mail_stub.GetNotificationPreferences(
            mail_pb2.GetNotificationPreferencesRequest(), metadata=bearer
        )
        assert not prefs.preferences.security_alerts
        assert prefs.preferences.digest_day == 5

        # Security mail is now suppressed for this user; account mail still goes out.
        await auth_stub.Login(
            auth_pb2.LoginRequest(
                login="kim",
                password="correct horse battery",
                client=auth_pb2.ClientContext(ip_address="203.0.113.200", user_agent="Other/2"),
            )
        )
        await auth_stub.RequestPasswordReset(
            auth_pb2.RequestPasswordResetRequest(email="kim@example.com")
        )
        newest = (await _dev_mail(http, 3))[0]
        assert newest["subject"] == "Reset your password"
        await asyncio.sleep(0.3)
        assert len((await http.get("/dev/mail")).json()["messages"]) == 3
    finally:
        await http.aclose()
        await mail_channel.close()
        await auth_channel.close()
        await mail.stop()
        await auth.stop()
        await bus.close()
