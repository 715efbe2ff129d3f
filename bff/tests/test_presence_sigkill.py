"""A BFF killed with SIGKILL: its users go offline for their friends within the
presence connection TTL. Two real BFF processes (`python -m chatmesh.bff` on
free ports), a real auth, user (Redis presence store and pub/sub, a 2 s
connection TTL instead of production's 45 s) and chat service; Ann's WebSocket
is on BFF 1, her friend Bob's on BFF 2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.pubsub import InProcessPubSub
from chatmesh.common.testing import free_port
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.settings import ChatSettings

from .conftest import PASSWORD, AuthService, running_auth, running_user

pytestmark = pytest.mark.redis

TTL = 2.0
SWEEP = 0.2
OFFLINE_DELAY = 0.3


class Bff:
    """`python -m chatmesh.bff` in a subprocess, ready when /healthz answers."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatmesh.bff"],
            env={
                **os.environ,
                **env,
                "CHATMESH_HTTP_PORT": str(self.port),
                "CHATMESH_PUBLIC_URL": self.url,
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                assert self.process.poll() is None, "the BFF exited during start-up"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, "the BFF did not start"
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


class Socket:
    """An open /api/v1/ws connection recording the frames it receives."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.connection:
                self.frames.append(json.loads(raw))

    def presence_of(self, user_id: str) -> list[str]:
        return [
            f["status"]
            for f in self.frames
            if f.get("type") == "presence" and f.get("user_id") == user_id
        ]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 (frames arrive on the reader task)
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.connection.close()
        await asyncio.gather(self._reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def ws(bff: Bff, token: str) -> AsyncIterator[Socket]:
    url = bff.url.replace("http://", "ws://") + "/api/v1/ws"
    socket = Socket(await connect(url, additional_headers={"Authorization": f"Bearer {token}"}))
    try:
        await socket.wait_until(lambda: any(f.get("type") == "ready" for f in socket.frames))
        yield socket
    finally:
        await socket.close()


async def _register(auth: AuthService, name: str) -> tuple[str, str]:
    async with grpc.aio.insecure_channel(auth.address) as channel:
        reply = await auth_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb2.RegisterRequest(
                email=f"{name}@example.com", username=name, password=PASSWORD, display_name=name
            )
        )
    return reply.account.id, reply.tokens.access_token


async def test_a_sigkilled_bffs_users_go_offline_within_the_ttl(
    redis_url: str, tmp_path: Path
) -> None:
    async with (
        running_auth(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}") as auth,
        running_user(
            auth,
            redis_url=redis_url,
            presence_connection_ttl_seconds=TTL,
            presence_sweep_interval_seconds=SWEEP,
            presence_offline_delay_seconds=OFFLINE_DELAY,
        ) as user,
    ):
        pubsub = InProcessPubSub()
        chat = await serve_chat(
            ChatSettings(
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                redis_url="",
                grpc_port=0,
                metrics_port=0,
                auth_address=auth.address,
            ),
            bus=auth.bus,
            pubsub=pubsub,
        )
        env = {
            "CHATMESH_AUTH_ADDRESS": auth.address,
            "CHATMESH_USER_ADDRESS": user.address,
            "CHATMESH_CHAT_ADDRESS": f"127.0.0.1:{chat.port}",
            "CHATMESH_REDIS_URL": "",
            "CHATMESH_WEB_DIR": str(tmp_path / "no-web-build"),
            "CHATMESH_LOG_LEVEL": "warning",
        }
        bffs = [Bff(env, tmp_path / "bff1.log"), Bff(env, tmp_path / "bff2.log")]
        try:
            await asyncio.gather(*(bff.ready() for bff in bffs))
            (ann, ann_token), (bob, bob_token) = await asyncio.gather(
                _register(auth, "ann"), _register(auth, "bob")
            )
            async with httpx.AsyncClient(base_url=bffs[1].url, timeout=10) as http:
                for token, other in ((ann_token, bob), (bob_token, ann)):
                    async with asyncio.timeout(10):
                        while True:  # until the user service has both profiles
                            asked = await http.post(
                                "/api/v1/friends/requests",
                                json={"user_id": other},
                                headers={"Authorization": f"Bearer {token}"},
                            )
                            if asked.status_code != 404:
                                break
                            await asyncio.sleep(0.05)
                    assert asked.status_code in (200, 201), asked.text
                assert asked.json()["status"] == "friends"

            async with ws(bffs[1], bob_token) as bob_ws, ws(bffs[0], ann_token):
                await bob_ws.wait_until(lambda: bob_ws.presence_of(ann)[-1:] == ["online"])

                bffs[0].process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                await bob_ws.wait_until(
                    lambda: bob_ws.presence_of(ann)[-1:] == ["offline"], within=TTL * 5
                )
                took = time.monotonic() - killed
                # The connection expires after the TTL; sweeps and the offline
                # debounce add to it (plus a margin for a busy test machine).
                assert took < TTL + SWEEP + OFFLINE_DELAY + 2.0, took
                assert bob_ws.presence_of(ann)[-2:] == ["online", "offline"]
        finally:
            for bff in bffs:
                bff.stop()
            await chat.stop(drain=0.0, grace=0.5)
            await pubsub.close()
