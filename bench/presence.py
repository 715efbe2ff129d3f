"""Presence benchmark: simulated BFF instances keep 2,000 WebSocket connections
heartbeating against a user service (PostgreSQL + Redis, production timings:
45 s TTL, heartbeat every 15 s, 3 s offline debounce), while probe users go
online and offline and a WatchPresence stream (a BFF's process-wide feed)
measures how long each change takes to reach it.

Reports Redis ops/s (INFO stats: total_commands_processed delta, which counts
the commands inside Lua scripts too, and instantaneous_ops_per_sec samples) of a
private redis-server (CHATMESH_BENCH_REDIS_URL to use another), CPU of the
user-service process and of the load generator (which plays the BFFs), the
online/offline propagation latency, and (unless --no-crash) how long the users
of a BFF that stops heartbeating (as after SIGKILL) take to be announced offline.

Then (unless --no-bff) the same through a real BFF process: `--connections`
real WebSockets on /api/v1/ws (they answer the BFF's pings, the BFF heartbeats
them in one batch per interval), probe users opening and closing a WebSocket,
and a friend of every probe user on another WebSocket timing the `presence`
frames. That phase reports the BFF's CPU next to the user service's (and the
chat service's, which every WebSocket subscribes to).

The auth, user and chat services and the BFF run as separate processes, as in
production. Prints numbers; asserts nothing.

    uv run python bench/presence.py [--users 500] [--connections 2000] [--seconds 60]
                                    [--heartbeats per-connection|batched] [--no-crash]
                                    [--no-simulated] [--no-bff]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import asyncpg
import grpc
import httpx
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.testing import free_port
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc, user_pb2, user_pb2_grpc

PG_ADMIN = os.environ.get(
    "CHATMESH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Empty: a private redis-server on a free port, so INFO counts only this benchmark.
REDIS_URL = os.environ.get("CHATMESH_BENCH_REDIS_URL", "")
PASSWORD = "bench-password-123456"
ONLINE = presence_pb2.PRESENCE_STATUS_ONLINE
OFFLINE = presence_pb2.PRESENCE_STATUS_OFFLINE
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def latency_line(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name:<34} n=0"
    ms = [v * 1000 for v in seconds]
    return (
        f"{name:<34} n={len(ms):>4}  p50={statistics.median(ms):8.1f} ms  "
        f"p99={percentile(ms, 99):8.1f} ms  max={max(ms):8.1f} ms"
    )


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process, from /proc (no psutil needed)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Services:
    auth_port: int
    user_port: int
    user_pid: int
    redis_url: str
    # The chat service and the BFF (0 / "" unless started for the BFF phase).
    chat_pid: int = 0
    bff_pid: int = 0
    bff_url: str = ""


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own (nothing else's commands in its INFO stats)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def services(redis_url: str, *, with_bff: bool) -> Iterator[Services]:
    database = f"cm_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg(f'CREATE DATABASE "{database}"'))
    redis.Redis.from_url(redis_url).flushdb()
    auth_port, user_port, chat_port, bff_port = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CHATMESH_LOG_LEVEL": "warning",
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        "CHATMESH_REDIS_URL": redis_url,
        "CHATMESH_AUTH_ADDRESS": f"127.0.0.1:{auth_port}",
        "CHATMESH_LOGIN_IP_LIMIT": "100000000",
        "CHATMESH_DRAIN_SECONDS": "0",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chatmesh.services.auth"],
            env={**env, "CHATMESH_GRPC_PORT": str(auth_port)},
        ),
        subprocess.Popen(
            [sys.executable, "-m", "chatmesh.services.user"],
            env={**env, "CHATMESH_GRPC_PORT": str(user_port)},
        ),
    ]
    bff_url = f"http://127.0.0.1:{bff_port}"
    if with_bff:
        user_address = f"127.0.0.1:{user_port}"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "chatmesh.services.chat"],
                env={
                    **env,
                    "CHATMESH_GRPC_PORT": str(chat_port),
                    "CHATMESH_USER_ADDRESS": user_address,
                },
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "chatmesh.bff"],
                env={
                    **env,
                    "CHATMESH_HTTP_PORT": str(bff_port),
                    "CHATMESH_PUBLIC_URL": bff_url,
                    "CHATMESH_USER_ADDRESS": user_address,
                    "CHATMESH_CHAT_ADDRESS": f"127.0.0.1:{chat_port}",
                    # Rate limits off and in-process: Redis counts presence only.
                    "CHATMESH_REDIS_URL": "",
                    "CHATMESH_RATE_LIMIT_IP": "0",
                    "CHATMESH_RATE_LIMIT_USER": "0",
                    "CHATMESH_WEB_DIR": "/nonexistent",
                },
            )
        )
    try:
        ports = [auth_port, user_port, *([chat_port] if with_bff else [])]
        asyncio.run(_wait_serving(ports, procs))
        if with_bff:
            asyncio.run(_wait_http(f"{bff_url}/healthz", procs))
        yield Services(
            auth_port=auth_port,
            user_port=user_port,
            user_pid=procs[1].pid,
            redis_url=redis_url,
            chat_pid=procs[2].pid if with_bff else 0,
            bff_pid=procs[3].pid if with_bff else 0,
            bff_url=bff_url if with_bff else "",
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _wait_serving(ports: list[int], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    for port in ports:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("services did not become ready")
                await asyncio.sleep(0.2)


async def _wait_http(url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the BFF did not become ready")
            await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


async def register(auth: auth_pb2_grpc.AuthServiceStub, count: int, tag: str) -> list[Account]:
    limit = asyncio.Semaphore(8)

    async def one(n: int) -> Account:
        async with limit:
            name = f"{tag}{n}_{uuid.uuid4().hex[:6]}"
            reply = await auth.Register(
                auth_pb2.RegisterRequest(
                    email=f"{name}@example.com",
                    username=name,
                    password=PASSWORD,
                    display_name=name,
                ),
                timeout=60,
            )
            return Account(reply.account.id, reply.tokens.access_token)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


@dataclass
class Watcher:
    """The BFF's process-wide WatchPresence stream; times expected changes."""

    stub: presence_pb2_grpc.PresenceServiceStub
    # user id → (status expected, perf_counter when the change was caused)
    expected: dict[str, tuple[int, float]] = field(default_factory=dict)
    latencies: dict[int, list[float]] = field(default_factory=lambda: {ONLINE: [], OFFLINE: []})
    received: int = 0
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    async def run(self, user_ids: list[str], ready: asyncio.Event) -> None:
        call = self.stub.WatchPresence()
        for start in range(0, len(user_ids), 5000):
            chunk = user_ids[start : start + 5000]
            await call.write(presence_pb2.WatchPresenceRequest(add_user_ids=chunk))
        ready.set()
        async for response in call:
            now = time.perf_counter()
            for presence in response.presences:
                self.received += 1
                wanted = self.expected.get(presence.user_id)
                if wanted is not None and presence.status == wanted[0]:
                    del self.expected[presence.user_id]
                    self.latencies[wanted[0]].append(now - wanted[1])
                waiter = self.waiters.get(presence.user_id)
                if waiter is not None and presence.status == OFFLINE and not waiter.done():
                    waiter.set_result(now)


