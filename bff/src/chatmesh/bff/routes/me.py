"""GET /api/v1/me: the signed-in user's account."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from chatmesh.auth.v1 import auth_pb2
from chatmesh.bff.auth import Authenticator
from chatmesh.bff.models import User
from chatmesh.bff.openapi import ApiRoute, Operation
from chatmesh.bff.responses import model_response, outgoing_metadata
from chatmesh.bff.state import backends


class MeRoutes:
    def __init__(self, *, authenticator: Authenticator, timeout: float) -> None:
        self.authenticator = authenticator
        self.timeout = timeout

    async def me(self, request: Request) -> Response:
        claims = await self.authenticator.require(request)
        reply = await backends(request.scope).auth.GetAccount(
            auth_pb2.GetAccountRequest(),
            timeout=self.timeout,
            metadata=outgoing_metadata(request, access_token=claims.token),
        )
        return model_response(User.from_proto(reply.account))

    def routes(self) -> list[ApiRoute]:
        return [
            ApiRoute(
                "/api/v1/me",
                self.me,
                method="GET",
                operation=Operation(
                    summary="The signed-in user",
                    tag="me",
                    response=User,
                    errors=(401, 500, 503),
                    security="user",
                ),
            )
        ]
