"""Assembly of the running mail service: migrations, database, provider, queue,
workers, requeue sweep, auth-event consumer, gRPC server, REST API, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path

import grpc
import uvicorn
from starlette.applications import Starlette

from chatmesh.common.bus import EventBus
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.server import GrpcService, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.service import ServiceRuntime
from chatmesh.common.tokens import GrpcJwksSource, TokenVerifier
from chatmesh.mail.v1 import mail_pb2_grpc
from chatmesh.services.mail.delivery import Deliverer
from chatmesh.services.mail.events import AUTH_STREAM, CONSUMER_GROUP, AuthEventHandler
from chatmesh.services.mail.jobqueue import (
    InProcessJobQueue,
    JobQueue,
    RedisJobQueue,
    consumer_name,
)
from chatmesh.services.mail.providers import Provider, create_provider
from chatmesh.services.mail.rest import create_rest_app
from chatmesh.services.mail.service import Limits, MailService
from chatmesh.services.mail.servicer import PUBLIC_METHODS, SERVICE_NAME, MailServicer
from chatmesh.services.mail.settings import DB_SCHEMA, MailSettings
from chatmesh.services.mail.templates import TemplateRenderer
from chatmesh.services.mail.webhooks import load_sendgrid_key

MIGRATIONS = Path(__file__).parent / "migrations"


class MailServer(ServiceRuntime):
    """The started service; `.service` and `.rest_port` are for tests and embedding."""

    service: MailService
    rest_port: int = 0


async def migrate(settings: MailSettings) -> None:
    """Apply the mail schema's migrations (`python -m chatmesh.services.mail migrate`)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service's own SIGTERM handling (run_service_main) stops us.
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _rest_loop(app: Starlette, sock: socket.socket) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await stop.wait()
        server.should_exit = True
        await task
        sock.close()

    return run


async def serve(
    settings: MailSettings,
    *,
    bus: EventBus | None = None,
    limiter: RateLimiter | None = None,
    provider: Provider | None = None,
) -> MailServer:
    """Start the service as configured; `bus` / `limiter` / `provider` override
    what the settings would create (embedded mode shares one bus)."""
    sendgrid_key = (
        load_sendgrid_key(settings.sendgrid_webhook_public_key)
        if settings.sendgrid_webhook_public_key
        else None
    )
    await migrate(settings)
    runtime = MailServer(settings)
    async with runtime.starting():
        db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
        runtime.on_close(db.close)
        limiter = runtime.rate_limiter(limiter)
        bus = runtime.event_bus(bus)
        redis = runtime.redis()
        queue: JobQueue = (
            RedisJobQueue(
                redis,
                claim_idle=settings.claim_idle_seconds,
                batch_size=settings.worker_batch_size,
                loops=settings.worker_loops,
            )
            if redis is not None
            else InProcessJobQueue(batch_size=settings.worker_batch_size)
        )
        if provider is None:
            provider = create_provider(settings, db)
        runtime.on_close(provider.close)

        service = MailService(
            db=db,
            queue=queue,
            limiter=limiter,
            renderer=TemplateRenderer(public_url=settings.public_url),
            limits=Limits(
                recipient=settings.recipient_limit,
                category=settings.category_limit,
                window=settings.rate_window_seconds,
            ),
            unsubscribe_secret=settings.unsubscribe_secret,
            unsubscribe_url=settings.resolved_unsubscribe_url(),
            requeue_after=settings.requeue_after_seconds,
            operators=settings.operator_list(),
        )
        runtime.service = service
        deliverer = Deliverer(
            db=db,
            provider=provider,
            queue=queue,
            sender=settings.mail_from,
            max_attempts=settings.max_attempts,
            retry_base=settings.retry_base_seconds,
            retry_max=settings.retry_max_seconds,
            claim_idle=settings.claim_idle_seconds,
            requeue_after=settings.requeue_after_seconds,
        )

        async def work(stop: asyncio.Event) -> None:
            await queue.run(deliverer.handle_batch, stop=stop)

        async def consume_auth(stop: asyncio.Event) -> None:
            await bus.consume(
                AUTH_STREAM, CONSUMER_GROUP, consumer_name(), AuthEventHandler(service), stop=stop
            )

        runtime.spawn(work)

        async def sweep(stop: asyncio.Event) -> None:
            await deliverer.run_sweeper(stop, interval=settings.sweep_interval_seconds)

        runtime.spawn(sweep)
        runtime.spawn(consume_auth)

        servicer = MailServicer(service)

        def register(server: grpc.aio.Server) -> None:
            mail_pb2_grpc.add_MailServiceServicer_to_server(servicer, server)

        auth_channel = create_channel(settings.auth_address)
        runtime.on_close(lambda: auth_channel.close())
        runtime.attach(
            await start_grpc_server(
                [GrpcService(name=SERVICE_NAME, register=register, public_methods=PUBLIC_METHODS)],
                host=settings.grpc_host,
                port=settings.grpc_port,
                verifier=TokenVerifier(GrpcJwksSource(auth_channel)),
                component=settings.service_name,
            )
        )
        if settings.rest_port > 0:
            rest_app = create_rest_app(
                service,
                api_keys=settings.api_key_list(),
                sendgrid_key=sendgrid_key,
                ses_token=settings.ses_webhook_token,
                dev_mailbox=settings.provider == "dev",
            )
            sock = _listen(settings.rest_host, settings.rest_port)
            runtime.rest_port = sock.getsockname()[1]
            runtime.spawn(_rest_loop(rest_app, sock))
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    return runtime
