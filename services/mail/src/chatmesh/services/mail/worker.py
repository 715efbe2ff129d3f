"""`python -m chatmesh.services.mail worker`: a delivery-only process. It reads
the Redis job stream, delivers through the configured provider, records the
outcome, and runs the requeue sweep; no gRPC server, REST API, event consumers
or digest scheduler. So it imports neither grpc.aio and the service's
protobufs, nor the templates (rendering happens at enqueue time), nor the HTTP
framework: that is what keeps a worker replica under 100 MB of RSS.

The API replicas (`python -m chatmesh.services.mail` with
`CHATMESH_QUEUE_WORKERS=false`) queue the emails; any number of these drain them.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from chatmesh.common.db import Database
from chatmesh.common.lifecycle import Background, settle_heap
from chatmesh.common.logging import get_logger
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.redis import create_redis
from chatmesh.common.settings import CONFIG_ERROR_EXIT_CODE
from chatmesh.services.mail.delivery import Deliverer
from chatmesh.services.mail.jobqueue import RedisJobQueue
from chatmesh.services.mail.providers import Provider, create_provider
from chatmesh.services.mail.settings import DB_SCHEMA, MailSettings

log = get_logger(__name__)


class WorkerConfigError(ValueError):
    """The settings cannot run a worker process (one line for the operator)."""


class RunningWorker:
    """The started worker: its loops stop on `stop()`, then the connections close."""

    def __init__(self, queue: RedisJobQueue, deliverer: Deliverer) -> None:
        self.queue = queue
        self.deliverer = deliverer
        self.background = Background()

    async def stop(self) -> None:
        """Finish the batches in flight (they are acked), then close."""
        await self.background.stop()


async def start_worker(
    settings: MailSettings, *, provider: Provider | None = None
) -> RunningWorker:
    """Connect and start the delivery loops and the sweep (`provider`: tests)."""
    if not settings.redis_url:
        # The in-process queue lives inside the API process (embedded mode).
        raise WorkerConfigError("the worker reads the Redis job queue: set CHATMESH_REDIS_URL")
    db = Database(settings.resolved_database_url(), schema=DB_SCHEMA)
    redis = create_redis(settings.redis_url)
    queue = RedisJobQueue(
        redis,
        claim_idle=settings.claim_idle_seconds,
        batch_size=settings.worker_batch_size,
        loops=settings.worker_loops,
    )
    if provider is None:
        provider = create_provider(settings, db)
    deliverer = Deliverer.configured(settings, db=db, provider=provider, queue=queue)
    worker = RunningWorker(queue, deliverer)
    for close in (db.close, redis.aclose, provider.close):
        worker.background.on_close(close)
    worker.background.spawn(lambda stop: queue.run(deliverer.handle_batch, stop=stop))
    worker.background.spawn(
        lambda stop: deliverer.run_sweeper(stop, interval=settings.sweep_interval_seconds)
    )
    if settings.metrics_port > 0:
        start_metrics_server(settings.grpc_host, settings.metrics_port)
    return worker


async def run_worker(settings: MailSettings) -> None:
    """Run until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        worker = await start_worker(settings)
    except WorkerConfigError as exc:
        print(f"mail worker: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_ERROR_EXIT_CODE) from None
    settle_heap()
    log.info("mail worker started", consumer=worker.queue.consumer)
    await stop.wait()
    log.info("mail worker stopping")
    await worker.stop()
