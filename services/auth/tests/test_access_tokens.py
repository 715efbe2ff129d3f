"""Access tokens: what they carry, that the JWKS verifies them, and that the
service refuses missing, forged, tampered and expired ones."""

from __future__ import annotations

import base64
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from chatmesh.auth.v1 import auth_pb2

PROTECTED = [
    ("GetAccount", auth_pb2.GetAccountRequest()),
    ("ListSessions", auth_pb2.ListSessionsRequest()),
    ("RevokeSession", auth_pb2.RevokeSessionRequest(session_id="x")),
    ("ResendVerificationEmail", auth_pb2.ResendVerificationEmailRequest()),
]


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def _signing_key(auth) -> tuple[str, Ed25519PrivateKey]:
    async with auth.db.engine.connect() as connection:
        kid, pem = (
            await connection.execute(
                text("SELECT kid, private_key_pem FROM signing_keys WHERE retired_at IS NULL")
            )
        ).one()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return kid, key


def _claims(user_id: str, session_id: str, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "exp": now + 900,
        "iss": "chatmesh-auth",
        "aud": "chatmesh",
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return claims


async def test_access_token_claims_and_jwks_verification(auth):
    registered = await auth.register()
    token = registered.tokens.access_token

    jwks = await auth.stub.GetJwks(auth_pb2.GetJwksRequest())

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    keys = {key.kid: key for key in jwks.keys}
    assert header["kid"] in keys
    jwk = keys[header["kid"]]
    assert (jwk.kty, jwk.crv, jwk.alg, jwk.use) == ("OKP", "Ed25519", "EdDSA", "sig")
    public_key = jwt.PyJWK(
        {"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "kid": jwk.kid, "alg": jwk.alg}
    ).key
    claims = jwt.decode(
        token, public_key, algorithms=["EdDSA"], audience="chatmesh", issuer="chatmesh-auth"
    )
    assert claims["sub"] == registered.account.id
    assert claims["sid"] == registered.session_id
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["jti"]


@pytest.mark.parametrize(("method", "request_message"), PROTECTED, ids=[m for m, _ in PROTECTED])
async def test_protected_methods_need_a_token(auth, method, request_message):
    failure = await auth.failure(getattr(auth.stub, method)(request_message))

    assert failure.status == grpc.StatusCode.UNAUTHENTICATED


async def test_forged_tampered_and_expired_tokens_are_refused(auth):
    victim = await auth.register()
    attacker = await auth.register()
    kid, real_key = await _signing_key(auth)
    claims = _claims(victim.account.id, victim.session_id)
    foreign_key = Ed25519PrivateKey.generate()
    header, _payload, signature = attacker.tokens.access_token.split(".")
    victim_payload = _b64(claims)

    forgeries = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{victim_payload}.",
        "foreign key, real kid": jwt.encode(
            claims, foreign_key, algorithm="EdDSA", headers={"kid": kid}
        ),
        "unknown kid": jwt.encode(
            claims, foreign_key, algorithm="EdDSA", headers={"kid": "not-a-key"}
        ),
        "payload swapped": f"{header}.{victim_payload}.{signature}",
        "HS256 with the public key": jwt.encode(
            claims,
            real_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            algorithm="HS256",
            headers={"kid": kid},
        ),
        "wrong audience": jwt.encode(
            {**claims, "aud": "elsewhere"}, real_key, algorithm="EdDSA", headers={"kid": kid}
        ),
        "wrong issuer": jwt.encode(
            {**claims, "iss": "evil"}, real_key, algorithm="EdDSA", headers={"kid": kid}
        ),
        "not a jwt": "definitely-not-a-token",
    }
    for name, token in forgeries.items():
        failure = await auth.failure(
            auth.stub.GetAccount(auth_pb2.GetAccountRequest(), metadata=auth.bearer(token))
        )
        assert failure.status == grpc.StatusCode.UNAUTHENTICATED, name
        assert failure.code == "invalid_token", name

    expired = jwt.encode(
        _claims(victim.account.id, victim.session_id, iat=int(time.time()) - 2000, exp=0),
        real_key,
        algorithm="EdDSA",
        headers={"kid": kid},
    )
    failure = await auth.failure(
        auth.stub.GetAccount(auth_pb2.GetAccountRequest(), metadata=auth.bearer(expired))
    )
    assert failure.status == grpc.StatusCode.UNAUTHENTICATED
    assert failure.code == "token_expired"

    # The genuine key still works: the refusals were about the tokens.
    genuine = jwt.encode(claims, real_key, algorithm="EdDSA", headers={"kid": kid})
    me = await auth.stub.GetAccount(auth_pb2.GetAccountRequest(), metadata=auth.bearer(genuine))
    assert me.account.id == victim.account.id


async def test_a_bad_token_does_not_block_public_methods(auth):
    registered = await auth.register()

    response = await auth.stub.Login(
        auth_pb2.LoginRequest(login=registered.account.username, password="correct horse battery"),
        metadata=auth.bearer("expired-or-garbage"),
    )

    assert response.account.id == registered.account.id


async def test_tokens_survive_a_restart(db_url, start_auth):
    async with start_auth(db_url) as auth:
        registered = await auth.register()
        kid = jwt.get_unverified_header(registered.tokens.access_token)["kid"]

    async with start_auth(db_url) as auth:
        me = await auth.stub.GetAccount(
            auth_pb2.GetAccountRequest(), metadata=auth.bearer(registered.tokens.access_token)
        )
        assert me.account.id == registered.account.id
        jwks = await auth.stub.GetJwks(auth_pb2.GetJwksRequest())
        assert [key.kid for key in jwks.keys] == [kid]  # the stored key, not a new one
