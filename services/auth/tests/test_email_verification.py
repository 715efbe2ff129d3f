"""Email verification: the token from the event verifies once; resending is
limited and pointless once verified."""

from __future__ import annotations

import grpc

from chatmesh.auth.v1 import auth_pb2
from chatmesh.events.v1 import auth_events_pb2 as ev


async def test_the_mailed_token_verifies_the_address_once(auth):
    registered = await auth.register(email="nia@example.com")
    mail = await auth.events.wait_for(ev.EmailVerificationRequested)

    verified = await auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=mail.token))

    assert verified.account.id == registered.account.id
    assert verified.account.email_verified
    me = await auth.stub.GetAccount(
        auth_pb2.GetAccountRequest(), metadata=auth.bearer(registered.tokens.access_token)
    )
    assert me.account.email_verified
    again = await auth.failure(auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=mail.token)))
    assert again.status == grpc.StatusCode.INVALID_ARGUMENT
    assert again.code == "invalid_token"


async def test_unknown_and_wrong_purpose_tokens_do_not_verify(auth):
    registered = await auth.register(email="oli@example.com")
    await auth.stub.RequestPasswordReset(
        auth_pb2.RequestPasswordResetRequest(email="oli@example.com")
    )
    reset = await auth.events.wait_for(ev.PasswordResetRequested)

    for token in ("", "made-up-token", reset.token):
        failure = await auth.failure(
            auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token))
        )
        assert failure.code == "invalid_token"

    me = await auth.stub.GetAccount(
        auth_pb2.GetAccountRequest(), metadata=auth.bearer(registered.tokens.access_token)
    )
    assert not me.account.email_verified


async def test_resend_sends_a_new_working_token_and_is_limited(db_url, start_auth):
    async with start_auth(db_url, verification_resend_limit=2) as auth:
        registered = await auth.register(email="pat@example.com")
        await auth.events.wait_for(ev.EmailVerificationRequested)
        as_pat = auth.bearer(registered.tokens.access_token)

        for _ in range(2):
            await auth.stub.ResendVerificationEmail(
                auth_pb2.ResendVerificationEmailRequest(), metadata=as_pat
            )
        limited = await auth.failure(
            auth.stub.ResendVerificationEmail(
                auth_pb2.ResendVerificationEmailRequest(), metadata=as_pat
            )
        )
        assert limited.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert limited.details["retry_after"] >= 1

        mails = await auth.events.wait_count(ev.EmailVerificationRequested, 3)
        assert len({m.token for m in mails}) == 3
        resent = mails[-1]
        assert resent.email == "pat@example.com"
        await auth.events.settle()
        assert len(auth.events.of_type(ev.EmailVerificationRequested)) == 3

        await auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=resent.token))
        done = await auth.failure(
            auth.stub.ResendVerificationEmail(
                auth_pb2.ResendVerificationEmailRequest(), metadata=as_pat
            )
        )
        assert done.status == grpc.StatusCode.FAILED_PRECONDITION
        assert done.code == "email_already_verified"
