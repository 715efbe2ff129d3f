"""`python -m chatmesh.services.user`: run the user service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from chatmesh.common.grpc.server import install_stop_signals
from chatmesh.common.logging import configure_logging, get_logger
from chatmesh.common.settings import load_settings
from chatmesh.common.tracing import configure_tracing
from chatmesh.services.user.app import serve
from chatmesh.services.user.settings import UserSettings


async def run(settings: UserSettings) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await serve(settings)
    log = get_logger(__name__)
    log.info("user service started", port=server.port)
    await stop.wait()
    log.info("user service stopping")
    await server.stop(drain=settings.drain_seconds, grace=settings.grace_seconds)


def main() -> None:
    settings = load_settings(UserSettings)  # exits 2 with one line on bad config
    configure_logging(settings.service_name, level=settings.log_level, fmt=settings.log_format)
    configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
