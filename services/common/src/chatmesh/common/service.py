"""What every service's `app.py` and `__main__.py` share: owning the running
pieces (gRPC server, background loops, connections) so they stop in reverse
order, and the `python -m chatmesh.services.<name> [migrate]` entry point."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis

from chatmesh.common.bus import EventBus, InProcessEventBus, RedisEventBus
from chatmesh.common.grpc.server import RunningServer, install_stop_signals
from chatmesh.common.lifecycle import Background, settle_heap
from chatmesh.common.logging import configure_logging, get_logger
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.settings import ServiceSettings, load_settings
from chatmesh.common.tracing import configure_tracing

S = TypeVar("S", bound=ServiceSettings)
log = get_logger(__name__)


class ServiceRuntime:
    """The resources of one started service.

    Background loops get `stop_event`; closers run in reverse order of
    registration after the gRPC server has drained.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._background = Background()
        self.stop_event = self._background.stop_event
        self._redis: aioredis.Redis | None = None
        self._running: RunningServer | None = None
        self._stopped = False

    @property
    def running(self) -> RunningServer:
        if self._running is None:
            raise RuntimeError("the gRPC server has not been started")
        return self._running

    @property
    def port(self) -> int:
        return self.running.port

    def attach(self, running: RunningServer) -> None:
        self._running = running

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._background.on_close(closer)

    def spawn(self, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run `loop(stop_event)` in the background until the service stops."""
        self._background.spawn(loop)

    def redis(self) -> aioredis.Redis | None:
        """One shared client for the configured Redis, or None in embedded mode."""
        if not self.settings.redis_url:
            return None
        if self._redis is None:
            self._redis = create_redis(self.settings.redis_url)
            self.on_close(self._redis.aclose)
        return self._redis

    def event_bus(self, given: EventBus | None) -> EventBus:
        """`given` (embedded mode shares one bus), else Redis Streams or in-process."""
        if given is not None:
            return given
        client = self.redis()
        bus: EventBus = RedisEventBus(client) if client is not None else InProcessEventBus()
        self.on_close(bus.close)
        return bus

    def rate_limiter(self, given: RateLimiter | None) -> RateLimiter:
        if given is not None:
            return given
        client = self.redis()
        return RedisRateLimiter(client) if client is not None else InMemoryRateLimiter()

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[ServiceRuntime]:
        """Wrap start-up: if any step fails, what already started is stopped."""
        try:
            yield self
        except BaseException:
            await self.stop()
            raise

    async def stop(self, *, drain: float = 0.0, grace: float = 1.0) -> None:
        """NOT_SERVING → drain → stop the server, then background loops, then closers."""
        if self._stopped:
            return
        self._stopped = True
        if self._running is not None:
            await self._running.stop(drain=drain, grace=grace)
        await self._background.stop()


def run_service_main(
    settings_type: type[S],
    *,
    serve: Callable[[S], Awaitable[ServiceRuntime]],
    migrate: Callable[[S], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
    commands: Mapping[str, Callable[[S], Coroutine[Any, Any, None]]] | None = None,
) -> None:
    """`python -m chatmesh.services.<name>` serves until SIGTERM/SIGINT;
    `… migrate` applies the database migrations and exits (the Kubernetes Job);
    `… <command>` runs one of the service's one-shot `commands` (CronJobs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    one_shot: dict[str, Callable[[S], Coroutine[Any, Any, None]]] = {
        "migrate": migrate,
        **(commands or {}),
    }
    if len(args) > 1 or (args and args[0] not in one_shot):
        print(
            f"usage: python -m chatmesh.services.{settings_type.service_name}"
            f" [{' | '.join(one_shot)}]",
            file=sys.stderr,
        )
        raise SystemExit(2)
    settings = load_settings(settings_type)  # exits 2 with one line on bad config
    configure_logging(settings.service_name, level=settings.log_level, fmt=settings.log_format)
    if args:
        asyncio.run(one_shot[args[0]](settings))
        log.info("command finished", service=settings.service_name, command=args[0])
        return
    configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)

    async def run() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        runtime = await serve(settings)
        settle_heap()
        log.info("service started", service=settings.service_name, port=runtime.port)
        await stop.wait()
        log.info("service stopping", service=settings.service_name)
        await runtime.stop(drain=settings.drain_seconds, grace=settings.grace_seconds)

    asyncio.run(run())
