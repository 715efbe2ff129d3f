"""gzip for the web UI's files and the API's JSON, when the client accepts it.

Starlette's GZipMiddleware does the work: bodies under `minimum_size` stay as
they are, already-encoded bodies, images, fonts and `text/event-stream` are never
touched, and WebSockets are not HTTP responses at all. The auth routes are left
uncompressed: their bodies carry tokens next to what the caller sent, the
pattern compression side channels (BREACH) need, and they are small anyway.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Compressing 1 KiB buys little; below it the gzip header is a real share.
MINIMUM_SIZE = 1024
# Level 6 (zlib's default) is within a few percent of 9 at a fraction of the CPU.
COMPRESS_LEVEL = 6
UNCOMPRESSED_PREFIXES = ("/api/v1/auth/",)


class CompressionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=MINIMUM_SIZE, compresslevel=COMPRESS_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNCOMPRESSED_PREFIXES):
            await self.app(scope, receive, send)
            return
        await self.gzip(scope, receive, send)
