"""SendGrid and SES through their real client libraries, against a local HTTP
server that checks the documented request format."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chatmesh.mail.v1 import mail_pb2


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApi:
    """Answers with `replies` in order (status, json body, headers), then `default`."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    replies: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, Any], dict[str, str]] = (200, {}, {})


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            api.requests.append(
                Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, payload, headers = api.replies.pop(0) if api.replies else api.default
            data = json.dumps(payload).encode() if payload else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


VARS = {"display_name": "Dana", "ip_address": "192.0.2.1", "user_agent": "Safari"}


async def test_sendgrid_v3_mail_send(db_url: str, fake_api: FakeApi, kit: Any) -> None:
    fake_api.default = (202, {}, {"X-Message-Id": "sg-abc123"})
    fake_api.replies = [(503, {"errors": [{"message": "busy"}]}, {})]
    settings = kit.settings_for(
        db_url, provider="sendgrid", sendgrid_api_key="SG.test-key", sendgrid_base_url=fake_api.url
    )
    async with kit.start(settings) as mail:
        sent = await mail.send(
            "new_device_login", "Dana Doe <dana@example.com>", VARS, user_id="u-9"
        )
        state = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
    # 503 is transient: retried, then accepted.
    assert state.attempts == 2
    assert len(fake_api.requests) == 2
    request = fake_api.requests[-1]
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == "Bearer SG.test-key"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body["personalizations"] == [{"to": [{"email": "dana@example.com", "name": "Dana Doe"}]}]
    assert body["from"] == {"email": "no-reply@chatmesh.local", "name": "ChatMesh"}
    assert body["subject"] == "New sign-in to your account"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "192.0.2.1" in body["content"][0]["value"]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["custom_args"] == {"email_id": sent.email.id}


async def test_sendgrid_client_error_is_permanent(db_url: str, fake_api: FakeApi, kit: Any) -> None:
    fake_api.default = (400, {"errors": [{"message": "bad from"}]}, {})
    settings = kit.settings_for(
        db_url, provider="sendgrid", sendgrid_api_key="SG.k", sendgrid_base_url=fake_api.url
    )
    async with kit.start(settings) as mail:
        sent = await mail.send("new_device_login", "d@example.com", VARS)
        dead = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_DEAD)
    assert dead.attempts == 1
    assert "sendgrid 400" in dead.last_error
    assert len(fake_api.requests) == 1


async def test_ses_v2_send_email_raw(db_url: str, fake_api: FakeApi, kit: Any) -> None:
    fake_api.default = (200, {"MessageId": "ses-0001"}, {})
    fake_api.replies = [
        (429, {"message": "slow down"}, {"x-amzn-ErrorType": "TooManyRequestsException"})
    ]
    settings = kit.settings_for(
        db_url,
        provider="ses",
        ses_region="eu-west-1",
        ses_endpoint_url=fake_api.url,
        ses_access_key_id="AKIDEXAMPLE",
        ses_secret_access_key="secret",
    )
    async with kit.start(settings) as mail:
        sent = await mail.send("new_device_login", "erin@example.com", VARS, user_id="u-1")
        state = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
    assert state.attempts == 2
    request = fake_api.requests[-1]
    assert request.path == "/v2/email/outbound-emails"
    assert re.match(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/ses/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$",
        request.headers["authorization"],
    )
    body = json.loads(request.body)
    assert body["FromEmailAddress"] == "no-reply@chatmesh.local"
    assert body["Destination"] == {"ToAddresses": ["erin@example.com"]}
    raw = base64.b64decode(body["Content"]["Raw"]["Data"])
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "New sign-in to your account"
    assert message["List-Unsubscribe"].startswith(f"<{kit.public_url}/unsubscribe?token=")
    assert message.get_content_type() == "multipart/alternative"


async def test_ses_rejection_is_permanent(db_url: str, fake_api: FakeApi, kit: Any) -> None:
    fake_api.default = (
        400,
        {"message": "Email address is not verified."},
        {"x-amzn-ErrorType": "MessageRejected"},
    )
    settings = kit.settings_for(
        db_url,
        provider="ses",
        ses_region="eu-west-1",
        ses_endpoint_url=fake_api.url,
        ses_access_key_id="AKIDEXAMPLE",
        ses_secret_access_key="secret",
    )
    async with kit.start(settings) as mail:
        sent = await mail.send("new_device_login", "erin@example.com", VARS)
        dead = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_DEAD)
    assert "MessageRejected" in dead.last_error
    assert len(fake_api.requests) == 1
