"""Rate limits on the API: per address for every call, a stricter one per
address for /api/v1/auth/* (sign-in, registration, resets), and per user when
the request carries a valid token. All of them are counted in one round trip
to the limiter's store; the verified claims are left in the scope so the route
does not verify or count again (chatmesh.bff.auth.Authenticator)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from chatmesh.bff.auth import IDENTIFIED_CLAIMS, identify
from chatmesh.bff.client_ip import client_ip
from chatmesh.bff.errors import ApiError, render
from chatmesh.bff.ratelimit import enforce_all
from chatmesh.bff.state import backends
from chatmesh.common.ratelimit import Limit

AUTH_PREFIX = "/api/v1/auth/"


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_ip: int,
        auth_per_ip: int,
        per_user: int,
        window: float,
        trusted_proxy_hops: int,
    ) -> None:
        self.app = app
        self.per_ip = per_ip
        self.auth_per_ip = auth_per_ip
        self.per_user = per_user
        self.window = window
        self.hops = trusted_proxy_hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        ip = client_ip(scope, self.hops)
        limits = [Limit(f"ip:{ip}", self.per_ip, self.window)]
        if path.startswith(AUTH_PREFIX):
            limits.append(Limit(f"auth-ip:{ip}", self.auth_per_ip, self.window))
        claims = await identify(Request(scope))
        if claims is not None:
            limits.append(Limit(f"user:{claims.user_id}", self.per_user, self.window))
            scope[IDENTIFIED_CLAIMS] = claims
        try:
            await enforce_all(backends(scope).limiter, limits)
        except ApiError as error:
            await render(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
