# ruff: noqa: N802 (method names are the RPC names the generated base class declares)
"""The gRPC face of the auth service: protobuf in, domain call, protobuf out.

No rules live here. Domain errors (`ServiceError`) pass through untouched; the
server's error interceptor turns them into statuses with stable codes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.grpc.context import current_claims
from chatmesh.services.auth.events import timestamp
from chatmesh.services.auth.service import AuthService
from chatmesh.services.auth.views import AccountView, ClientInfo, SessionView, SignedIn

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

# Callable without an access token; everything else needs `authorization: Bearer`.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in (
        "Register",
        "Login",
        "RefreshSession",
        "Logout",
        "VerifyEmail",
        "RequestPasswordReset",
        "ConfirmPasswordReset",
        "GetJwks",
    )
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    # The context type the generated (typed) servicer base declares.
    Context = grpc.aio.ServicerContext[Req, Awaitable[Resp]]


def _peer_ip(peer: str) -> str:
    """'ipv4:10.0.0.7:5123' / 'ipv6:[::1]:5123' → the address; '' for anything else."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return ""


def _client(
    message: auth_pb2.ClientContext, context: grpc.aio.ServicerContext[Req, Resp]
) -> ClientInfo:
    # The edge (BFF) reports the end user's address; a direct caller is its own client.
    ip = message.ip_address or _peer_ip(context.peer())
    return ClientInfo(ip=ip, user_agent=message.user_agent)


def _time(value: datetime) -> Timestamp:
    return timestamp(value)


def _account(view: AccountView) -> auth_pb2.Account:
    return auth_pb2.Account(
        id=view.id,
        email=view.email,
        username=view.username,
        display_name=view.display_name,
        email_verified=view.email_verified,
        create_time=_time(view.created),
    )


def _tokens(signed_in: SignedIn) -> auth_pb2.TokenPair:
    tokens = signed_in.tokens
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        refresh_expire_time=_time(tokens.refresh_expires),
    )


def _session(view: SessionView) -> auth_pb2.Session:
    return auth_pb2.Session(
        id=view.id,
        ip_address=view.ip,
        user_agent=view.user_agent,
        create_time=_time(view.created),
        last_use_time=_time(view.last_used),
        current=view.current,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self._service = service

    async def Register(
        self,
        request: auth_pb2.RegisterRequest,
        context: Context[auth_pb2.RegisterRequest, auth_pb2.RegisterResponse],
    ) -> auth_pb2.RegisterResponse:
        result = await self._service.register(
            email=request.email,
            username=request.username,
            password=request.password,
            display_name=request.display_name,
            client=_client(request.client, context),
        )
        return auth_pb2.RegisterResponse(
            account=_account(result.account), tokens=_tokens(result), session_id=result.session_id
        )

    async def Login(
        self,
        request: auth_pb2.LoginRequest,
        context: Context[auth_pb2.LoginRequest, auth_pb2.LoginResponse],
    ) -> auth_pb2.LoginResponse:
        result = await self._service.login(
            login=request.login, password=request.password, client=_client(request.client, context)
        )
        return auth_pb2.LoginResponse(
            account=_account(result.account), tokens=_tokens(result), session_id=result.session_id
        )

    async def RefreshSession(
        self,
        request: auth_pb2.RefreshSessionRequest,
        context: Context[auth_pb2.RefreshSessionRequest, auth_pb2.RefreshSessionResponse],
    ) -> auth_pb2.RefreshSessionResponse:
        result = await self._service.refresh(
            request.refresh_token, _client(request.client, context)
        )
        return auth_pb2.RefreshSessionResponse(
            account=_account(result.account), tokens=_tokens(result), session_id=result.session_id
        )

    async def Logout(
        self,
        request: auth_pb2.LogoutRequest,
        context: Context[auth_pb2.LogoutRequest, auth_pb2.LogoutResponse],
    ) -> auth_pb2.LogoutResponse:
        if request.refresh_token:
            await self._service.logout_by_refresh_token(request.refresh_token)
        else:
            await self._service.logout_session(current_claims())
        return auth_pb2.LogoutResponse()

    async def ListSessions(
        self,
        request: auth_pb2.ListSessionsRequest,
        context: Context[auth_pb2.ListSessionsRequest, auth_pb2.ListSessionsResponse],
    ) -> auth_pb2.ListSessionsResponse:
        sessions = await self._service.list_sessions(current_claims())
        return auth_pb2.ListSessionsResponse(sessions=[_session(s) for s in sessions])

    async def RevokeSession(
        self,
        request: auth_pb2.RevokeSessionRequest,
        context: Context[auth_pb2.RevokeSessionRequest, auth_pb2.RevokeSessionResponse],
    ) -> auth_pb2.RevokeSessionResponse:
        await self._service.revoke_session(current_claims(), request.session_id)
        return auth_pb2.RevokeSessionResponse()

    async def GetAccount(
        self,
        request: auth_pb2.GetAccountRequest,
        context: Context[auth_pb2.GetAccountRequest, auth_pb2.GetAccountResponse],
    ) -> auth_pb2.GetAccountResponse:
        account = await self._service.get_account(current_claims())
        return auth_pb2.GetAccountResponse(account=_account(account))

    async def VerifyEmail(
        self,
        request: auth_pb2.VerifyEmailRequest,
        context: Context[auth_pb2.VerifyEmailRequest, auth_pb2.VerifyEmailResponse],
    ) -> auth_pb2.VerifyEmailResponse:
        account = await self._service.verify_email(request.token)
        return auth_pb2.VerifyEmailResponse(account=_account(account))

    async def ResendVerificationEmail(
        self,
        request: auth_pb2.ResendVerificationEmailRequest,
        context: Context[
            auth_pb2.ResendVerificationEmailRequest, auth_pb2.ResendVerificationEmailResponse
        ],
    ) -> auth_pb2.ResendVerificationEmailResponse:
        await self._service.resend_verification_email(current_claims())
        return auth_pb2.ResendVerificationEmailResponse()

    async def RequestPasswordReset(
        self,
        request: auth_pb2.RequestPasswordResetRequest,
        context: Context[
            auth_pb2.RequestPasswordResetRequest, auth_pb2.RequestPasswordResetResponse
        ],
    ) -> auth_pb2.RequestPasswordResetResponse:
        await self._service.request_password_reset(request.email, _client(request.client, context))
        return auth_pb2.RequestPasswordResetResponse()

    async def ConfirmPasswordReset(
        self,
        request: auth_pb2.ConfirmPasswordResetRequest,
        context: Context[
            auth_pb2.ConfirmPasswordResetRequest, auth_pb2.ConfirmPasswordResetResponse
        ],
    ) -> auth_pb2.ConfirmPasswordResetResponse:
        await self._service.confirm_password_reset(request.token, request.new_password)
        return auth_pb2.ConfirmPasswordResetResponse()

    async def GetJwks(
        self,
        request: auth_pb2.GetJwksRequest,
        context: Context[auth_pb2.GetJwksRequest, auth_pb2.GetJwksResponse],
    ) -> auth_pb2.GetJwksResponse:
        keys = await self._service.jwks()
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**key) for key in keys])
