"""Prometheus metrics: the gRPC server metrics every service exports and the
HTTP endpoint that serves them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server.",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics on a background thread; returns the bound port (0 picks one)."""
    # A daemon thread: it dies with the process, no shutdown ordering to get wrong.
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
