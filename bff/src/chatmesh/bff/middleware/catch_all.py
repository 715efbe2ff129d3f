"""Turns an unexpected exception into the API's 500 error *inside* the other
middleware, so that the response still gets security headers, CORS headers, a
request id and a metrics sample. Exception text is logged, never sent."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmesh.bff.errors import INTERNAL_MESSAGE, error_response
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff")


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise
            await error_response(500, "internal", INTERNAL_MESSAGE)(scope, receive, send)
