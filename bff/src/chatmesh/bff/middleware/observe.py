"""Per-request bookkeeping: the request id (taken from X-Request-ID when sane,
else generated; bound to logs, returned in the response, forwarded to backends),
one access-log line, and the HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmesh.bff.metrics import HTTP_LATENCY, HTTP_REQUESTS
from chatmesh.common.grpc.context import request_id_var
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"

REQUEST_ID_KEY = "chatmesh.request_id"


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get(REQUEST_ID_KEY, ""))


def route_template(scope: Scope) -> str:
    """The path template of the route that handles `scope` (e.g. /api/v1/auth/sessions/{id})."""
    app = scope.get("app")  # the Starlette app, set before any middleware runs
    routes: Sequence[BaseRoute] = getattr(app, "routes", ())
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            path = getattr(route, "path", None)
            return path if isinstance(path, str) and path else "/"
    return UNMATCHED


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_template(scope)
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
