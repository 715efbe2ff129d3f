"""Server → client frames. Frames built from a room event are encoded once per
event (not once per recipient) and carry `event_seq`, the room log's seq that a
client remembers per room to resume."""

from __future__ import annotations

import json
from typing import Any

from chatmesh.bff.chat_models import MEMBER_CHANGES, ChatMessage, Reaction, Room, role_name
from chatmesh.chat.v1 import resources_pb2 as pb

Frame = dict[str, Any]


def encode(frame: Frame) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=str)


def message_json(message: pb.Message) -> dict[str, Any]:
    return ChatMessage.from_proto(message).model_dump(mode="json")


def room_json(room: pb.Room) -> dict[str, Any]:
    return Room.from_proto(room).model_dump(mode="json")


def error_frame(code: str, message: str, **details: Any) -> Frame:
    frame: Frame = {"type": "error", "code": code, "message": message}
    if details:
        frame["details"] = details
    return frame


def event_frame(event: pb.RoomEvent) -> Frame | None:
    """The frame for a room event, or None for events clients do not see."""
    kind = event.WhichOneof("payload")
    frame: Frame
    if kind == "message_created":
        frame = {"type": "message.created", "message": message_json(event.message_created.message)}
    elif kind == "message_updated":
        frame = {"type": "message.updated", "message": message_json(event.message_updated.message)}
    elif kind == "message_deleted":
        frame = {
            "type": "message.deleted",
            "room_id": event.room_id,
            "message_id": event.message_deleted.message_id,
            "seq": event.message_deleted.message.seq,
        }
    elif kind == "reaction_updated":
        update = event.reaction_updated
        frame = {
            "type": "reaction.updated",
            "room_id": event.room_id,
            "message_id": update.message_id,
            "emoji": update.emoji,
            "user_id": update.user_id,
            "added": update.added,
            "reactions": [Reaction.from_proto(r).model_dump(mode="json") for r in update.reactions],
        }
    elif kind == "read_marker_updated":
        frame = {
            "type": "read",
            "room_id": event.room_id,
            "user_id": event.read_marker_updated.user_id,
            "seq": event.read_marker_updated.last_read_seq,
        }
    elif kind == "typing":
        return {"type": "typing", "room_id": event.room_id, "user_id": event.typing.user_id}
    elif kind == "room_created":
        frame = {"type": "room.updated", "room": room_json(event.room_created.room)}
    elif kind == "room_updated":
        frame = {"type": "room.updated", "room": room_json(event.room_updated.room)}
    elif kind == "member_changed":
        change = event.member_changed
        frame = {
            "type": "room.updated",
            "room": room_json(change.room),
            "member": {
                "user_id": change.user_id,
                "change": MEMBER_CHANGES.get(change.change, "unknown"),
                "role": role_name(change.role),
            },
        }
    else:
        return None
    frame["event_seq"] = event.seq
    return frame
