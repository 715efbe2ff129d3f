"""Sessions (devices): refresh rotation, reuse detection, logout, list and revoke."""

from __future__ import annotations

import asyncio

import grpc

from chatmesh.auth.v1 import auth_pb2
from chatmesh.events.v1 import auth_events_pb2 as ev


async def _refresh(auth, token, **client):
    return await auth.stub.RefreshSession(
        auth_pb2.RefreshSessionRequest(refresh_token=token, client=auth.client(**client))
    )


async def _get_account(auth, access_token):
    return await auth.stub.GetAccount(
        auth_pb2.GetAccountRequest(), metadata=auth.bearer(access_token)
    )


async def test_refresh_rotates_the_pair_and_kills_the_old_refresh_token(auth):
    registered = await auth.register()
    first = registered.tokens

    second = await _refresh(auth, first.refresh_token)

    assert second.session_id == registered.session_id
    assert second.account == registered.account
    assert second.tokens.refresh_token != first.refresh_token
    assert second.tokens.access_token != first.access_token
    assert second.tokens.refresh_expire_time.seconds >= first.refresh_expire_time.seconds
    assert (await _get_account(auth, second.tokens.access_token)).account == registered.account
    third = await _refresh(auth, second.tokens.refresh_token)
    assert third.session_id == registered.session_id


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(auth):
    registered = await auth.register(email="mia@example.com", display_name="Mia")
    stolen = registered.tokens.refresh_token
    rotated = await _refresh(auth, stolen)
    other_device = await auth.login("mia@example.com", ip="198.51.100.2", user_agent="Tablet")

    reuse = await auth.failure(_refresh(auth, stolen, ip="192.0.2.99", user_agent="curl/8"))

    assert reuse.status == grpc.StatusCode.UNAUTHENTICATED
    assert reuse.code == "refresh_token_reused"
    # The legitimate holder's newer token died with the family ...
    dead = await auth.failure(_refresh(auth, rotated.tokens.refresh_token))
    assert dead.code == "invalid_refresh_token"
    # ... and so did its access token, for every call that reaches auth.
    revoked = await auth.failure(_get_account(auth, rotated.tokens.access_token))
    assert revoked.status == grpc.StatusCode.UNAUTHENTICATED
    assert revoked.code == "session_revoked"
    # Other devices stay signed in.
    assert (await _refresh(auth, other_device.tokens.refresh_token)).session_id

    alert = await auth.events.wait_for(ev.RefreshTokenReused)
    assert alert.user_id == registered.account.id
    assert alert.email == "mia@example.com"
    assert alert.display_name == "Mia"
    assert alert.session_family_id == registered.session_id
    assert alert.ip_address == "192.0.2.99"
    assert alert.user_agent == "curl/8"


async def test_concurrent_use_of_one_refresh_token_is_a_reuse(auth):
    registered = await auth.register()

    results = await asyncio.gather(
        *(_refresh(auth, registered.tokens.refresh_token) for _ in range(2)),
        return_exceptions=True,
    )

    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert failures, "two parties must never both hold a live branch of one family"
    assert {f.code() for f in failures} == {grpc.StatusCode.UNAUTHENTICATED}


async def test_unknown_refresh_tokens_are_refused(auth):
    for token in ("", "x" * 43, "garbage token"):
        failure = await auth.failure(_refresh(auth, token))
        assert failure.status == grpc.StatusCode.UNAUTHENTICATED
        assert failure.code == "invalid_refresh_token"


async def test_logout_with_the_refresh_token_ends_that_session(auth):
    registered = await auth.register()
    other = await auth.login(registered.account.username, user_agent="Other")

    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token=registered.tokens.refresh_token))

    gone = await auth.failure(_refresh(auth, registered.tokens.refresh_token))
    assert gone.code == "invalid_refresh_token"
    assert (await auth.failure(_get_account(auth, registered.tokens.access_token))).code == (
        "session_revoked"
    )
    assert (await _get_account(auth, other.tokens.access_token)).account.id
    # Logging out twice, or with a token the server never issued, is fine.
    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token=registered.tokens.refresh_token))
    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token="never issued"))


async def test_logout_with_only_an_access_token_ends_its_session(auth):
    registered = await auth.register()

    await auth.stub.Logout(
        auth_pb2.LogoutRequest(), metadata=auth.bearer(registered.tokens.access_token)
    )

    assert (await auth.failure(_refresh(auth, registered.tokens.refresh_token))).code == (
        "invalid_refresh_token"
    )


async def test_logout_without_any_credential_is_unauthenticated(auth):
    failure = await auth.failure(auth.stub.Logout(auth_pb2.LogoutRequest()))

    assert failure.status == grpc.StatusCode.UNAUTHENTICATED


async def test_list_and_revoke_own_sessions(auth):
    laptop = await auth.register(client=auth.client("198.51.100.1", "Laptop"))
    name = laptop.account.username
    phone = await auth.login(name, ip="198.51.100.2", user_agent="Phone")
    ended = await auth.login(name, ip="198.51.100.3", user_agent="Old")
    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token=ended.tokens.refresh_token))
    as_laptop = auth.bearer(laptop.tokens.access_token)

    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=as_laptop)

    by_id = {s.id: s for s in listed.sessions}
    assert set(by_id) == {laptop.session_id, phone.session_id}
    assert by_id[laptop.session_id].current
    assert not by_id[phone.session_id].current
    assert by_id[phone.session_id].user_agent == "Phone"
    assert (
        by_id[phone.session_id].last_use_time.seconds >= by_id[phone.session_id].create_time.seconds
    )

    await auth.stub.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=phone.session_id), metadata=as_laptop
    )

    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=as_laptop)
    assert [s.id for s in listed.sessions] == [laptop.session_id]
    assert (await auth.failure(_refresh(auth, phone.tokens.refresh_token))).code == (
        "invalid_refresh_token"
    )
    again = await auth.failure(
        auth.stub.RevokeSession(
            auth_pb2.RevokeSessionRequest(session_id=phone.session_id), metadata=as_laptop
        )
    )
    assert again.status == grpc.StatusCode.NOT_FOUND


async def test_someone_elses_session_cannot_be_revoked_or_seen(auth):
    alice = await auth.register()
    mallory = await auth.register()
    as_mallory = auth.bearer(mallory.tokens.access_token)

    failure = await auth.failure(
        auth.stub.RevokeSession(
            auth_pb2.RevokeSessionRequest(session_id=alice.session_id), metadata=as_mallory
        )
    )

    assert failure.status == grpc.StatusCode.NOT_FOUND
    assert failure.code == "session_not_found"
    assert (await _refresh(auth, alice.tokens.refresh_token)).session_id == alice.session_id
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=as_mallory)
    assert [s.id for s in listed.sessions] == [mallory.session_id]
