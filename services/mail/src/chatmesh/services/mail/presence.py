"""Who is offline, and since when: the user service's presence, read through its
mesh-internal `WatchPresence` stream (which answers every added user with their
current presence; `GetPresence` needs a user's token, and there are no service
tokens yet). One short stream per lookup: add the ids, take the answers, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import grpc

from chatmesh.common.errors import Unavailable
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc

# The user service refuses more per request message.
_IDS_PER_MESSAGE = 10_000


@dataclass(frozen=True)
class Presence:
    # Connected (online or away): the app shows them their messages.
    connected: bool
    # When they were last connected (None: never, or not known).
    last_seen: datetime | None

    def offline_since(self, moment: datetime) -> bool:
        """Offline, and not connected at any time after `moment`."""
        return not self.connected and (self.last_seen is None or self.last_seen <= moment)


class PresenceSource(Protocol):
    async def presence(self, user_ids: Sequence[str]) -> dict[str, Presence]:
        """The presence of each of `user_ids` (raises `Unavailable` if unknown)."""
        ...


def from_proto(presence: presence_pb2.UserPresence) -> Presence:
    connected = presence.status in (
        presence_pb2.PRESENCE_STATUS_ONLINE,
        presence_pb2.PRESENCE_STATUS_AWAY,
    )
    seen = presence.last_seen_time.ToDatetime(tzinfo=UTC)
    return Presence(connected, seen if presence.HasField("last_seen_time") else None)


class GrpcPresenceSource:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 10.0) -> None:
        self._stub = presence_pb2_grpc.PresenceServiceStub(channel)
        self._timeout = timeout

    async def presence(self, user_ids: Sequence[str]) -> dict[str, Presence]:
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return {}
        found: dict[str, Presence] = {}
        done = asyncio.Event()

        async def requests() -> AsyncIterator[presence_pb2.WatchPresenceRequest]:
            for start in range(0, len(wanted), _IDS_PER_MESSAGE):
                chunk = wanted[start : start + _IDS_PER_MESSAGE]
                yield presence_pb2.WatchPresenceRequest(add_user_ids=chunk)
            await done.wait()  # keep the stream open until every answer arrived

        call = self._stub.WatchPresence(requests(), timeout=self._timeout)
        try:
            async for response in call:
                for presence in response.presences:
                    found[presence.user_id] = from_proto(presence)
                if len(found) >= len(wanted):
                    break
        except grpc.aio.AioRpcError as error:
            raise Unavailable(
                "the user service did not answer", code="presence_unavailable"
            ) from error
        finally:
            done.set()
            call.cancel()
        missing = [user_id for user_id in wanted if user_id not in found]
        if missing:
            raise Unavailable("the user service did not answer", code="presence_unavailable")
        return found
