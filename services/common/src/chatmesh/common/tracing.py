"""OpenTelemetry tracing: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations


def configure_tracing(service: str, endpoint: str) -> None:
    """Install an OTLP exporter for `service` when `endpoint` is non-empty."""
    raise NotImplementedError
