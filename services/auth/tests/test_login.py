"""Login: email or username, one answer for every failure, new-device alerts,
and throttling per account and per client address (Redis, shared by replicas)."""

from __future__ import annotations

import asyncio

import grpc
from argon2 import PasswordHasher
from sqlalchemy import text

from chatmesh.auth.v1 import auth_pb2
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.services.auth.settings import AuthSettings

PASSWORD = "correct horse battery"


async def test_login_with_email_or_username_in_any_case(auth):
    registered = await auth.register(email="dana@example.com", username="dana")

    for login in ("dana@example.com", "DANA@Example.com", "dana", " Dana "):
        response = await auth.login(login)
        assert response.account == registered.account
        assert response.session_id != registered.session_id
        me = await auth.stub.GetAccount(
            auth_pb2.GetAccountRequest(), metadata=auth.bearer(response.tokens.access_token)
        )
        assert me.account.id == registered.account.id


async def test_wrong_password_and_unknown_user_look_the_same(auth):
    await auth.register(email="erin@example.com", username="erin")

    wrong_password = await auth.failure(auth.login("erin", "not the password at all"))
    unknown_user = await auth.failure(auth.login("nobody", PASSWORD))
    unknown_email = await auth.failure(auth.login("nobody@example.com", PASSWORD))

    for failure in (wrong_password, unknown_user, unknown_email):
        assert failure.status == grpc.StatusCode.UNAUTHENTICATED
        assert failure.code == "invalid_credentials"
        assert failure.message == "invalid login or password"
        assert failure.details == {}


async def test_login_records_the_device_and_alerts_only_for_a_new_one(auth):
    registered = await auth.register(
        email="finn@example.com", username="finn", client=auth.client("198.51.100.1", "Firefox")
    )

    await auth.login("finn", ip="198.51.100.1", user_agent="Firefox")  # the same device
    phone = await auth.login("finn", ip="198.51.100.9", user_agent="Phone/2.0")

    alert = await auth.events.wait_for(ev.LoginFromNewDevice)
    assert alert.user_id == registered.account.id
    assert alert.email == "finn@example.com"
    assert alert.display_name == registered.account.display_name
    assert alert.session_id == phone.session_id
    assert alert.ip_address == "198.51.100.9"
    assert alert.user_agent == "Phone/2.0"
    await auth.events.settle()
    assert len(auth.events.of_type(ev.LoginFromNewDevice)) == 1

    sessions = await auth.stub.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=auth.bearer(phone.tokens.access_token)
    )
    devices = {(s.ip_address, s.user_agent) for s in sessions.sessions}
    assert devices == {("198.51.100.1", "Firefox"), ("198.51.100.9", "Phone/2.0")}


async def test_failed_logins_lock_the_account_whatever_name_is_used(
    db_url, redis_limiter, start_auth
):
    async with start_auth(db_url, limiter=redis_limiter, login_account_limit=5) as auth:
        await auth.register(email="gail@example.com", username="gail")
        await auth.register(email="hank@example.com", username="hank")

        # Alternating email and username still counts against the one account.
        for login in ("gail", "gail@example.com", "GAIL", "gail", "gail@example.com"):
            failure = await auth.failure(auth.login(login, "wrong password 123"))
            assert failure.code == "invalid_credentials"

        locked = await auth.failure(auth.login("gail"))  # even the right password
        assert locked.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert locked.code == "too_many_attempts"
        assert 800 <= locked.details["retry_after"] <= 900
        # Another account from the same address is not affected.
        assert (await auth.login("hank")).account.username == "hank"


async def test_unknown_logins_are_throttled_like_real_ones(db_url, redis_limiter, start_auth):
    async with start_auth(db_url, limiter=redis_limiter, login_account_limit=2) as auth:
        for _ in range(2):
            assert (await auth.failure(auth.login("ghost"))).code == "invalid_credentials"

        locked = await auth.failure(auth.login("ghost"))
        assert locked.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert locked.code == "too_many_attempts"


async def test_a_successful_login_clears_the_account_failures(db_url, redis_limiter, start_auth):
    async with start_auth(db_url, limiter=redis_limiter, login_account_limit=3) as auth:
        await auth.register(email="ivy@example.com", username="ivy")
        for _ in range(2):
            await auth.failure(auth.login("ivy", "wrong password 123"))
        await auth.login("ivy")

        for _ in range(2):
            failure = await auth.failure(auth.login("ivy", "wrong password 123"))
            assert failure.code == "invalid_credentials"
        assert (await auth.login("ivy")).account.username == "ivy"


async def test_one_address_trying_many_accounts_is_throttled(db_url, redis_limiter, start_auth):
    async with start_auth(db_url, limiter=redis_limiter, login_ip_limit=4) as auth:
        await auth.register(email="jon@example.com", username="jon")
        for name in ("a1", "b2", "c3", "d4"):
            await auth.failure(auth.login(name, ip="192.0.2.66"))

        blocked = await auth.failure(auth.login("jon", ip="192.0.2.66"))
        assert blocked.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert blocked.code == "too_many_attempts"
        assert blocked.details["retry_after"] >= 1
        # Other addresses sign in as usual.
        assert (await auth.login("jon", ip="192.0.2.67")).account.username == "jon"


async def test_rehashes_a_password_hashed_with_old_parameters(auth):
    await auth.register(email="kim@example.com", username="kim")
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    async with auth.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE accounts SET password_hash = :h WHERE username = 'kim'"), {"h": weak}
        )

    await auth.login("kim")

    async with auth.db.engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT password_hash FROM accounts WHERE username = 'kim'")
            )
        ).scalar_one()
    assert stored != weak
    configured = AuthSettings()
    current = PasswordHasher(
        time_cost=configured.argon2_time_cost,
        memory_cost=configured.argon2_memory_kib,
        parallelism=configured.argon2_parallelism,
    )
    assert not current.check_needs_rehash(stored)
    assert (await auth.login("kim")).account.username == "kim"


async def test_concurrent_logins_each_get_their_own_session(auth):
    await auth.register(email="lee@example.com", username="lee")

    responses = await asyncio.gather(*(auth.login("lee") for _ in range(3)))

    assert len({r.session_id for r in responses}) == 3
