"""Signing keys: one per deployment, rotated by age, and old keys kept published
until the last token they signed has expired."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chatmesh.common.db import Database, upgrade
from chatmesh.common.errors import Unauthenticated
from chatmesh.common.tokens import TokenVerifier
from chatmesh.services.auth.app import MIGRATIONS
from chatmesh.services.auth.issuing import sign_access_token
from chatmesh.services.auth.keys import KeyStore, LocalJwksSource, thumbprint
from chatmesh.services.auth.settings import DB_SCHEMA


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(db_url):
    await asyncio.to_thread(upgrade, db_url, schema=DB_SCHEMA, migrations=MIGRATIONS)
    database = Database(db_url, schema=DB_SCHEMA)
    try:
        yield database
    finally:
        await database.close()


async def test_replicas_share_one_key(db):
    first = await KeyStore(db, rotation_age=timedelta(days=30)).signing_key()
    second = await KeyStore(db, rotation_age=timedelta(days=30)).signing_key()

    assert second.kid == first.kid
    assert first.kid == thumbprint(first.private_key)  # RFC 7638
    assert [
        k["kid"] for k in await KeyStore(db, rotation_age=timedelta(days=30)).public_jwks()
    ] == [first.kid]


async def test_rotation_keeps_old_tokens_valid_until_they_expire(db):
    real_now = datetime.now(UTC)
    clock = FakeClock(real_now - timedelta(days=31))
    keys = KeyStore(db, rotation_age=timedelta(days=30), clock=clock)
    old = await keys.signing_key()

    clock.now = real_now
    new = await keys.signing_key()

    assert new.kid != old.kid
    assert [k["kid"] for k in await keys.public_jwks()] == [new.kid, old.kid]
    old_token = sign_access_token(old, user_id="u", session_id="s", now=real_now)
    new_token = sign_access_token(new, user_id="u", session_id="s", now=real_now)
    verifier = TokenVerifier(LocalJwksSource(keys))
    assert (await verifier.verify(old_token)).user_id == "u"
    assert (await verifier.verify(new_token)).user_id == "u"

    # Once every token of the old key has expired, the key is no longer published.
    clock.now = real_now + timedelta(minutes=17)
    assert [k["kid"] for k in await keys.public_jwks()] == [new.kid]
    with pytest.raises(Unauthenticated) as refused:
        await TokenVerifier(LocalJwksSource(keys)).verify(old_token)
    assert refused.value.code == "invalid_token"


async def test_another_replica_picks_up_a_rotation_instead_of_rotating_again(db):
    start = datetime.now(UTC)
    clock = FakeClock(start)
    a = KeyStore(db, rotation_age=timedelta(days=30), clock=clock)
    b = KeyStore(db, rotation_age=timedelta(days=30), clock=clock)
    original = await a.signing_key()
    assert (await b.signing_key()).kid == original.kid

    clock.now = start + timedelta(days=30, seconds=1)
    rotated = await a.signing_key()

    assert (await b.signing_key()).kid == rotated.kid
    assert len(await a.public_jwks()) == 2
