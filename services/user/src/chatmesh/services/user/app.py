"""Assembly of the running user service: migrations, database, the consumer of
auth's events, presence (store, sweeper, pub/sub fan-out), gRPC server and
metrics endpoint."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import grpc

from chatmesh.common.bus import EventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.server import GrpcService, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub
from chatmesh.common.service import ServiceRuntime
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

# What `serve()` returns: the started service (`.port`, `.stop(drain=, grace=)`).
UserServer = ServiceRuntime


def presence_policy(settings: UserSettings) -> PresencePolicy:
    return PresencePolicy(
        connection_ttl=settings.presence_connection_ttl_seconds,
        away_after=settings.presence_away_after_seconds,
        offline_delay=settings.presence_offline_delay_seconds,
    )


async def migrate(settings: UserSettings) -> None:
    """Apply the user schema's migrations (`python -m chatmesh.services.user migrate`)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)


def _presence_backends(
    runtime: ServiceRuntime, *, pubsub: PubSub | None, presence_store: PresenceStore | None
) -> tuple[PubSub, PresenceStore]:
    """The given backends, else Redis ones (with `redis_url`) or in-process ones."""
    client = runtime.redis()
    if pubsub is None:
        pubsub = RedisPubSub(client) if client is not None else InProcessPubSub()
        runtime.on_close(pubsub.close)
    if presence_store is None:
        presence_store = (
            RedisPresenceStore(client) if client is not None else InMemoryPresenceStore()
        )
        runtime.on_close(presence_store.close_store)
    return pubsub, presence_store


async def serve(
    settings: UserSettings,
    *,
    bus: EventBus | None = None,
    pubsub: PubSub | None = None,
    presence_store: PresenceStore | None = None,
) -> UserServer:
    """Start the service as configured; `bus`, `pubsub` and `presence_store`
    override the ones the settings would create (Redis when `redis_url` is set,
    in-process otherwise; embedded mode shares them between services). Those
    passed in are not closed by `stop()`."""
    await migrate(settings)
    runtime = ServiceRuntime(settings)
    async with runtime.starting():
        db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
        runtime.on_close(db.close)
        bus = runtime.event_bus(bus)
        pubsub, presence_store = _presence_backends(
            runtime, pubsub=pubsub, presence_store=presence_store
        )
        auth_channel = create_channel(settings.auth_address)
        runtime.on_close(auth_channel.close)

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
        # Closers run in reverse: the hub lets go of its subscription first.
        runtime.on_close(hub.stop)

        consumer = RegistrationConsumer(
            profiles,
            bus=bus,
            group=settings.event_consumer_group,
            consumer=f"{socket.gethostname()}-{os.getpid()}",
        )
        runtime.spawn(consumer.run)
        runtime.spawn(tracker.run)

        users = UserServicer(profiles=profiles, relations=relations)
        presence = presence_servicer.PresenceServicer(tracker=tracker, hub=hub)

        def register_users(server: grpc.aio.Server) -> None:
            user_pb2_grpc.add_UserServiceServicer_to_server(users, server)

        def register_presence(server: grpc.aio.Server) -> None:
            presence_pb2_grpc.add_PresenceServiceServicer_to_server(presence, server)

        runtime.attach(
            await start_grpc_server(
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
                verifier=TokenVerifier(GrpcJwksSource(auth_channel)),
                component=settings.service_name,
            )
        )
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    return runtime
