"""Operational endpoints: liveness, readiness, metrics, JWKS, the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from chatmesh.bff.errors import ApiError, error_response
from chatmesh.bff.models import Health, Jwks
from chatmesh.bff.openapi import ApiRoute, Operation, openapi_endpoint
from chatmesh.bff.responses import model_response
from chatmesh.bff.state import backends
from chatmesh.common.errors import ServiceError
from chatmesh.common.grpc.health import is_serving
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.system")

AUTH_SERVICE = "chatmesh.auth.v1.AuthService"
USER_SERVICE = "chatmesh.user.v1.UserService"
CHAT_SERVICE = "chatmesh.chat.v1.ChatService"
TAG = "system"


async def _grpc_check(channel: grpc.aio.Channel, service: str, seconds: float) -> str:
    serving = await is_serving(channel, service, rpc_deadline=seconds)
    return "ok" if serving else "not_serving"


async def _redis_check(client: aioredis.Redis, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            pong: Awaitable[bool] | bool = client.ping()
            if isinstance(pong, Awaitable):
                await pong
    except (TimeoutError, aioredis.RedisError, OSError):
        return "unavailable"
    return "ok"


class SystemRoutes:
    def __init__(self, *, public_url: str, check_timeout: float = 2.0) -> None:
        self.public_url = public_url
        self.check_timeout = check_timeout

    async def healthz(self, _: Request) -> Response:
        return model_response(Health(status="ok"))

    async def readyz(self, request: Request) -> Response:
        found = backends(request.scope)
        checks = {"auth": _grpc_check(found.auth_channel, AUTH_SERVICE, self.check_timeout)}
        checks["user"] = _grpc_check(found.user_channel, USER_SERVICE, self.check_timeout)
        checks["chat"] = _grpc_check(found.chat_channel, CHAT_SERVICE, self.check_timeout)
        if found.redis is not None:
            checks["redis"] = _redis_check(found.redis, self.check_timeout)
        results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        if all(status == "ok" for status in results.values()):
            return model_response(Health(status="ready", checks=results))
        failing = sorted(name for name, status in results.items() if status != "ok")
        return error_response(
            503,
            "not_ready",
            "not ready: " + ", ".join(failing),
            details={"checks": results},
        )

    async def metrics(self, _: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def jwks(self, request: Request) -> Response:
        try:
            keys = await backends(request.scope).verifier.jwks()
        except (ServiceError, grpc.aio.AioRpcError):
            log.warning("jwks unavailable")
            raise ApiError(503, "service_unavailable", "signing keys are unavailable") from None
        response = model_response(Jwks(keys=keys))
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    def routes(self) -> list[BaseRoute]:
        return [
            ApiRoute(
                "/healthz",
                self.healthz,
                method="GET",
                operation=Operation(summary="Liveness (no dependencies)", tag=TAG, response=Health),
            ),
            ApiRoute(
                "/readyz",
                self.readyz,
                method="GET",
                operation=Operation(
                    summary="Readiness: auth, user, chat (gRPC health), Redis if configured",
                    tag=TAG,
                    response=Health,
                    errors=(503,),
                    description="503 `not_ready` with `details.checks` naming each check's state.",
                ),
            ),
            ApiRoute(
                "/metrics",
                self.metrics,
                method="GET",
                operation=Operation(summary="Prometheus metrics", tag=TAG, media_type="text/plain"),
            ),
            ApiRoute(
                "/.well-known/jwks.json",
                self.jwks,
                method="GET",
                operation=Operation(
                    summary="Public keys that verify access tokens (RFC 7517)",
                    tag=TAG,
                    response=Jwks,
                    errors=(503,),
                ),
            ),
            ApiRoute(
                "/api/openapi.json",
                openapi_endpoint(server_url=self.public_url),
                method="GET",
                operation=Operation(
                    summary="This document (OpenAPI 3.1)", tag=TAG, media_type="application/json"
                ),
            ),
        ]
