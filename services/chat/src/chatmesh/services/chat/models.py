"""The chat service's tables. Migrations in `migrations/versions` create them
(plus the full-text index, which differs per database: see `search.py`).

The models live in their own SQLAlchemy registry so that several services can
run in one process (embedded mode) without their table names colliding.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, Table, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

_registry = registry()

# Aware UTC everywhere; SQLite hands back naive values (see clock.as_utc).
_TS = DateTime(timezone=True)
# Sequence numbers; a plain INTEGER on SQLite (64-bit there anyway).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

ROOM_GROUP = "group"
ROOM_DIRECT = "direct"
PUBLIC = "public"
PRIVATE = "private"
ROLE_OWNER = "owner"
ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"


class ChatTable(SQLModel, registry=_registry):
    """Base of the chat tables (a metadata separate from other services')."""


class User(ChatTable, table=True):
    """The local directory of users, fed by `UserRegistered` events from auth."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=36)
    username: str = Field(max_length=32, unique=True)
    display_name: str = Field(max_length=64)
    register_time: datetime = Field(sa_type=_TS)


class Room(ChatTable, table=True):
    __tablename__ = "rooms"

    id: str = Field(primary_key=True, max_length=36)
    type: str = Field(max_length=16)
    visibility: str = Field(max_length=16)
    name: str = Field(max_length=80)
    topic: str = Field(max_length=250)
    creator_id: str = Field(max_length=36)
    # Direct rooms: a hash of the sorted member ids, so one set of users has one room.
    direct_key: str | None = Field(default=None, max_length=64, unique=True)
    # The seq of the latest event; bumped (UPDATE ... RETURNING) to append one.
    last_seq: int = Field(default=0, sa_type=_SEQ)
    last_message_id: str | None = Field(default=None, max_length=36)
    member_count: int = 0
    create_time: datetime = Field(sa_type=_TS)
    activity_time: datetime = Field(sa_type=_TS, index=True)


class Member(ChatTable, table=True):
    __tablename__ = "members"

    room_id: str = Field(primary_key=True, foreign_key="rooms.id", max_length=36)
    user_id: str = Field(primary_key=True, index=True, max_length=36)
    role: str = Field(max_length=16)
    join_time: datetime = Field(sa_type=_TS)
    # The seq of the event that made the user a member.
    join_seq: int = Field(sa_type=_SEQ)
    # The seq of the latest message the user has read.
    last_read_seq: int = Field(default=0, sa_type=_SEQ)


class Message(ChatTable, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
        UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg_id"),
    )

    # A stable integer key: SQLite's full-text index refers to rows by it.
    pk: int | None = Field(default=None, primary_key=True, sa_type=_SEQ)
    id: str = Field(max_length=36, unique=True)
    room_id: str = Field(foreign_key="rooms.id", max_length=36)
    seq: int = Field(sa_type=_SEQ)
    sender_id: str = Field(max_length=36)
    client_msg_id: str = Field(max_length=100)
    body: str = Field(sa_type=Text)
    reply_to: str | None = Field(default=None, max_length=36)
    create_time: datetime = Field(sa_type=_TS)
    edit_time: datetime | None = Field(default=None, sa_type=_TS)
    delete_time: datetime | None = Field(default=None, sa_type=_TS)


class Reaction(ChatTable, table=True):
    __tablename__ = "reactions"

    message_id: str = Field(primary_key=True, foreign_key="messages.id", max_length=36)
    user_id: str = Field(primary_key=True, max_length=36)
    emoji: str = Field(primary_key=True, max_length=64)
    create_time: datetime = Field(sa_type=_TS)


class Mention(ChatTable, table=True):
    __tablename__ = "mentions"

    message_id: str = Field(primary_key=True, foreign_key="messages.id", max_length=36)
    user_id: str = Field(primary_key=True, index=True, max_length=36)


class RoomEventRow(ChatTable, table=True):
    """The room event log: one row per seq, `payload` the serialized RoomEvent."""

    __tablename__ = "room_events"

    room_id: str = Field(primary_key=True, foreign_key="rooms.id", max_length=36)
    seq: int = Field(primary_key=True, sa_type=_SEQ)
    # The message the event carries, so a deletion can scrub its earlier copies.
    message_id: str | None = Field(default=None, max_length=36, index=True)
    payload: bytes = Field(sa_type=LargeBinary)
    create_time: datetime = Field(sa_type=_TS)


class PendingRoomEvent(ChatTable, table=True):
    """Events not yet published to pub/sub, written with the event; the relay
    deletes them after publishing."""

    __tablename__ = "room_event_queue"

    room_id: str = Field(primary_key=True, max_length=36)
    seq: int = Field(primary_key=True, sa_type=_SEQ)


def table_of(model: type[ChatTable]) -> Table:
    """The Core table of a model, for plain INSERT/UPDATE/SELECT on hot paths."""
    return model.__table__  # type: ignore[attr-defined,no-any-return]


MESSAGES = table_of(Message)
MENTIONS = table_of(Mention)
MEMBERS = table_of(Member)
ROOM_EVENTS = table_of(RoomEventRow)
ROOM_EVENT_QUEUE = table_of(PendingRoomEvent)
