"""Assembly of the running mail service: migrations, database, provider, queue,
workers, requeue sweep, auth-event consumer, gRPC server, REST API, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc

from chatmesh.common.bus import EventBus
from chatmesh.common.clock import Clock, utcnow
from chatmesh.common.db import Database, upgrade
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.server import GrpcService, start_grpc_server
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.service import ServiceRuntime
from chatmesh.common.tokens import GrpcJwksSource, TokenVerifier
from chatmesh.mail.v1 import mail_pb2_grpc
from chatmesh.services.mail.delivery import Deliverer
from chatmesh.services.mail.digests import DigestQueries
from chatmesh.services.mail.events import AUTH_STREAM, CONSUMER_GROUP, AuthEventHandler
from chatmesh.services.mail.jobqueue import (
    InProcessJobQueue,
    JobQueue,
    RedisJobQueue,
    consumer_name,
)
from chatmesh.services.mail.leases import Leases
from chatmesh.services.mail.presence import GrpcPresenceSource, PresenceSource
from chatmesh.services.mail.projection import CHAT_STREAM, Projection
from chatmesh.services.mail.providers import Provider, create_provider
from chatmesh.services.mail.scheduler import DigestPolicy, DigestScheduler
from chatmesh.services.mail.service import Limits, MailService
from chatmesh.services.mail.servicer import PUBLIC_METHODS, SERVICE_NAME, MailServicer
from chatmesh.services.mail.settings import DB_SCHEMA, MailSettings
from chatmesh.services.mail.templates import TemplateRenderer
from chatmesh.services.mail.webhooks import load_sendgrid_key

MIGRATIONS = Path(__file__).parent / "migrations"


class MailServer(ServiceRuntime):
    """The started service; `.service`, `.digests` and `.rest_port` are for tests
    and embedding."""

    service: MailService
    digests: DigestScheduler
    rest_port: int = 0


async def migrate(settings: MailSettings) -> None:
    """Apply the mail schema's migrations (`python -m chatmesh.services.mail migrate`)."""
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url, schema=DB_SCHEMA, migrations=MIGRATIONS)


async def serve(
    settings: MailSettings,
    *,
    bus: EventBus | None = None,
    limiter: RateLimiter | None = None,
    provider: Provider | None = None,
    presence: PresenceSource | None = None,
    clock: Clock = utcnow,
) -> MailServer:
    """Start the service as configured; `bus` / `limiter` / `provider` /
    `presence` override what the settings would create (embedded mode shares
    one bus); `clock` is the digests' and the queue's time (tests move it)."""
    sendgrid_key = (
        load_sendgrid_key(settings.sendgrid_webhook_public_key)
        if settings.sendgrid_webhook_public_key
        else None
    )
    if settings.migrate_on_start:
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

        service = _mail_service(settings, db, queue, limiter, clock)
        runtime.service = service
        deliverer = Deliverer.configured(settings, db=db, provider=provider, queue=queue)

        async def work(stop: asyncio.Event) -> None:
            await queue.run(deliverer.handle_batch, stop=stop)

        projection = Projection(db, clock=clock)

        async def consume_auth(stop: asyncio.Event) -> None:
            handler = AuthEventHandler(service, projection)
            await bus.consume(AUTH_STREAM, CONSUMER_GROUP, consumer_name(), handler, stop=stop)

        async def sweep(stop: asyncio.Event) -> None:
            await deliverer.run_sweeper(stop, interval=settings.sweep_interval_seconds)

        if settings.queue_workers:
            runtime.spawn(work)
            runtime.spawn(sweep)
        runtime.spawn(consume_auth)
        _start_digests(runtime, bus, projection, presence, clock)

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
            # Imported here: a queue-only worker (REST off) does without uvicorn/Starlette.
            from chatmesh.services.mail.rest import create_rest_app  # noqa: PLC0415
            from chatmesh.services.mail.rest_server import listen, rest_loop  # noqa: PLC0415

            rest_app = create_rest_app(
                service,
                api_keys=settings.api_key_list(),
                sendgrid_key=sendgrid_key,
                ses_token=settings.ses_webhook_token,
                dev_mailbox=settings.provider == "dev",
            )
            sock = listen(settings.rest_host, settings.rest_port)
            runtime.rest_port = sock.getsockname()[1]
            runtime.spawn(rest_loop(rest_app, sock))
        if settings.metrics_port > 0:
            start_metrics_server(settings.grpc_host, settings.metrics_port)
    return runtime


