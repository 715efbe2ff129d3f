"""Offline verification of access tokens against the auth service's JWKS.

Tokens are EdDSA (Ed25519) JWTs with a `kid` header. Verification never calls the
auth service per request: keys are cached and refetched only when an unknown
`kid` appears (at most once per `min_refresh_interval`) or the cache is older
than `max_age`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

ISSUER = "chatmesh-auth"
AUDIENCE = "chatmesh"
ALGORITHM = "EdDSA"
ACCESS_TOKEN_TTL_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified identity behind a request."""

    user_id: str
    session_id: str
    issued_at: int
    expires_at: int
    token: str


class JwksSource(Protocol):
    """Where public keys come from (the auth gRPC API, or the key store itself)."""

    async def fetch(self) -> list[dict[str, str]]:
        """The current keys as JWK dicts (kty, crv, x, kid, alg, use)."""
        ...


class GrpcJwksSource:
    """Fetches keys with `AuthService/GetJwks` over an existing channel."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 5.0) -> None:
        raise NotImplementedError

    async def fetch(self) -> list[dict[str, str]]:
        raise NotImplementedError


class TokenVerifier:
    """Verifies signature, `alg` (EdDSA only; `none` rejected), `kid`, exp, iss, aud.

    Raises `errors.Unauthenticated` with code `token_expired` or `invalid_token`.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        min_refresh_interval: float = 10.0,
        max_age: float = 300.0,
    ) -> None:
        raise NotImplementedError

    async def verify(self, token: str) -> AccessClaims:
        raise NotImplementedError

    async def jwks(self) -> list[dict[str, str]]:
        """The cached keys (fetched if the cache is empty or stale); the BFF serves these."""
        raise NotImplementedError
