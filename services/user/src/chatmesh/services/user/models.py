"""The user service's tables. Migrations in `migrations/versions` create them.

The models live in their own SQLAlchemy registry so that several services can
run in one process (embedded mode) without their table names colliding.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

_registry = registry()

# Aware UTC everywhere; SQLite hands back naive values (see clock.as_utc).
_TS = DateTime(timezone=True)

# Relationship.state values.
PENDING = "pending"
FRIENDS = "friends"


class UserTable(SQLModel, registry=_registry):
    """Base of the user tables (a metadata separate from other services')."""


class Profile(UserTable, table=True):
    __tablename__ = "profiles"

    # The account id the auth service assigned.
    user_id: str = Field(primary_key=True, max_length=36)
    username: str = Field(max_length=32, unique=True)
    display_name: str = Field(max_length=64)
    bio: str = Field(default="", max_length=500)
    avatar_url: str = Field(default="", max_length=2048)
    status_text: str = Field(default="", max_length=100)
    status_emoji: str = Field(default="", max_length=32)
    time_zone: str = Field(default="", max_length=64)
    # Folded (NFKD, no combining marks, casefolded) copies that search matches on.
    search_username: str = Field(sa_type=Text)
    search_name: str = Field(sa_type=Text)
    create_time: datetime = Field(sa_type=_TS)
    update_time: datetime = Field(sa_type=_TS)
    # When the user was last connected (written when they go offline).
    last_seen_time: datetime | None = Field(default=None, sa_type=_TS)


class Relationship(UserTable, table=True):
    """One row per pair of users, whatever the direction: a pending request or a
    friendship. The canonical key (lower id, higher id) makes a second row for
    the same pair impossible, also under concurrent requests."""

    __tablename__ = "relationships"

    user_low_id: str = Field(primary_key=True, foreign_key="profiles.user_id", max_length=36)
    user_high_id: str = Field(
        primary_key=True, foreign_key="profiles.user_id", index=True, max_length=36
    )
    # Names the pending request in the API; new for every new request.
    request_id: str = Field(max_length=36, unique=True)
    state: str = Field(max_length=10)
    requester_id: str = Field(max_length=36)
    # When the request was sent.
    create_time: datetime = Field(sa_type=_TS)
    # When it was accepted (the friendship's start).
    accept_time: datetime | None = Field(default=None, sa_type=_TS)

    def other(self, user_id: str) -> str:
        return self.user_high_id if self.user_low_id == user_id else self.user_low_id


class Block(UserTable, table=True):
    __tablename__ = "blocks"

    blocker_id: str = Field(primary_key=True, foreign_key="profiles.user_id", max_length=36)
    blocked_id: str = Field(
        primary_key=True, foreign_key="profiles.user_id", index=True, max_length=36
    )
    create_time: datetime = Field(sa_type=_TS)


class ProcessedEvent(UserTable, table=True):
    """Ids of consumed bus events: a redelivered event is recognised and skipped."""

    __tablename__ = "processed_events"

    event_id: str = Field(primary_key=True, max_length=64)
    process_time: datetime = Field(sa_type=_TS, index=True)
