"""The secrets the service hands out: signed access tokens, opaque refresh and
one-time tokens (only their sha256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

import jwt

from chatmesh.common.tokens import ACCESS_TOKEN_TTL_SECONDS, ALGORITHM, AUDIENCE, ISSUER
from chatmesh.services.auth.keys import ActiveKey


def new_secret() -> str:
    """256 random bits, URL-safe (goes into links and cookies as is)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # A fast hash is enough: the secret has 256 bits of entropy, unlike a password.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def sign_access_token(key: ActiveKey, *, user_id: str, session_id: str, now: datetime) -> str:
    issued_at = int(now.timestamp())
    claims = {
        "sub": user_id,
        "sid": session_id,
        "iat": issued_at,
        "exp": issued_at + ACCESS_TOKEN_TTL_SECONDS,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
