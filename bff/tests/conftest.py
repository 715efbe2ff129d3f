"""The BFF as users meet it: a real auth gRPC server (SQLite or PostgreSQL), the
BFF app under a real uvicorn server on a free port, and httpx over real HTTP.

Fixtures:
- `auth_service`: a running auth service on the `db_url` database, with the
  events it emits recorded (verification / reset tokens come from there).
- `start_bff(**settings)`: start a BFF pointed at `auth_service` (or anywhere);
  `prepare=` may add routes to the app before it starts.
- `api`: an httpx client of a default BFF, plus helpers (`api.register()`, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from google.protobuf.message import Message
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from chatmesh.bff.app import create_app
from chatmesh.bff.settings import BffSettings
from chatmesh.common.bus import InProcessEventBus, stream_name, unpack
from chatmesh.common.pubsub import InProcessPubSub
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter
from chatmesh.common.testing import free_port
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.events.v1 import envelope_pb2
from chatmesh.services.auth.app import AuthServer, serve
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.settings import ChatSettings
from chatmesh.services.user.app import UserServer
from chatmesh.services.user.app import serve as serve_user
from chatmesh.services.user.settings import UserSettings

M = TypeVar("M", bound=Message)

PASSWORD = "correct horse battery staple"
_serial = itertools.count(1)


class Events:
    """Every event the auth service emitted, as its consumers receive them."""

    def __init__(self) -> None:
        self.received: list[envelope_pb2.Event] = []
        self._changed = asyncio.Condition()

    async def handle(self, event: envelope_pb2.Event) -> None:
        async with self._changed:
            self.received.append(event)
            self._changed.notify_all()

    def of_type(self, message_type: type[M]) -> list[M]:
        found = (unpack(event, message_type) for event in self.received)
        return [message for message in found if message is not None]

    async def wait_for(
        self, message_type: type[M], where: Callable[[M], bool], *, seconds: float = 10.0
    ) -> M:
        def match() -> M | None:
            return next((m for m in reversed(self.of_type(message_type)) if where(m)), None)

        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: match() is not None)
        found = match()
        assert found is not None
        return found

    async def verification_token(self, email: str) -> str:
        event = await self.wait_for(ev.EmailVerificationRequested, lambda e: e.email == email)
        return event.token

    async def reset_tokens(self, email: str) -> list[str]:
        await self.wait_for(ev.PasswordResetRequested, lambda e: e.email == email)
        return [e.token for e in self.of_type(ev.PasswordResetRequested) if e.email == email]


@dataclass
class AuthService:
    server: AuthServer
    events: Events
    db_url: str
    # Where auth publishes (a user service started next to it consumes it).
    bus: InProcessEventBus

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@contextlib.asynccontextmanager
async def running_auth(db_url: str) -> AsyncIterator[AuthService]:
    bus = InProcessEventBus()
    events = Events()
    stop = asyncio.Event()
    consumer = asyncio.create_task(
        bus.consume(stream_name("auth"), "bff-tests", "tests", events.handle, stop=stop)
    )
    server = await serve(
        AuthSettings(database_url=db_url, redis_url="", grpc_port=0, metrics_port=0),
        bus=bus,
        limiter=InMemoryRateLimiter(),
    )
    try:
        yield AuthService(server=server, events=events, db_url=db_url, bus=bus)
    finally:
        await server.stop()
        stop.set()
        await consumer
        await bus.close()


@pytest.fixture
async def auth_service(db_url: str) -> AsyncIterator[AuthService]:
    async with running_auth(db_url) as service:
        yield service


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For tests whose subject does not depend on the database backend."""
    return f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"


@pytest.fixture
async def sqlite_auth(sqlite_url: str) -> AsyncIterator[AuthService]:
    async with running_auth(sqlite_url) as service:
        yield service


