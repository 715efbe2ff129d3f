"""The chat service's refusals, with their stable codes (shared by the modules
that raise them)."""

from __future__ import annotations

from chatmesh.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    NotFound,
    PermissionDenied,
    Unavailable,
)


def room_not_found() -> NotFound:
    return NotFound("room not found", code="room_not_found")


def message_not_found() -> NotFound:
    return NotFound("message not found", code="message_not_found")


def not_a_member() -> PermissionDenied:
    return PermissionDenied("you are not a member of this room", code="not_a_member")


def insufficient_role(what: str) -> PermissionDenied:
    return PermissionDenied(f"only the room's {what} can do this", code="insufficient_role")


def direct_room() -> FailedPrecondition:
    return FailedPrecondition(
        "the members of a direct conversation cannot change", code="direct_room"
    )


def reply_to_not_found() -> NotFound:
    return NotFound(
        "the message replied to does not exist in this room",
        code="reply_to_not_found",
        details={"field": "reply_to"},
    )


def client_msg_id_conflict() -> AlreadyExists:
    return AlreadyExists(
        "this client_msg_id was already used for another room",
        code="client_msg_id_conflict",
        details={"field": "client_msg_id"},
    )


def internal_error() -> Internal:
    return Internal("internal error")


def unavailable() -> Unavailable:
    return Unavailable("the chat service is shutting down; try again", code="unavailable")
