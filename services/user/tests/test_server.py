"""The running service: health, draining, configuration errors, and the
`python -m chatmesh.services.user` entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh.common.testing import free_port

SERVICES = ("chatmesh.user.v1.UserService", "chatmesh.user.v1.PresenceService", "")


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return response.status


async def test_health_is_serving_and_turns_not_serving_while_draining(shared_mesh):
    replica = await shared_mesh.add_replica()
    for service in SERVICES:
        assert await _health(replica.channel, service) == health_pb2.HealthCheckResponse.SERVING

    stopping = asyncio.create_task(replica.server.stop(drain=1.0, grace=0.5))
    await asyncio.sleep(0.3)

    for service in SERVICES:
        assert await _health(replica.channel, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    await stopping


async def test_bad_configuration_exits_2_naming_the_variable(tmp_path):
    env = {**os.environ, "CHATMESH_PRESENCE_CONNECTION_TTL_SECONDS": "120"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.user",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "CHATMESH_PRESENCE_CONNECTION_TTL_SECONDS" in lines[0]


async def test_runs_as_a_process_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CHATMESH_GRPC_PORT": str(port),
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'user.db'}",
        "CHATMESH_REDIS_URL": "",
        "CHATMESH_DRAIN_SECONDS": "0",
        "CHATMESH_GRACE_SECONDS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.user",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            async with asyncio.timeout(60):
                while True:
                    try:
                        status = await _health(channel, SERVICES[0])
                    except grpc.aio.AioRpcError:
                        status = None
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                    await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0


async def test_migrate_subcommand_creates_the_schema_and_exits(tmp_path):
    database = tmp_path / "user.db"
    env = {
        **os.environ,
        "CHATMESH_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CHATMESH_REDIS_URL": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.services.user",
        "migrate",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(process.wait(), timeout=60)

    assert process.returncode == 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"profiles", "relationships", "blocks", "processed_events"} <= tables
