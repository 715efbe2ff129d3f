"""Per-request context that interceptors fill and handlers read."""

from __future__ import annotations

from contextvars import ContextVar

from chatmesh.common.errors import Unauthenticated
from chatmesh.common.tokens import AccessClaims

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
claims_var: ContextVar[AccessClaims | None] = ContextVar("claims", default=None)


def current_claims() -> AccessClaims:
    """The verified caller; raises Unauthenticated on a public method with no token."""
    claims = claims_var.get()
    if claims is None:
        raise Unauthenticated("an access token is required", code="unauthenticated")
    return claims


def current_request_id() -> str:
    return request_id_var.get()
