"""Small helpers shared by the route modules."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from chatmesh.auth.v1 import auth_pb2
from chatmesh.bff.client_ip import client_ip
from chatmesh.bff.middleware.observe import request_id_of
from chatmesh.common.grpc.client import call_metadata

# The auth service stores at most this much of a User-Agent.
MAX_USER_AGENT = 512


def model_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def outgoing_metadata(
    request: Request, *, access_token: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Metadata for a backend call: the caller's token and this request's id."""
    return call_metadata(access_token=access_token, request_id=request_id_of(request.scope) or None)


def client_context(request: Request, *, trusted_proxy_hops: int) -> auth_pb2.ClientContext:
    """Where the request came from, for the auth service's session records."""
    return auth_pb2.ClientContext(
        ip_address=client_ip(request.scope, trusted_proxy_hops),
        user_agent=request.headers.get("user-agent", "")[:MAX_USER_AGENT],
    )