class _TestServer(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving pytest's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningBff:
    url: str
    settings: BffSettings
    server: _TestServer
    task: asyncio.Task[None]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_bff_server(
    settings: BffSettings,
    *,
    limiter: RateLimiter | None = None,
    prepare: Callable[[Starlette], None] | None = None,
) -> RunningBff:
    app = create_app(settings, limiter=limiter)
    if prepare is not None:
        prepare(app)
    server = _TestServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.http_port,
            lifespan="on",
            # As `python -m chatmesh.bff` runs it: the app alone interprets X-Forwarded-For.
            proxy_headers=False,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # uvicorn has no start-up event to await
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during start-up")
            await asyncio.sleep(0.01)
    return RunningBff(
        url=f"http://127.0.0.1:{settings.http_port}", settings=settings, server=server, task=task
    )


StartBff = Callable[..., Awaitable[RunningBff]]


@pytest.fixture
async def start_bff(tmp_path: Path) -> AsyncIterator[StartBff]:
    """`await start_bff(auth_address=..., **settings)`; stopped after the test."""
    started: list[RunningBff] = []

    async def start(
        *,
        limiter: RateLimiter | None = None,
        prepare: Callable[[Starlette], None] | None = None,
        **overrides: Any,
    ) -> RunningBff:
        port = free_port()
        values: dict[str, Any] = {
            "http_port": port,
            "public_url": f"http://127.0.0.1:{port}",
            "web_dir": tmp_path / "no-web-build",
            "redis_url": "",
        }
        values.update(overrides)
        running = await start_bff_server(BffSettings(**values), limiter=limiter, prepare=prepare)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.stop()


@dataclass
class Api:
    """A browser-like client of a BFF (keeps cookies, sends its own Origin)."""

    http: httpx.AsyncClient
    bff: RunningBff
    auth: AuthService
    ids: Iterator[int] = field(default_factory=lambda: _serial)

    @property
    def origin(self) -> str:
        return self.bff.url

    def new_user(self, **overrides: str) -> dict[str, str]:
        n = next(self.ids)
        user = {
            "email": f"user{n}@example.com",
            "username": f"user{n}",
            "password": PASSWORD,
            "display_name": f"User {n}",
        }
        user.update(overrides)
        return user

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {"Origin": self.origin, **kwargs.pop("headers", {})}
        if body is None:
            return await self.http.post(path, headers=headers, **kwargs)
        return await self.http.post(path, json=body, headers=headers, **kwargs)

    async def register(self, **overrides: str) -> tuple[dict[str, str], dict[str, Any]]:
        """Register a fresh user; returns (what was sent, the response body)."""
        user = self.new_user(**overrides)
        response = await self.post("/api/v1/auth/register", user)
        assert response.status_code == 201, response.text
        return user, response.json()


@pytest.fixture
async def bff(auth_service: AuthService, start_bff: StartBff) -> RunningBff:
    return await start_bff(auth_address=auth_service.address)


@pytest.fixture
async def api(bff: RunningBff, auth_service: AuthService) -> AsyncIterator[Api]:
    async with bff.client() as http:
        yield Api(http=http, bff=bff, auth=auth_service)


@pytest.fixture
async def sqlite_api(sqlite_auth: AuthService, start_bff: StartBff) -> AsyncIterator[Api]:
    """`api` on SQLite only, for tests that are about the HTTP layer."""
    running = await start_bff(auth_address=sqlite_auth.address)
    async with running.client() as http:
        yield Api(http=http, bff=running, auth=sqlite_auth)


# --- the user service (profiles, friends, blocks, presence) ---------------------


@dataclass
class UserService:
    server: UserServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


def _user_db_url(auth: AuthService) -> str:
    """The user schema's database: auth's on PostgreSQL (its own schema there),
    a file next to auth's on SQLite."""
    url = make_url(auth.db_url)
    if url.get_backend_name() != "sqlite":
        return auth.db_url
    return f"sqlite+aiosqlite:///{Path(url.database or 'auth.db').with_name('user.db')}"


@contextlib.asynccontextmanager
async def running_user(auth: AuthService, **overrides: Any) -> AsyncIterator[UserService]:
    """A user service consuming `auth`'s events (registrations create profiles)."""
    values: dict[str, Any] = {
        "database_url": _user_db_url(auth),
        "redis_url": "",
        "grpc_port": 0,
        "metrics_port": 0,
        "auth_address": auth.address,
        "presence_sweep_interval_seconds": 0.05,
        "presence_offline_delay_seconds": 0.2,
    }
    values.update(overrides)
    server = await serve_user(UserSettings(**values), bus=auth.bus)
    try:
        yield UserService(server=server)
    finally:
        await server.stop(drain=0.0, grace=1.0)


@pytest.fixture
async def user_service(auth_service: AuthService) -> AsyncIterator[UserService]:
    async with running_user(auth_service) as service:
        yield service


@pytest.fixture
async def sqlite_user(sqlite_auth: AuthService) -> AsyncIterator[UserService]:
    async with running_user(sqlite_auth) as service:
        yield service


@pytest.fixture
async def sqlite_deps(sqlite_auth: AuthService) -> AsyncIterator[dict[str, str]]:
    """The user and chat services next to `sqlite_auth` (what /readyz checks
    besides auth): `start_bff(auth_address=..., **sqlite_deps)`."""
    auth_file = Path(make_url(sqlite_auth.db_url).database or "auth.db")
    chat_url = f"sqlite+aiosqlite:///{auth_file.with_name('chat.db')}"
    pubsub = InProcessPubSub()
    async with running_user(sqlite_auth) as user:
        chat = await serve_chat(
            ChatSettings(
                database_url=chat_url,
                redis_url="",
                grpc_port=0,
                metrics_port=0,
                auth_address=sqlite_auth.address,
            ),
            bus=sqlite_auth.bus,
            pubsub=pubsub,
        )
        try:
            yield {"user_address": user.address, "chat_address": f"127.0.0.1:{chat.port}"}
        finally:
            await chat.stop(drain=0.0, grace=1.0)
            await pubsub.close()