@dataclass
class Instance:
    """One simulated BFF process and the connections it holds."""

    name: str
    stub: presence_pb2_grpc.PresenceServiceStub
    connections: dict[str, Account] = field(default_factory=dict)
    alive: bool = True
    heartbeats: int = 0
    errors: int = 0

    async def heartbeat(self, connection_ids: list[str], active_share: float) -> None:
        active = [c for c in connection_ids if random.random() < active_share]
        try:
            await self.stub.Heartbeat(
                presence_pb2.HeartbeatRequest(
                    instance_id=self.name,
                    connection_ids=connection_ids,
                    active_connection_ids=active,
                ),
                timeout=10,
            )
            self.heartbeats += len(connection_ids)
        except grpc.aio.AioRpcError:
            self.errors += 1

    async def per_connection(self, connection_id: str, interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while self.alive:
            await self.heartbeat([connection_id], active_share=0.3)
            await asyncio.sleep(interval)

    async def batched(self, interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while self.alive:
            await self.heartbeat(list(self.connections), active_share=0.3)
            await asyncio.sleep(interval)


async def open_connections(instance: Instance, accounts: list[Account]) -> float:
    """OpenConnection for each account (one WebSocket each); the heartbeat interval."""
    limit = asyncio.Semaphore(32)
    interval = 15.0

    async def one(account: Account) -> None:
        nonlocal interval
        connection_id = uuid.uuid4().hex
        async with limit:
            reply = await instance.stub.OpenConnection(
                presence_pb2.OpenConnectionRequest(
                    connection_id=connection_id, instance_id=instance.name
                ),
                metadata=account.auth,
                timeout=30,
            )
        interval = reply.heartbeat_interval.ToMilliseconds() / 1000
        instance.connections[connection_id] = account

    await asyncio.gather(*(one(a) for a in accounts))
    return interval


class RedisStats:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.samples: list[int] = []

    def total(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    def scripts(self) -> int:
        stats = self.client.info("commandstats")
        return sum(
            int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval")
        )

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            info = await asyncio.to_thread(self.client.info, "stats")
            self.samples.append(int(info["instantaneous_ops_per_sec"]))
            await asyncio.sleep(1)


async def probe(
    watcher: Watcher,
    stub: presence_pb2_grpc.PresenceServiceStub,
    probes: list[Account],
    seconds: float,
    every: float,
) -> None:
    """Toggle probe users online/offline, one change every `every` seconds."""
    open_ids: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    for account in itertools.cycle(probes):
        if time.monotonic() >= deadline:
            break
        connection_id = open_ids.pop(account.user_id, None)
        if connection_id is None:
            connection_id = uuid.uuid4().hex
            watcher.expected[account.user_id] = (ONLINE, time.perf_counter())
            await stub.OpenConnection(
                presence_pb2.OpenConnectionRequest(
                    connection_id=connection_id, instance_id="probe"
                ),
                metadata=account.auth,
            )
            open_ids[account.user_id] = connection_id
        else:
            # Offline is announced after the debounce (offline_delay) on purpose.
            watcher.expected[account.user_id] = (OFFLINE, time.perf_counter())
            await stub.CloseConnections(
                presence_pb2.CloseConnectionsRequest(
                    instance_id="probe", connection_ids=[connection_id]
                )
            )
        await asyncio.sleep(every)
    # Keep the probe connections alive no longer: close what is open.
    if open_ids:
        await stub.CloseConnections(
            presence_pb2.CloseConnectionsRequest(
                instance_id="probe", connection_ids=list(open_ids.values())
            )
        )


async def measure(
    args: argparse.Namespace,
    svc: Services,
    watcher: Watcher,
    instances: list[Instance],
    stub: presence_pb2_grpc.PresenceServiceStub,
    probes: list[Account],
) -> list[str]:
    """Steady state: heartbeats running, probe users changing, resources sampled."""
    stats = RedisStats(svc.redis_url)
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(stats.sample(stop_sampling))
    commands0, scripts0 = stats.total(), stats.scripts()
    user_cpu0, own_cpu0 = cpu_seconds(svc.user_pid), cpu_seconds("self")
    heartbeats0 = sum(i.heartbeats for i in instances)
    start = time.perf_counter()
    await probe(watcher, stub, probes, args.seconds, args.probe_every)
    elapsed = time.perf_counter() - start
    commands, scripts = stats.total() - commands0, stats.scripts() - scripts0
    user_cpu = cpu_seconds(svc.user_pid) - user_cpu0
    own_cpu = cpu_seconds("self") - own_cpu0
    heartbeats = sum(i.heartbeats for i in instances) - heartbeats0
    stop_sampling.set()
    await sampling

    samples = stats.samples or [0]
    return [
        f"steady state over {elapsed:.0f} s:",
        f"  heartbeats            {heartbeats / elapsed:8.1f} connections/s "
        f"(errors: {sum(i.errors for i in instances)})",
        f"  redis commands        {commands / elapsed:8.1f} ops/s (total_commands_processed delta)"
        f"; Lua scripts {scripts / elapsed:.1f}/s",
        f"  redis instantaneous   mean {statistics.mean(samples):.0f} ops/s, "
        f"max {max(samples)} ops/s (1 s samples)",
        f"  user service CPU      {100 * user_cpu / elapsed:8.1f} % of one core",
        f"  load generator CPU    {100 * own_cpu / elapsed:8.1f} % of one core "
        "(the simulated BFFs + watcher)",
        f"  presence messages received by the watcher: {watcher.received}",
        latency_line("  online  -> watcher", watcher.latencies[ONLINE]),
        latency_line("  offline -> watcher (incl. debounce)", watcher.latencies[OFFLINE]),
    ]


async def crash(watcher: Watcher, instances: list[Instance]) -> str:
    """One BFF stops heartbeating without closing anything (as after SIGKILL): how
    long until its users (those connected nowhere else) are announced offline."""
    victim = instances[0]
    users = {a.user_id for a in victim.connections.values()}
    elsewhere = {a.user_id for i in instances[1:] for a in i.connections.values()}
    only_there = sorted(users - elsewhere)
    loop = asyncio.get_running_loop()
    for user_id in only_there:
        watcher.waiters[user_id] = loop.create_future()
    victim.alive = False  # as after SIGKILL: no close, no more heartbeats
    crashed_at = time.perf_counter()
    try:
        async with asyncio.timeout(90):
            done = await asyncio.gather(*(watcher.waiters[u] for u in only_there))
        offline_after = [t - crashed_at for t in done]
        return (
            f"crash of {victim.name} ({len(victim.connections)} connections, "
            f"{len(only_there)} users only there): announced offline "
            f"{min(offline_after):.1f} to {max(offline_after):.1f} s after it stopped "
            "(limit 60 s)"
        )
    except TimeoutError:
        return f"crash of {victim.name}: users NOT offline within 90 s"


# --- through a real BFF ------------------------------------------------------------

STATUS = {"online": ONLINE, "offline": OFFLINE}


@dataclass
class Socket:
    """One WebSocket to the BFF, read by its own task: answers the BFF's pings
    (else it is reaped as idle) and hands `presence` frames to `on_presence`."""

    connection: ClientConnection
    on_presence: Callable[[dict[str, object]], None] | None = None
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.connection:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    await self.connection.send('{"type":"pong"}')
                elif frame.get("type") == "presence" and self.on_presence is not None:
                    self.on_presence(frame)

    async def close(self) -> None:
        await self.connection.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


async def open_socket(
    bff_url: str,
    account: Account,
    on_presence: Callable[[dict[str, object]], None] | None = None,
) -> Socket:
    """An authenticated /api/v1/ws connection, returned once `ready` arrived."""
    url = bff_url.replace("http://", "ws://") + "/api/v1/ws"
    connection = await connect(
        url, additional_headers={"Authorization": f"Bearer {account.token}"}, open_timeout=60
    )
    ready = json.loads(await asyncio.wait_for(connection.recv(), 60))
    if ready.get("type") != "ready":
        raise RuntimeError(f"expected `ready`, got {str(ready)[:200]}")
    socket = Socket(connection, on_presence)
    socket.task = asyncio.create_task(socket.read())
    return socket


@dataclass
class FrameWatcher:
    """A friend of every probe user, timing the `presence` frames on its WebSocket."""

    expected: dict[str, tuple[int, float]] = field(default_factory=dict)
    latencies: dict[int, list[float]] = field(default_factory=lambda: {ONLINE: [], OFFLINE: []})
    received: int = 0

    def handle(self, frame: dict[str, object]) -> None:
        now = time.perf_counter()
        self.received += 1
        user_id, status = str(frame.get("user_id")), STATUS.get(str(frame.get("status")))
        wanted = self.expected.get(user_id)
        if wanted is not None and status == wanted[0]:
            del self.expected[user_id]
            self.latencies[wanted[0]].append(now - wanted[1])


async def befriend(
    users: user_pb2_grpc.UserServiceStub, one: Account, others: list[Account]
) -> None:
    """`one` and each of `others` become friends (a request each way)."""
    for other in others:
        for sender, recipient in ((one, other), (other, one)):
            for _ in range(600):  # until the user service made both profiles
                try:
                    await users.SendFriendRequest(
                        user_pb2.SendFriendRequestRequest(user_id=recipient.user_id),
                        metadata=sender.auth,
                        timeout=30,
                    )
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    await asyncio.sleep(0.1)


async def probe_sockets(
    watcher: FrameWatcher, bff_url: str, probes: list[Account], seconds: float, every: float
) -> None:
    """Probe users open and close a WebSocket, one change every `every` seconds
    (online is timed from the connect, offline from the close)."""
    sockets: dict[str, Socket] = {}
    deadline = time.monotonic() + seconds
    for account in itertools.cycle(probes):
        if time.monotonic() >= deadline:
            break
        socket = sockets.pop(account.user_id, None)
        if socket is None:
            watcher.expected[account.user_id] = (ONLINE, time.perf_counter())
            sockets[account.user_id] = await open_socket(bff_url, account)
        else:
            watcher.expected[account.user_id] = (OFFLINE, time.perf_counter())
            await socket.close()
        await asyncio.sleep(every)
    await asyncio.gather(*(socket.close() for socket in sockets.values()))


async def run_bff(
    args: argparse.Namespace,
    svc: Services,
    auth: auth_pb2_grpc.AuthServiceStub,
    accounts: list[Account],
    probes: list[Account],
) -> list[str]:
    lines = [f"through a real BFF process (pid {svc.bff_pid}):"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.user_port}") as channel:
        friend = (await register(auth, 1, "w"))[0]
        await befriend(user_pb2_grpc.UserServiceStub(channel), friend, probes)
    watcher = FrameWatcher()
    watching = await open_socket(svc.bff_url, friend, watcher.handle)

    limit = asyncio.Semaphore(32)

    async def one(account: Account) -> Socket:
        async with limit:
            return await open_socket(svc.bff_url, account)

    began = time.perf_counter()
    load = await asyncio.gather(
        *(one(accounts[n % len(accounts)]) for n in range(args.connections))
    )
    lines.append(
        f"  opened {len(load)} WebSockets in {time.perf_counter() - began:.1f} s; "
        "letting heartbeats settle for 15 s"
    )
    await asyncio.sleep(15)  # one BFF heartbeat interval (production TTL / 3)

    stats = RedisStats(svc.redis_url)
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(stats.sample(stop_sampling))
    commands0 = stats.total()
    pids = {"user service": svc.user_pid, "BFF": svc.bff_pid, "chat service": svc.chat_pid}
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own0 = cpu_seconds("self")
    start = time.perf_counter()
    await probe_sockets(watcher, svc.bff_url, probes, args.seconds, args.probe_every)
    elapsed = time.perf_counter() - start
    commands = stats.total() - commands0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    own = cpu_seconds("self") - own0
    stop_sampling.set()
    await sampling
    samples = stats.samples or [0]
    lines += [
        f"  steady state over {elapsed:.0f} s ({len(load)} idle WebSockets + probes + friend):",
        f"  redis commands        {commands / elapsed:8.1f} ops/s (total_commands_processed delta)",
        f"  redis instantaneous   mean {statistics.mean(samples):.0f} ops/s, "
        f"max {max(samples)} ops/s (1 s samples)",
        *(f"  {name + ' CPU':<21} {100 * cpu[name] / elapsed:8.1f} % of one core" for name in pids),
        f"  load generator CPU    {100 * own / elapsed:8.1f} % of one core (the WebSocket clients)",
        f"  presence frames received by the friend: {watcher.received}",
        latency_line("  online  -> friend's WebSocket", watcher.latencies[ONLINE]),
        latency_line(
            "  offline -> friend's WebSocket (incl. debounce)", watcher.latencies[OFFLINE]
        ),
    ]
    await asyncio.gather(*(socket.close() for socket in [*load, watching]))
    return lines


async def close_simulated(instances: list[Instance]) -> None:
    """End the simulated BFFs' connections (the BFF phase measures on its own)."""
    for instance in instances:
        instance.alive = False
        ids = list(instance.connections)
        for start in range(0, len(ids), 1000):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await instance.stub.CloseConnections(
                    presence_pb2.CloseConnectionsRequest(
                        instance_id=instance.name, connection_ids=ids[start : start + 1000]
                    ),
                    timeout=30,
                )


async def run(args: argparse.Namespace, svc: Services) -> list[str]:
    lines: list[str] = []
    auth_channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.auth_port}")
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{svc.user_port}") for _ in range(args.instances + 1)
    ]
    stubs = [presence_pb2_grpc.PresenceServiceStub(c) for c in channels]

    began = time.perf_counter()
    accounts = await register(auth, args.users, "u")
    probes = await register(auth, args.probes, "p")
    lines.append(
        f"registered {len(accounts)} users + {len(probes)} probe users "
        f"in {time.perf_counter() - began:.1f} s"
    )

    if args.simulated:
        lines += await run_simulated(args, svc, stubs, accounts, probes)
    if args.bff:
        lines += await run_bff(args, svc, auth, accounts, probes)
    for channel in [*channels, auth_channel]:
        await channel.close()
    return lines


async def run_simulated(
    args: argparse.Namespace,
    svc: Services,
    stubs: list[presence_pb2_grpc.PresenceServiceStub],
    accounts: list[Account],
    probes: list[Account],
) -> list[str]:
    lines: list[str] = []
    watcher = Watcher(stubs[-1])
    ready = asyncio.Event()
    watching = asyncio.create_task(watcher.run([a.user_id for a in accounts + probes], ready))
    await ready.wait()

    instances = [Instance(f"bff-{i}", stubs[i]) for i in range(args.instances)]
    per_instance: list[list[Account]] = [[] for _ in instances]
    for n in range(args.connections):
        per_instance[n % args.instances].append(accounts[n % len(accounts)])
    began = time.perf_counter()
    intervals = await asyncio.gather(
        *(open_connections(i, a) for i, a in zip(instances, per_instance, strict=True))
    )
    interval = intervals[0]
    lines.append(
        f"opened {args.connections} connections on {args.instances} BFF instances in "
        f"{time.perf_counter() - began:.1f} s; heartbeat every {interval:.0f} s "
        f"({args.heartbeats})"
    )

    beats: list[asyncio.Task[None]] = []
    for instance in instances:
        if args.heartbeats == "batched":
            beats.append(asyncio.create_task(instance.batched(interval)))
        else:
            beats += [
                asyncio.create_task(instance.per_connection(c, interval))
                for c in instance.connections
            ]
    # Let the heartbeats spread over a full interval before measuring.
    await asyncio.sleep(interval)

    lines += await measure(args, svc, watcher, instances, stubs[-1], probes)
    if args.crash:
        lines.append(await crash(watcher, instances))

    await close_simulated(instances)
    for task in beats:
        task.cancel()
    watching.cancel()
    await asyncio.gather(*beats, watching, return_exceptions=True)
    if args.bff:
        await asyncio.sleep(5)  # the offline announcements of the closed connections
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=4, help="simulated BFF processes")
    parser.add_argument("--probes", type=int, default=40, help="users toggled online/offline")
    parser.add_argument("--probe-every", type=float, default=0.25, help="seconds between changes")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--heartbeats", choices=["per-connection", "batched"], default="per-connection"
    )
    parser.add_argument("--no-crash", dest="crash", action="store_false")
    parser.add_argument(
        "--no-simulated", dest="simulated", action="store_false", help="skip the simulated BFFs"
    )
    parser.add_argument(
        "--no-bff", dest="bff", action="store_false", help="skip the phase through a real BFF"
    )
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}")
    with ExitStack() as stack:
        redis_url = REDIS_URL or stack.enter_context(private_redis())
        svc = stack.enter_context(services(redis_url, with_bff=args.bff))
        for line in asyncio.run(run(args, svc)):
            print(line)


if __name__ == "__main__":
    main()
