"""`python -m chatmesh.services.auth`: run the auth service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from chatmesh.common.grpc.server import install_stop_signals
from chatmesh.common.logging import configure_logging, get_logger
from chatmesh.common.settings import load_settings
from chatmesh.common.tracing import configure_tracing
from chatmesh.services.auth.app import serve
from chatmesh.services.auth.settings import AuthSettings


async def run(settings: AuthSettings) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await serve(settings)
    log = get_logger(__name__)
    log.info("auth service started", port=server.port)
    await stop.wait()
    log.info("auth service stopping")
    await server.stop(drain=settings.drain_seconds, grace=settings.grace_seconds)


def main() -> None:
    settings = load_settings(AuthSettings)  # exits 2 with one line on bad config
    configure_logging(settings.service_name, level=settings.log_level, fmt=settings.log_format)
    configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
