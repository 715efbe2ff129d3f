"""Lifetimes of refresh, verification and reset tokens, on the domain layer with
a controlled clock (the same code the gRPC server runs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlmodel import col, select

from chatmesh.common.bus import unpack
from chatmesh.common.db import Database, upgrade
from chatmesh.common.errors import InvalidArgument, Unauthenticated
from chatmesh.common.outbox import OutboxEvent
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.tokens import AccessClaims
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.events.v1 import envelope_pb2
from chatmesh.services.auth.app import MIGRATIONS
from chatmesh.services.auth.keys import KeyStore
from chatmesh.services.auth.service import AuthService
from chatmesh.services.auth.settings import DB_SCHEMA, AuthSettings
from chatmesh.services.auth.views import ClientInfo, SignedIn

M = TypeVar("M", ev.EmailVerificationRequested, ev.PasswordResetRequested)

PASSWORD = "correct horse battery"
CLIENT = ClientInfo(ip="203.0.113.1", user_agent="pytest")


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def domain(db_url):
    await asyncio.to_thread(upgrade, db_url, schema=DB_SCHEMA, migrations=MIGRATIONS)
    db = Database(db_url, schema=DB_SCHEMA)
    clock = FakeClock()
    settings = AuthSettings(database_url=db_url)
    keys = KeyStore(db, rotation_age=timedelta(days=365), clock=clock)
    service = AuthService(
        db=db, keys=keys, limiter=InMemoryRateLimiter(), settings=settings, clock=clock
    )
    try:
        yield service, clock, db
    finally:
        await db.close()


def _claims(signed_in: SignedIn) -> AccessClaims:
    return AccessClaims(
        user_id=signed_in.account.id,
        session_id=signed_in.session_id,
        issued_at=0,
        expires_at=0,
        token=signed_in.tokens.access_token,
    )


async def _register(service: AuthService, name: str = "wes") -> SignedIn:
    return await service.register(
        email=f"{name}@example.com",
        username=name,
        password=PASSWORD,
        display_name=name,
        client=CLIENT,
    )


async def test_refresh_tokens_expire_after_30_days_of_disuse(domain):
    service, clock, _ = domain
    idle = await _register(service)
    active = await service.login(login="wes", password=PASSWORD, client=CLIENT)

    clock.advance(days=20)
    active = await service.refresh(active.tokens.refresh_token, CLIENT)
    clock.advance(days=10, seconds=1)

    with pytest.raises(Unauthenticated) as expired:
        await service.refresh(idle.tokens.refresh_token, CLIENT)
    assert expired.value.code == "invalid_refresh_token"
    # The session refreshed on day 20 lives on, and only it is listed.
    sessions = await service.list_sessions(_claims(active))
    assert [s.id for s in sessions] == [active.session_id]
    assert (await service.refresh(active.tokens.refresh_token, CLIENT)).session_id == (
        active.session_id
    )


async def _mailed_token(db: Database, message_type: type[M]) -> str:
    """The token of the newest `message_type` event waiting in the outbox."""
    async with db.transaction() as session:
        rows = await session.exec(select(OutboxEvent).order_by(col(OutboxEvent.create_time)))
        tokens = [
            found.token
            for row in rows
            if (found := unpack(envelope_pb2.Event.FromString(row.payload), message_type))
        ]
    return tokens[-1]


async def test_verification_links_expire_after_48_hours(domain):
    service, clock, db = domain
    await _register(service, "xia")
    token = await _mailed_token(db, ev.EmailVerificationRequested)

    clock.advance(hours=48, seconds=1)

    with pytest.raises(InvalidArgument) as expired:
        await service.verify_email(token)
    assert expired.value.code == "invalid_token"


async def test_verification_links_work_within_48_hours(domain):
    service, clock, db = domain
    await _register(service, "yan")
    token = await _mailed_token(db, ev.EmailVerificationRequested)

    clock.advance(hours=47)

    assert (await service.verify_email(token)).email_verified


async def test_reset_links_expire_after_an_hour(domain):
    service, clock, db = domain
    await _register(service, "zed")
    await service.request_password_reset("zed@example.com", CLIENT)
    token = await _mailed_token(db, ev.PasswordResetRequested)

    clock.advance(minutes=61)

    with pytest.raises(InvalidArgument) as expired:
        await service.confirm_password_reset(token, "another good passphrase")
    assert expired.value.code == "invalid_token"
