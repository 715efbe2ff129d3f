"""A real auth gRPC server per test (SQLite and PostgreSQL via `db_url`), a real
grpc.aio client, and a bus consumer that records every event the service emits."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from sqlalchemy import text

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.bus import InProcessEventBus, stream_name
from chatmesh.common.db import Database
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.testkit import EventLog, failure
from chatmesh.services.auth.app import AuthServer, serve
from chatmesh.services.auth.settings import DB_SCHEMA, AuthSettings

M = TypeVar("M", bound=Message)

PASSWORD = "correct horse battery"
TABLES = ("accounts", "sessions", "refresh_tokens", "one_time_tokens", "outbox")

_serial = itertools.count(1)


@dataclass
class Harness:
    server: AuthServer
    stub: auth_pb2_grpc.AuthServiceStub
    events: EventLog
    db: Database
    channel: grpc.aio.Channel
    ids: Any = field(default_factory=lambda: _serial)

    @staticmethod
    def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {access_token}"),)

    @staticmethod
    def client(ip: str = "203.0.113.7", user_agent: str = "pytest/1.0") -> auth_pb2.ClientContext:
        return auth_pb2.ClientContext(ip_address=ip, user_agent=user_agent)

    # How a call that must fail failed, as the BFF sees it.
    failure = staticmethod(failure)

    async def register(self, **fields: Any) -> auth_pb2.RegisterResponse:
        n = next(self.ids)
        request: dict[str, Any] = {
            "email": f"user{n}@example.com",
            "username": f"user{n}",
            "password": PASSWORD,
            "display_name": f"User {n}",
            "client": self.client(),
        }
        request.update(fields)
        return await self.stub.Register(auth_pb2.RegisterRequest(**request))

    async def login(
        self, login: str, password: str = PASSWORD, **client: str
    ) -> auth_pb2.LoginResponse:
        return await self.stub.Login(
            auth_pb2.LoginRequest(login=login, password=password, client=self.client(**client))
        )

    async def count_rows(self) -> dict[str, int]:
        counts = {}
        async with self.db.engine.connect() as connection:
            for table in TABLES:
                result = await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))  # noqa: S608
                counts[table] = int(result.scalar_one())
        return counts


@asynccontextmanager
async def running_auth(
    db_url: str, *, limiter: RateLimiter | None = None, **overrides: Any
) -> AsyncIterator[Harness]:
    bus = InProcessEventBus()
    events = EventLog()
    stop = asyncio.Event()
    consumer = asyncio.create_task(
        bus.consume(stream_name("auth"), "tests", "consumer-1", events.handle, stop=stop)
    )
    settings = AuthSettings(
        database_url=db_url, redis_url="", grpc_port=0, metrics_port=0, **overrides
    )
    server = await serve(settings, bus=bus, limiter=limiter or InMemoryRateLimiter())
    db = Database(db_url, schema=DB_SCHEMA)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Harness(
            server=server,
            stub=auth_pb2_grpc.AuthServiceStub(channel),
            events=events,
            db=db,
            channel=channel,
        )
    finally:
        await channel.close()
        await server.stop()
        await db.close()
        stop.set()
        await consumer
        await bus.close()


@pytest.fixture
async def auth(db_url: str) -> AsyncIterator[Harness]:
    async with running_auth(db_url) as harness:
        yield harness


@pytest.fixture
def start_auth() -> Callable[..., Any]:
    """`async with start_auth(db_url, limiter=..., **settings) as harness:` for tests
    that need other settings or another rate limiter than the `auth` fixture."""
    return running_auth


@pytest.fixture
async def redis_limiter(redis_url: str) -> AsyncIterator[RateLimiter]:
    """The Redis rate limiter every replica shares in production."""
    client = create_redis(redis_url)
    try:
        yield RedisRateLimiter(client)
    finally:
        await client.aclose()
