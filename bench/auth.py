"""Auth benchmark: logins/s and latency of login and of an authenticated
GET /api/v1/me through the BFF, embedded (SQLite, in-process) and with
PostgreSQL + Redis.

The auth service and the BFF run as separate processes (as in production) so the
load generator does not share their event loop. Prints numbers; asserts nothing.

    uv run python bench/auth.py [--mode embedded|postgres|both] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.health import is_serving
from chatmesh.common.testing import free_port

PG_ADMIN = os.environ.get(
    "CHATMESH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHATMESH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "bench-password-123456"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(name: str, latencies: list[float], elapsed: float, errors: int) -> str:
    ms = [v * 1000 for v in latencies]
    return (
        f"{name:<28} n={len(ms):>5}  rate={len(ms) / elapsed:8.1f}/s  "
        f"p50={statistics.median(ms):6.2f} ms  p99={percentile(ms, 99):6.2f} ms  "
        f"max={max(ms):7.2f} ms  errors={errors}"
    )


@contextmanager
def mesh(mode: str, workdir: Path) -> Iterator[str]:
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "CHATMESH_LOG_LEVEL": "warning",
        "CHATMESH_GRPC_PORT": str(grpc_port),
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_AUTH_ADDRESS": f"127.0.0.1:{grpc_port}",
        "CHATMESH_HTTP_PORT": str(http_port),
        "CHATMESH_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
        # The benchmark measures throughput, not the abuse limits.
        "CHATMESH_RATE_LIMIT_IP": "100000000",
        "CHATMESH_RATE_LIMIT_AUTH_IP": "100000000",
        "CHATMESH_RATE_LIMIT_USER": "100000000",
        "CHATMESH_LOGIN_ACCOUNT_LIMIT": "100000000",
        "CHATMESH_LOGIN_IP_LIMIT": "100000000",
    }
    if mode == "embedded":
        env["CHATMESH_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'auth.db'}"
        env["CHATMESH_REDIS_URL"] = ""
        database = None
    else:
        database = f"cm_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg(f'CREATE DATABASE "{database}"'))
        env["CHATMESH_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        env["CHATMESH_REDIS_URL"] = REDIS_URL
    procs = [
        subprocess.Popen([sys.executable, "-m", "chatmesh.services.auth"], env=env),
        subprocess.Popen([sys.executable, "-m", "chatmesh.bff"], env=env),
    ]
    base = f"http://127.0.0.1:{http_port}"
    try:
        # Only auth and the BFF run here, so /readyz (which also wants the chat
        # and user services) would never pass: wait for auth SERVING + BFF up.
        deadline = time.monotonic() + 60
        while not asyncio.run(_ready(base, f"127.0.0.1:{grpc_port}")):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("mesh did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        if database:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _ready(base: str, auth_address: str) -> bool:
    async with create_channel(auth_address) as channel:
        if not await is_serving(channel, "chatmesh.auth.v1.AuthService"):
            return False
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{base}/healthz", timeout=1)).status_code == 200
    except httpx.TransportError:
        return False


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def open_loop(
    rate: float, seconds: float, call: Callable[[], Awaitable[bool]]
) -> tuple[list[float], int, float]:
    """Fire `call` at a fixed arrival rate (open loop: slow replies don't slow arrivals)."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        start = time.perf_counter()
        ok = await call()
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors += 1

    tasks = []
    # The load generator's own collector pauses are not the server's latency.
    gc.collect()
    gc.disable()
    try:
        begin = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    return latencies, errors, time.perf_counter() - begin


async def closed_loop(
    concurrency: int, seconds: float, call: Callable[[], Awaitable[bool]]
) -> tuple[list[float], int, float]:
    """As many calls as `concurrency` workers can make: the throughput ceiling."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            if await call():
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    begin = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - begin


async def run(base: str, rate: float, seconds: float) -> list[str]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
        username = f"bench{uuid.uuid4().hex[:8]}"
        created = await client.post(
            "/api/v1/auth/register",
            json={
                "email": f"{username}@example.com",
                "username": username,
                "password": PASSWORD,
                "display_name": "Bench",
            },
        )
        created.raise_for_status()
        token = created.json()["access_token"]
        client.cookies.clear()
        headers = {"Authorization": f"Bearer {token}"}

        async def login() -> bool:
            reply = await client.post(
                "/api/v1/auth/login", json={"login": username, "password": PASSWORD}
            )
            client.cookies.clear()
            return reply.status_code == 200

        async def me() -> bool:
            reply = await client.get("/api/v1/me", headers=headers)
            return reply.status_code == 200

        async def healthz() -> bool:
            return (await client.get("/healthz")).status_code == 200

        lines = []
        await closed_loop(4, 1, me)  # warm up connections and caches
        lat, err, elapsed = await open_loop(rate, seconds, healthz)
        lines.append(summary(f"GET /healthz at {rate:.0f}/s", lat, elapsed, err))
        # /me first: the login phase leaves work behind (sessions written, outbox
        # events relayed, the SQLite WAL checkpointed) that would land in /me's tail.
        lat, err, elapsed = await open_loop(rate, seconds, me)
        lines.append(summary(f"GET /me at {rate:.0f}/s", lat, elapsed, err))
        lat, err, elapsed = await closed_loop(16, seconds, me)
        lines.append(summary("GET /me (16 concurrent)", lat, elapsed, err))
        lat, err, elapsed = await closed_loop(8, seconds, login)
        lines.append(summary("login (8 concurrent)", lat, elapsed, err))
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    modes = ["embedded", "postgres"] if args.mode == "both" else [args.mode]
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}")
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp, mesh(mode, Path(tmp)) as base:
            print(f"== {mode} ==")
            for line in asyncio.run(run(base, args.rate, args.seconds)):
                print(line)


if __name__ == "__main__":
    main()
