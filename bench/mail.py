"""Mail benchmark: enqueue N emails through the mail service's gRPC API and
deliver them through the queue to a local SMTP sink (aiosmtpd) or the dev
mailbox. Reports jobs/s end to end, p50/p99 queue latency (SendEmail called →
message accepted by the sink), and the worker's RSS.

The mail service runs as its own process (`python -m chatmesh.services.mail`),
as in production: the `migrate` command first, then the service with
`CHATMESH_MIGRATE_ON_START=false`, from compiled bytecode; the load generator
and the SMTP sink live in this process. Modes:
  worker:   the API process queues only (CHATMESH_QUEUE_WORKERS=false) and one
            `python -m chatmesh.services.mail worker` process delivers (the
            production layout; "per worker" RSS is this process's);
  redis:    one process queues and delivers through Redis;
  embedded: one process, SQLite and the in-process queue.
The worker's RSS (VmRSS from /proc) is reported idle after start-up, its maximum
while queueing and while draining, and its high-water mark (VmHWM). Targets:
over 500 emails/s, under 100 MB RSS per worker.

    uv run python bench/mail.py [--mode worker|redis|embedded|both|all] [--count 10000]
                                [--provider smtp|dev] [--concurrency 64] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import grpc
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from google.protobuf.struct_pb2 import Struct

from chatmesh.common.testing import free_port
from chatmesh.mail.v1 import mail_pb2, mail_pb2_grpc

PG_ADMIN = os.environ.get(
    "CHATMESH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHATMESH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
# Compiled bytecode, as in the service image (UV_COMPILE_BYTECODE=1): importing from
# source instead costs the worker start-up time and a few MB of RSS. Kept outside
# the tree; the migration run compiles what the service imports.
PYCACHE = Path(tempfile.gettempdir()) / "chatmesh-bench-pycache"


class Sink:
    """Counts accepted messages and when each arrived (by Message-ID)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expected = 0

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        now = time.monotonic()
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        head = content.split(b"\r\n\r\n", 1)[0]
        message_id = ""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode().strip("<>").split("@")[0]
        with self.lock:
            self.arrivals.setdefault(message_id, now)
            if len(self.arrivals) >= self.expected:
                self.done.set()
        return "250 OK"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of `pid` in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


async def _pg(statement: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def service(
    mode: str, provider: str, smtp_port: int, workdir: Path
) -> AsyncIterator[tuple[int, int, int]]:
    """Yields (grpc port, pid of the process that delivers, pid of the API process)."""
    grpc_port = free_port()
    env = {
        **os.environ,
        "CHATMESH_LOG_LEVEL": "warning",
        "CHATMESH_GRPC_PORT": str(grpc_port),
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_REST_PORT": "0",
        "CHATMESH_PROVIDER": provider,
        "CHATMESH_SMTP_HOST": "127.0.0.1",
        "CHATMESH_SMTP_PORT": str(smtp_port),
        "CHATMESH_SMTP_STARTTLS": "false",
        "CHATMESH_DEV_MAIL_CONSOLE": "false",
        "CHATMESH_RECIPIENT_LIMIT": "1000000",
        "CHATMESH_CATEGORY_LIMIT": "1000000",
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
    }
    database = ""
    if mode in ("redis", "worker"):
        database = f"cm_bench_mail_{uuid.uuid4().hex[:10]}"
        await _pg(f'CREATE DATABASE "{database}"')
        redis.Redis.from_url(REDIS_URL).flushdb()
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        env["CHATMESH_DATABASE_URL"] = f"{base}/{database}"
        env["CHATMESH_REDIS_URL"] = REDIS_URL
    else:
        env["CHATMESH_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'mail.db'}"
        env["CHATMESH_REDIS_URL"] = ""
    # As deployed: a migration job first, then the service (which skips Alembic).
    migration = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatmesh.services.mail", "migrate", env=env
    )
    if await migration.wait() != 0:
        raise RuntimeError("mail migrations failed")
    env["CHATMESH_MIGRATE_ON_START"] = "false"
    processes = []
    if mode == "worker":
        env["CHATMESH_QUEUE_WORKERS"] = "false"
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatmesh.services.mail", "worker", env=env
            )
        )
    processes.append(
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatmesh.services.mail", env=env
        )
    )
    try:
        yield grpc_port, processes[0].pid, processes[-1].pid
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
        if database:
            await _pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def wait_delivered(
    stub: mail_pb2_grpc.MailServiceStub, ids: list[str], within: float
) -> None:
    """For the dev provider: poll until the last email is sent."""
    deadline = time.monotonic() + within
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        response = await stub.GetEmail(mail_pb2.GetEmailRequest(id=pending[-1]))
        if response.email.state == mail_pb2.EMAIL_STATE_SENT:
            pending.pop()
        else:
            await asyncio.sleep(0.05)


