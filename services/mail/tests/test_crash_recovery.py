"""A worker process SIGKILLed mid-send, and a Redis that restarts empty: every
email still goes out, exactly once."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.struct_pb2 import Struct

from chatmesh.common.testing import free_port
from chatmesh.mail.v1 import mail_pb2, mail_pb2_grpc

ALERT = {"title": "t", "message": "m", "severity": "info"}
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _worker(env: dict[str, str], grpc_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatmesh.services.mail"],
        env={**os.environ, **env, "CHATMESH_GRPC_PORT": str(grpc_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _ready(port: int, within: float = 20.0) -> grpc.aio.Channel:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await asyncio.wait_for(channel.channel_ready(), timeout=within)
    return channel


async def test_worker_killed_mid_send_is_reclaimed_and_sent_once(
    postgres_url: str, redis_url: str, smtp_sink: Any
) -> None:
    env = {
        "CHATMESH_DATABASE_URL": postgres_url,
        "CHATMESH_REDIS_URL": redis_url,
        "CHATMESH_PROVIDER": "smtp",
        "CHATMESH_SMTP_HOST": "127.0.0.1",
        "CHATMESH_SMTP_PORT": str(smtp_sink.port),
        "CHATMESH_SMTP_STARTTLS": "false",
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_REST_PORT": "0",
        "CHATMESH_CLAIM_IDLE_SECONDS": "1.5",
        # Long, so the takeover below is XAUTOCLAIM's doing, not the sweep's.
        "CHATMESH_REQUEUE_AFTER_SECONDS": "120",
        "CHATMESH_LOG_LEVEL": "warning",
    }
    # The first SMTP transaction hangs at RCPT: the worker is mid-send when killed.
    smtp_sink.handler.stall_rcpt = 5.0
    port_a, port_b = free_port(), free_port()
    worker_a = _worker(env, port_a)
    worker_b: subprocess.Popen[bytes] | None = None
    try:
        channel = await _ready(port_a)
        stub = mail_pb2_grpc.MailServiceStub(channel)
        sent = await stub.SendEmail(
            mail_pb2.SendEmailRequest(
                template_id="verify_email",
                recipient="lee@example.com",
                variables=_struct({"display_name": "Lee", "token": "abc"}),
                idempotency_key="kill-test",
            )
        )
        assert await asyncio.to_thread(smtp_sink.handler.rcpt_seen.wait, 20)
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait(10)
        await channel.close()

        worker_b = _worker(env, port_b)
        channel = await _ready(port_b)
        stub = mail_pb2_grpc.MailServiceStub(channel)
        await smtp_sink.wait_count(1, within=20)
        deadline = time.monotonic() + 10
        while True:
            email = (await stub.GetEmail(mail_pb2.GetEmailRequest(id=sent.email.id))).email
            if email.state == mail_pb2.EMAIL_STATE_SENT or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert email.state == mail_pb2.EMAIL_STATE_SENT
        assert email.attempts == 2
        await asyncio.sleep(2.0)  # longer than claim_idle: nothing else is reclaimed
        assert smtp_sink.handler.count() == 1
        await channel.close()
    finally:
        for process in (worker_a, worker_b):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _struct(values: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct


class OwnRedis:
    """A private redis-server without persistence: a restart loses everything."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


async def test_redis_restart_mid_run_loses_nothing(
    postgres_url: str, own_redis: OwnRedis, smtp_sink: Any, kit: Any
) -> None:
    smtp_sink.handler.data_delay = 0.15
    settings = kit.smtp_settings(
        postgres_url, smtp_sink, redis_url=own_redis.url, requeue_after_seconds=1.0
    )
    total = 40
    async with kit.start(settings) as mail:
        ids = [
            (await mail.send("system_alert", f"op{i}@example.com", ALERT)).email.id
            for i in range(total)
        ]
        await smtp_sink.wait_count(3)
        own_redis.kill()  # the stream, its pending entries and the group are gone
        await asyncio.sleep(0.5)
        own_redis.start()
        received = await smtp_sink.wait_count(total, within=30)
        for email_id in ids:
            await mail.wait_state(email_id, mail_pb2.EMAIL_STATE_SENT)
        await asyncio.sleep(1.5)
    assert smtp_sink.handler.count() == total
    recipients = sorted(r.envelope_to[0] for r in received)
    assert recipients == sorted(f"op{i}@example.com" for i in range(total))
