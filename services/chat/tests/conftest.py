"""A real auth service and a real chat service per test, real grpc.aio clients,
and a consumer that records what the chat service emits on `events.chat`.

Users are registered through the auth service's gRPC API; their access tokens
authenticate chat calls exactly as the BFF's forwarded tokens will. The chat
service learns about them from auth's `UserRegistered` events on the shared bus.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from sqlmodel import col, select

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.bus import EventBus, InProcessEventBus, stream_name
from chatmesh.common.db import Database
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.redis import create_redis
from chatmesh.common.testkit import EventLog, User, failure
from chatmesh.services.auth.app import AuthServer
from chatmesh.services.auth.app import serve as serve_auth
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat import models
from chatmesh.services.chat.app import ChatServer
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.blocks import BlockChecker
from chatmesh.services.chat.settings import DB_SCHEMA, ChatSettings

M = TypeVar("M", bound=Message)

PASSWORD = "correct horse battery"
_serial = itertools.count(1)


@dataclass
class StreamClient:
    """A BFF's StreamRoomEvents call: send requests, collect every response."""

    call: Any
    responses: list[api.StreamRoomEventsResponse] = field(default_factory=list)
    error: grpc.aio.AioRpcError | None = None
    ended: bool = False
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _requests: Any = field(default_factory=lambda: itertools.count(1))

    def start(self) -> StreamClient:
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.append(response)
                self._changed.set()
        except grpc.aio.AioRpcError as error:
            self.error = error
        finally:
            self.ended = True
            self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; last responses: {self.responses[-5:]}"
            self._changed.clear()
            if predicate():
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                continue

    async def settle(self, delay: float = 0.3) -> None:
        """Time for anything that would (wrongly) still arrive."""
        await asyncio.sleep(delay)

    async def subscribe(
        self,
        subscriber_id: str,
        user: User,
        room_ids: list[str] | None = None,
        *,
        all_rooms: bool = False,
        token: str | None = None,
    ) -> api.StreamRoomEventsResponse:
        """Send a Subscribe and return its answer (Subscribed or StreamError)."""
        request_id = f"r{next(self._requests)}"
        await self.call.write(
            api.StreamRoomEventsRequest(
                subscribe=api.StreamRoomEventsRequest.Subscribe(
                    request_id=request_id,
                    subscriber_id=subscriber_id,
                    access_token=user.token if token is None else token,
                    room_ids=room_ids or [],
                    all_rooms=all_rooms,
                )
            )
        )
        return await self._answer(request_id)

    async def unsubscribe(
        self, subscriber_id: str, room_ids: list[str]
    ) -> api.StreamRoomEventsResponse:
        request_id = f"r{next(self._requests)}"
        await self.call.write(
            api.StreamRoomEventsRequest(
                unsubscribe=api.StreamRoomEventsRequest.Unsubscribe(
                    request_id=request_id, subscriber_id=subscriber_id, room_ids=room_ids
                )
            )
        )
        return await self._answer(request_id)

    async def typing(self, subscriber_id: str, room_id: str) -> None:
        await self.call.write(
            api.StreamRoomEventsRequest(
                typing=api.StreamRoomEventsRequest.SendTyping(
                    subscriber_id=subscriber_id, room_id=room_id
                )
            )
        )

    async def detach(self, subscriber_id: str) -> None:
        await self.call.write(
            api.StreamRoomEventsRequest(
                detach=api.StreamRoomEventsRequest.Detach(subscriber_id=subscriber_id)
            )
        )

    async def _answer(self, request_id: str) -> api.StreamRoomEventsResponse:
        def find() -> api.StreamRoomEventsResponse | None:
            for response in self.responses:
                kind = response.WhichOneof("item")
                answers = kind in ("subscribed", "unsubscribed", "error")
                if answers and getattr(response, kind).request_id == request_id:
                    return response
            return None

        await self.wait_until(lambda: find() is not None or self.ended)
        found = find()
        assert found is not None, f"stream ended: {self.error}"
        return found

    def events(self, room_id: str | None = None, *, durable: bool = True) -> list[pb.RoomEvent]:
        """Room events received (of one room), durable ones (seq > 0) unless asked."""
        return [
            response.event
            for response in self.responses
            if response.WhichOneof("item") == "event"
            and (room_id is None or response.event.room_id == room_id)
            and (response.event.seq > 0) == durable
        ]

    def seqs(self, room_id: str) -> list[int]:
        return [event.seq for event in self.events(room_id)]

    def of_kind(self, kind: str) -> list[Any]:
        return [
            getattr(response, kind)
            for response in self.responses
            if response.WhichOneof("item") == kind
        ]

    async def close(self) -> None:
        self.call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


@dataclass
class Chat:
    """One running chat service (with a client channel and stub)."""

    server: ChatServer
    channel: grpc.aio.Channel
    stub: chat_service_pb2_grpc.ChatServiceStub
    streams: list[StreamClient] = field(default_factory=list)

    async def open_stream(self) -> StreamClient:
        stream = StreamClient(self.stub.StreamRoomEvents()).start()
        self.streams.append(stream)
        return stream

    async def close(self) -> None:
        for stream in self.streams:
            await stream.close()
        await self.channel.close()


