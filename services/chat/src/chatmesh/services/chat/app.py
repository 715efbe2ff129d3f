"""Assembly of the running chat service: migrations, database, bus (user
directory in, outbox out), pub/sub hub, room event relay, gRPC server and
metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import grpc

from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.bus import EventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.errors import Unavailable
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.server import GrpcService, start_grpc_server
from chatmesh.common.logging import get_logger
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.outbox import OutboxRelay
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.service import ServiceRuntime
from chatmesh.common.tokens import GrpcJwksSource, TokenVerifier
from chatmesh.services.chat.blocks import AllowAll, BlockChecker, UserServiceBlocks
from chatmesh.services.chat.directory import UserDirectory
from chatmesh.services.chat.eventlog import RoomEventRelay
from chatmesh.services.chat.fanout import Hub, make_session_factory
from chatmesh.services.chat.public_rooms import PublicRoomDirectory
from chatmesh.services.chat.service import ChatService
from chatmesh.services.chat.servicer import PUBLIC_METHODS, SERVICE_NAME, ChatServicer
from chatmesh.services.chat.settings import DB_SCHEMA, ChatSettings

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger("chatmesh.chat.app")


class ChatServer(ServiceRuntime):
    """A started chat service (`.port`, `.stop(drain=, grace=)`)."""

    hub: Hub | None = None
    _ending = False

    async def stop(self, *, drain: float = 0.0, grace: float = 1.0) -> None:
        """NOT_SERVING → drain → end the BFF streams (they reconnect to another
        replica and resume) → stop the server, background loops, connections."""
        if not self._ending:
            self._ending = True
            with contextlib.suppress(RuntimeError):  # never started
                await self.running.set_serving(False)
            await asyncio.sleep(drain)
            if self.hub is not None:
                self.hub.end_streams(
                    Unavailable(
                        "the chat service is shutting down; reconnect", code="shutting_down"
                    )
                )
        await super().stop(drain=0.0, grace=grace)


def _consumer_name(settings: ChatSettings) -> str:
    return settings.consumer_name or f"chat-{socket.gethostname()}-{os.getpid()}"


def _block_checker(settings: ChatSettings, runtime: ChatServer) -> BlockChecker:
    """The user service's blocks when it is configured, else nobody is blocked."""
    if not settings.user_address:
        log.warning("CHATMESH_USER_ADDRESS is not set: blocks are not enforced in DMs")
        return AllowAll()
    channel = create_channel(settings.user_address)
    runtime.on_close(channel.close)
    return UserServiceBlocks(channel, timeout=settings.user_timeout_seconds)


async def migrate(settings: ChatSettings) -> None:
    """Apply the chat schema's migrations (`python -m chatmesh.services.chat migrate`)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)


async def serve(
    settings: ChatSettings,
    *,
    bus: EventBus | None = None,
    pubsub: PubSub | None = None,
    block_checker: BlockChecker | None = None,
    limiter: RateLimiter | None = None,
) -> ChatServer:
    """Start the service as configured. `bus` / `pubsub` / `limiter` override the
    ones the settings would create (embedded mode shares one bus between
    services); `block_checker` overrides the one `user_address` selects."""
    await migrate(settings)
    runtime = ChatServer(settings)
    async with runtime.starting():
        db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
        runtime.on_close(db.close)
        bus = runtime.event_bus(bus)
        limiter = runtime.rate_limiter(limiter)
        if pubsub is None:
            client = runtime.redis()
            pubsub = RedisPubSub(client) if client is not None else InProcessPubSub()
            runtime.on_close(pubsub.close)

        auth_channel = create_channel(settings.auth_address)
        runtime.on_close(auth_channel.close)
        verifier = TokenVerifier(GrpcJwksSource(auth_channel))

        hub = Hub(pubsub)
        hub.start()
        runtime.on_close(hub.close)
        runtime.hub = hub

        room_relay = RoomEventRelay(db, pubsub, poll_interval=settings.relay_poll_seconds)
        # Service events (MessageCreated, MentionCreated) feed notifications, not
        # the live path: publishing them in batches every poll keeps the cost per
        # message low, so the outbox relay is not woken after each commit.
        outbox_relay = OutboxRelay(db, bus, poll_interval=settings.outbox_poll_seconds)
        directory = UserDirectory(db)
        consumer = _consumer_name(settings)
        runtime.spawn(room_relay.run)
        runtime.spawn(outbox_relay.run)
        runtime.spawn(lambda stop: directory.consume(bus, consumer, stop))

        if block_checker is None:
            block_checker = _block_checker(settings, runtime)
        service = ChatService(db=db, blocks=block_checker, on_commit=room_relay.wake)
        runtime.on_close(service.drain)  # closers run in reverse: before db.close
        sessions = make_session_factory(
            hub=hub,
            store=service,
            verifier=verifier,
            limiter=limiter,
            typing_interval=settings.typing_interval_seconds,
            max_pending=settings.stream_max_pending,
        )
        servicer = ChatServicer(service, sessions, PublicRoomDirectory(db))

        def register(server: grpc.aio.Server) -> None:
            chat_service_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)

        runtime.attach(
            await start_grpc_server(
                [GrpcService(name=SERVICE_NAME, register=register, public_methods=PUBLIC_METHODS)],
                host=settings.grpc_host,
                port=settings.grpc_port,
                verifier=verifier,
                component=settings.service_name,
            )
        )
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    return runtime
