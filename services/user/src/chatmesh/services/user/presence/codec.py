"""Presence states as `chatmesh.user.v1.UserPresence` messages (the pub/sub payload
and what the gRPC API returns)."""

from __future__ import annotations

from chatmesh.common.clock import from_epoch
from chatmesh.services.user.presence.store import PresenceState, Status
from chatmesh.user.v1 import presence_pb2

STATUS = {
    Status.ONLINE: presence_pb2.PRESENCE_STATUS_ONLINE,
    Status.AWAY: presence_pb2.PRESENCE_STATUS_AWAY,
    Status.OFFLINE: presence_pb2.PRESENCE_STATUS_OFFLINE,
}


def to_proto(state: PresenceState) -> presence_pb2.UserPresence:
    message = presence_pb2.UserPresence(
        user_id=state.user_id, status=STATUS[state.status], version=state.version
    )
    if state.last_seen is not None:
        message.last_seen_time.FromDatetime(from_epoch(state.last_seen))
    return message
