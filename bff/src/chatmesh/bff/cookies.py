"""The browser session: two httpOnly cookies.

- the access cookie carries the JWT to every path (SameSite=Lax, Max-Age = the
  token's lifetime);
- the refresh cookie is only ever sent to /api/v1/auth (SameSite=Strict), where
  /refresh rotates it and /logout ends the session.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from chatmesh.auth.v1 import auth_pb2

ACCESS_COOKIE = "chatmesh_access"
REFRESH_COOKIE = "chatmesh_refresh"
REFRESH_COOKIE_PATH = "/api/v1/auth"
REFRESH_MAX_AGE = 30 * 24 * 3600

SESSION_COOKIES = (ACCESS_COOKIE, REFRESH_COOKIE)


class CookiePolicy:
    def __init__(self, *, secure: bool) -> None:
        self.secure = secure

    def set_session(self, response: Response, tokens: auth_pb2.TokenPair) -> None:
        response.set_cookie(
            ACCESS_COOKIE,
            tokens.access_token,
            max_age=max(0, tokens.expires_in),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        response.set_cookie(
            REFRESH_COOKIE,
            tokens.refresh_token,
            max_age=_refresh_max_age(tokens),
            path=REFRESH_COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            ACCESS_COOKIE, path="/", secure=self.secure, httponly=True, samesite="lax"
        )
        response.delete_cookie(
            REFRESH_COOKIE,
            path=REFRESH_COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )


def _refresh_max_age(tokens: auth_pb2.TokenPair) -> int:
    """Until the refresh token expires (the auth service decides), else 30 days."""
    if tokens.HasField("refresh_expire_time"):
        expires = tokens.refresh_expire_time.ToDatetime(tzinfo=UTC)
        return max(0, int((expires - datetime.now(UTC)).total_seconds()))
    return REFRESH_MAX_AGE


def refresh_cookie(request: Request) -> str | None:
    return request.cookies.get(REFRESH_COOKIE) or None


def access_cookie(request: Request) -> str | None:
    return request.cookies.get(ACCESS_COOKIE) or None
