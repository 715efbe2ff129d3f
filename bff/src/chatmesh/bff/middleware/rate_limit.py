"""Per-address rate limits on the API: one for every call, a stricter one for
/api/v1/auth/* (sign-in, registration, resets). Per-user limits are applied
where the caller is authenticated (chatmesh.bff.auth)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from chatmesh.bff.client_ip import client_ip
from chatmesh.bff.errors import ApiError, render
from chatmesh.bff.ratelimit import enforce
from chatmesh.bff.state import backends

AUTH_PREFIX = "/api/v1/auth/"


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_ip: int,
        auth_per_ip: int,
        window: float,
        trusted_proxy_hops: int,
    ) -> None:
        self.app = app
        self.per_ip = per_ip
        self.auth_per_ip = auth_per_ip
        self.window = window
        self.hops = trusted_proxy_hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        limiter = backends(scope).limiter
        ip = client_ip(scope, self.hops)
        try:
            await enforce(limiter, f"ip:{ip}", limit=self.per_ip, window=self.window)
            if path.startswith(AUTH_PREFIX):
                await enforce(limiter, f"auth-ip:{ip}", limit=self.auth_per_ip, window=self.window)
        except ApiError as error:
            await render(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