@dataclass
class Harness:
    auth: AuthServer
    auth_stub: auth_pb2_grpc.AuthServiceStub
    bus: EventBus
    chat_url: str
    chat_events: EventLog
    db: Database
    chats: list[Chat] = field(default_factory=list)
    start_chat: Callable[..., Awaitable[Chat]] | None = None

    failure = staticmethod(failure)

    @property
    def main(self) -> Chat:
        return self.chats[0]

    @property
    def stub(self) -> chat_service_pb2_grpc.ChatServiceStub:
        return self.main.stub

    async def user(self, name: str | None = None) -> User:
        """A registered user the chat service already knows (directory synced)."""
        n = next(_serial)
        username = name or f"user{n}_{uuid.uuid4().hex[:6]}"
        response = await self.auth_stub.Register(
            auth_pb2.RegisterRequest(
                email=f"{username}@example.com",
                username=username,
                password=PASSWORD,
                display_name=f"User {n}",
            )
        )
        user = User(
            id=response.account.id,
            username=response.account.username,
            token=response.tokens.access_token,
        )
        await self.wait_known(user.id)
        return user

    async def wait_known(self, user_id: str, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while True:
            async with self.db.transaction() as session:
                found = (
                    await session.exec(select(models.User.id).where(col(models.User.id) == user_id))
                ).first()
            if found:
                return
            assert time.monotonic() < deadline, "the chat service never learned of the user"
            await asyncio.sleep(0.02)

    async def room(
        self,
        owner: User,
        *,
        name: str = "general",
        visibility: pb.Visibility.ValueType = pb.VISIBILITY_PUBLIC,
        members: tuple[User, ...] = (),
    ) -> pb.Room:
        created = await self.stub.CreateRoom(
            api.CreateRoomRequest(name=name, visibility=visibility), metadata=owner.md
        )
        for member in members:
            await self.stub.AddMember(
                api.AddMemberRequest(room_id=created.room.id, user_id=member.id),
                metadata=owner.md,
            )
        return created.room

    async def send(
        self,
        user: User,
        room_id: str,
        body: str,
        *,
        client_msg_id: str | None = None,
        reply_to: str = "",
        stub: chat_service_pb2_grpc.ChatServiceStub | None = None,
    ) -> pb.Message:
        response = await (stub or self.stub).SendMessage(
            api.SendMessageRequest(
                room_id=room_id,
                body=body,
                client_msg_id=client_msg_id or uuid.uuid4().hex,
                reply_to=reply_to,
            ),
            metadata=user.md,
        )
        return response.message


def chat_settings(url: str, auth_port: int, **overrides: Any) -> ChatSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "redis_url": "",
        "grpc_port": 0,
        "metrics_port": 0,
        "auth_address": f"127.0.0.1:{auth_port}",
        "relay_poll_seconds": 0.05,
    }
    values.update(overrides)
    return ChatSettings(**values)


@asynccontextmanager
async def running(
    chat_url: str,
    tmp_path: Path,
    *,
    redis_url: str | None = None,
    block_checker: BlockChecker | None = None,
    first_pubsub: PubSub | None = None,
) -> AsyncIterator[Harness]:
    """Auth (its own SQLite file) + one chat service on `chat_url`, sharing a bus;
    more chat instances (same database, same pub/sub) with `harness.start_chat()`."""
    bus = InProcessEventBus()
    stop = asyncio.Event()
    chat_events = EventLog()
    consumer = asyncio.create_task(
        bus.consume(stream_name("chat"), "tests", "tests-1", chat_events.handle, stop=stop)
    )
    auth = await serve_auth(
        AuthSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
            grpc_port=0,
            metrics_port=0,
            argon2_memory_kib=8 * 1024,
            argon2_time_cost=1,
        ),
        bus=bus,
    )
    auth_channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}")
    redis = create_redis(redis_url) if redis_url else None
    db = Database(chat_url, schema=DB_SCHEMA)
    harness = Harness(
        auth=auth,
        auth_stub=auth_pb2_grpc.AuthServiceStub(auth_channel),
        bus=bus,
        chat_url=chat_url,
        chat_events=chat_events,
        db=db,
    )
    shared_pubsub: PubSub = RedisPubSub(redis) if redis is not None else InProcessPubSub()

    async def start_chat(*, pubsub: PubSub | None = None, **overrides: Any) -> Chat:
        server = await serve_chat(
            chat_settings(chat_url, auth.port, **overrides),
            bus=bus,
            pubsub=pubsub or shared_pubsub,
            block_checker=block_checker,
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        chat = Chat(
            server=server, channel=channel, stub=chat_service_pb2_grpc.ChatServiceStub(channel)
        )
        harness.chats.append(chat)
        return chat

    harness.start_chat = start_chat
    try:
        await start_chat(pubsub=first_pubsub)
        yield harness
    finally:
        for chat in harness.chats:
            await chat.close()
            await chat.server.stop()
        await auth_channel.close()
        await auth.stop()
        await db.close()
        await shared_pubsub.close()
        if redis is not None:
            await redis.aclose()
        stop.set()
        await consumer
        await bus.close()


@pytest.fixture
async def chat(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """Auth + chat on SQLite, then on PostgreSQL; in-process pub/sub."""
    async with running(db_url, tmp_path) as harness:
        yield harness


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.redis)])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(database URL, Redis URL): SQLite + in-process pub/sub, then PostgreSQL + Redis."""
    if request.param == "embedded":
        return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", None
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url")


@pytest.fixture
async def live(mode: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Harness]:
    """Auth + chat in both deployment modes, for the real-time tests."""
    chat_url, redis_url = mode
    async with running(chat_url, tmp_path, redis_url=redis_url) as harness:
        yield harness