async def run(  # noqa: PLR0915 (one linear scenario reads best in one place)
    mode: str, provider: str, count: int, concurrency: int, batch: int
) -> str:
    sink = Sink()
    sink.expected = count
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    workdir = Path(tempfile.mkdtemp(prefix="chatmesh-bench-mail-"))
    try:
        async with service(mode, provider, smtp_port, workdir) as (port, pid, api_pid):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
            await asyncio.sleep(1)  # the worker process finishes its start-up
            stub = mail_pb2_grpc.MailServiceStub(channel)
            variables = Struct()
            variables.update({"title": "bench", "message": "x" * 200, "severity": "info"})
            enqueued: dict[str, float] = {}
            errors = 0
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(count):
                queue.put_nowait(i)
            # Peak RSS while emails are being queued, and while the queue drains.
            peak = {"enqueue": 0, "drain": 0}
            phase = ["enqueue"]
            idle_rss = rss_kib(pid)[0]

            async def producer() -> None:
                nonlocal errors
                while not queue.empty():
                    chunk = [queue.get_nowait() for _ in range(min(batch, queue.qsize()))]
                    started = time.monotonic()
                    requests = [
                        mail_pb2.SendEmailRequest(
                            template_id="system_alert",
                            recipient=f"user{i}@example.com",
                            variables=variables,
                            idempotency_key=f"bench-{i}",
                        )
                        for i in chunk
                    ]
                    try:
                        if batch == 1:
                            responses = [await stub.SendEmail(requests[0])]
                        else:
                            reply = await stub.BatchSendEmails(
                                mail_pb2.BatchSendEmailsRequest(requests=requests)
                            )
                            responses = list(reply.responses)
                    except grpc.aio.AioRpcError:
                        errors += len(chunk)
                        continue
                    for response in responses:
                        enqueued[response.email.id] = started

            async def sample_rss() -> None:
                while True:
                    peak[phase[0]] = max(peak[phase[0]], rss_kib(pid)[0])
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample_rss())
            t0 = time.monotonic()
            await asyncio.gather(*(producer() for _ in range(concurrency)))
            t_enqueued = time.monotonic()
            phase[0] = "drain"
            if provider == "smtp":
                await asyncio.to_thread(sink.done.wait, 300)
                arrivals = dict(sink.arrivals)
            else:
                await wait_delivered(stub, list(enqueued), 300)
                arrivals = {}
            t_end = time.monotonic()
            sampler.cancel()
            current, hwm = rss_kib(pid)
            api_hwm = rss_kib(api_pid)[1]
            await channel.close()
        latencies = [arrivals[i] - enqueued[i] for i in enqueued if i in arrivals]
        delivered = len(latencies) if provider == "smtp" else len(enqueued)
        lines = [
            f"[{mode}/{provider}] {count} emails, {concurrency} concurrent producers, "
            f"{'SendEmail' if batch == 1 else f'BatchSendEmails of {batch}'}",
            f"  enqueue:     {len(enqueued) / (t_enqueued - t0):8.1f} emails/s  errors={errors}",
            f"  end to end:  {delivered / (t_end - t0):8.1f} emails/s "
            f"({delivered} delivered in {t_end - t0:.1f} s)",
        ]
        if len(arrivals) > 1:
            # The worker's own pace: first to last message at the sink.
            span = max(arrivals.values()) - min(arrivals.values())
            lines.append(
                f"  delivery:    {len(arrivals) / span:8.1f} emails/s (first to last at the sink)"
            )
        if latencies:
            ms = [v * 1000 for v in latencies]
            lines.append(
                f"  queue latency: p50={statistics.median(ms):.0f} ms  "
                f"p99={percentile(ms, 99):.0f} ms  max={max(ms):.0f} ms"
            )
        lines.append(
            f"  worker RSS:  idle after start-up={idle_rss / 1024:.1f} MiB  "
            f"peak (VmHWM)={hwm / 1024:.1f} MiB"
        )
        lines.append(
            f"               max sampled while queueing={peak['enqueue'] / 1024:.1f} MiB, "
            f"while draining={peak['drain'] / 1024:.1f} MiB (0: drained as queued), "
            f"end={current / 1024:.1f} MiB"
        )
        if api_pid != pid:
            lines.append(f"  API process RSS peak (VmHWM)={api_hwm / 1024:.1f} MiB")
        return "\n".join(lines)
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--mode", choices=["worker", "redis", "embedded", "both", "all"], default="worker"
    )
    parser.add_argument("--provider", choices=["smtp", "dev"], default="smtp")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--batch", type=int, default=1, help="emails per BatchSendEmails call (1: SendEmail)"
    )
    args = parser.parse_args()
    # both: the two all-in-one layouts (as before the worker mode existed).
    presets = {"all": ["worker", "redis", "embedded"], "both": ["redis", "embedded"]}
    modes = presets.get(args.mode, [args.mode])
    for mode in modes:
        print(
            asyncio.run(run(mode, args.provider, args.count, args.concurrency, args.batch)),
            flush=True,
        )


if __name__ == "__main__":
    main()
