# ruff: noqa: N802 (method names are the RPC names the generated base class declares)
"""The gRPC face of presence (see presence.proto for the protocol)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from chatmesh.common.errors import InvalidArgument
from chatmesh.common.grpc.context import current_claims
from chatmesh.services.user import validation
from chatmesh.services.user.presence.codec import to_proto
from chatmesh.services.user.presence.hub import PresenceHub, Watcher
from chatmesh.services.user.presence.tracker import PresenceTracker
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc

SERVICE_NAME = presence_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name

# Authorized by the connection id the BFF chose (a secret), not by a user's token:
# a WebSocket outlives the access token it was opened with. WatchPresence is the
# BFF's process-wide feed, not any one user's call.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}" for method in ("Heartbeat", "CloseConnections", "WatchPresence")
)

MAX_USER_IDS_PER_WATCH_MESSAGE = 10_000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Req, Awaitable[Resp]]
    StreamContext = grpc.aio.ServicerContext[
        AsyncIterator[presence_pb2.WatchPresenceRequest],
        AsyncIterator[presence_pb2.WatchPresenceResponse],
    ]


def _watch_ids(ids: Sequence[str], field: str) -> list[str]:
    if len(ids) > MAX_USER_IDS_PER_WATCH_MESSAGE:
        raise InvalidArgument(
            f"at most {MAX_USER_IDS_PER_WATCH_MESSAGE} user ids per message",
            code="too_many_user_ids",
            details={"field": field, "max": MAX_USER_IDS_PER_WATCH_MESSAGE},
        )
    return [validation.check_user_id(user_id, field=field) for user_id in dict.fromkeys(ids)]


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    def __init__(self, *, tracker: PresenceTracker, hub: PresenceHub) -> None:
        self._tracker = tracker
        self._hub = hub

    async def OpenConnection(
        self,
        request: presence_pb2.OpenConnectionRequest,
        context: Context[presence_pb2.OpenConnectionRequest, presence_pb2.OpenConnectionResponse],
    ) -> presence_pb2.OpenConnectionResponse:
        claims = current_claims()
        state = await self._tracker.open(
            user_id=claims.user_id,
            connection_id=request.connection_id,
            instance_id=request.instance_id,
        )
        interval = Duration()
        interval.FromMilliseconds(round(self._tracker.heartbeat_interval * 1000))
        return presence_pb2.OpenConnectionResponse(
            presence=to_proto(state), heartbeat_interval=interval
        )

    async def Heartbeat(
        self,
        request: presence_pb2.HeartbeatRequest,
        context: Context[presence_pb2.HeartbeatRequest, presence_pb2.HeartbeatResponse],
    ) -> presence_pb2.HeartbeatResponse:
        unknown = await self._tracker.heartbeat(
            instance_id=request.instance_id,
            connection_ids=request.connection_ids,
            active_ids=request.active_connection_ids,
        )
        return presence_pb2.HeartbeatResponse(unknown_connection_ids=unknown)

    async def CloseConnections(
        self,
        request: presence_pb2.CloseConnectionsRequest,
        context: Context[
            presence_pb2.CloseConnectionsRequest, presence_pb2.CloseConnectionsResponse
        ],
    ) -> presence_pb2.CloseConnectionsResponse:
        await self._tracker.close(
            instance_id=request.instance_id, connection_ids=request.connection_ids
        )
        return presence_pb2.CloseConnectionsResponse()

    async def GetPresence(
        self,
        request: presence_pb2.GetPresenceRequest,
        context: Context[presence_pb2.GetPresenceRequest, presence_pb2.GetPresenceResponse],
    ) -> presence_pb2.GetPresenceResponse:
        current_claims()
        ids = validation.check_user_ids(request.user_ids)
        return presence_pb2.GetPresenceResponse(presences=await self._tracker.snapshot(ids))

    async def WatchPresence(
        self,
        request_iterator: AsyncIterator[presence_pb2.WatchPresenceRequest],
        context: StreamContext,
    ) -> AsyncIterator[presence_pb2.WatchPresenceResponse]:
        watcher = self._hub.open_stream()
        reader = asyncio.create_task(self._follow(request_iterator, watcher))
        try:
            while (batch := await watcher.next_batch()) is not None:
                yield presence_pb2.WatchPresenceResponse(presences=batch)
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await self._hub.close_stream(watcher)

    async def _follow(
        self, requests: AsyncIterator[presence_pb2.WatchPresenceRequest], watcher: Watcher
    ) -> None:
        """Apply the client's adds and removes; close the watcher when it half-closes
        (or with the error that ends the stream)."""
        error: BaseException | None = None
        try:
            async for request in requests:
                removed = _watch_ids(request.remove_user_ids, "remove_user_ids")
                added = _watch_ids(request.add_user_ids, "add_user_ids")
                await self._hub.unwatch(watcher, removed)
                await self._hub.watch(watcher, added)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        watcher.close(error)
