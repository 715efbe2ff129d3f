"""The user service as its callers meet it: a real auth gRPC server (accounts,
tokens, `UserRegistered` events), a real user gRPC server on a free port, both
on SQLite or PostgreSQL (`db_url`), sharing an event bus, and grpc.aio stubs
that call with the users' real access tokens.

Fixtures:
- `mesh`: auth + user service on `db_url`, in-process bus / pub/sub / presence.
- `start_mesh(db_url, backend=..., **user_settings)`: the same with other
  settings, or with `backend="redis"` (Redis bus, pub/sub and presence store);
  `mesh.add_replica()` starts a second user service sharing the backends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common import testkit
from chatmesh.common.bus import EventBus, InProcessEventBus, RedisEventBus, stream_name
from chatmesh.common.db import Database
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2
from chatmesh.services.auth.app import serve as serve_auth
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.user.app import UserServer, serve
from chatmesh.services.user.presence.redis_store import RedisPresenceStore
from chatmesh.services.user.presence.store import InMemoryPresenceStore, PresenceStore
from chatmesh.services.user.settings import DB_SCHEMA, UserSettings
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc, user_pb2, user_pb2_grpc

PASSWORD = "correct horse battery staple"
Backend = Literal["memory", "redis"]

_serial = itertools.count(1)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        """Call metadata: this user's access token."""
        return (("authorization", f"Bearer {self.token}"),)


class EventLog(testkit.EventLog):
    """What auth published on `events.auth`, as a consumer receives it."""

    async def registration_of(self, user_id: str) -> envelope_pb2.Event:
        return await self.wait_for_event(
            auth_events_pb2.UserRegistered, lambda registered: registered.user_id == user_id
        )


@dataclass
class Replica:
    server: UserServer
    channel: grpc.aio.Channel
    users: user_pb2_grpc.UserServiceStub
    presence: presence_pb2_grpc.PresenceServiceStub


@dataclass
class Mesh:
    auth: auth_pb2_grpc.AuthServiceStub
    # Where auth publishes, and where the user service consumes (the same unless
    # the mesh was started with deliver_events=False).
    bus: EventBus
    user_bus: EventBus
    events: EventLog
    db: Database
    replicas: list[Replica]
    start_replica: Callable[[], Awaitable[Replica]]
    settings: UserSettings
    ids: Any = field(default_factory=lambda: _serial)

    @property
    def users(self) -> user_pb2_grpc.UserServiceStub:
        return self.replicas[0].users

    @property
    def presence(self) -> presence_pb2_grpc.PresenceServiceStub:
        return self.replicas[0].presence

    @property
    def server(self) -> UserServer:
        return self.replicas[0].server

    async def add_replica(self) -> Replica:
        """Another user-service process sharing the database, bus and backends."""
        replica = await self.start_replica()
        self.replicas.append(replica)
        return replica

    async def register(
        self, *, username: str | None = None, display_name: str | None = None
    ) -> User:
        """A new account through the auth service; waits until its profile exists."""
        user = await self.register_only(username=username, display_name=display_name)
        await self.wait_for_profile(user)
        return user

    async def register_only(
        self, *, username: str | None = None, display_name: str | None = None
    ) -> User:
        n = next(self.ids)
        username = username or f"user{n}"
        response = await self.auth.Register(
            auth_pb2.RegisterRequest(
                email=f"{username}@example.com",
                username=username,
                password=PASSWORD,
                display_name=display_name or f"User {n}",
            )
        )
        return User(
            id=response.account.id,
            username=response.account.username,
            display_name=response.account.display_name,
            token=response.tokens.access_token,
        )

    async def wait_for_profile(self, user: User, *, within: float = 10.0) -> user_pb2.Profile:
        """Poll BatchGetProfiles (which never creates a profile) until it appears."""
        async with asyncio.timeout(within):
            while True:
                found = await self.users.BatchGetProfiles(
                    user_pb2.BatchGetProfilesRequest(user_ids=[user.id]), metadata=user.auth
                )
                if found.profiles:
                    return found.profiles[0]
                await asyncio.sleep(0.02)

    async def count(self, sql: str, **params: Any) -> int:
        async with self.db.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return int(result.scalar_one())


def _auth_url(db_url: str, tmp_path: Path) -> str:
    """Auth's database: its own schema on PostgreSQL, its own file on SQLite."""
    if make_url(db_url).get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
    return db_url


