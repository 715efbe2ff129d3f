"""The mail service through the BFF: the dev mailbox (GET /api/v1/dev/mail) and
the unsubscribe links emails carry (/unsubscribe → mail's /v1/unsubscribe).

A real mail service (dev provider, its REST API on a real port) consumes the
real auth service's events, exactly as in `chatmesh dev`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from chatmesh.bff.settings import BffSettings
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.testing import free_port
from chatmesh.services.mail.app import MailServer
from chatmesh.services.mail.app import serve as serve_mail
from chatmesh.services.mail.settings import MailSettings

from .conftest import Api, AuthService, RunningBff, StartBff

MAILBOX = "/api/v1/dev/mail"


@pytest.fixture
def bff_port() -> int:
    return free_port()


@pytest.fixture
async def mail(sqlite_auth: AuthService, bff_port: int) -> AsyncIterator[MailServer]:
    """The mail service next to `sqlite_auth`; its links point at the BFF."""
    auth_file = Path(make_url(sqlite_auth.db_url).database or "auth.db")
    server = await serve_mail(
        MailSettings(
            database_url=f"sqlite+aiosqlite:///{auth_file.with_name('mail.db')}",
            redis_url="",
            grpc_port=0,
            metrics_port=0,
            rest_port=free_port(),
            auth_address=sqlite_auth.address,
            public_url=f"http://127.0.0.1:{bff_port}",
            provider="dev",
            dev_mail_console=False,
        ),
        bus=sqlite_auth.bus,
        limiter=InMemoryRateLimiter(),
    )
    try:
        yield server
    finally:
        await server.stop(drain=0.0, grace=1.0)


@pytest.fixture
async def mail_api(
    sqlite_auth: AuthService, mail: MailServer, start_bff: StartBff, bff_port: int
) -> AsyncIterator[Api]:
    running = await start_bff(
        http_port=bff_port,
        public_url=f"http://127.0.0.1:{bff_port}",
        auth_address=sqlite_auth.address,
        mail_http_url=f"http://127.0.0.1:{mail.rest_port}",
        dev_mailbox=True,
    )
    async with running.client() as http:
        yield Api(http=http, bff=running, auth=sqlite_auth)


async def mailbox_message(api: Api, to: str, subject: str) -> dict[str, Any]:
    """The newest dev-mailbox message to `to` with `subject` (waits for delivery)."""
    async with asyncio.timeout(10):
        while True:
            response = await api.http.get(MAILBOX)
            assert response.status_code == 200, response.text
            for message in response.json()["messages"]:
                if message["to"] == to and message["subject"] == subject:
                    return dict(message)
            await asyncio.sleep(0.05)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


async def test_registration_email_shows_in_the_dev_mailbox_and_its_link_verifies(
    mail_api: Api,
) -> None:
    user, _ = await mail_api.register()
    message = await mailbox_message(mail_api, user["email"], "Verify your email address")

    assert message["from"]
    assert message["create_time"]
    link = re.search(r"https?://\S+/verify-email\?token=\S+", message["text"])
    assert link, message["text"]
    # The link leads to this BFF's web app (the public URL), with a token that verifies.
    assert link[0].startswith(mail_api.bff.url + "/verify-email?token=")
    token = link[0].split("token=", 1)[1]
    verified = await mail_api.post("/api/v1/auth/verify-email", {"token": token})
    assert verified.status_code == 200, verified.text


async def test_unsubscribe_link_from_an_email_turns_the_category_off(
    mail_api: Api, mail: MailServer
) -> None:
    user, body = await mail_api.register()
    user_id = body["user"]["id"]
    await mail.service.send_email(
        template_id="password_changed",
        recipient=user["email"],
        variables={"display_name": user["display_name"]},
        user_id=user_id,
    )
    message = await mailbox_message(mail_api, user["email"], "Your password was changed")
    link = message["headers"]["List-Unsubscribe"].strip("<>")
    parts = urlsplit(link)
    assert link.startswith(mail_api.bff.url + "/unsubscribe?token=")

    # GET (what link scanners do) only shows the confirmation form.
    page = await mail_api.http.get(f"{parts.path}?{parts.query}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post"' in page.text
    assert (await mail.service.preferences(user_id)).security_alerts is True

    # RFC 8058 one-click: the mail client's server POSTs, with no Origin and no cookies.
    async with httpx.AsyncClient(base_url=mail_api.bff.url, timeout=10) as mail_client:
        done = await mail_client.post(
            f"{parts.path}?{parts.query}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert done.status_code == 200, done.text
    assert done.json() == {"unsubscribed": "security"}
    assert (await mail.service.preferences(user_id)).security_alerts is False


async def test_a_forged_unsubscribe_token_is_refused_in_the_error_shape(mail_api: Api) -> None:
    forged = await mail_api.post("/unsubscribe?token=not-a-signed-token")
    assert_error(forged, 422, "invalid_token")


async def test_no_dev_mailbox_unless_enabled(
    sqlite_auth: AuthService, mail: MailServer, start_bff: StartBff
) -> None:
    plain = await start_bff(auth_address=sqlite_auth.address)
    mail_url = f"http://127.0.0.1:{mail.rest_port}"
    # Unsubscribe forwarding alone (production) does not expose the mailbox.
    production = await start_bff(auth_address=sqlite_auth.address, mail_http_url=mail_url)
    for running in (plain, production):
        async with running.client() as http:
            assert_error(await http.get(MAILBOX), 404, "not_found")
    async with plain.client() as http:
        assert_error(await http.get("/unsubscribe?token=x"), 404, "not_found")


async def test_mail_service_down_is_503(sqlite_auth: AuthService, start_bff: StartBff) -> None:
    # Nothing listens on this port.
    running: RunningBff = await start_bff(
        auth_address=sqlite_auth.address,
        mail_http_url=f"http://127.0.0.1:{free_port()}",
        dev_mailbox=True,
    )
    async with running.client() as http:
        assert_error(await http.get(MAILBOX), 503, "service_unavailable")
        assert_error(await http.get("/unsubscribe?token=x"), 503, "service_unavailable")
        one_click = await http.post("/unsubscribe?token=x", content=b"List-Unsubscribe=One-Click")
        assert_error(one_click, 503, "service_unavailable")


def test_mail_http_url_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="mail_http_url"):
        BffSettings(mail_http_url="ftp://mail")
