"""Interfaces for the digest emails (missed messages, weekly activity). The data
comes from the chat service (its gRPC API or its events); the mail service
only decides who gets what and when. Implementations come with the chat
service's API; see the service README for what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class MissedMessage:
    room_id: str
    room_name: str
    message_id: str
    seq: int
    sender_name: str
    excerpt: str
    create_time: datetime
    # "dm" or "mention"
    reason: str


@dataclass(frozen=True)
class MissedMessages:
    user_id: str
    email: str
    display_name: str
    messages: Sequence[MissedMessage]
    # Highest seq per room included: the next digest starts after these, so the
    # same messages are never mailed twice.
    through_seq: dict[str, int]


@dataclass(frozen=True)
class RoomActivity:
    room_id: str
    room_name: str
    message_count: int
    unread_count: int
    top_senders: Sequence[str]


@dataclass(frozen=True)
class WeeklyActivity:
    user_id: str
    email: str
    display_name: str
    period_start: datetime
    period_end: datetime
    rooms: Sequence[RoomActivity]


class DigestSource(Protocol):
    async def missed_messages(
        self, *, offline_since_before: datetime, limit: int
    ) -> Sequence[MissedMessages]:
        """Users offline since before `offline_since_before` with unread DMs or
        mentions newer than what they were last mailed about (read ones excluded)."""
        ...

    async def mark_notified(self, user_id: str, through_seq: dict[str, int]) -> None:
        """Remember what a missed-messages email covered."""
        ...

    async def weekly_activity(
        self, *, digest_day: int, period_end: datetime, limit: int, after_user_id: str
    ) -> Sequence[WeeklyActivity]:
        """Activity of users whose digest day is `digest_day`, paged by user id."""
        ...
