"""Assembly of the running auth service: migrations, database, keys, limiter,
bus, outbox relay, gRPC server and metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import grpc

from chatmesh.auth.v1 import auth_pb2_grpc
from chatmesh.common.bus import EventBus, InProcessEventBus, RedisEventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.server import GrpcService, RunningServer, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.outbox import OutboxRelay
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.tokens import TokenVerifier
from chatmesh.services.auth.keys import KeyStore, LocalJwksSource
from chatmesh.services.auth.service import AuthService
from chatmesh.services.auth.servicer import PUBLIC_METHODS, SERVICE_NAME, AuthServicer
from chatmesh.services.auth.settings import DB_SCHEMA, AuthSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class AuthServer:
    """A started auth service. `stop()` undoes `serve()` in reverse order."""

    def __init__(
        self,
        *,
        running: RunningServer,
        background_stop: asyncio.Event,
        background: list[asyncio.Task[None]],
        closers: list[Callable[[], Awaitable[None]]],
    ) -> None:
        self.running = running
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
        for close in reversed(self._closers):
            await close()


async def serve(
    settings: AuthSettings,
    *,
    bus: EventBus | None = None,
    limiter: RateLimiter | None = None,
) -> AuthServer:
    """Start the service as configured; `bus` / `limiter` override the ones the
    settings would create (embedded mode shares one bus between services)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)

    closers: list[Callable[[], Awaitable[None]]] = []
    background_stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    running: RunningServer | None = None
    try:
        db = Database(url, schema=DB_SCHEMA)
        closers.append(db.close)
        redis = None
        if settings.redis_url and (bus is None or limiter is None):
            redis = create_redis(settings.redis_url)
            closers.append(redis.aclose)
        if limiter is None:
            limiter = RedisRateLimiter(redis) if redis is not None else InMemoryRateLimiter()
        if bus is None:
            bus = RedisEventBus(redis) if redis is not None else InProcessEventBus()
            closers.append(bus.close)

        keys = KeyStore(db, rotation_age=timedelta(seconds=settings.signing_key_rotation_seconds))
        # The first start makes the first key; later starts rotate an old one.
        await keys.signing_key()

        relay = OutboxRelay(db, bus)
        background.append(asyncio.create_task(relay.run(background_stop)))

        service = AuthService(
            db=db, keys=keys, limiter=limiter, settings=settings, on_commit=relay.wake
        )
        servicer = AuthServicer(service)

        def register(server: grpc.aio.Server) -> None:
            auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

        running = await start_grpc_server(
            [GrpcService(name=SERVICE_NAME, register=register, public_methods=PUBLIC_METHODS)],
            host=settings.grpc_host,
            port=settings.grpc_port,
            verifier=TokenVerifier(LocalJwksSource(keys)),
            component=settings.service_name,
        )
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    except BaseException:
        if running is not None:
            await running.stop()
        background_stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        raise
    return AuthServer(
        running=running, background_stop=background_stop, background=background, closers=closers
    )
