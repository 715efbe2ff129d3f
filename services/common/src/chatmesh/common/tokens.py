"""Offline verification of access tokens against the auth service's JWKS.

Tokens are EdDSA (Ed25519) JWTs with a `kid` header. Verification never calls the
auth service per request: keys are cached and refetched only when an unknown
`kid` appears (at most once per `min_refresh_interval`) or the cache is older
than `max_age`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.errors import Unauthenticated, Unavailable
from chatmesh.common.logging import get_logger

ISSUER = "chatmesh-auth"
AUDIENCE = "chatmesh"
ALGORITHM = "EdDSA"
ACCESS_TOKEN_TTL_SECONDS = 15 * 60

# Every claim the auth service always sets; a token without one is not ours.
REQUIRED_CLAIMS = ("sub", "sid", "exp", "iat", "iss", "aud")
# `iat` a little in the future is clock skew between pods, not forgery; `exp`
# gets no leeway so an expired token is rejected exactly when it expires.
IAT_SKEW_SECONDS = 60
_JWK_FIELDS = ("kty", "crv", "x", "kid", "alg", "use")
# Verified tokens remembered per process. A browser or API client presents the
# same token for up to 15 minutes, so a hit skips parsing and the signature check.
VERIFIED_CACHE_SIZE = 10_000

log = get_logger(__name__)


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
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout = timeout

    async def fetch(self) -> list[dict[str, str]]:
        response = await self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=self._timeout)
        return [jwk_to_dict(key) for key in response.keys]


def jwk_to_dict(key: auth_pb2.Jwk) -> dict[str, str]:
    """The JWK message as the JSON object RFC 7517 describes (empty fields left out)."""
    return {name: value for name in _JWK_FIELDS if (value := getattr(key, name))}


def public_key_from_jwk(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    """Parse an OKP/Ed25519 JWK; ValueError for anything else (RSA, EC, bad bytes)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 key")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ValueError("not an EdDSA signing key")
    x = jwk.get("x", "")
    raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def _invalid() -> Unauthenticated:
    return Unauthenticated("the access token is invalid", code="invalid_token")


class TokenVerifier:
    """Verifies signature, `alg` (EdDSA only; `none` rejected), `kid`, exp, iss, aud.

    A verified token is remembered (bounded, oldest first out) until it expires
    or its key leaves the JWKS, so a client's repeated requests cost one lookup.

    Raises `errors.Unauthenticated` with code `token_expired` or `invalid_token`,
    and `errors.Unavailable` (code `jwks_unavailable`) when no keys could ever be
    fetched (the auth service is down: not the caller's fault).
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        min_refresh_interval: float = 10.0,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self._source = source
        self._issuer = issuer
        self._audience = audience
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._jwks: list[dict[str, str]] = []
        # Parsed once per fetch: verification is then a dict lookup + one signature check.
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._fetch: asyncio.Task[None] | None = None
        # token -> (claims, kid); insertion-ordered, the oldest evicted first.
        self._verified: dict[str, tuple[AccessClaims, str]] = {}
        self._cache_size = cache_size

    async def verify(self, token: str) -> AccessClaims:
        cached = self._verified.get(token)
        if cached is not None:
            claims, kid = cached
            # Same checks a full verification would repeat: expiry (no leeway,
            # exactly as below) and that the signing key was not withdrawn.
            if time.time() >= claims.expires_at:
                del self._verified[token]
                raise Unauthenticated("the access token has expired", code="token_expired")
            if kid in self._keys:
                now = self._clock()
                if self._is_stale(now) and self._may_fetch(now):
                    self._start_refresh()  # a withdrawn key must still be noticed
                return claims
            del self._verified[token]
        kid = self._kid_of(token)
        key = await self._key_for(kid)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired", code="token_expired") from None
        except jwt.InvalidTokenError:
            raise _invalid() from None
        claims = _claims(payload, token)
        self._remember(token, claims, kid)
        return claims

    def _remember(self, token: str, claims: AccessClaims, kid: str) -> None:
        if self._cache_size <= 0:
            return
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (claims, kid)

    async def jwks(self) -> list[dict[str, str]]:
        """The cached keys (fetched if the cache is empty or stale); the BFF serves these."""
        now = self._clock()
        if (self._fetched_at is None or self._is_stale(now)) and self._may_fetch(now):
            await self._refresh()
        if self._fetched_at is None:
            raise Unavailable("signing keys are not available yet", code="jwks_unavailable")
        return [dict(jwk) for jwk in self._jwks]

    @staticmethod
    def _kid_of(token: str) -> str:
        # Parsed by hand: jwt.get_unverified_header() would decode the whole token a
        # second time (jwt.decode below does it properly), a third of the cost.
        try:
            segment = token[: token.index(".")]
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, TypeError):
            raise _invalid() from None
        # Checked before any key lookup so `none`/HS256 never reach a verifier.
        if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
            raise _invalid()
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid()
        return kid

    async def _key_for(self, kid: str) -> Ed25519PublicKey:
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None:
            if self._is_stale(now) and self._may_fetch(now):
                self._start_refresh()  # in the background: the cached key is still good
            return key
        if self._may_fetch(now):
            await self._refresh()
            key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetched_at is None:
            raise Unavailable("signing keys are not available yet", code="jwks_unavailable")
        raise _invalid()

    def _is_stale(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at >= self._max_age

    def _may_fetch(self, now: float) -> bool:
        # A fetch in flight is always joined; new fetches are rate limited so a
        # flood of made-up kids cannot hammer the auth service.
        if self._fetch is not None and not self._fetch.done():
            return True
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh_interval

    def _start_refresh(self) -> asyncio.Task[None]:
        if self._fetch is None or self._fetch.done():
            self._attempted_at = self._clock()
            self._fetch = asyncio.create_task(self._load())
        return self._fetch

    async def _refresh(self) -> None:
        # shield: one cancelled request must not cancel the fetch others wait on.
        await asyncio.shield(self._start_refresh())

    async def _load(self) -> None:
        try:
            jwks = await self._source.fetch()
        except Exception:
            # Keep serving the cached keys: an auth outage must not log everyone out.
            log.warning("jwks_fetch_failed", exc_info=True)
            return
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in jwks:
            try:
                keys[jwk["kid"]] = public_key_from_jwk(jwk)
            except (KeyError, ValueError):
                log.warning("jwks_key_skipped", kid=jwk.get("kid"), kty=jwk.get("kty"))
        self._jwks = [jwk for jwk in jwks if jwk.get("kid") in keys]
        self._keys = keys
        self._fetched_at = self._clock()


def _claims(payload: Mapping[str, Any], token: str) -> AccessClaims:
    sub, sid, iat = payload["sub"], payload["sid"], payload["iat"]
    if not isinstance(sub, str) or not sub or not isinstance(sid, str):
        raise _invalid()
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise _invalid()
    if iat > time.time() + IAT_SKEW_SECONDS:
        raise _invalid()
    return AccessClaims(
        user_id=sub,
        session_id=sid,
        issued_at=int(iat),
        expires_at=int(payload["exp"]),
        token=token,
    )
