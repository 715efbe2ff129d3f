"""The BFF application: routes, middleware, and the backends its lifespan opens."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, WebSocketRoute

from chatmesh.auth.v1 import auth_pb2_grpc
from chatmesh.bff.auth import Authenticator
from chatmesh.bff.cookies import CookiePolicy
from chatmesh.bff.errors import exception_handlers
from chatmesh.bff.middleware.body_limit import BodyLimitMiddleware
from chatmesh.bff.middleware.catch_all import CatchAllMiddleware
from chatmesh.bff.middleware.compression import CompressionMiddleware
from chatmesh.bff.middleware.observe import ObserveMiddleware
from chatmesh.bff.middleware.origin import OriginCheckMiddleware
from chatmesh.bff.middleware.rate_limit import RateLimitMiddleware
from chatmesh.bff.middleware.security_headers import SecurityHeadersMiddleware
from chatmesh.bff.presence import PresenceHub
from chatmesh.bff.profiles import ProfileDirectory
from chatmesh.bff.routes.auth import AuthRoutes
from chatmesh.bff.routes.chat import ChatRoutes
from chatmesh.bff.routes.mail import MailRoutes
from chatmesh.bff.routes.me import MeRoutes
from chatmesh.bff.routes.people import PeopleRoutes
from chatmesh.bff.routes.system import SystemRoutes
from chatmesh.bff.routes.web import web_app
from chatmesh.bff.settings import BffSettings
from chatmesh.bff.state import STATE_KEY, Backends
from chatmesh.bff.ws import endpoint as ws_endpoint
from chatmesh.bff.ws.connection import ConnectionRegistry
from chatmesh.bff.ws.hub import ChatStreamHub
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.logging import get_logger
from chatmesh.common.ratelimit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.tokens import GrpcJwksSource, TokenVerifier
from chatmesh.user.v1 import presence_pb2_grpc, user_pb2_grpc

log = get_logger("chatmesh.bff")


def _routes(settings: BffSettings) -> list[BaseRoute]:
    authenticator = Authenticator(
        user_limit=settings.rate_limit_user, window=settings.rate_limit_window
    )
    auth = AuthRoutes(
        cookies=CookiePolicy(secure=settings.secure_cookies),
        authenticator=authenticator,
        timeout=settings.backend_timeout,
        trusted_proxy_hops=settings.trusted_proxy_hops,
    )
    me = MeRoutes(authenticator=authenticator, timeout=settings.backend_timeout)
    people = PeopleRoutes(authenticator=authenticator, timeout=settings.backend_timeout)
    chat = ChatRoutes(authenticator=authenticator, timeout=settings.backend_timeout)
    system = SystemRoutes(public_url=settings.public_url)
    mail = MailRoutes(
        mail_http_url=settings.mail_http_url,
        dev_mailbox=settings.dev_mailbox,
        timeout=settings.backend_timeout,
    )
    websocket = WebSocketRoute(ws_endpoint.PATH, ws_endpoint.WebSocketEndpoint(settings).handle)
    return [
        *auth.routes(),
        *me.routes(),
        *people.routes(),
        *chat.routes(),
        *mail.routes(),
        websocket,
        *system.routes(),
    ]


def _middleware(settings: BffSettings) -> list[Middleware]:
    """Outermost first. Errors produced by an inner layer still pass through the
    outer ones, so every response gets a request id, a metrics sample, security
    headers and (for allowed origins) CORS headers."""
    middleware = [
        Middleware(ObserveMiddleware),
        Middleware(
            SecurityHeadersMiddleware, public_origin=settings.public_origin, https=settings.https
        ),
        # Inside the headers layer (it sees the final headers), outside the rest
        # (errors and the UI files are compressed too).
        Middleware(CompressionMiddleware),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_credentials=True,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["Retry-After", "X-Request-ID"],
                max_age=600,
            )
        )
    middleware += [
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        Middleware(
            OriginCheckMiddleware,
            public_origin=settings.public_origin,
            allowed_origins=settings.cors_origins,
        ),
        Middleware(
            RateLimitMiddleware,
            per_ip=settings.rate_limit_ip,
            auth_per_ip=settings.rate_limit_auth_ip,
            per_user=settings.rate_limit_user,
            window=settings.rate_limit_window,
            trusted_proxy_hops=settings.trusted_proxy_hops,
        ),
        Middleware(CatchAllMiddleware),
    ]
    return middleware


def create_app(settings: BffSettings, *, limiter: RateLimiter | None = None) -> Starlette:
    """The BFF. `limiter` overrides the rate limiter (embedded mode shares one);
    by default it is Redis-backed when `redis_url` is set, in-process otherwise."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        channel = create_channel(settings.auth_address)
        user_channel = create_channel(settings.user_address)
        users = user_pb2_grpc.UserServiceStub(user_channel)
        presence = presence_pb2_grpc.PresenceServiceStub(user_channel)
        presence_hub = PresenceHub(presence=presence, users=users, timeout=settings.backend_timeout)
        chat_channel = create_channel(settings.chat_address)
        chat = chat_service_pb2_grpc.ChatServiceStub(chat_channel)
        chat_hub = ChatStreamHub(chat, timeout=settings.backend_timeout)
        presence_hub.follow_rooms(chat, chat_hub)  # room co-members' presence too
        connections = ConnectionRegistry(
            ping_interval=settings.ws_ping_interval, idle_timeout=settings.ws_idle_timeout
        )
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        try:
            chosen: RateLimiter
            if limiter is not None:
                chosen = limiter
            elif redis is not None:
                chosen = RedisRateLimiter(redis)
            else:
                chosen = InMemoryRateLimiter()
            found = Backends(
                auth=auth_pb2_grpc.AuthServiceStub(channel),
                auth_channel=channel,
                verifier=TokenVerifier(GrpcJwksSource(channel, timeout=settings.backend_timeout)),
                limiter=chosen,
                redis=redis,
                users=users,
                presence=presence,
                user_channel=user_channel,
                profiles=ProfileDirectory(users, timeout=settings.backend_timeout),
                presence_hub=presence_hub,
                chat=chat,
                chat_channel=chat_channel,
                chat_hub=chat_hub,
                connections=connections,
            )
            chat_hub.start()
            connections.start()
            await presence_hub.start()
            log.info(
                "bff started",
                auth=settings.auth_address,
                chat=settings.chat_address,
                redis=bool(redis),
                public_url=settings.public_url,
            )
            yield {STATE_KEY: found}
        finally:
            await connections.close()
            await chat_hub.close()
            await chat_channel.close()
            await presence_hub.stop()
            await user_channel.close()
            await channel.close()
            if redis is not None:
                await redis.aclose()

    app = Starlette(
        routes=_routes(settings),
        middleware=_middleware(settings),
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    # Paths no route matches: the web UI (or a JSON 404 under /api). As the
    # router's default (not a catch-all Mount) it leaves 405s for API routes intact.
    app.router.default = web_app(settings.web_dir)
    return app
