"""Cross-site request forgery defence for state-changing requests.

A POST/PUT/PATCH/DELETE is refused (403 `origin_not_allowed`) when its Origin (or,
lacking one, its Referer) is neither the BFF's own origin nor an allowed CORS
origin. A request that carries a session cookie but neither header is refused too:
browsers always send one of them, so such a request cannot be shown to come from
our pages.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from chatmesh.bff.cookies import SESSION_COOKIES
from chatmesh.bff.errors import ApiError, render
from chatmesh.bff.settings import origin_of

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class OriginCheckMiddleware:
    def __init__(self, app: ASGIApp, *, public_origin: str, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = {public_origin, *allowed_origins}

    def _own_origin(self, scope: Scope, headers: Headers) -> str | None:
        host = headers.get("host")
        if not host:
            return None
        try:
            return origin_of(f"{scope.get('scheme', 'http')}://{host}")
        except ValueError:
            return None

    def _source(self, headers: Headers) -> str | None:
        origin = headers.get("origin")
        if origin is not None:
            return origin.strip().lower()
        referer = headers.get("referer")
        if referer:
            try:
                return origin_of(referer)
            except ValueError:
                return "null"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        source = self._source(headers)
        if source is None:
            cookies = cookie_parser(headers.get("cookie", ""))
            if any(cookies.get(name) for name in SESSION_COOKIES):
                error = ApiError(
                    403,
                    "origin_not_allowed",
                    "a cookie-authenticated request must come with an Origin header",
                )
                await render(error)(scope, receive, send)
                return
        elif source not in self.allowed and source != self._own_origin(scope, headers):
            error = ApiError(
                403,
                "origin_not_allowed",
                "requests from this origin are not allowed",
                details={"origin": source},
            )
            await render(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
