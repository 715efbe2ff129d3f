"""Rows → protobuf resources (chatmesh.chat.v1). No queries here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.clock import as_utc
from chatmesh.services.chat import models

ROOM_TYPES = {models.ROOM_GROUP: pb.ROOM_TYPE_GROUP, models.ROOM_DIRECT: pb.ROOM_TYPE_DIRECT}
VISIBILITIES = {models.PUBLIC: pb.VISIBILITY_PUBLIC, models.PRIVATE: pb.VISIBILITY_PRIVATE}
ROLES = {
    models.ROLE_OWNER: pb.MEMBER_ROLE_OWNER,
    models.ROLE_ADMIN: pb.MEMBER_ROLE_ADMIN,
    models.ROLE_MEMBER: pb.MEMBER_ROLE_MEMBER,
}


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(value))
    return stamp


def room(
    row: models.Room,
    *,
    member_ids: Sequence[str] = (),
    membership: pb.RoomMembership | None = None,
    last_message: pb.Message | None = None,
) -> pb.Room:
    """A room; `membership` / `last_message` only for the caller's own view."""
    return pb.Room(
        id=row.id,
        type=ROOM_TYPES[row.type],
        visibility=VISIBILITIES[row.visibility],
        name=row.name,
        topic=row.topic,
        creator_id=row.creator_id,
        create_time=timestamp(row.create_time),
        activity_time=timestamp(row.activity_time),
        last_seq=row.last_seq,
        member_count=row.member_count,
        member_ids=list(member_ids) if row.type == models.ROOM_DIRECT else [],
        membership=membership,
        last_message=last_message,
    )


def membership(row: models.Member, *, unread_count: int) -> pb.RoomMembership:
    return pb.RoomMembership(
        role=ROLES[row.role],
        join_time=timestamp(row.join_time),
        last_read_seq=row.last_read_seq,
        unread_count=unread_count,
    )


def member(row: models.Member, *, username: str) -> pb.Member:
    return pb.Member(
        user_id=row.user_id,
        username=username,
        role=ROLES[row.role],
        join_time=timestamp(row.join_time),
        last_read_seq=row.last_read_seq,
    )


def reactions(rows: Iterable[models.Reaction]) -> list[pb.Reaction]:
    """Grouped by emoji, in the order each emoji first appeared; users in order.
    `rows` must be sorted by reaction time."""
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(row.emoji, []).append(row.user_id)
    return [
        pb.Reaction(emoji=emoji, count=len(users), user_ids=users)
        for emoji, users in grouped.items()
    ]


def message(
    row: models.Message,
    *,
    reaction_rows: Iterable[models.Reaction] = (),
    mention_ids: Iterable[str] = (),
) -> pb.Message:
    result = pb.Message(
        id=row.id,
        room_id=row.room_id,
        seq=row.seq,
        sender_id=row.sender_id,
        body=row.body,
        client_msg_id=row.client_msg_id,
        reply_to=row.reply_to or "",
        create_time=timestamp(row.create_time),
        reactions=reactions(reaction_rows),
        mention_user_ids=list(mention_ids),
    )
    if row.edit_time is not None:
        result.edit_time.CopyFrom(timestamp(row.edit_time))
    if row.delete_time is not None:
        result.delete_time.CopyFrom(timestamp(row.delete_time))
    return result
