"""A real mail service per test (gRPC + REST), a real SMTP server (aiosmtpd on
loopback) that records what it accepts and can be told to stall or refuse."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import grpc
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from google.protobuf.struct_pb2 import Struct

from chatmesh.common.bus import InProcessEventBus
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter
from chatmesh.common.testing import free_port
from chatmesh.mail.v1 import mail_pb2, mail_pb2_grpc
from chatmesh.services.mail.app import MailServer, serve
from chatmesh.services.mail.settings import MailSettings

API_KEY = "test-api-key-0123456789"
PUBLIC_URL = "https://chat.example.test"


@dataclass
class Received:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage
    at: float


@dataclass
class SinkHandler:
    """aiosmtpd handler. `replies` (consumed first) lets a test answer DATA with
    4xx/5xx; `stall_rcpt` holds the first RCPT so a client can be killed mid-send."""

    received: list[Received] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    always: str = ""
    data_delay: float = 0.0
    stall_rcpt: float = 0.0
    rcpt_seen: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.stall_rcpt and not self.rcpt_seen.is_set():
            self.rcpt_seen.set()
            await asyncio.sleep(self.stall_rcpt)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.attempts.append(time.monotonic())
            if self.replies:
                return self.replies.pop(0)
            if self.always:
                return self.always
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append(
                Received(
                    envelope_from=str(envelope.mail_from),
                    envelope_to=list(envelope.rcpt_tos),
                    message=parsed,
                    at=time.monotonic(),
                )
            )
        return "250 Message accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@dataclass
class Sink:
    handler: SinkHandler
    port: int

    async def wait_count(self, count: int, *, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while self.handler.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.handler.count()} of {count} messages arrived")
            await asyncio.sleep(0.02)
        return list(self.handler.received)


@pytest.fixture
def smtp_sink() -> Any:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Sink(handler=handler, port=port)
    finally:
        controller.stop()


def settings_for(db_url: str, **overrides: Any) -> MailSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": "",
        "grpc_port": 0,
        "metrics_port": 0,
        "rest_port": free_port(),
        "public_url": PUBLIC_URL,
        "api_keys": API_KEY,
        "auth_address": "127.0.0.1:1",
        "retry_base_seconds": 0.2,
        "sweep_interval_seconds": 0.05,
        "requeue_after_seconds": 2.0,
        "claim_idle_seconds": 2.0,
        "dev_mail_console": False,
    }
    values.update(overrides)
    return MailSettings(**values)


def smtp_settings(db_url: str, sink: Sink, **overrides: Any) -> MailSettings:
    return settings_for(
        db_url,
        provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        smtp_starttls=False,
        **overrides,
    )


@dataclass
class Mail:
    server: MailServer
    stub: mail_pb2_grpc.MailServiceStub
    http: httpx.AsyncClient
    bus: InProcessEventBus

    async def send(
        self,
        template_id: str,
        recipient: str,
        variables: dict[str, Any],
        *,
        key: str = "",
        user_id: str = "",
    ) -> mail_pb2.SendEmailResponse:
        struct = Struct()
        struct.update(variables)
        return await self.stub.SendEmail(
            mail_pb2.SendEmailRequest(
                template_id=template_id,
                recipient=recipient,
                variables=struct,
                idempotency_key=key,
                user_id=user_id,
            )
        )

    async def wait_state(
        self, email_id: str, state: int, *, within: float = 10.0
    ) -> mail_pb2.Email:
        deadline = time.monotonic() + within
        while True:
            email_ = (await self.stub.GetEmail(mail_pb2.GetEmailRequest(id=email_id))).email
            if email_.state == state:
                return email_
            if time.monotonic() > deadline:
                name = mail_pb2.EmailState.Name(email_.state)
                raise AssertionError(f"email {email_id} is {name} after {within}s")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_mail(
    settings: MailSettings, *, limiter: RateLimiter | None = None, **kwargs: Any
) -> AsyncIterator[Mail]:
    bus = InProcessEventBus()
    server = await serve(settings, bus=bus, limiter=limiter or InMemoryRateLimiter(), **kwargs)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.rest_port}", timeout=10)
    try:
        yield Mail(server=server, stub=mail_pb2_grpc.MailServiceStub(channel), http=http, bus=bus)
    finally:
        await http.aclose()
        await channel.close()
        await server.stop()
        await bus.close()


@pytest.fixture
def start_mail() -> Callable[..., Any]:
    return running_mail


@dataclass(frozen=True)
class Kit:
    """Helpers tests reach through the `kit` fixture (conftest is not importable
    under --import-mode=importlib)."""

    public_url: str = PUBLIC_URL
    api_key: str = API_KEY
    settings_for: Callable[..., MailSettings] = settings_for
    smtp_settings: Callable[..., MailSettings] = smtp_settings
    start: Callable[..., Any] = running_mail


@pytest.fixture
def kit() -> Kit:
    return Kit()
