"""/api/v1/auth/*: accounts and sessions, in front of auth.v1.AuthService.

Browsers get the session as httpOnly cookies; every response that creates a
session also returns the tokens in its body for API clients.
"""

from __future__ import annotations

import grpc
from starlette.requests import Request
from starlette.responses import Response

from chatmesh.auth.v1 import auth_pb2
from chatmesh.bff.auth import Authenticator, access_token
from chatmesh.bff.body import read_json
from chatmesh.bff.cookies import CookiePolicy, refresh_cookie
from chatmesh.bff.errors import ApiError, api_error_from_service, render
from chatmesh.bff.models import (
    Accepted,
    LoginRequest,
    LogoutRequest,
    PasswordResetConfirmRequest,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    Session,
    SessionList,
    SessionTokens,
    User,
    VerifyEmailRequest,
)
from chatmesh.bff.openapi import ApiRoute, Operation
from chatmesh.bff.responses import client_context, model_response, outgoing_metadata
from chatmesh.bff.state import backends
from chatmesh.common.errors import from_rpc_error

PREFIX = "/api/v1/auth"
TAG = "auth"
BACKEND_ERRORS = (500, 503)


class AuthRoutes:
    def __init__(
        self,
        *,
        cookies: CookiePolicy,
        authenticator: Authenticator,
        timeout: float,
        trusted_proxy_hops: int,
    ) -> None:
        self.cookies = cookies
        self.authenticator = authenticator
        self.timeout = timeout
        self.hops = trusted_proxy_hops

    def _session(
        self,
        account: auth_pb2.Account,
        tokens: auth_pb2.TokenPair,
        *,
        status: int = 200,
    ) -> Response:
        body = SessionTokens(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
            user=User.from_proto(account),
        )
        response = model_response(body, status)
        self.cookies.set_session(response, tokens)
        return response

    def _signed_out(self, response: Response) -> Response:
        self.cookies.clear(response)
        return response

    async def register(self, request: Request) -> Response:
        body = await read_json(request, RegisterRequest)
        reply = await backends(request.scope).auth.Register(
            auth_pb2.RegisterRequest(
                email=body.email,
                username=body.username,
                password=body.password,
                display_name=body.display_name,
                client=client_context(request, trusted_proxy_hops=self.hops),
            ),
            timeout=self.timeout,
            metadata=outgoing_metadata(request),
        )
        return self._session(reply.account, reply.tokens, status=201)

    async def login(self, request: Request) -> Response:
        body = await read_json(request, LoginRequest)
        reply = await backends(request.scope).auth.Login(
            auth_pb2.LoginRequest(
                login=body.login,
                password=body.password,
                client=client_context(request, trusted_proxy_hops=self.hops),
            ),
            timeout=self.timeout,
            metadata=outgoing_metadata(request),
        )
        return self._session(reply.account, reply.tokens)

    async def refresh(self, request: Request) -> Response:
        body = await read_json(request, RefreshRequest, optional=True)
        cookie = refresh_cookie(request)
        token = body.refresh_token or cookie
        if token is None:
            raise ApiError(401, "unauthenticated", "no refresh token in the body or cookie")
        try:
            reply = await backends(request.scope).auth.RefreshSession(
                auth_pb2.RefreshSessionRequest(
                    refresh_token=token,
                    client=client_context(request, trusted_proxy_hops=self.hops),
                ),
                timeout=self.timeout,
                metadata=outgoing_metadata(request),
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = api_error_from_service(from_rpc_error(rpc_error))
            if error.status == 401 and token == cookie:
                # This browser's session is over (expired, revoked, or a reused token
                # killed the family): drop its cookies so it stops presenting them.
                return self._signed_out(render(error))
            raise error from None
        return self._session(reply.account, reply.tokens)

    async def logout(self, request: Request) -> Response:
        body = await read_json(request, LogoutRequest, optional=True)
        cookie = refresh_cookie(request)
        refresh_token = body.refresh_token or cookie
        # A refresh token names the session by itself; otherwise the access token does.
        bearer = None if refresh_token else access_token(request)
        if refresh_token or bearer:
            try:
                await backends(request.scope).auth.Logout(
                    auth_pb2.LogoutRequest(refresh_token=refresh_token or ""),
                    timeout=self.timeout,
                    metadata=outgoing_metadata(request, access_token=bearer),
                )
            except grpc.aio.AioRpcError as rpc_error:
                error = api_error_from_service(from_rpc_error(rpc_error))
                # A dead token means the session is already over: signing out succeeded.
                if error.status != 401:
                    raise error from None
        response = Response(status_code=204)
        if refresh_token is None or refresh_token == cookie or bearer is not None:
            # This browser's session ended (not merely another one named in the body).
            self.cookies.clear(response)
        return response

    async def verify_email(self, request: Request) -> Response:
        body = await read_json(request, VerifyEmailRequest)
        reply = await backends(request.scope).auth.VerifyEmail(
            auth_pb2.VerifyEmailRequest(token=body.token),
            timeout=self.timeout,
            metadata=outgoing_metadata(request),
        )
        return model_response(User.from_proto(reply.account))

    async def request_password_reset(self, request: Request) -> Response:
        body = await read_json(request, PasswordResetRequest)
        await backends(request.scope).auth.RequestPasswordReset(
            auth_pb2.RequestPasswordResetRequest(
                email=body.email,
                client=client_context(request, trusted_proxy_hops=self.hops),
            ),
            timeout=self.timeout,
            metadata=outgoing_metadata(request),
        )
        message = "if an account uses this address, a link to reset its password is on its way"
        return model_response(Accepted(message=message), 202)

    async def confirm_password_reset(self, request: Request) -> Response:
        body = await read_json(request, PasswordResetConfirmRequest)
        await backends(request.scope).auth.ConfirmPasswordReset(
            auth_pb2.ConfirmPasswordResetRequest(token=body.token, new_password=body.password),
            timeout=self.timeout,
            metadata=outgoing_metadata(request),
        )
        # Every session of the account was revoked, this browser's included.
        return self._signed_out(Response(status_code=204))

    async def list_sessions(self, request: Request) -> Response:
        claims = await self.authenticator.require(request)
        reply = await backends(request.scope).auth.ListSessions(
            auth_pb2.ListSessionsRequest(),
            timeout=self.timeout,
            metadata=outgoing_metadata(request, access_token=claims.token),
        )
        sessions = [Session.from_proto(session) for session in reply.sessions]
        return model_response(SessionList(sessions=sessions))

    async def revoke_session(self, request: Request) -> Response:
        claims = await self.authenticator.require(request)
        session_id = str(request.path_params["session_id"])
        await backends(request.scope).auth.RevokeSession(
            auth_pb2.RevokeSessionRequest(session_id=session_id),
            timeout=self.timeout,
            metadata=outgoing_metadata(request, access_token=claims.token),
        )
        response = Response(status_code=204)
        if session_id == claims.session_id:
            self.cookies.clear(response)
        return response

    def routes(self) -> list[ApiRoute]:
        session_errors = (409, 422, *BACKEND_ERRORS)
        return [
            ApiRoute(
                f"{PREFIX}/register",
                self.register,
                method="POST",
                operation=Operation(
                    summary="Create an account and sign in",
                    tag=TAG,
                    success=201,
                    success_description="Account created; session cookies set",
                    request=RegisterRequest,
                    response=SessionTokens,
                    errors=session_errors,
                    description=(
                        "409 `email_taken` / `username_taken`; 422 with reasons for a weak "
                        "password or an invalid email, username or display name."
                    ),
                ),
            ),
            ApiRoute(
                f"{PREFIX}/login",
                self.login,
                method="POST",
                operation=Operation(
                    summary="Sign in with an email address or a username",
                    tag=TAG,
                    success_description="Signed in; session cookies set",
                    request=LoginRequest,
                    response=SessionTokens,
                    errors=(401, *BACKEND_ERRORS),
                    description="Wrong password and unknown account get the same 401.",
                ),
            ),
            ApiRoute(
                f"{PREFIX}/refresh",
                self.refresh,
                method="POST",
                operation=Operation(
                    summary="Rotate the refresh token and get a new access token",
                    tag=TAG,
                    success_description="New token pair; session cookies replaced",
                    request=RefreshRequest,
                    request_optional=True,
                    response=SessionTokens,
                    errors=(401, 403, *BACKEND_ERRORS),
                    security="refresh",
                    description=(
                        "The old refresh token is dead afterwards. Presenting a rotated token "
                        "again revokes the whole session."
                    ),
                ),
            ),
            ApiRoute(
                f"{PREFIX}/logout",
                self.logout,
                method="POST",
                operation=Operation(
                    summary="End the session",
                    tag=TAG,
                    success=204,
                    success_description="Signed out; session cookies cleared",
                    request=LogoutRequest,
                    request_optional=True,
                    errors=(403, *BACKEND_ERRORS),
                    security="refresh",
                ),
            ),
            ApiRoute(
                f"{PREFIX}/verify-email",
                self.verify_email,
                method="POST",
                operation=Operation(
                    summary="Verify an email address with the emailed token",
                    tag=TAG,
                    success_description="The account, now verified",
                    request=VerifyEmailRequest,
                    response=User,
                    errors=(404, 409, *BACKEND_ERRORS),
                ),
            ),
            ApiRoute(
                f"{PREFIX}/password-reset/request",
                self.request_password_reset,
                method="POST",
                operation=Operation(
                    summary="Email a password reset link",
                    tag=TAG,
                    success=202,
                    success_description="Accepted, whether or not the address has an account",
                    request=PasswordResetRequest,
                    response=Accepted,
                    errors=BACKEND_ERRORS,
                ),
            ),
            ApiRoute(
                f"{PREFIX}/password-reset/confirm",
                self.confirm_password_reset,
                method="POST",
                operation=Operation(
                    summary="Set a new password with the emailed token",
                    tag=TAG,
                    success=204,
                    success_description="Password changed; every session was signed out",
                    request=PasswordResetConfirmRequest,
                    errors=(404, 409, *BACKEND_ERRORS),
                ),
            ),
            ApiRoute(
                f"{PREFIX}/sessions",
                self.list_sessions,
                method="GET",
                operation=Operation(
                    summary="List the signed-in devices",
                    tag=TAG,
                    response=SessionList,
                    errors=(401, *BACKEND_ERRORS),
                    security="user",
                ),
            ),
            ApiRoute(
                f"{PREFIX}/sessions/{{session_id}}",
                self.revoke_session,
                method="DELETE",
                operation=Operation(
                    summary="Sign a device out",
                    tag=TAG,
                    success=204,
                    success_description="Revoked (cookies cleared if it was this session)",
                    errors=(401, 403, 404, *BACKEND_ERRORS),
                    security="user",
                ),
            ),
        ]
