"""Chat through the BFF as clients meet it: a real auth and a real chat gRPC
server, BFFs under real uvicorn servers on free ports, httpx for REST and the
`websockets` library for /api/v1/ws.

Two deployment modes (`stack` is parametrized): embedded (SQLite, in-process
pub/sub) and production (PostgreSQL, Redis pub/sub).

- `stack.user()`: a registered user the chat service knows (id, token).
- `stack.bff()`: start a BFF (more than one for multi-process tests).
- `stack.restart_chat()`: stop the chat service and start it again on its port.
- `stack.ws(user, bff)`: an open, authenticated WebSocket that records frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlmodel import col, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.bus import InProcessEventBus
from chatmesh.common.db import Database
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port
from chatmesh.services.auth.app import AuthServer
from chatmesh.services.auth.app import serve as serve_auth
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat import models
from chatmesh.services.chat.app import ChatServer
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.settings import DB_SCHEMA, ChatSettings
from chatmesh.services.user.app import UserServer
from chatmesh.services.user.app import serve as serve_user
from chatmesh.services.user.settings import UserSettings

PASSWORD = "correct horse battery"
_serial = itertools.count(1)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class WsClient:
    """A WebSocket client that records every frame the server sends."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = (self.connection.close_code or 1006, self.connection.close_reason or "")
            self._changed.set()

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.connection.send(frame if isinstance(frame, str) else json.dumps(frame))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; last frames: {str(self.frames[-5:])[-3000:]}")
            self._changed.clear()
            if predicate():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def wait_for(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda _: True, **kw: Any
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((f for f in self.frames if f.get("type") == kind and where(f)), None)

        await self.wait_until(lambda: found() is not None, **kw)
        frame = found()
        assert frame is not None
        return frame

    async def settle(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)

    def created(self, room_id: str) -> list[dict[str, Any]]:
        return [
            f["message"]
            for f in self.of_type("message.created")
            if f["message"]["room_id"] == room_id
        ]

    def last_seqs(self) -> dict[str, int]:
        """What a client remembers to resume: the highest event_seq per room."""
        seqs: dict[str, int] = {}
        for frame in self.frames:
            if "event_seq" not in frame:
                continue
            if "room_id" in frame:
                room_id = frame["room_id"]
            elif "message" in frame:
                room_id = frame["message"]["room_id"]
            else:
                room_id = frame["room"]["id"]
            seqs[room_id] = max(seqs.get(room_id, 0), frame["event_seq"])
        return seqs

    async def close(self) -> None:
        await self.connection.close()
        await asyncio.gather(self._reader, return_exceptions=True)


@dataclass
class Stack:
    tmp_path: Path
    chat_url: str
    pubsub: PubSub
    bus: InProcessEventBus
    auth: AuthServer
    auth_stub: auth_pb2_grpc.AuthServiceStub
    db: Database
    start_bff_fixture: Any
    chat_port: int = 0
    chat: ChatServer | None = None
    # Where the chat service asks about blocks (empty: nobody is blocked).
    user_address: str = ""
    bffs: list[Any] = field(default_factory=list)
    sockets: list[WsClient] = field(default_factory=list)
    http_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def auth_address(self) -> str:
        return f"127.0.0.1:{self.auth.port}"

    @property
    def chat_address(self) -> str:
        return f"127.0.0.1:{self.chat_port}"

    async def start_chat(self) -> ChatServer:
        self.chat = await serve_chat(
            ChatSettings(
                database_url=self.chat_url,
                redis_url="",
                grpc_port=self.chat_port,
                metrics_port=0,
                auth_address=self.auth_address,
                user_address=self.user_address,
                relay_poll_seconds=0.05,
            ),
            bus=self.bus,
            pubsub=self.pubsub,
        )
        self.chat_port = self.chat.port
        return self.chat

    async def stop_chat(self) -> None:
        if self.chat is not None:
            await self.chat.stop(grace=0.5)
            self.chat = None

    async def restart_chat(self) -> None:
        await self.stop_chat()
        await self.start_chat()

    async def bff(self, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "auth_address": self.auth_address,
            "chat_address": self.chat_address,
            "user_address": "127.0.0.1:1",
            "limiter": InMemoryRateLimiter(),
            # The API's own rate limits have their tests; these tests send a lot.
            "rate_limit_ip": 0,
            "rate_limit_user": 0,
        }
        values.update(overrides)
        running = await self.start_bff_fixture(**values)
        self.bffs.append(running)
        return running

    def http(self, bff: Any, user: User | None = None) -> httpx.AsyncClient:
        client: httpx.AsyncClient = bff.client(headers=user.headers if user else {})
        self.http_clients.append(client)
        return client

    async def room(
        self,
        bff: Any,
        owner: User,
        *members: User,
        visibility: str = "public",
        name: str = "general",
    ) -> dict[str, Any]:
        """A room created over REST, with `members` added by the owner."""
        http = self.http(bff, owner)
        created = await http.post("/api/v1/rooms", json={"name": name, "visibility": visibility})
        assert created.status_code == 201, created.text
        room: dict[str, Any] = created.json()
        for member in members:
            added = await http.post(
                f"/api/v1/rooms/{room['id']}/members", json={"user_id": member.id}
            )
            assert added.status_code == 200, added.text
        return room

    async def send_many(
        self, http: httpx.AsyncClient, room_id: str, prefix: str, count: int, body: str = ""
    ) -> None:
        """`count` messages over REST, one after another (bodies `prefix n`)."""
        for n in range(count):
            reply = await http.post(
                f"/api/v1/rooms/{room_id}/messages",
                json={
                    "body": body or f"{prefix} {n}",
                    "client_msg_id": f"{prefix.replace(' ', '_')}-{n}",
                },
            )
            assert reply.status_code == 201, reply.text

    async def user(self) -> User:
        n = next(_serial)
        username = f"u{n}_{uuid.uuid4().hex[:6]}"
        reply = await self.auth_stub.Register(
            auth_pb2.RegisterRequest(
                email=f"{username}@example.com",
                username=username,
                password=PASSWORD,
                display_name=f"User {n}",
            )
        )
        user = User(reply.account.id, reply.account.username, reply.tokens.access_token)
        deadline = time.monotonic() + 10
        while True:
            async with self.db.transaction() as session:
                known = (
                    await session.exec(select(models.User.id).where(col(models.User.id) == user.id))
                ).first()
            if known:
                return user
            assert time.monotonic() < deadline, "the chat service never learned of the user"
            await asyncio.sleep(0.02)

    async def ws(
        self,
        user: User | None,
        bff: Any,
        *,
        ready: bool = True,
        resume: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> WsClient:
        """Connect with a Bearer header (or no credentials when `user` is None);
        with `ready`, wait for the `ready` frame and send `resume`."""
        url = bff.url.replace("http://", "ws://") + "/api/v1/ws"
        headers = user.headers if user is not None else {}
        connection = await connect(url, additional_headers=headers, **kwargs)
        client = WsClient(connection)
        self.sockets.append(client)
        if ready and user is not None:
            await client.wait_for("ready")
            await client.send({"type": "resume", "rooms": resume or {}})
        return client

    async def close(self) -> None:
        for client in self.sockets:
            with contextlib.suppress(Exception):
                await client.close()
        for http in self.http_clients:
            await http.aclose()


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.redis)])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(chat database URL, Redis URL): SQLite + in-process pub/sub, then
    PostgreSQL + Redis pub/sub."""
    if request.param == "embedded":
        return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", None
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url")


@pytest.fixture
async def stack(
    mode: tuple[str, str | None], tmp_path: Path, start_bff: Any
) -> AsyncIterator[Stack]:
    chat_url, redis_url = mode
    bus = InProcessEventBus()
    redis = create_redis(redis_url) if redis_url else None
    pubsub: PubSub = RedisPubSub(redis) if redis is not None else InProcessPubSub()
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
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}")
    stack = Stack(
        tmp_path=tmp_path,
        chat_url=chat_url,
        pubsub=pubsub,
        bus=bus,
        auth=auth,
        auth_stub=auth_pb2_grpc.AuthServiceStub(channel),
        db=Database(chat_url, schema=DB_SCHEMA),
        start_bff_fixture=start_bff,
        chat_port=free_port(),
    )
    try:
        await stack.start_chat()
        yield stack
    finally:
        await stack.close()
        for running in reversed(stack.bffs):
            await running.stop()
        stack.bffs.clear()
        await stack.stop_chat()
        await channel.close()
        await auth.stop()
        await stack.db.close()
        await pubsub.close()
        if redis is not None:
            await redis.aclose()
        await bus.close()


@pytest.fixture
async def user_server(stack: Stack, tmp_path: Path) -> AsyncIterator[UserServer]:
    """A user service next to `stack` (profiles from auth's events, presence
    in-process with short delays)."""
    server = await serve_user(
        UserSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'user.db'}",
            redis_url="",
            grpc_port=0,
            metrics_port=0,
            auth_address=stack.auth_address,
            presence_sweep_interval_seconds=0.05,
            presence_offline_delay_seconds=0.2,
        ),
        bus=stack.bus,
    )
    try:
        yield server
    finally:
        await server.stop(drain=0.0, grace=0.5)


async def profile_exists(http: httpx.AsyncClient, user: User) -> None:
    """Wait until the user service made `user`'s profile (from auth's event)."""
    async with asyncio.timeout(10):
        while (await http.get(f"/api/v1/users/{user.id}")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
