"""The backends the app opens in its lifespan, handed to requests through the
ASGI lifespan state (one typed accessor instead of untyped `request.state`)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
from starlette.types import Scope

from chatmesh.auth.v1 import auth_pb2_grpc
from chatmesh.bff.presence import PresenceHub
from chatmesh.bff.profiles import ProfileDirectory
from chatmesh.bff.ws.connection import ConnectionRegistry
from chatmesh.bff.ws.hub import ChatStreamHub
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.tokens import TokenVerifier
from chatmesh.user.v1 import presence_pb2_grpc, user_pb2_grpc

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
    # The user service: profiles / friends / blocks, presence, and its channel
    # (health checks); the cached profile look-up and this process's presence hub.
    users: user_pb2_grpc.UserServiceStub
    presence: presence_pb2_grpc.PresenceServiceStub
    user_channel: grpc.aio.Channel
    profiles: ProfileDirectory
    presence_hub: PresenceHub
    # The chat service, its channel (health checks), and this process's one
    # multiplexed room event stream with its local WebSocket connections.
    chat: chat_service_pb2_grpc.ChatServiceStub
    chat_channel: grpc.aio.Channel
    chat_hub: ChatStreamHub
    connections: ConnectionRegistry


def backends(scope: Scope) -> Backends:
    """The backends of the running app (set by its lifespan)."""
    found = scope.get("state", {}).get(STATE_KEY)
    if not isinstance(found, Backends):
        raise RuntimeError("the BFF's lifespan has not started (run it under an ASGI server)")
    return found
