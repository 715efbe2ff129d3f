"""Access tokens are verified offline by the BFF: anything but a valid, unexpired
token signed by a key of the auth service's JWKS is a 401 with a precise code."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatmesh.common.db import Database
from chatmesh.services.auth.issuing import sign_access_token
from chatmesh.services.auth.keys import KeyStore
from chatmesh.services.auth.settings import DB_SCHEMA


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def auth_signing_key(db_url: str):
    """The auth service's active signing key, straight from its key store."""
    db = Database(db_url, schema=DB_SCHEMA)
    try:
        return await KeyStore(db, rotation_age=timedelta(days=30)).signing_key()
    finally:
        await db.close()


def claims_of(token: str) -> dict:
    return json.loads(unb64(token.split(".")[1]))


@pytest.fixture
async def signed_in(sqlite_api):
    _, body = await sqlite_api.register()
    return body


async def get_me(api, token: str, *, via: str = "bearer"):
    async with api.bff.client() as client:
        if via == "cookie":
            client.cookies.set("chatmesh_access", token)
            return await client.get("/api/v1/me")
        return await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def error_code(response) -> str:
    assert response.status_code == 401, response.text
    return response.json()["error"]["code"]


@pytest.mark.parametrize("via", ["bearer", "cookie"])
async def test_a_token_signed_by_auth_works_until_it_expires(sqlite_api, signed_in, via):
    key = await auth_signing_key(sqlite_api.auth.db_url)
    claims = claims_of(signed_in["access_token"])
    fresh = sign_access_token(
        key, user_id=claims["sub"], session_id=claims["sid"], now=datetime.now(UTC)
    )
    expired = sign_access_token(
        key,
        user_id=claims["sub"],
        session_id=claims["sid"],
        now=datetime.now(UTC) - timedelta(minutes=16),
    )
    assert (await get_me(sqlite_api, fresh, via=via)).status_code == 200
    response = await get_me(sqlite_api, expired, via=via)
    assert error_code(response) == "token_expired"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_tampered_token_is_invalid(sqlite_api, signed_in):
    header, payload, signature = signed_in["access_token"].split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "someone-else"
    forged_payload = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert error_code(await get_me(sqlite_api, forged_payload)) == "invalid_token"

    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert error_code(await get_me(sqlite_api, f"{header}.{payload}.{flipped}")) == "invalid_token"


async def test_alg_none_is_invalid(sqlite_api, signed_in):
    header = json.loads(unb64(signed_in["access_token"].split(".")[0]))
    payload = signed_in["access_token"].split(".")[1]
    for alg in ("none", "None", "NONE"):
        unsigned = b64(json.dumps({**header, "alg": alg}).encode())
        assert error_code(await get_me(sqlite_api, f"{unsigned}.{payload}.")) == "invalid_token"


async def test_unknown_kid_and_foreign_keys_are_invalid(sqlite_api, signed_in):
    claims = claims_of(signed_in["access_token"])
    real_kid = jwt.get_unverified_header(signed_in["access_token"])["kid"]
    attacker_key = Ed25519PrivateKey.generate()
    unknown_kid = jwt.encode(claims, attacker_key, algorithm="EdDSA", headers={"kid": "made-up"})
    assert error_code(await get_me(sqlite_api, unknown_kid)) == "invalid_token"
    # The right kid does not help a signature made with another key.
    stolen_kid = jwt.encode(claims, attacker_key, algorithm="EdDSA", headers={"kid": real_kid})
    assert error_code(await get_me(sqlite_api, stolen_kid)) == "invalid_token"
    # Nor does switching to an HMAC algorithm keyed with something public.
    hmac = jwt.encode(claims, real_kid * 2, algorithm="HS256", headers={"kid": real_kid})
    assert error_code(await get_me(sqlite_api, hmac)) == "invalid_token"


async def test_garbage_and_missing_credentials(sqlite_api):
    assert error_code(await get_me(sqlite_api, "not-a-jwt")) == "invalid_token"
    async with sqlite_api.bff.client() as client:
        nothing = await client.get("/api/v1/me")
        assert error_code(nothing) == "unauthenticated"
        basic = await client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert error_code(basic) == "invalid_token"


async def test_the_bearer_header_wins_over_the_cookie(sqlite_api, signed_in):
    async with sqlite_api.bff.client() as client:
        client.cookies.set("chatmesh_access", signed_in["access_token"])
        response = await client.get("/api/v1/me", headers={"Authorization": "Bearer forged"})
    assert error_code(response) == "invalid_token"
