"""Register over gRPC: what a new user gets, what is refused, and that a refusal
leaves nothing behind."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from chatmesh.auth.v1 import auth_pb2
from chatmesh.events.v1 import auth_events_pb2 as ev

PASSWORD = "correct horse battery"


async def test_register_creates_a_signed_in_account(auth):
    response = await auth.register(
        email="  Alice.Smith@Example.COM ",
        username="Alice_01",
        display_name="  Ame\u0301lie  ",
    )

    account = response.account
    assert account.email == "alice.smith@example.com"
    assert account.username == "alice_01"
    assert account.display_name == "Am\u00e9lie"  # NFC, trimmed
    assert not account.email_verified
    assert account.create_time.seconds > 0
    assert response.tokens.expires_in == 15 * 60
    assert response.tokens.refresh_token
    assert response.session_id

    me = await auth.stub.GetAccount(
        auth_pb2.GetAccountRequest(), metadata=auth.bearer(response.tokens.access_token)
    )
    assert me.account == account
    sessions = await auth.stub.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=auth.bearer(response.tokens.access_token)
    )
    assert [(s.id, s.ip_address, s.user_agent, s.current) for s in sessions.sessions] == [
        (response.session_id, "203.0.113.7", "pytest/1.0", True)
    ]


async def test_register_emits_user_registered_and_verification_request(auth):
    response = await auth.register(email="bob@example.com", username="bob", display_name="Bob")

    registered = await auth.events.wait_for(ev.UserRegistered)
    assert registered == ev.UserRegistered(
        user_id=response.account.id,
        email="bob@example.com",
        username="bob",
        display_name="Bob",
        register_time=response.account.create_time,
    )
    verification = await auth.events.wait_for(ev.EmailVerificationRequested)
    assert verification.user_id == response.account.id
    assert verification.email == "bob@example.com"
    assert verification.display_name == "Bob"
    assert len(verification.token) >= 40
    hours = (verification.expire_time.seconds - response.account.create_time.seconds) / 3600
    assert 47.9 < hours <= 48


@pytest.mark.parametrize(
    ("email", "username"),
    [("Taken@Example.com", "someone_else"), ("other@example.com", "TAKEN")],
    ids=["email", "username"],
)
async def test_duplicates_are_refused_case_insensitively(auth, email, username):
    await auth.register(email="taken@example.com", username="taken")
    before = await auth.count_rows()

    failure = await auth.failure(auth.register(email=email, username=username))

    assert failure.status == grpc.StatusCode.ALREADY_EXISTS
    field = "email" if "Taken@" in email else "username"
    assert failure.code == f"{field}_taken"
    assert failure.details == {"field": field}
    assert await auth.count_rows() == before


async def test_concurrent_registrations_of_one_address_create_one_account(auth):
    attempts = [auth.register(email="race@example.com", username=f"racer{i}") for i in range(4)]
    results = await asyncio.gather(*attempts, return_exceptions=True)

    winners = [r for r in results if isinstance(r, auth_pb2.RegisterResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 3
    assert {e.code() for e in losers} == {grpc.StatusCode.ALREADY_EXISTS}
    assert (await auth.count_rows())["accounts"] == 1


@pytest.mark.parametrize(
    ("password", "reasons"),
    [
        ("short1!", ["must be at least 10 characters long"]),
        ("x" * 129, ["must be at most 128 characters long", "must not be a single character"]),
        ("Password123", ["is one of the most commonly used passwords"]),
        ("my-carol99-secret", ["must not contain your username"]),
        ("carol.k-was-here", ["must not contain your email address"]),
        ("aaaaaaaaaaaa", ["must not be a single character repeated"]),
    ],
    ids=["short", "long", "common", "username", "email", "repeated"],
)
async def test_weak_passwords_are_refused_with_every_reason(auth, password, reasons):
    failure = await auth.failure(
        auth.register(email="carol.k@example.com", username="carol99", password=password)
    )

    assert failure.status == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.code == "weak_password"
    assert failure.details["field"] == "password"
    for reason in reasons:
        assert any(reason in given for given in failure.details["reasons"]), failure.details
    assert failure.message.startswith("the password is too weak")


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"display_name": "Eve\x00"}, "invalid_display_name", "display_name"),
        ({"display_name": "gro\u202eup"}, "invalid_display_name", "display_name"),
        ({"display_name": "zero\u200bwidth"}, "invalid_display_name", "display_name"),
        ({"display_name": "   "}, "invalid_display_name", "display_name"),
        ({"display_name": "x" * 65}, "invalid_display_name", "display_name"),
        ({"username": "ab"}, "invalid_username", "username"),
        ({"username": "has space"}, "invalid_username", "username"),
        ({"username": "_leading"}, "invalid_username", "username"),
        ({"username": "caf\u00e9"}, "invalid_username", "username"),
        ({"username": "x" * 33}, "invalid_username", "username"),
        ({"email": "not-an-email"}, "invalid_email", "email"),
        ({"email": "two@@example.com"}, "invalid_email", "email"),
        ({"email": "nodot@localhost"}, "invalid_email", "email"),
        ({"email": "ctrl\n@example.com"}, "invalid_email", "email"),
        ({"email": ("a" * 250) + "@example.com"}, "invalid_email", "email"),
    ],
)
async def test_invalid_fields_are_refused_and_named(auth, fields, code, field):
    failure = await auth.failure(auth.register(**fields))

    assert failure.status == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.code == code
    assert failure.details == {"field": field}


async def test_a_refused_registration_writes_nothing(auth):
    await auth.register(email="first@example.com", username="first")
    await auth.events.wait_for(ev.EmailVerificationRequested)
    before = await auth.count_rows()

    refusals = [
        auth.register(email="first@example.com", username="second"),
        auth.register(email="second@example.com", username="first"),
        auth.register(email="second@example.com", username="second", password="password123"),
        auth.register(email="second@example.com", username="second", display_name="a\x07b"),
        auth.register(email="bad", username="second"),
    ]
    for call in refusals:
        await auth.failure(call)

    assert await auth.count_rows() == before
    await auth.events.settle()
    assert len(auth.events.of_type(ev.UserRegistered)) == 1


async def test_full_width_username_is_folded_to_ascii(auth):
    response = await auth.register(username="\uff21\uff4e\uff4e\uff41")  # full-width "Anna"

    assert response.account.username == "anna"
    failure = await auth.failure(auth.register(username="ANNA"))
    assert failure.code == "username_taken"