@asynccontextmanager
async def running_mesh(
    db_url: str,
    tmp_path: Path,
    *,
    backend: Backend = "memory",
    redis_url: str = "",
    deliver_events: bool = True,
    **overrides: Any,
) -> AsyncIterator[Mesh]:
    """`deliver_events=False`: the user service consumes a bus auth never publishes
    to (`mesh.user_bus`), as if auth's events were delayed indefinitely."""
    async with AsyncExitStack() as stack:
        bus: EventBus
        pubsub: PubSub
        client = None
        if backend == "redis":
            client = create_redis(redis_url)
            stack.push_async_callback(client.aclose)
            bus = RedisEventBus(client, block_ms=100)
            pubsub = RedisPubSub(client)
        else:
            bus = InProcessEventBus()
            pubsub = InProcessPubSub()
        stack.push_async_callback(bus.close)
        stack.push_async_callback(pubsub.close)

        events = EventLog()
        stop = asyncio.Event()
        recorder = asyncio.create_task(
            bus.consume(stream_name("auth"), "tests", "recorder", events.handle, stop=stop)
        )

        async def stop_recorder() -> None:
            stop.set()
            await recorder

        stack.push_async_callback(stop_recorder)

        auth_server = await serve_auth(
            AuthSettings(
                database_url=_auth_url(db_url, tmp_path),
                redis_url="",
                grpc_port=0,
                metrics_port=0,
                # The cheapest hashing auth allows: these tests register many accounts.
                argon2_memory_kib=8 * 1024,
                argon2_time_cost=1,
            ),
            bus=bus,
            limiter=InMemoryRateLimiter(),
        )
        stack.push_async_callback(auth_server.stop)
        auth_channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}")
        stack.push_async_callback(auth_channel.close)

        settings = UserSettings(
            **{
                "database_url": db_url,
                "redis_url": "",
                "grpc_port": 0,
                "metrics_port": 0,
                "auth_address": f"127.0.0.1:{auth_server.port}",
                # Long enough that no test's connection expires by accident on a
                # busy machine; the crash test shortens it.
                "presence_connection_ttl_seconds": 5.0,
                "presence_sweep_interval_seconds": 0.05,
                "presence_offline_delay_seconds": 0.3,
                **overrides,
            }
        )
        user_bus: EventBus = bus
        if not deliver_events:
            user_bus = InProcessEventBus()
            stack.push_async_callback(user_bus.close)
        shared_store: PresenceStore | None = None
        if backend == "memory":
            # Replicas in one process share the in-process backends, like embedded mode.
            shared_store = InMemoryPresenceStore()

        async def start_replica() -> Replica:
            store = shared_store
            if store is None:
                assert client is not None
                store = RedisPresenceStore(client)
            server = await serve(settings, bus=user_bus, pubsub=pubsub, presence_store=store)
            stack.push_async_callback(server.stop)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            stack.push_async_callback(channel.close)
            return Replica(
                server=server,
                channel=channel,
                users=user_pb2_grpc.UserServiceStub(channel),
                presence=presence_pb2_grpc.PresenceServiceStub(channel),
            )

        db = Database(db_url, schema=DB_SCHEMA)
        first = await start_replica()
        stack.push_async_callback(db.close)
        yield Mesh(
            auth=auth_pb2_grpc.AuthServiceStub(auth_channel),
            bus=bus,
            user_bus=user_bus,
            events=events,
            db=db,
            replicas=[first],
            start_replica=start_replica,
            settings=settings,
        )


@pytest.fixture
async def mesh(db_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    async with running_mesh(db_url, tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
async def shared_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """One SQLite mesh for a whole module: for checks of input rules, which do not
    depend on the database and would otherwise each start their own servers."""
    path = tmp_path_factory.mktemp("shared-mesh")
    async with running_mesh(f"sqlite+aiosqlite:///{path / 'user.db'}", path) as running:
        yield running


@pytest.fixture
def start_mesh(tmp_path: Path) -> Callable[..., Any]:
    """`async with start_mesh(db_url, backend=..., redis_url=..., **settings) as mesh:`"""

    def start(db_url: str, **kwargs: Any) -> Any:
        return running_mesh(db_url, tmp_path, **kwargs)

    return start


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Presence backends: in-process (embedded mode), or Redis (production)."""
    param: Backend = request.param
    return param


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"


@pytest.fixture
def backend_options(backend: Backend, request: pytest.FixtureRequest) -> dict[str, Any]:
    """`start_mesh` keyword arguments for `backend` (takes Redis only when needed)."""
    if backend == "redis":
        return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    return {"backend": "memory"}


class Watch:
    """A WatchPresence stream as the BFF holds it, recording every presence received."""

    def __init__(self, stub: presence_pb2_grpc.PresenceServiceStub) -> None:
        self.call = stub.WatchPresence()
        self.received: list[presence_pb2.UserPresence] = []
        self.responses = 0
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            async with self._changed:
                self.received.extend(response.presences)
                self.responses += 1
                self._changed.notify_all()

    async def add(self, *user_ids: str) -> None:
        await self.call.write(presence_pb2.WatchPresenceRequest(add_user_ids=user_ids))

    async def remove(self, *user_ids: str) -> None:
        await self.call.write(presence_pb2.WatchPresenceRequest(remove_user_ids=user_ids))

    def of(self, user_id: str) -> list[int]:
        """The statuses received for `user_id`, in order."""
        return [p.status for p in self.received if p.user_id == user_id]

    async def wait_for(
        self, user_id: str, status: int, *, within: float = 5.0, count: int = 1
    ) -> presence_pb2.UserPresence:
        """The `count`-th presence of `user_id` with `status` (waits for it)."""

        def match() -> list[presence_pb2.UserPresence]:
            return [p for p in self.received if p.user_id == user_id and p.status == status]

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(match()) >= count)
        return match()[count - 1]

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def watches() -> AsyncIterator[Callable[[presence_pb2_grpc.PresenceServiceStub], Watch]]:
    """`watches(stub)` opens a WatchPresence stream, closed after the test."""
    opened: list[Watch] = []

    def open_watch(stub: presence_pb2_grpc.PresenceServiceStub) -> Watch:
        watch = Watch(stub)
        opened.append(watch)
        return watch

    yield open_watch
    for watch in opened:
        await watch.close()
