"""OpenTelemetry tracing: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off means the API's no-op provider: the tracing interceptor is not even
installed, so untraced services pay nothing per RPC.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure_tracing(service: str, endpoint: str) -> None:
    """Install an OTLP exporter for `service` when `endpoint` is non-empty.

    `http://` endpoints are plaintext (an in-cluster collector), `https://` use TLS.
    The global provider can be set once per process; later calls are no-ops.
    """
    if not endpoint or tracing_enabled():
        return
    # Imported here: the OTLP exporter (its protobufs and gRPC client) is ~4 MB of
    # RSS that an untraced process never needs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)


def tracing_enabled() -> bool:
    """Whether a real (SDK) tracer provider is installed globally."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)
