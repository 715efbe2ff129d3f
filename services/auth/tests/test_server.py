"""The running service: health, draining, and the `python -m` entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.bus import RedisEventBus, stream_name, unpack
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.services.auth.app import serve
from chatmesh.services.auth.settings import AuthSettings

SERVICE = "chatmesh.auth.v1.AuthService"
AUTH_TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'auth'"


async def _health(channel: grpc.aio.Channel, service: str = SERVICE) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return response.status


async def test_health_is_serving_and_turns_not_serving_while_draining(auth):
    assert await _health(auth.channel) == health_pb2.HealthCheckResponse.SERVING
    assert await _health(auth.channel, "") == health_pb2.HealthCheckResponse.SERVING

    stopping = asyncio.create_task(auth.server.stop(drain=1.0, grace=0.5))
    await asyncio.sleep(0.3)
    assert await _health(auth.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    await stopping


async def test_bad_configuration_exits_2_naming_the_variable(tmp_path):
    env = {**os.environ, "CHATMESH_GRPC_PORT": "not-a-port"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.auth",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "CHATMESH_GRPC_PORT" in lines[0]


async def test_runs_as_a_process_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CHATMESH_GRPC_PORT": str(port),
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        "CHATMESH_REDIS_URL": "",
        "CHATMESH_DRAIN_SECONDS": "0",
        "CHATMESH_GRACE_SECONDS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.auth",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            async with asyncio.timeout(60):
                while True:
                    try:
                        if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_production_wiring_publishes_to_redis_streams(postgres_url, redis_url):
    """With CHATMESH_REDIS_URL set, events go to the `events.auth` Redis stream and
    throttling is shared through Redis."""
    server = await serve(
        AuthSettings(
            database_url=postgres_url,
            redis_url=redis_url,
            grpc_port=0,
            metrics_port=0,
            login_account_limit=1,
        )
    )
    client = create_redis(redis_url)
    bus = RedisEventBus(client, block_ms=100)
    received: list[ev.UserRegistered] = []
    got_it = asyncio.Event()
    stop = asyncio.Event()

    async def handle(event):
        if (message := unpack(event, ev.UserRegistered)) is not None:
            received.append(message)
            got_it.set()

    consumer = asyncio.create_task(
        bus.consume(stream_name("auth"), "mail", "mail-1", handle, stop=stop)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            response = await stub.Register(
                auth_pb2.RegisterRequest(
                    email="prod@example.com",
                    username="prod",
                    password="correct horse battery",
                    display_name="Prod",
                )
            )
            await asyncio.wait_for(got_it.wait(), timeout=10)
            assert received[0].user_id == response.account.id

            login = auth_pb2.LoginRequest(login="prod", password="wrong password 123")
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Login(login)
            with pytest.raises(grpc.aio.AioRpcError) as limited:
                await stub.Login(login)
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await client.keys("ratelimit:auth:login-account:*")
    finally:
        stop.set()
        await consumer
        await server.stop()
        await bus.close()
        await client.aclose()


async def test_migrate_subcommand_creates_the_auth_schema_and_exits(postgres_url):
    env = {**os.environ, "CHATMESH_DATABASE_URL": postgres_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.auth",
        "migrate",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()

    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            tables = (await connection.execute(text(AUTH_TABLES))).scalars().all()
    finally:
        await engine.dispose()
    assert {"accounts", "sessions", "refresh_tokens", "outbox", "alembic_version"} <= set(tables)


async def test_unknown_subcommand_exits_2():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.auth",
        "migrat",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"usage" in stderr
