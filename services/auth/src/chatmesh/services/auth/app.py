"""Assembly of the running auth service: migrations, database, keys, limiter,
bus, outbox relay, gRPC server and metrics endpoint."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc

from chatmesh.auth.v1 import auth_pb2_grpc
from chatmesh.common.bus import EventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.server import GrpcService, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.outbox import OutboxRelay
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.service import ServiceRuntime
from chatmesh.common.tokens import TokenVerifier
from chatmesh.services.auth.keys import KeyStore, LocalJwksSource
from chatmesh.services.auth.service import AuthService
from chatmesh.services.auth.servicer import PUBLIC_METHODS, SERVICE_NAME, AuthServicer
from chatmesh.services.auth.settings import DB_SCHEMA, AuthSettings

MIGRATIONS = Path(__file__).parent / "migrations"


# What `serve()` returns: the started service (`.port`, `.stop(drain=, grace=)`).
AuthServer = ServiceRuntime


async def migrate(settings: AuthSettings) -> None:
    """Apply the auth schema's migrations (`python -m chatmesh.services.auth migrate`)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)


async def serve(
    settings: AuthSettings,
    *,
    bus: EventBus | None = None,
    limiter: RateLimiter | None = None,
) -> AuthServer:
    """Start the service as configured; `bus` / `limiter` override the ones the
    settings would create (embedded mode shares one bus between services)."""
    await migrate(settings)
    runtime = ServiceRuntime(settings)
    async with runtime.starting():
        db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
        runtime.on_close(db.close)
        limiter = runtime.rate_limiter(limiter)
        bus = runtime.event_bus(bus)

        keys = KeyStore(db, rotation_age=timedelta(seconds=settings.signing_key_rotation_seconds))
        # The first start makes the first key; later starts rotate an old one.
        await keys.signing_key()

        relay = OutboxRelay(db, bus)
        runtime.spawn(relay.run)

        service = AuthService(
            db=db, keys=keys, limiter=limiter, settings=settings, on_commit=relay.wake
        )
        servicer = AuthServicer(service)

        def register(server: grpc.aio.Server) -> None:
            auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

        runtime.attach(
            await start_grpc_server(
                [GrpcService(name=SERVICE_NAME, register=register, public_methods=PUBLIC_METHODS)],
                host=settings.grpc_host,
                port=settings.grpc_port,
                verifier=TokenVerifier(LocalJwksSource(keys)),
                component=settings.service_name,
            )
        )
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    return runtime