def _start_digests(
    runtime: MailServer,
    bus: EventBus,
    projection: Projection,
    presence: PresenceSource | None,
    clock: Clock,
) -> None:
    """Chat's events into the projection; the digest scheduler (if enabled)."""
    settings = runtime.settings
    assert isinstance(settings, MailSettings)
    if presence is None:
        user_channel = create_channel(settings.user_address)
        runtime.on_close(lambda: user_channel.close())
        presence = GrpcPresenceSource(user_channel)
    runtime.digests = _digests(
        settings, projection.db, runtime.service, projection, presence, clock
    )

    async def consume_chat(stop: asyncio.Event) -> None:
        await bus.consume(CHAT_STREAM, CONSUMER_GROUP, consumer_name(), projection, stop=stop)

    async def schedule_digests(stop: asyncio.Event) -> None:
        await runtime.digests.run(stop, interval=settings.digest_interval_seconds)

    runtime.spawn(consume_chat)
    if settings.digest_scheduler:
        runtime.spawn(schedule_digests)


def _mail_service(
    settings: MailSettings, db: Database, queue: JobQueue, limiter: RateLimiter, clock: Clock
) -> MailService:
    return MailService(
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
        clock=clock,
    )


def _digests(
    settings: MailSettings,
    db: Database,
    service: MailService,
    projection: Projection,
    presence: PresenceSource,
    clock: Clock,
) -> DigestScheduler:
    return DigestScheduler(
        queries=DigestQueries(db),
        projection=projection,
        service=service,
        presence=presence,
        # Unique per process: a restarted replica must not inherit a dead one's lease.
        leases=Leases(db, holder=f"{consumer_name()}:{uuid.uuid4().hex[:8]}", clock=clock),
        policy=DigestPolicy(
            missed_delay=timedelta(seconds=settings.missed_messages_delay_seconds),
            weekly_hour=settings.weekly_digest_hour,
            retention=timedelta(days=settings.digest_retention_days),
            lease=timedelta(seconds=settings.digest_lease_seconds),
        ),
        clock=clock,
    )


@contextlib.asynccontextmanager
async def _one_shot_digests(settings: MailSettings) -> AsyncIterator[DigestScheduler]:
    """The digest pieces without the server, for the CronJob commands. Queued
    emails are published to the Redis queue the service's workers read; in
    embedded mode the running service's sweep picks them up."""
    if settings.migrate_on_start:
        await migrate(settings)
    db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
    redis = create_redis(settings.redis_url) if settings.redis_url else None
    queue: JobQueue = RedisJobQueue(redis) if redis is not None else InProcessJobQueue()
    limiter: RateLimiter = RedisRateLimiter(redis) if redis is not None else InMemoryRateLimiter()
    user_channel = create_channel(settings.user_address)
    try:
        service = _mail_service(settings, db, queue, limiter, utcnow)
        yield _digests(
            settings,
            db,
            service,
            Projection(db),
            GrpcPresenceSource(user_channel),
            utcnow,
        )
    finally:
        await user_channel.close()
        if redis is not None:
            await redis.aclose()
        await db.close()


async def send_weekly_digests(settings: MailSettings) -> None:
    """`python -m chatmesh.services.mail send-weekly-digests`: today's weekly
    digests, unless a replica (or an earlier run) already sent them."""
    async with _one_shot_digests(settings) as digests:
        sent = await digests.send_weekly_digests()
    print(f"weekly digests queued: {sent}")


async def send_missed_messages(settings: MailSettings) -> None:
    """`python -m chatmesh.services.mail send-missed-messages`: one missed-messages pass."""
    async with _one_shot_digests(settings) as digests:
        sent = await digests.send_missed_messages()
    print(f"missed-messages emails queued: {sent}")
