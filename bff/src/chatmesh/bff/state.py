"""The backends the app opens in its lifespan, handed to requests through the
ASGI lifespan state (one typed accessor instead of untyped `request.state`)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
from starlette.types import Scope

from chatmesh.auth.v1 import auth_pb2_grpc
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.tokens import TokenVerifier

STATE_KEY = "chatmesh.bff.backends"


@dataclass(frozen=True, slots=True)
class Backends:
    auth: auth_pb2_grpc.AuthServiceStub
    # For health checks of the auth service.
    auth_channel: grpc.aio.Channel
    verifier: TokenVerifier
    limiter: RateLimiter
    # None in embedded mode (no Redis configured).
    redis: aioredis.Redis | None


def backends(scope: Scope) -> Backends:
    """The backends of the running app (set by its lifespan)."""
    found = scope.get("state", {}).get(STATE_KEY)
    if not isinstance(found, Backends):
        raise RuntimeError("the BFF's lifespan has not started (run it under an ASGI server)")
    return found
