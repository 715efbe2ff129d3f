"""Client side: channels with keepalive and the metadata a call forwards."""

from __future__ import annotations

import grpc
from opentelemetry import propagate

# Pings keep idle connections through load balancers / NAT alive and detect dead
# peers in ~40 s instead of the kernel's TCP timeout (minutes). The server side
# (server.SERVER_OPTIONS) allows pings this frequent.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def create_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel (mesh traffic stays inside the cluster) with keepalive."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def call_metadata(
    *, access_token: str | None = None, request_id: str | None = None
) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer …` and `x-request-id` for an outgoing call.

    When a span is active, its W3C `traceparent` is added too, so the callee's
    span joins the caller's trace (nothing is added when tracing is off).
    """
    metadata: list[tuple[str, str]] = []
    if access_token:
        metadata.append(("authorization", f"Bearer {access_token}"))
    if request_id:
        metadata.append(("x-request-id", request_id))
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata.extend(carrier.items())
    return tuple(metadata)
