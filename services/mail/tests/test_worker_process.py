"""The production layout for the memory target: API replicas only queue
(`CHATMESH_QUEUE_WORKERS=false`) and `python -m chatmesh.services.mail worker`
processes deliver. The worker loads none of what only the API needs (the
service's protobufs, templates, the HTTP framework, cryptography), which keeps
it under 100 MB of RSS (bench/mail.py measures it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from chatmesh.mail.v1 import mail_pb2

# Top-level modules only the API side uses.
API_ONLY = (
    "chatmesh.mail",  # the service's protobufs (and any other service's)
    "chatmesh.common.grpc",
    "chatmesh.services.mail.servicer",
    "chatmesh.services.mail.templates",
    "jinja2",
    "cryptography.hazmat",  # webhook signatures (redis-py probes the bare package)
    "alembic",
    "uvicorn",
    "starlette",
)

PROBE = """
import asyncio, sys
from chatmesh.common.settings import load_settings
from chatmesh.services.mail.settings import MailSettings
from chatmesh.services.mail.worker import start_worker

async def main() -> None:
    worker = await start_worker(load_settings(MailSettings))
    loaded = [m for m in sys.argv[1].split(",") if any(
        name == m or name.startswith(m + ".") for name in sys.modules)]
    print("api-only:", loaded)
    await worker.stop()

asyncio.run(main())
"""


def _worker_env(database_url: str, redis_url: str, smtp_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "CHATMESH_DATABASE_URL": database_url,
        "CHATMESH_REDIS_URL": redis_url,
        "CHATMESH_PROVIDER": "smtp",
        "CHATMESH_SMTP_HOST": "127.0.0.1",
        "CHATMESH_SMTP_PORT": str(smtp_port),
        "CHATMESH_SMTP_STARTTLS": "false",
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_CLAIM_IDLE_SECONDS": "2",
    }


async def test_api_replicas_queue_and_the_worker_process_delivers(
    postgres_url: str, redis_url: str, smtp_sink: Any, kit: Any
) -> None:
    settings = kit.smtp_settings(postgres_url, smtp_sink, redis_url=redis_url, queue_workers=False)
    async with kit.start(settings) as mail:
        sent = await mail.send(
            "system_alert",
            "ops@example.com",
            {"title": "disk", "message": "full", "severity": "info"},
        )
        await asyncio.sleep(0.5)
        # The API replica does not deliver: the email waits for a worker.
        assert smtp_sink.handler.count() == 0
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatmesh.services.mail",
            "worker",
            env=_worker_env(postgres_url, redis_url, smtp_sink.port),
            stderr=subprocess.PIPE,
        )
        try:
            [received] = await smtp_sink.wait_count(1, within=30)
            await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(worker.communicate(), 30)
    assert received.message["Subject"] == "[INFO] disk"
    assert worker.returncode == 0, stderr.decode()


def test_the_worker_process_loads_nothing_only_the_api_needs(
    postgres_url: str, redis_url: str
) -> None:
    env = _worker_env(postgres_url, redis_url, 2)
    migrated = subprocess.run(
        [sys.executable, "-m", "chatmesh.services.mail", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(API_ONLY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert "api-only: []" in probe.stdout.splitlines(), probe.stdout


def test_a_worker_without_redis_exits_with_one_clear_line(postgres_url: str) -> None:
    env = {**_worker_env(postgres_url, "", 2)}
    result = subprocess.run(
        [sys.executable, "-m", "chatmesh.services.mail", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mail worker: the worker reads the Redis job queue: set CHATMESH_REDIS_URL"
    ]


def test_api_replicas_without_workers_need_redis(kit: Any) -> None:
    with pytest.raises(ValueError, match="CHATMESH_QUEUE_WORKERS=false needs CHATMESH_REDIS_URL"):
        kit.settings_for("sqlite+aiosqlite:///unused.db", queue_workers=False)
