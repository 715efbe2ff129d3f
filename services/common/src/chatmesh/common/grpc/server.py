"""The grpc.aio server bootstrap every service uses.

It adds the standard health service (per-service status, NOT_SERVING while
draining), server reflection, and the interceptor chain: request id + logging,
metrics, tracing, auth (verifies the `authorization: Bearer` metadata for every
method not listed as public), and error mapping (ServiceError → status with an
ErrorInfo detail; anything else → INTERNAL "internal error", never the text).

Shutdown (SIGTERM/SIGINT): every health status NOT_SERVING → wait `drain` seconds
so load balancers stop routing → `server.stop(grace)` lets in-flight RPCs finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1.health import aio as health_aio

from chatmesh.common.tokens import TokenVerifier


@dataclass(frozen=True)
class GrpcService:
    """One gRPC service to host: e.g. name="chatmesh.auth.v1.AuthService"."""

    name: str
    register: Callable[[grpc.aio.Server], None]
    # Full method names ("/chatmesh.auth.v1.AuthService/Login") callable without a token.
    public_methods: frozenset[str] = field(default_factory=frozenset)


class RunningServer:
    """A started server: its bound port, its health servicer, and how to stop it."""

    port: int
    health: health_aio.HealthServicer
    server: grpc.aio.Server

    async def set_serving(self, serving: bool) -> None:
        """Set every hosted service (and the overall "" status) SERVING or NOT_SERVING."""
        raise NotImplementedError

    async def stop(self, *, drain: float = 0.0, grace: float = 5.0) -> None:
        """NOT_SERVING → sleep(drain) → stop(grace). Idempotent."""
        raise NotImplementedError

    async def wait_for_termination(self) -> None:
        raise NotImplementedError


async def start_grpc_server(
    services: Sequence[GrpcService],
    *,
    host: str,
    port: int,
    verifier: TokenVerifier | None,
    component: str,
) -> RunningServer:
    """Build, bind (port 0 picks a free one) and start the server; all services SERVING."""
    raise NotImplementedError


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (from the running loop)."""
    raise NotImplementedError
