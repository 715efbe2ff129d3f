"""Ed25519 signing keys kept in the `signing_keys` table.

One key signs at a time. When it is older than the rotation age a new key takes
over; the retired one stays in the JWKS until the last token it signed expires,
so a rotation never logs anyone out. Every replica reads the same table, and
`LocalJwksSource` lets the service verify its own tokens without a network hop.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import col, select, update

from chatmesh.common.clock import Clock, as_utc, utcnow
from chatmesh.common.db import Database
from chatmesh.common.tokens import ACCESS_TOKEN_TTL_SECONDS, ALGORITHM
from chatmesh.services.auth.models import SigningKey

# Published a little past the last token's expiry to absorb clock skew.
_SKEW = timedelta(seconds=60)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(private_key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    """The RFC 8037 OKP JWK of the key's public half."""
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def thumbprint(private_key: Ed25519PrivateKey) -> str:
    """RFC 7638 thumbprint: sha256 of the required members in lexicographic order."""
    jwk = public_jwk(private_key, "")
    required = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(required.encode("ascii")).digest())


def _load_private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("signing_keys holds a key that is not Ed25519")
    return key


@dataclass(frozen=True, slots=True)
class ActiveKey:
    kid: str
    private_key: Ed25519PrivateKey
    created: datetime


class KeyStore:
    def __init__(
        self,
        db: Database,
        *,
        rotation_age: timedelta,
        token_ttl: timedelta = timedelta(seconds=ACCESS_TOKEN_TTL_SECONDS),
        clock: Clock = utcnow,
    ) -> None:
        self._db = db
        self._rotation_age = rotation_age
        self._token_ttl = token_ttl
        self._clock = clock
        self._active: ActiveKey | None = None

    async def signing_key(self) -> ActiveKey:
        """The key to sign with now; rotates when the current one is too old.

        Call it outside any open transaction: a rotation writes in its own.
        """
        active = self._active
        if active is not None and not self._too_old(active):
            return active
        # Another replica may have rotated already: look before making a key.
        active = await self._newest()
        if active is None or self._too_old(active):
            active = await self.rotate()
        self._active = active
        return active

    async def rotate(self) -> ActiveKey:
        """Make a new signing key and retire every other one."""
        private_key = Ed25519PrivateKey.generate()
        kid = thumbprint(private_key)
        now = self._clock()
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        async with self._db.transaction() as session:
            await session.exec(
                update(SigningKey)
                .where(col(SigningKey.retired_at).is_(None))
                .values(retired_at=now)
            )
            session.add(SigningKey(kid=kid, private_key_pem=pem, created=now))
        self._active = ActiveKey(kid=kid, private_key=private_key, created=now)
        return self._active

    async def public_jwks(self) -> list[dict[str, str]]:
        """Public keys of the active key and of retired keys whose tokens may still be live."""
        published_since = self._clock() - self._token_ttl - _SKEW
        async with self._db.transaction() as session:
            rows = await session.exec(
                select(SigningKey)
                .where(
                    col(SigningKey.retired_at).is_(None)
                    | (col(SigningKey.retired_at) > published_since)
                )
                .order_by(col(SigningKey.created).desc())
            )
            return [public_jwk(_load_private_key(row.private_key_pem), row.kid) for row in rows]

    async def _newest(self) -> ActiveKey | None:
        async with self._db.transaction() as session:
            rows = await session.exec(
                select(SigningKey)
                .where(col(SigningKey.retired_at).is_(None))
                .order_by(col(SigningKey.created).desc())
                .limit(1)
            )
            row = rows.first()
            if row is None:
                return None
            return ActiveKey(
                kid=row.kid,
                private_key=_load_private_key(row.private_key_pem),
                created=as_utc(row.created),
            )

    def _too_old(self, key: ActiveKey) -> bool:
        return self._clock() - key.created >= self._rotation_age


class LocalJwksSource:
    """A `JwksSource` over the key store, for the auth service's own interceptor."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    async def fetch(self) -> list[dict[str, str]]:
        return await self._keys.public_jwks()
