"""The REST API's listener: uvicorn on a socket bound before start-up (so port 0
is resolved at once), stopped by the service's own stop event.

Imported only when the REST API is enabled: uvicorn and Starlette are a few MB
of RSS a queue-only worker (`CHATMESH_REST_PORT=0`) does without."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from starlette.applications import Starlette


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service's own SIGTERM handling (run_service_main) stops us.
        yield


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def rest_loop(app: Starlette, sock: socket.socket) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await stop.wait()
        server.should_exit = True
        await task
        sock.close()

    return run
