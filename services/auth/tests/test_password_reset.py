"""Password reset: the request reveals nothing; the confirmation sets the new
password, ends every session and tells the owner."""

from __future__ import annotations

import grpc

from chatmesh.auth.v1 import auth_pb2
from chatmesh.events.v1 import auth_events_pb2 as ev

NEW_PASSWORD = "a brand new passphrase"


async def _request(auth, email, ip="203.0.113.50"):
    return await auth.stub.RequestPasswordReset(
        auth_pb2.RequestPasswordResetRequest(
            email=email, client=auth_pb2.ClientContext(ip_address=ip)
        )
    )


async def _confirm(auth, token, password=NEW_PASSWORD):
    return await auth.stub.ConfirmPasswordReset(
        auth_pb2.ConfirmPasswordResetRequest(token=token, new_password=password)
    )


async def test_reset_replaces_the_password_and_ends_every_session(auth):
    registered = await auth.register(email="quinn@example.com", display_name="Quinn")
    other = await auth.login("quinn@example.com", user_agent="Phone")

    await _request(auth, "Quinn@Example.com")
    mail = await auth.events.wait_for(ev.PasswordResetRequested)
    assert mail.user_id == registered.account.id
    assert mail.email == "quinn@example.com"
    assert mail.display_name == "Quinn"
    assert mail.ip_address == "203.0.113.50"
    assert 3500 < mail.expire_time.seconds - registered.account.create_time.seconds <= 3700

    await _confirm(auth, mail.token)

    old = await auth.failure(auth.login("quinn@example.com"))
    assert old.code == "invalid_credentials"
    fresh = await auth.login("quinn@example.com", NEW_PASSWORD)
    assert fresh.account.id == registered.account.id
    for ended in (registered, other):
        refresh = await auth.failure(
            auth.stub.RefreshSession(
                auth_pb2.RefreshSessionRequest(refresh_token=ended.tokens.refresh_token)
            )
        )
        assert refresh.code == "invalid_refresh_token"
        me = await auth.failure(
            auth.stub.GetAccount(
                auth_pb2.GetAccountRequest(), metadata=auth.bearer(ended.tokens.access_token)
            )
        )
        assert me.code == "session_revoked"
    changed = await auth.events.wait_for(ev.PasswordChanged)
    assert (changed.user_id, changed.email, changed.display_name) == (
        registered.account.id,
        "quinn@example.com",
        "Quinn",
    )
    # The link worked once; it proved the mailbox too.
    assert (await auth.failure(_confirm(auth, mail.token))).code == "invalid_token"
    assert fresh.account.email_verified


async def test_request_for_an_unknown_address_succeeds_silently(auth):
    await auth.register(email="rae@example.com")

    await _request(auth, "nobody@example.com")
    await _request(auth, "not even an address")
    await _request(auth, "rae@example.com")

    mail = await auth.events.wait_for(ev.PasswordResetRequested)
    assert mail.email == "rae@example.com"
    await auth.events.settle()
    assert len(auth.events.of_type(ev.PasswordResetRequested)) == 1


async def test_requests_per_address_are_limited_silently(db_url, start_auth):
    async with start_auth(db_url, password_reset_limit=2) as auth:
        await auth.register(email="sam@example.com")

        for _ in range(4):
            await _request(auth, "sam@example.com")  # never an error

        await auth.events.settle()
        assert len(auth.events.of_type(ev.PasswordResetRequested)) == 2


async def test_a_weak_new_password_keeps_the_old_one_and_the_link(auth):
    registered = await auth.register(email="t.smith@example.com", username="tess")
    await _request(auth, "t.smith@example.com")
    mail = await auth.events.wait_for(ev.PasswordResetRequested)
    before = await auth.count_rows()

    weak = await auth.failure(_confirm(auth, mail.token, "tess-1234567"))

    assert weak.status == grpc.StatusCode.INVALID_ARGUMENT
    assert weak.code == "weak_password"
    assert weak.details["reasons"] == ["must not contain your username"]
    assert await auth.count_rows() == before
    assert (await auth.login("tess")).account.id == registered.account.id
    await _confirm(auth, mail.token)  # the link was not used up
    assert (await auth.login("tess", NEW_PASSWORD)).account.id == registered.account.id


async def test_only_the_latest_reset_is_needed_and_older_links_die(auth):
    await auth.register(email="uma@example.com")
    await _request(auth, "uma@example.com")
    await _request(auth, "uma@example.com")
    first, second = await auth.events.wait_count(ev.PasswordResetRequested, 2)

    await _confirm(auth, second.token)

    assert (await auth.failure(_confirm(auth, first.token))).code == "invalid_token"


async def test_invalid_reset_tokens_are_refused(auth):
    await auth.register(email="val@example.com")
    verify = await auth.events.wait_for(ev.EmailVerificationRequested)

    for token in ("", "made-up", verify.token):
        failure = await auth.failure(_confirm(auth, token))
        assert failure.status == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.code == "invalid_token"
