"""Request and response bodies of the chat API (rooms, DMs, messages, reactions,
read markers, search), and the conversion of chatmesh.chat.v1 resources into
them. The WebSocket frames (chatmesh.bff.ws.frames) reuse the same objects, so a
message looks the same over REST and over the socket.

As in chatmesh.bff.models, request models check shape only; the chat service
owns the rules (name length, body length, emoji, …) and answers with precise codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from chatmesh.bff.models import RequestBody, Utf8
from chatmesh.chat.v1 import resources_pb2 as pb

# Generous shape limits: the service enforces the real ones (e.g. 10,000 chars).
IdText = Annotated[str, Field(min_length=1, max_length=100), Utf8]
BodyText = Annotated[str, Field(max_length=20_000), Utf8]
ShortText = Annotated[str, Field(max_length=1_000), Utf8]
EmojiText = Annotated[str, Field(min_length=1, max_length=64), Utf8]

RoomType = Literal["group", "direct"]
VisibilityName = Literal["public", "private"]
RoleName = Literal["owner", "admin", "member", "none"]

_ROOM_TYPES: dict[int, RoomType] = {pb.ROOM_TYPE_GROUP: "group", pb.ROOM_TYPE_DIRECT: "direct"}
_VISIBILITIES: dict[int, VisibilityName] = {
    pb.VISIBILITY_PUBLIC: "public",
    pb.VISIBILITY_PRIVATE: "private",
}
VISIBILITY_VALUES: dict[VisibilityName, pb.Visibility.ValueType] = {
    "public": pb.VISIBILITY_PUBLIC,
    "private": pb.VISIBILITY_PRIVATE,
}
_ROLES: dict[int, RoleName] = {
    pb.MEMBER_ROLE_OWNER: "owner",
    pb.MEMBER_ROLE_ADMIN: "admin",
    pb.MEMBER_ROLE_MEMBER: "member",
}
MEMBER_CHANGES: dict[int, str] = {
    pb.MEMBER_CHANGE_JOINED: "joined",
    pb.MEMBER_CHANGE_ADDED: "added",
    pb.MEMBER_CHANGE_LEFT: "left",
    pb.MEMBER_CHANGE_REMOVED: "removed",
    pb.MEMBER_CHANGE_ROLE_CHANGED: "role_changed",
}


def _time(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def _optional_time(owner: object, field: str, value: Timestamp) -> datetime | None:
    assert hasattr(owner, "HasField")
    return _time(value) if owner.HasField(field) else None


def role_name(role: int) -> RoleName:
    return _ROLES.get(role, "none")


# --- requests ----------------------------------------------------------------


class CreateRoomRequest(RequestBody):
    name: ShortText
    visibility: VisibilityName = "public"
    topic: ShortText = ""


class AddMemberRequest(RequestBody):
    user_id: IdText


class DirectRoomRequest(RequestBody):
    user_ids: list[IdText] = Field(
        min_length=1, max_length=50, description="The other users (you are always included)."
    )


class MemberRoleRequest(RequestBody):
    role: Literal["admin", "member"] = Field(description="Owner only: promote or demote.")


MEMBER_ROLE_VALUES: dict[str, pb.MemberRole.ValueType] = {
    "admin": pb.MEMBER_ROLE_ADMIN,
    "member": pb.MEMBER_ROLE_MEMBER,
}


class SendMessageRequest(RequestBody):
    body: BodyText = Field(description="Not blank; at most 10,000 characters.")
    client_msg_id: IdText = Field(
        description="Your idempotency key (1-100 of `[A-Za-z0-9._:-]`): a retry returns the "
        "original message."
    )
    reply_to: IdText | None = None


class EditMessageRequest(RequestBody):
    body: BodyText


class ReactionRequest(RequestBody):
    emoji: EmojiText = Field(description="One emoji, e.g. 👍 or 👩‍💻.")


class MarkReadRequest(RequestBody):
    seq: int = Field(ge=0, description="The latest seq seen: 0 to the room's last seq.")


# --- responses ---------------------------------------------------------------


class Reaction(BaseModel):
    emoji: str
    count: int
    user_ids: list[str]

    @classmethod
    def from_proto(cls, reaction: pb.Reaction) -> Reaction:
        return cls(emoji=reaction.emoji, count=reaction.count, user_ids=list(reaction.user_ids))


class ChatMessage(BaseModel):
    """A message. A deleted message is a tombstone: empty body, no reactions."""

    id: str
    room_id: str
    seq: int
    sender_id: str
    body: str
    client_msg_id: str
    reply_to: str | None
    created_at: datetime
    edited_at: datetime | None
    reactions: list[Reaction]

    @classmethod
    def from_proto(cls, message: pb.Message) -> ChatMessage:
        return cls(
            id=message.id,
            room_id=message.room_id,
            seq=message.seq,
            sender_id=message.sender_id,
            body=message.body,
            client_msg_id=message.client_msg_id,
            reply_to=message.reply_to or None,
            created_at=_time(message.create_time),
            edited_at=_optional_time(message, "edit_time", message.edit_time),
            reactions=[Reaction.from_proto(r) for r in message.reactions],
        )


class Membership(BaseModel):
    """The caller's membership of a room."""

    role: RoleName
    joined_at: datetime
    last_read_seq: int
    unread_count: int


