"""Asking a service's standard health endpoint whether it is SERVING."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2


async def is_serving(channel: grpc.aio.Channel, service: str, *, rpc_deadline: float = 1.0) -> bool:
    """One `grpc.health.v1.Health/Check`; unreachable counts as not serving."""
    # typeshed's HealthStub declares no methods; the raw callable is typed.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        reply = await check(health_pb2.HealthCheckRequest(service=service), timeout=rpc_deadline)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def wait_until_serving(
    channel: grpc.aio.Channel, service: str, *, interval: float = 0.1
) -> None:
    """Poll until `service` reports SERVING (wrap in `asyncio.timeout`)."""
    # Health/Watch would push changes, but it cannot connect before the server
    # is up; polling Check handles "not started yet" and "starting" alike.
    while not await is_serving(channel, service):  # noqa: ASYNC110
        await asyncio.sleep(interval)
