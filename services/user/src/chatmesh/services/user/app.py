"""Assembly of the running user service: migrations, database, the consumer of
auth's events, presence (store, sweeper, pub/sub fan-out), gRPC server and
metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from chatmesh.common.bus import EventBus, InProcessEventBus, RedisEventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.server import GrpcService, RunningServer, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.redis import create_redis
from chatmesh.common.tokens import GrpcJwksSource, TokenVerifier
from chatmesh.services.user.accounts import AuthAccounts
from chatmesh.services.user.presence import servicer as presence_servicer
from chatmesh.services.user.presence.hub import PresenceHub
from chatmesh.services.user.presence.redis_store import RedisPresenceStore
from chatmesh.services.user.presence.store import (
    InMemoryPresenceStore,
    PresencePolicy,
    PresenceStore,
)
from chatmesh.services.user.presence.tracker import PresenceTracker
from chatmesh.services.user.profiles import ProfileService
from chatmesh.services.user.registration import RegistrationConsumer
from chatmesh.services.user.relations import RelationService
from chatmesh.services.user.servicer import SERVICE_NAME, UserServicer
from chatmesh.services.user.settings import DB_SCHEMA, UserSettings
from chatmesh.user.v1 import presence_pb2_grpc, user_pb2_grpc

MIGRATIONS = Path(__file__).parent / "migrations"


def presence_policy(settings: UserSettings) -> PresencePolicy:
    return PresencePolicy(
        connection_ttl=settings.presence_connection_ttl_seconds,
        away_after=settings.presence_away_after_seconds,
        offline_delay=settings.presence_offline_delay_seconds,
    )


class UserServer:
    """A started user service. `stop()` undoes `serve()` in reverse order."""

    def __init__(
        self,
        *,
        running: RunningServer,
        hub: PresenceHub,
        background_stop: asyncio.Event,
        background: list[asyncio.Task[None]],
        closers: list[Callable[[], Awaitable[None]]],
    ) -> None:
        self.running = running
        self._hub = hub
        self._background_stop = background_stop
        self._background = background
        self._closers = closers
        self._stopped = False

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, *, drain: float = 0.0, grace: float = 1.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.running.stop(drain=drain, grace=grace)
        self._background_stop.set()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._hub.stop()
        for close in reversed(self._closers):
            await close()


def _backends(
    settings: UserSettings,
    *,
    bus: EventBus | None,
    pubsub: PubSub | None,
    presence_store: PresenceStore | None,
    closers: list[Callable[[], Awaitable[None]]],
) -> tuple[EventBus, PubSub, PresenceStore]:
    """The given backends, else Redis ones (with `redis_url`) or in-process ones;
    what is created here is added to `closers`."""
    redis = None
    if settings.redis_url and None in (bus, pubsub, presence_store):
        redis = create_redis(settings.redis_url)
        closers.append(redis.aclose)
    if bus is None:
        bus = RedisEventBus(redis) if redis is not None else InProcessEventBus()
        closers.append(bus.close)
    if pubsub is None:
        pubsub = RedisPubSub(redis) if redis is not None else InProcessPubSub()
        closers.append(pubsub.close)
    if presence_store is None:
        presence_store = RedisPresenceStore(redis) if redis is not None else InMemoryPresenceStore()
        closers.append(presence_store.close_store)
    return bus, pubsub, presence_store


async def serve(
    settings: UserSettings,
    *,
    bus: EventBus | None = None,
    pubsub: PubSub | None = None,
    presence_store: PresenceStore | None = None,
) -> UserServer:
    """Start the service as configured; `bus`, `pubsub` and `presence_store`
    override the ones the settings would create (Redis when `redis_url` is set,
    in-process otherwise). Those passed in are not closed by `stop()`."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)

    closers: list[Callable[[], Awaitable[None]]] = []
    background_stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    hub: PresenceHub | None = None
    try:
        db = Database(url, schema=DB_SCHEMA)
        closers.append(db.close)
        bus, pubsub, presence_store = _backends(
            settings, bus=bus, pubsub=pubsub, presence_store=presence_store, closers=closers
        )
        auth_channel = create_channel(settings.auth_address)
        closers.append(auth_channel.close)
        verifier = TokenVerifier(GrpcJwksSource(auth_channel))

        profiles = ProfileService(db=db, accounts=AuthAccounts(auth_channel))
        relations = RelationService(db=db, profiles=profiles)
        tracker = PresenceTracker(
            store=presence_store,
            pubsub=pubsub,
            profiles=profiles,
            policy=presence_policy(settings),
            sweep_interval=settings.presence_sweep_interval_seconds,
            max_concurrency=settings.presence_max_concurrency,
        )
        hub = PresenceHub(pubsub, tracker.snapshot)
        await hub.start()

        consumer = RegistrationConsumer(profiles)
        background.append(
            asyncio.create_task(
                consumer.run(
                    bus,
                    group=settings.event_consumer_group,
                    consumer=f"{socket.gethostname()}-{os.getpid()}",
                    stop=background_stop,
                )
            )
        )
        background.append(asyncio.create_task(tracker.run(background_stop)))

        users = UserServicer(profiles=profiles, relations=relations)
        presence = presence_servicer.PresenceServicer(tracker=tracker, hub=hub)

        def register_users(server: grpc.aio.Server) -> None:
            user_pb2_grpc.add_UserServiceServicer_to_server(users, server)

        def register_presence(server: grpc.aio.Server) -> None:
            presence_pb2_grpc.add_PresenceServiceServicer_to_server(presence, server)

        running = await start_grpc_server(
            [
                GrpcService(name=SERVICE_NAME, register=register_users),
                GrpcService(
                    name=presence_servicer.SERVICE_NAME,
                    register=register_presence,
                    public_methods=presence_servicer.PUBLIC_METHODS,
                ),
            ],
            host=settings.grpc_host,
            port=settings.grpc_port,
            verifier=verifier,
            component=settings.service_name,
        )
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    except BaseException:
        background_stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        if hub is not None:
            with contextlib.suppress(Exception):
                await hub.stop()
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        raise
    return UserServer(
        running=running,
        hub=hub,
        background_stop=background_stop,
        background=background,
        closers=closers,
    )