class Room(BaseModel):
    id: str
    type: RoomType
    visibility: VisibilityName
    name: str
    topic: str
    creator_id: str
    created_at: datetime
    last_activity_at: datetime
    last_seq: int = Field(description="The seq of the room's latest event.")
    member_count: int
    member_ids: list[str] = Field(description="Members of a direct room (empty for groups).")
    last_message: ChatMessage | None
    membership: Membership | None = Field(description="Yours; null when not a member.")

    @classmethod
    def from_proto(cls, room: pb.Room) -> Room:
        membership = None
        if room.HasField("membership"):
            m = room.membership
            membership = Membership(
                role=role_name(m.role),
                joined_at=_time(m.join_time),
                last_read_seq=m.last_read_seq,
                unread_count=m.unread_count,
            )
        return cls(
            id=room.id,
            type=_ROOM_TYPES.get(room.type, "group"),
            visibility=_VISIBILITIES.get(room.visibility, "private"),
            name=room.name,
            topic=room.topic,
            creator_id=room.creator_id,
            created_at=_time(room.create_time),
            last_activity_at=_time(room.activity_time),
            last_seq=room.last_seq,
            member_count=room.member_count,
            member_ids=list(room.member_ids),
            last_message=(
                ChatMessage.from_proto(room.last_message) if room.HasField("last_message") else None
            ),
            membership=membership,
        )


class RoomList(BaseModel):
    rooms: list[Room]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Member(BaseModel):
    user_id: str
    username: str
    role: RoleName
    joined_at: datetime
    last_read_seq: int

    @classmethod
    def from_proto(cls, member: pb.Member) -> Member:
        return cls(
            user_id=member.user_id,
            username=member.username,
            role=role_name(member.role),
            joined_at=_time(member.join_time),
            last_read_seq=member.last_read_seq,
        )


class MemberList(BaseModel):
    members: list[Member] = Field(description="In the order they joined.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class PublicRoom(BaseModel):
    """An entry of the public room directory."""

    room: Room = Field(description="As members see it: `membership` and `last_message` null.")
    is_member: bool = Field(description="Whether you are a member already.")


class PublicRoomList(BaseModel):
    rooms: list[PublicRoom] = Field(description="By name, ignoring case.")
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same `q`).")


class DirectRoom(BaseModel):
    room: Room
    created: bool


class MessagePage(BaseModel):
    messages: list[ChatMessage] = Field(description="Always in ascending seq order.")
    latest_seq: int = Field(description="The room's last seq when the page was read.")
    has_more: bool = Field(
        description="More messages in the same direction (older for `before_seq` or no "
        "cursor, newer for `after_seq`)."
    )


class ReadMarker(BaseModel):
    last_read_seq: int
    unread_count: int


class HighlightSpan(BaseModel):
    text: str
    match: bool


class SearchHit(BaseModel):
    message: ChatMessage
    highlight: list[HighlightSpan]
    score: float


class SearchResults(BaseModel):
    results: list[SearchHit]
    next_cursor: str | None
