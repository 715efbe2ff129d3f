"""Chat service fan-out benchmark, at the gRPC level (no BFF, no WebSockets).

The auth and chat services run as separate processes. The load generator plays
the BFF processes: each holds ONE StreamRoomEvents stream with its share of the
receivers subscribed (so every event reaches each stream once), and a sender
posts messages at a fixed rate (open loop). For every message it measures the
time from starting SendMessage to its arrival on each stream.

    uv run python bench/fanout_service.py [--mode embedded|postgres|both]
        [--receivers 100] [--streams 2] [--rate 100] [--seconds 20] [--rooms 1]

Prints numbers; asserts nothing. Lost must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _pg(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def services(mode: str, workdir: Path) -> Iterator[tuple[int, int, int]]:
    """(auth port, chat port, chat pid) of freshly started services."""
    auth_port, chat_port = free_port(), free_port()
    base = {
        **os.environ,
        "CHATMESH_LOG_LEVEL": "warning",
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_AUTH_ADDRESS": f"127.0.0.1:{auth_port}",
    }
    database = None
    if mode == "embedded":
        auth_db = f"sqlite+aiosqlite:///{workdir / 'auth.db'}"
        chat_db = f"sqlite+aiosqlite:///{workdir / 'chat.db'}"
        redis = ""
    else:
        database = f"cm_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg(f'CREATE DATABASE "{database}"'))
        auth_db = chat_db = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        redis = REDIS_URL
    auth = subprocess.Popen(
        [sys.executable, "-m", "chatmesh.services.auth"],
        env={
            **base,
            "CHATMESH_GRPC_PORT": str(auth_port),
            "CHATMESH_DATABASE_URL": auth_db,
            "CHATMESH_REDIS_URL": redis,
        },
    )
    profile = os.environ.get("BENCH_CHAT_PROFILE")  # a file: run the chat service under cProfile
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    chat = subprocess.Popen(
        [sys.executable, *prefix, "-m", "chatmesh.services.chat"],
        env={
            **base,
            "CHATMESH_GRPC_PORT": str(chat_port),
            "CHATMESH_DATABASE_URL": chat_db,
            "CHATMESH_REDIS_URL": redis,
        },
    )
    try:
        asyncio.run(_wait_serving([auth_port, chat_port]))
        yield auth_port, chat_port, chat.pid
    finally:
        for process in (chat, auth):
            process.terminate()
        for process in (chat, auth):
            process.wait(timeout=30)
        if database:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _wait_serving(ports: list[int]) -> None:
    for port in ports:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service on port {port} did not start")
                await asyncio.sleep(0.2)


async def register(stub: auth_pb2_grpc.AuthServiceStub, n: int) -> list[tuple[str, str]]:
    """(user id, access token) of `n` new users."""
    tag = uuid.uuid4().hex[:6]

    async def one(i: int) -> tuple[str, str]:
        reply = await stub.Register(
            auth_pb2.RegisterRequest(
                email=f"b{tag}{i}@example.com",
                username=f"b{tag}{i}",
                password=PASSWORD,
                display_name=f"Bench {i}",
            )
        )
        return reply.account.id, reply.tokens.access_token

    users = []
    for start in range(0, n, 20):
        users += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20))))
    return users


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def setup(
    args: argparse.Namespace, auth_port: int, chat: chat_service_pb2_grpc.ChatServiceStub
) -> tuple[tuple[str, str], list[tuple[str, str]], list[str]]:
    """(sender, receivers, room ids): users registered, rooms created and joined."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_port}") as auth_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        sender, *receivers = await register(auth, args.receivers + 1)
    rooms = []
    for k in range(args.rooms):
        created = await chat.CreateRoom(
            api.CreateRoomRequest(name=f"bench {k}"), metadata=md(sender[1])
        )
        rooms.append(created.room.id)
    for _, token in receivers:
        for room_id in rooms:
            await chat.JoinRoom(api.JoinRoomRequest(room_id=room_id), metadata=md(token))
    return sender, receivers, rooms


