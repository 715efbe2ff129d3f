"""TokenVerifier: what it accepts, what it rejects, and when it fetches keys."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatmesh.auth.v1 import auth_pb2
from chatmesh.common.errors import Unauthenticated, Unavailable
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.tokens import AUDIENCE, ISSUER, GrpcJwksSource, TokenVerifier


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk_for(kid: str, key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = b64url(raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def mint(key: Ed25519PrivateKey, kid: str | None, **claims: Any) -> str:
    """An access token as the auth service issues it; `name=None` drops a claim."""
    now = int(time.time())
    payload = {"sub": "user-1", "sid": "session-1", "iat": now, "exp": now + 900}
    payload |= {"iss": ISSUER, "aud": AUDIENCE}
    payload |= claims
    headers = {"kid": kid} if kid is not None else {}
    body = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(body, key, algorithm="EdDSA", headers=headers)


class KeySet:
    """A real JwksSource over keys the test controls; counts fetches."""

    def __init__(self) -> None:
        self.private: dict[str, Ed25519PrivateKey] = {}
        self.extra: list[dict[str, str]] = []
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.down = False

    def add(self, kid: str) -> Ed25519PrivateKey:
        self.private[kid] = Ed25519PrivateKey.generate()
        return self.private[kid]

    async def fetch(self) -> list[dict[str, str]]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("auth is down")
        return [jwk_for(kid, key) for kid, key in self.private.items()] + self.extra


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> KeySet:
    keyset = KeySet()
    keyset.add("k1")
    return keyset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(keys: KeySet, clock: Clock) -> TokenVerifier:
    return TokenVerifier(keys, min_refresh_interval=10, max_age=300, clock=clock)


async def test_valid_token_gives_the_callers_identity(
    keys: KeySet, verifier: TokenVerifier
) -> None:
    token = mint(keys.private["k1"], "k1", sub="user-42", sid="session-7")
    claims = await verifier.verify(token)
    assert (claims.user_id, claims.session_id, claims.token) == ("user-42", "session-7", token)
    assert claims.expires_at - claims.issued_at == 900


def _tamper_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


def _tamper_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{head}.{flipped}"


def _alg_none(keys: KeySet) -> str:
    now = int(time.time())
    claims = {"sub": "u", "sid": "s", "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE}
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _hs256_with_public_key(keys: KeySet) -> str:
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    public = jwk_for("k1", keys.private["k1"])["x"].encode()
    now = int(time.time())
    claims = {"sub": "u", "sid": "s", "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode(claims, public, algorithm="HS256", headers={"kid": "k1"})


BAD_TOKENS: dict[str, tuple[Callable[[KeySet], str], str]] = {
    "expired": (
        lambda k: mint(k.private["k1"], "k1", iat=int(time.time()) - 999, exp=int(time.time()) - 1),
        "token_expired",
    ),
    "tampered payload": (lambda k: _tamper_payload(mint(k.private["k1"], "k1")), "invalid_token"),
    "tampered signature": (
        lambda k: _tamper_signature(mint(k.private["k1"], "k1")),
        "invalid_token",
    ),
    "alg none": (_alg_none, "invalid_token"),
    "hs256 with the public key": (_hs256_with_public_key, "invalid_token"),
    "unknown kid": (lambda k: mint(Ed25519PrivateKey.generate(), "k9"), "invalid_token"),
    "foreign key, known kid": (lambda k: mint(Ed25519PrivateKey.generate(), "k1"), "invalid_token"),
    "no kid": (lambda k: mint(k.private["k1"], None), "invalid_token"),
    "wrong issuer": (lambda k: mint(k.private["k1"], "k1", iss="evil"), "invalid_token"),
    "wrong audience": (lambda k: mint(k.private["k1"], "k1", aud="other"), "invalid_token"),
    "no session": (lambda k: mint(k.private["k1"], "k1", sid=None), "invalid_token"),
    "no expiry": (lambda k: mint(k.private["k1"], "k1", exp=None), "invalid_token"),
    "empty subject": (lambda k: mint(k.private["k1"], "k1", sub=""), "invalid_token"),
    "issued in the future": (
        lambda k: mint(k.private["k1"], "k1", iat=int(time.time()) + 3600),
        "invalid_token",
    ),
    "garbage": (lambda k: "not-a-jwt", "invalid_token"),
    "header not base64": (
        lambda k: "!!!." + mint(k.private["k1"], "k1").split(".", 1)[1],
        "invalid_token",
    ),
    "header not an object": (lambda k: b64url(b"[1]") + ".e30.", "invalid_token"),
    "header not json": (lambda k: b64url(b"\xff{") + ".e30.", "invalid_token"),
    "empty": (lambda k: "", "invalid_token"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
async def test_bad_tokens_are_rejected_with_a_stable_code(
    case: str, keys: KeySet, verifier: TokenVerifier
) -> None:
    make, code = BAD_TOKENS[case]
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(make(keys))
    assert caught.value.code == code


async def test_a_new_kid_is_fetched_but_made_up_kids_are_rate_limited(
    keys: KeySet, verifier: TokenVerifier, clock: Clock
) -> None:
    await verifier.verify(mint(keys.private["k1"], "k1"))
    assert keys.calls == 1
    # The auth service rotates: a token signed with the new key triggers one refetch.
    clock.now += 11
    await verifier.verify(mint(keys.add("k2"), "k2"))
    assert keys.calls == 2
    # A flood of unknown kids right after costs no further fetches...
    clock.now += 1
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await verifier.verify(mint(Ed25519PrivateKey.generate(), "k3"))
    assert keys.calls == 2
    # ...until min_refresh_interval has passed.
    clock.now += 10
    with pytest.raises(Unauthenticated):
        await verifier.verify(mint(Ed25519PrivateKey.generate(), "k3"))
    assert keys.calls == 3


async def test_concurrent_verifies_share_one_fetch(keys: KeySet, verifier: TokenVerifier) -> None:
    keys.gate = asyncio.Event()
    token = mint(keys.private["k1"], "k1")
    tasks = [asyncio.create_task(verifier.verify(token)) for _ in range(50)]
    await asyncio.sleep(0.01)
    keys.gate.set()
    results = await asyncio.gather(*tasks)
    assert {claims.user_id for claims in results} == {"user-1"}
    assert keys.calls == 1


async def test_a_cancelled_request_does_not_cancel_the_shared_fetch(
    keys: KeySet, verifier: TokenVerifier
) -> None:
    keys.gate = asyncio.Event()
    token = mint(keys.private["k1"], "k1")
    impatient = asyncio.create_task(verifier.verify(token))
    patient = asyncio.create_task(verifier.verify(token))
    await asyncio.sleep(0.01)
    impatient.cancel()
    keys.gate.set()
    assert (await patient).user_id == "user-1"
    assert impatient.cancelled()
    assert keys.calls == 1


async def test_stale_keys_are_refreshed_and_removed_keys_stop_working(
    keys: KeySet, verifier: TokenVerifier, clock: Clock
) -> None:
    old_token = mint(keys.private["k1"], "k1")
    await verifier.verify(old_token)
    del keys.private["k1"]
    keys.add("k2")
    clock.now += 301
    # The cached key still answers while the refresh runs in the background...
    assert (await verifier.verify(old_token)).user_id == "user-1"
    # ...and jwks() joins that same refresh (no third fetch).
    assert [jwk["kid"] for jwk in await verifier.jwks()] == ["k2"]
    assert keys.calls == 2
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(old_token)
    assert caught.value.code == "invalid_token"


async def test_an_auth_outage_keeps_the_cached_keys(
    keys: KeySet, verifier: TokenVerifier, clock: Clock
) -> None:
    token = mint(keys.private["k1"], "k1")
    await verifier.verify(token)
    keys.down = True
    clock.now += 400
    assert (await verifier.jwks())[0]["kid"] == "k1"
    assert (await verifier.verify(token)).user_id == "user-1"
    assert keys.calls == 2


async def test_no_keys_at_all_is_unavailable_not_unauthenticated(
    keys: KeySet, verifier: TokenVerifier, clock: Clock
) -> None:
    keys.down = True
    token = mint(keys.private["k1"], "k1")
    with pytest.raises(Unavailable) as caught:
        await verifier.verify(token)
    assert caught.value.code == "jwks_unavailable"
    with pytest.raises(Unavailable):
        await verifier.jwks()
    # Once the auth service is back (and the retry interval passed) all is well.
    keys.down = False
    clock.now += 10
    assert (await verifier.verify(token)).user_id == "user-1"


async def test_keys_that_are_not_ed25519_are_ignored(keys: KeySet, verifier: TokenVerifier) -> None:
    keys.extra = [
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "hmac", "x": "AAAA", "alg": "HS256"},
    ]
    assert [jwk["kid"] for jwk in await verifier.jwks()] == ["k1"]
    assert (await verifier.verify(mint(keys.private["k1"], "k1"))).user_id == "user-1"


async def test_a_verified_token_is_remembered_until_it_expires(
    keys: KeySet, verifier: TokenVerifier
) -> None:
    expires = int(time.time()) + 2
    token = mint(keys.private["k1"], "k1", exp=expires)
    first = await verifier.verify(token)
    # The same client presents the same token on every request: served from memory.
    assert await verifier.verify(token) is first
    # A tampered copy is a different string and is checked in full.
    with pytest.raises(Unauthenticated):
        await verifier.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert caught.value.code == "token_expired"
    assert keys.calls == 1


async def test_the_verified_token_cache_is_bounded(keys: KeySet, clock: Clock) -> None:
    verifier = TokenVerifier(keys, clock=clock, cache_size=2)
    tokens = [mint(keys.private["k1"], "k1", sub=f"user-{n}") for n in range(3)]
    claims = [await verifier.verify(token) for token in tokens]
    # The oldest entry made room for the third: verified again, a new object.
    again = await verifier.verify(tokens[0])
    assert again == claims[0]
    assert again is not claims[0]
    assert await verifier.verify(tokens[2]) is claims[2]


@pytest.fixture
async def auth_address(keys: KeySet) -> AsyncIterator[str]:
    """A real gRPC server answering `AuthService/GetJwks` from `keys`."""

    async def get_jwks(
        request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in await keys.fetch()])

    handler = grpc.unary_unary_rpc_method_handler(
        get_jwks,
        request_deserializer=auth_pb2.GetJwksRequest.FromString,
        response_serializer=auth_pb2.GetJwksResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("chatmesh.auth.v1.AuthService", {"GetJwks": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_grpc_jwks_source_reads_the_auth_services_keys(
    keys: KeySet, auth_address: str
) -> None:
    channel = create_channel(auth_address)
    try:
        source = GrpcJwksSource(channel, timeout=5)
        assert await source.fetch() == [jwk_for("k1", keys.private["k1"])]
        verifier = TokenVerifier(source)
        claims = await verifier.verify(mint(keys.private["k1"], "k1", sub="user-9"))
        assert claims.user_id == "user-9"
    finally:
        await channel.close()
