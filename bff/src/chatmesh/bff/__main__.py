"""`python -m chatmesh.bff`: the BFF alone, configured by CHATMESH_* variables."""

from __future__ import annotations

import uvicorn

from chatmesh.bff.app import create_app
from chatmesh.bff.settings import BffSettings
from chatmesh.common.lifecycle import settle_heap
from chatmesh.common.logging import configure_logging
from chatmesh.common.settings import load_settings


def main() -> None:
    settings = load_settings(BffSettings)  # exits 2 with one clear line on bad config
    configure_logging(settings.service_name, level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        # X-Forwarded-For is honoured by the app itself, and only for the
        # configured number of proxy hops (CHATMESH_TRUSTED_PROXY_HOPS).
        proxy_headers=False,
        server_header=False,
        ws="websockets-sansio",
        # permessage-deflate keeps zlib state per connection (~80 KiB each) and
        # compresses every frame once per recipient: off (docs/websocket.md).
        ws_per_message_deflate=False,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.grace_seconds),
    )


if __name__ == "__main__":
    main()
