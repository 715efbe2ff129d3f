"""End-to-end fan-out benchmark through the BFF's WebSockets.

The auth service, the chat service and one BFF run as separate processes (as in
production). The load generator opens WebSocket receivers, sends messages over
WebSocket (`message.send`) at a fixed rate (open loop), and times every message
from the send to its `message.created` on each receiver.

Runs:
1. one room: N receivers, senders at R messages/s for S seconds;
2. many rooms: M rooms with K receivers each, the same total rate spread over them;
3. idle: C idle connections; memory per connection from the BFF's RSS.

    uv run python bench/fanout.py [--mode embedded|postgres|both] [--receivers 100]
        [--rate 100] [--duration 60] [--rooms 50] [--per-room 4] [--idle 5000]
        [--runs one,many,idle]

Prints one line per run as it finishes, then a table of all runs. CPU time per
message (of the BFF, the chat service and the load generator) is reported next
to the latencies: on a shared machine it is steadier than the latencies.
`BENCH_PYSPY=<py-spy binary>` records flame graphs of the BFF and the chat
service during the one-room runs (into `BENCH_PYSPY_DIR`, default the cwd).

Prints numbers; asserts nothing. Lost must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.testing import free_port

PG_ADMIN = os.environ.get(
    "CHATMESH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHATMESH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "bench-password-123456"
# Sender connections. The BFF handles one connection's frames in order (a send
# is acknowledged before the next is read), and the product's per-connection
# limit is 20 frames/s (CHATMESH_WS_RATE_PER_SECOND): 100 messages/s in a room
# come from several people, so the default spreads them over 10 connections.
SENDERS = 10


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


@dataclass
class Mesh:
    url: str
    auth_port: int
    bff_pid: int
    chat_pid: int


async def _wait_serving(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"service on port {port} did not start")
            await asyncio.sleep(0.2)


@contextmanager
def mesh(mode: str, workdir: Path) -> Iterator[Mesh]:
    auth_port, chat_port, http_port = free_port(), free_port(), free_port()
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
    common = {**base, "CHATMESH_REDIS_URL": redis}
    auth = subprocess.Popen(
        [sys.executable, "-m", "chatmesh.services.auth"],
        env={**common, "CHATMESH_GRPC_PORT": str(auth_port), "CHATMESH_DATABASE_URL": auth_db},
    )
    chat = subprocess.Popen(
        [sys.executable, "-m", "chatmesh.services.chat"],
        env={**common, "CHATMESH_GRPC_PORT": str(chat_port), "CHATMESH_DATABASE_URL": chat_db},
    )
    processes = [auth, chat]
    try:
        asyncio.run(_wait_serving(auth_port))
        asyncio.run(_wait_serving(chat_port))
        bff = subprocess.Popen(
            [sys.executable, "-m", "chatmesh.bff"],
            env={
                **common,
                "CHATMESH_CHAT_ADDRESS": f"127.0.0.1:{chat_port}",
                # No user service in this benchmark: presence calls fail fast.
                "CHATMESH_USER_ADDRESS": "127.0.0.1:9",
                "CHATMESH_HTTP_PORT": str(http_port),
                "CHATMESH_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
                # Throughput, not the abuse limits, is measured here.
                "CHATMESH_RATE_LIMIT_IP": "0",
                "CHATMESH_RATE_LIMIT_USER": "0",
                "CHATMESH_WS_RATE_PER_SECOND": "100000",
                "CHATMESH_WS_RATE_BURST": "100000",
                "CHATMESH_WS_RESUME_WAIT": "0",
            },
        )
        processes.insert(0, bff)
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or bff.poll() is not None:
                raise RuntimeError("the BFF did not start")
            time.sleep(0.2)
        yield Mesh(url=url, auth_port=auth_port, bff_pid=bff.pid, chat_pid=chat.pid)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        if database:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def register(auth_port: int, n: int) -> list[tuple[str, str]]:
    """(user id, access token) of `n` new users."""
    tag = uuid.uuid4().hex[:6]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)

        async def one(i: int) -> tuple[str, str]:
            reply = await stub.Register(
                auth_pb2.RegisterRequest(
                    email=f"f{tag}{i}@example.com",
                    username=f"f{tag}{i}",
                    password=PASSWORD,
                    display_name=f"Bench {i}",
                )
            )
            return reply.account.id, reply.tokens.access_token

        users: list[tuple[str, str]] = []
        for start in range(0, n, 20):
            users += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20))))
    return users


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/api/v1/ws"


async def open_ws(base: str, token: str) -> ClientConnection:
    ws = await connect(
        ws_url(base), additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**22
    )
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    await ws.send(json.dumps({"type": "resume", "rooms": {}}))
    return ws


@dataclass
class Result:
    """One run's numbers (a row of the final table)."""

    mode: str
    label: str
    sent: int = 0
    send_rate: float = 0.0
    late: int = 0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    delivered_per_second: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    bff_rss: tuple[float, float] = (0.0, 0.0)
    chat_rss: tuple[float, float] = (0.0, 0.0)
    # CPU milliseconds per message sent: BFF, chat service, load generator
    cpu_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # idle runs: KiB of BFF RSS per open connection
    idle_kib: float | None = None

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def line(self) -> str:
        if self.idle_kib is not None:
            return (
                f"{self.mode:<9} {self.label:<30} BFF RSS {self.bff_rss[0]:.0f} -> "
                f"{self.bff_rss[1]:.0f} MB = {self.idle_kib:.1f} KiB per connection"
            )
        return (
            f"{self.mode:<9} {self.label:<30} sent={self.sent} ({self.send_rate:.1f}/s, "
            f"late={self.late})  deliveries {self.received}/{self.expected} lost={self.lost} "
            f"dup={self.duplicates}  delivered/s={self.delivered_per_second:.0f}  "
            f"p50={self.p50:.1f} p95={self.p95:.1f} p99={self.p99:.1f} max={self.max:.1f} ms  "
            f"RSS bff {self.bff_rss[0]:.0f}->{self.bff_rss[1]:.0f} MB, "
            f"chat {self.chat_rss[0]:.0f}->{self.chat_rss[1]:.0f} MB  "
            f"CPU ms/message bff {self.cpu_ms[0]:.2f} chat {self.cpu_ms[1]:.2f} "
            f"loadgen {self.cpu_ms[2]:.2f}"
        )