class Receivers:
    """The BFF side: one stream per simulated BFF process, arrival times per message."""

    def __init__(self, chat_port: int, streams: int) -> None:
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.expected = 0
        self.done = asyncio.Event()
        self._channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{chat_port}") for _ in range(streams)
        ]
        self._calls = [
            chat_service_pb2_grpc.ChatServiceStub(c).StreamRoomEvents() for c in self._channels
        ]
        self._readers = [asyncio.create_task(self._read(call)) for call in self._calls]

    async def subscribe(self, receivers: list[tuple[str, str]]) -> None:
        for index, (_, token) in enumerate(receivers):
            await self._calls[index % len(self._calls)].write(
                api.StreamRoomEventsRequest(
                    subscribe=api.StreamRoomEventsRequest.Subscribe(
                        subscriber_id=f"ws-{index}", access_token=token, all_rooms=True
                    )
                )
            )

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        async for response in call:
            if response.WhichOneof("item") != "event":
                continue
            event = response.event
            if event.HasField("message_created"):
                key = event.message_created.message.client_msg_id
                if key in self.sent_at:
                    self.latencies.append(time.perf_counter() - self.sent_at[key])
                    if self.expected and len(self.latencies) >= self.expected:
                        self.done.set()

    async def close(self) -> None:
        for call in self._calls:
            call.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for channel in self._channels:
            await channel.close()


async def run(args: argparse.Namespace, auth_port: int, chat_port: int, chat_pid: int) -> str:
    chat_channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat_port}")
    chat = chat_service_pb2_grpc.ChatServiceStub(chat_channel)
    sender, receivers, rooms = await setup(args, auth_port, chat)
    rss_idle = rss_mb(chat_pid)
    # Each stream stands for one BFF process; receivers are spread over them.
    streams = Receivers(chat_port, args.streams)
    await streams.subscribe(receivers)
    await asyncio.sleep(1.0)

    total = int(args.rate * args.seconds)
    errors = 0
    send_latencies: list[float] = []

    async def send(n: int) -> None:
        nonlocal errors
        key = f"k{n}"
        started = time.perf_counter()
        streams.sent_at[key] = started
        try:
            await chat.SendMessage(
                api.SendMessageRequest(
                    room_id=rooms[n % len(rooms)], body=f"bench message {n}", client_msg_id=key
                ),
                metadata=md(sender[1]),
            )
            send_latencies.append(time.perf_counter() - started)
        except grpc.aio.AioRpcError:
            errors += 1
            del streams.sent_at[key]

    began = time.perf_counter()
    cpu_before = cpu_seconds(chat_pid)
    tasks = []
    rss_peak = 0.0
    for n in range(total):
        delay = began + n / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n)))
        if n % int(args.rate) == 0:
            rss_peak = max(rss_peak, rss_mb(chat_pid))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    sent = len(streams.sent_at)
    streams.expected = expected = sent * args.streams
    if len(streams.latencies) < expected:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await streams.done.wait()
    received = len(streams.latencies)
    cpu_per_message = (cpu_seconds(chat_pid) - cpu_before) / max(1, sent) * 1000
    await streams.close()
    await chat_channel.close()
    ms = [v * 1000 for v in streams.latencies] or [0.0]
    sends = [v * 1000 for v in send_latencies] or [0.0]
    return (
        f"sent={sent} ({sent / elapsed:.1f}/s, errors={errors})  "
        f"deliveries expected={expected} received={received} lost={expected - received}  "
        f"delivered/s={received / elapsed:.0f}\n"
        f"    send→stream p50={percentile(ms, 50):.1f} p95={percentile(ms, 95):.1f} "
        f"p99={percentile(ms, 99):.1f} max={max(ms):.1f} ms;  "
        f"SendMessage p50={percentile(sends, 50):.1f} p99={percentile(sends, 99):.1f} ms\n"
        f"    chat CPU {cpu_per_message:.2f} ms/message;  "
        f"chat RSS idle={rss_idle:.0f} MB peak={max(rss_peak, rss_mb(chat_pid)):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rooms", type=int, default=1)
    args = parser.parse_args()
    modes = ["embedded", "postgres"] if args.mode == "both" else [args.mode]
    for mode in modes:
        with (
            tempfile.TemporaryDirectory() as workdir,
            services(mode, Path(workdir)) as (auth_port, chat_port, chat_pid),
        ):
            result = asyncio.run(run(args, auth_port, chat_port, chat_pid))
        print(
            f"{mode:<9} receivers={args.receivers} streams={args.streams} rooms={args.rooms} "
            f"rate={args.rate:.0f}/s for {args.seconds:.0f}s\n    {result}",
            flush=True,
        )


if __name__ == "__main__":
    main()
