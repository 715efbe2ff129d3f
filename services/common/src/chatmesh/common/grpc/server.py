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
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import OVERALL_HEALTH
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from chatmesh.common.grpc.interceptors import server_interceptors
from chatmesh.common.logging import get_logger
from chatmesh.common.tokens import TokenVerifier
from chatmesh.common.tracing import tracing_enabled

# grpc enables SO_REUSEPORT by default: a second server on a taken port would
# silently share its traffic. Off, a port conflict fails start-up loudly.
# The ping settings accept the keepalive that client.CHANNEL_OPTIONS sends.
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)

log = get_logger("chatmesh.grpc")


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

    def __init__(
        self,
        *,
        server: grpc.aio.Server,
        health: health_aio.HealthServicer,
        port: int,
        service_names: Sequence[str],
    ) -> None:
        self.server = server
        self.health = health
        self.port = port
        self.service_names = tuple(service_names)
        self._stopping: asyncio.Task[None] | None = None

    async def set_serving(self, serving: bool) -> None:
        """Set every hosted service (and the overall "" status) SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*self.service_names, OVERALL_HEALTH):
            await self.health.set(name, status)

    async def stop(self, *, drain: float = 0.0, grace: float = 5.0) -> None:
        """NOT_SERVING → sleep(drain) → stop(grace). Idempotent."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop(drain, grace))
        # shield: a second caller (or a cancelled one) never interrupts the shutdown.
        await asyncio.shield(self._stopping)

    async def _stop(self, drain: float, grace: float) -> None:
        log.info("grpc_draining", port=self.port, drain_seconds=drain)
        await self.set_serving(False)
        # Also locks the statuses, so nothing flips them back to SERVING.
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(drain)
        await self.server.stop(grace)
        log.info("grpc_stopped", port=self.port)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"{host}:{port}"


async def start_grpc_server(
    services: Sequence[GrpcService],
    *,
    host: str,
    port: int,
    verifier: TokenVerifier | None,
    component: str,
    tracer_provider: trace.TracerProvider | None = None,
) -> RunningServer:
    """Build, bind (port 0 picks a free one) and start the server; all services SERVING.

    `verifier=None` means no token can be verified: every non-public method then
    answers UNAUTHENTICATED (fail closed). Tracing uses `tracer_provider`, else
    the global provider when tracing is configured, else is off.
    """
    if tracer_provider is None and tracing_enabled():
        tracer_provider = trace.get_tracer_provider()
    tracer = tracer_provider.get_tracer(f"chatmesh.{component}") if tracer_provider else None
    public = frozenset().union(*(service.public_methods for service in services))
    server = grpc.aio.server(
        interceptors=server_interceptors(
            component=component, verifier=verifier, public_methods=public, tracer=tracer
        ),
        options=SERVER_OPTIONS,
    )
    for service in services:
        service.register(server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service.name for service in services]
    reflection.enable_server_reflection(
        [*names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    # Raises RuntimeError when the address is taken.
    bound = server.add_insecure_port(_bind_address(host, port))
    running = RunningServer(server=server, health=health_servicer, port=bound, service_names=names)
    await running.set_serving(True)
    await server.start()
    log.info("grpc_started", component=component, host=host, port=bound, services=names)
    return running


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (from the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