TABLE_HEADER = (
    "| mode | run | sent | deliveries expected | received | lost | dup | delivered/s "
    "| p50 ms | p95 ms | p99 ms | max ms | BFF RSS MB | chat RSS MB "
    "| CPU ms/msg bff / chat / loadgen | KiB per idle conn |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table(results: list[Result]) -> str:
    rows = [TABLE_HEADER]
    for r in results:
        if r.idle_kib is not None:
            rows.append(
                f"| {r.mode} | {r.label} | | | | | | | | | | "
                f"| {r.bff_rss[0]:.0f} → {r.bff_rss[1]:.0f} | | | {r.idle_kib:.1f} |"
            )
            continue
        rows.append(
            f"| {r.mode} | {r.label} | {r.sent} | {r.expected} | {r.received} | {r.lost} "
            f"| {r.duplicates} | {r.delivered_per_second:.0f} | {r.p50:.1f} | {r.p95:.1f} "
            f"| {r.p99:.1f} | {r.max:.1f} | {r.bff_rss[0]:.0f} → {r.bff_rss[1]:.0f} "
            f"| {r.chat_rss[0]:.0f} → {r.chat_rss[1]:.0f} "
            f"| {r.cpu_ms[0]:.2f} / {r.cpu_ms[1]:.2f} / {r.cpu_ms[2]:.2f} | |"
        )
    return "\n".join(rows)


@contextmanager
def flame_graphs(mesh_: Mesh, name: str, seconds: float) -> Iterator[None]:
    """py-spy flame graphs of the BFF and the chat service (BENCH_PYSPY set)."""
    binary = os.environ.get("BENCH_PYSPY")
    if not binary:
        yield
        return
    out = Path(os.environ.get("BENCH_PYSPY_DIR", "."))
    # "raw" (collapsed stacks, for scripts) or "flamegraph" (SVG)
    fmt = os.environ.get("BENCH_PYSPY_FORMAT", "flamegraph")
    suffix = "txt" if fmt == "raw" else "svg"
    recorders = [
        subprocess.Popen(
            [
                binary,
                "record",
                "--nonblocking",
                "--rate",
                "200",
                "--duration",
                str(int(seconds) + 2),
                "--pid",
                str(pid),
                "--format",
                fmt,
                "-o",
                str(out / f"{name}-{process}.{suffix}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for process, pid in (("bff", mesh_.bff_pid), ("chat", mesh_.chat_pid))
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.wait(timeout=seconds + 60)


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0


async def receive(ws: ClientConnection, tally: Tally, seen: set[str]) -> None:
    with contextlib.suppress(Exception):
        async for raw in ws:
            now = time.perf_counter()
            if '"message.created"' not in raw:
                continue
            # Cheaper than json.loads: the bodies are plain `b<n>`.
            start = raw.find('"body":"') + 8
            body = raw[start : raw.find('"', start)]
            if body in seen:
                tally.duplicates += 1
                continue
            seen.add(body)
            sent = tally.sent_at.get(body)
            if sent is not None:
                tally.latencies.append(now - sent)
                tally.received += 1


async def fanout(
    mesh_: Mesh,
    *,
    mode: str,
    label: str,
    rooms: int,
    per_room: int,
    rate: float,
    seconds: float,
    sender_count: int = SENDERS,
) -> Result:
    users = await register(mesh_.auth_port, rooms * per_room + 1)
    (_, sender_token), receivers = users[0], users[1:]
    headers = {"Authorization": f"Bearer {sender_token}"}
    room_ids = []
    async with httpx.AsyncClient(base_url=mesh_.url, timeout=30) as http:
        for k in range(rooms):
            created = await http.post("/api/v1/rooms", json={"name": f"bench {k}"}, headers=headers)
            created.raise_for_status()
            room_ids.append(created.json()["id"])
        members: list[tuple[str, str]] = []
        for index, (_, token) in enumerate(receivers):
            room_id = room_ids[index % rooms]
            joined = await http.post(
                f"/api/v1/rooms/{room_id}/join", headers={"Authorization": f"Bearer {token}"}
            )
            joined.raise_for_status()
            members.append((room_id, token))
    tally = Tally()
    sockets = []
    for start in range(0, len(members), 50):
        sockets += await asyncio.gather(
            *(open_ws(mesh_.url, token) for _, token in members[start : start + 50])
        )
    readers = [asyncio.create_task(receive(ws, tally, set())) for ws in sockets]
    senders = [await open_ws(mesh_.url, sender_token) for _ in range(sender_count)]
    drains = [asyncio.create_task(_drain(ws)) for ws in senders]
    await asyncio.sleep(1.0)
    rss_before = rss_mb(mesh_.bff_pid), rss_mb(mesh_.chat_pid)
    cpu_before = (
        cpu_seconds(mesh_.bff_pid),
        cpu_seconds(mesh_.chat_pid),
        cpu_seconds(os.getpid()),
    )

    total = int(rate * seconds)
    late = 0
    # Flame graph recorders (if any) run beside the measurement, closed after it.
    profile = contextlib.ExitStack()
    profile.enter_context(flame_graphs(mesh_, f"{mode}-{rooms}rooms", seconds))
    begin = time.perf_counter()
    for n in range(total):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        body = f"b{n}"
        tally.sent_at[body] = time.perf_counter()
        frame = {
            "type": "message.send",
            "room_id": room_ids[n % rooms],
            "body": body,
            "client_msg_id": f"c{n}",
        }
        await senders[n % sender_count].send(json.dumps(frame))
    elapsed_send = time.perf_counter() - begin
    expected = total * per_room
    deadline = time.monotonic() + 30
    while tally.received < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - begin
    rss_after = rss_mb(mesh_.bff_pid), rss_mb(mesh_.chat_pid)
    cpu_ms = [
        (cpu_seconds(pid) - before) * 1000 / total
        for pid, before in zip(
            (mesh_.bff_pid, mesh_.chat_pid, os.getpid()), cpu_before, strict=True
        )
    ]
    profile.close()
    for ws in [*sockets, *senders]:
        await ws.close()
    for task in [*readers, *drains]:
        task.cancel()
    await asyncio.gather(*readers, *drains, return_exceptions=True)
    ms = [v * 1000 for v in tally.latencies] or [0.0]
    return Result(
        mode=mode,
        label=label,
        sent=total,
        send_rate=total / elapsed_send,
        late=late,
        expected=expected,
        received=tally.received,
        duplicates=tally.duplicates,
        delivered_per_second=tally.received / elapsed,
        p50=statistics.median(ms),
        p95=percentile(ms, 95),
        p99=percentile(ms, 99),
        max=max(ms),
        bff_rss=(rss_before[0], rss_after[0]),
        chat_rss=(rss_before[1], rss_after[1]),
        cpu_ms=(cpu_ms[0], cpu_ms[1], cpu_ms[2]),
    )


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def idle(mesh_: Mesh, count: int, *, mode: str) -> Result:
    users = await register(mesh_.auth_port, min(count, 200))
    tokens = itertools.cycle([token for _, token in users])
    await asyncio.sleep(1.0)
    before = rss_mb(mesh_.bff_pid)
    sockets = []
    began = time.perf_counter()
    for start in range(0, count, 100):
        batch = [next(tokens) for _ in range(min(100, count - start))]
        sockets += await asyncio.gather(*(open_ws(mesh_.url, t) for t in batch))
    opened = time.perf_counter() - began
    await asyncio.sleep(3.0)
    after = rss_mb(mesh_.bff_pid)
    for ws in sockets:
        await ws.close()
    return Result(
        mode=mode,
        label=f"{count} idle connections ({count / opened:.0f}/s opened)",
        bff_rss=(before, after),
        idle_kib=(after - before) * 1024 / count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", "--seconds", dest="seconds", type=float, default=60.0)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--per-room", type=int, default=4)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=SENDERS, help="sender connections")
    parser.add_argument(
        "--runs",
        default="one,many,idle",
        help="comma-separated: one (one room), many (many rooms), idle (idle connections)",
    )
    args = parser.parse_args()
    runs = {run.strip() for run in args.runs.split(",") if run.strip()}
    if not runs <= {"one", "many", "idle"}:
        parser.error("--runs takes one, many and idle")
    modes = ["embedded", "postgres"] if args.mode == "both" else [args.mode]
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        print(result.line(), flush=True)

    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp, mesh(mode, Path(tmp)) as running:
            if "one" in runs:
                report(
                    asyncio.run(
                        fanout(
                            running,
                            mode=mode,
                            label=f"1 room x {args.receivers} receivers, {args.seconds:.0f} s",
                            rooms=1,
                            per_room=args.receivers,
                            rate=args.rate,
                            seconds=args.seconds,
                            sender_count=args.senders,
                        )
                    )
                )
            if "many" in runs:
                report(
                    asyncio.run(
                        fanout(
                            running,
                            mode=mode,
                            label=f"{args.rooms} rooms x {args.per_room}, {args.seconds:.0f} s",
                            rooms=args.rooms,
                            per_room=args.per_room,
                            rate=args.rate,
                            seconds=args.seconds,
                            sender_count=args.senders,
                        )
                    )
                )
            if "idle" in runs and args.idle:
                report(asyncio.run(idle(running, args.idle, mode=mode)))
    print(
        f"\nrate {args.rate:.0f} messages/s for {args.seconds:.0f} s "
        f"over {args.senders} sender connections\n{table(results)}"
    )


if __name__ == "__main__":
    main()
