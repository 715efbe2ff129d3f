"""Who is calling: `Authorization: Bearer <jwt>` or the access cookie, verified
offline against the cached JWKS (the auth service is not called per request)."""

from __future__ import annotations

from starlette.requests import Request

from chatmesh.bff.cookies import access_cookie
from chatmesh.bff.errors import ApiError
from chatmesh.bff.ratelimit import enforce
from chatmesh.bff.state import backends
from chatmesh.common.errors import ServiceError, Unauthenticated
from chatmesh.common.tokens import AccessClaims

# Where RateLimitMiddleware leaves the claims it verified (and rate limited).
IDENTIFIED_CLAIMS = "chatmesh.identified_claims"


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header; 401 if the header is malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "invalid_token",
            "the Authorization header must be `Bearer <token>`",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    return token


def access_token(request: Request) -> str | None:
    """The caller's access token: the Authorization header wins over the cookie."""
    return bearer_token(request) or access_cookie(request)


async def identify(request: Request) -> AccessClaims | None:
    """The caller's verified claims, or None (no token, or a bad one: the route
    that requires a caller answers that with the proper 401)."""
    try:
        token = access_token(request)
        if token is None:
            return None
        return await backends(request.scope).verifier.verify(token)
    except (ApiError, ServiceError):
        return None


class Authenticator:
    """Verifies the caller's token and applies the per-user rate limit."""

    def __init__(self, *, user_limit: int, window: float) -> None:
        self._user_limit = user_limit
        self._window = window

    async def require(self, request: Request) -> AccessClaims:
        token = access_token(request)
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "sign in first: send a Bearer token or the session cookie",
                headers={"WWW-Authenticate": "Bearer"},
            )
        identified: AccessClaims | None = request.scope.get(IDENTIFIED_CLAIMS)
        if identified is not None and identified.token == token:
            return identified  # verified and counted by RateLimitMiddleware
        found = backends(request.scope)
        try:
            claims = await found.verifier.verify(token)
        except Unauthenticated as error:
            code = (
                error.code if error.code in ("token_expired", "invalid_token") else "invalid_token"
            )
            raise ApiError(
                401,
                code,
                error.message,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        await enforce(
            found.limiter, f"user:{claims.user_id}", limit=self._user_limit, window=self._window
        )
        return claims
