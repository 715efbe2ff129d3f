"""The mail service's tables: every email with its state (the queue's ledger),
undeliverable addresses, notification preferences, and the dev mailbox."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Table, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

_registry = registry()

# Aware UTC everywhere; SQLite hands back naive values (see `as_utc`).
_TS = DateTime(timezone=True)

# Email states (the proto's EmailState without the prefix).
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
DEAD = "dead"
SUPPRESSED = "suppressed"
RATE_LIMITED = "rate_limited"
BOUNCED = "bounced"

# States a worker may pick up (SENDING only once its claim went stale).
WAITING_STATES = (QUEUED,)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (SQLite returns naive UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MailTable(SQLModel, registry=_registry):
    """Base of the mail tables (a metadata separate from other services')."""


class EmailRecord(MailTable, table=True):
    __tablename__ = "emails"

    id: str = Field(primary_key=True, max_length=36)
    idempotency_key: str = Field(max_length=200, unique=True)
    template_id: str = Field(max_length=64)
    category: str = Field(max_length=32)
    recipient: str = Field(max_length=320)
    user_id: str = Field(default="", max_length=64)
    subject: str = Field(sa_type=Text)
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    # JSON object of extra headers (List-Unsubscribe, …).
    headers: str = Field(sa_type=Text)
    state: str = Field(max_length=16)
    attempts: int = 0
    last_error: str = Field(default="", max_length=500)
    provider_message_id: str = Field(default="", max_length=200)
    create_time: datetime = Field(sa_type=_TS)
    update_time: datetime = Field(sa_type=_TS)
    send_time: datetime | None = Field(default=None, sa_type=_TS)
    # QUEUED: when to publish the job (again) if no worker took it by then.
    due_time: datetime | None = Field(default=None, index=True, sa_type=_TS)
    # SENDING: when the worker took it; stale claims are taken over.
    claim_time: datetime | None = Field(default=None, sa_type=_TS)


class Suppression(MailTable, table=True):
    """An address providers reported undeliverable (bounce, spam report)."""

    __tablename__ = "suppressions"

    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(max_length=32)
    create_time: datetime = Field(sa_type=_TS)


class Preferences(MailTable, table=True):
    __tablename__ = "preferences"

    user_id: str = Field(primary_key=True, max_length=64)
    security_alerts: bool = True
    missed_messages: bool = True
    weekly_digest: bool = True
    digest_day: int = 1
    update_time: datetime = Field(sa_type=_TS)


class DevMail(MailTable, table=True):
    """A message the dev provider 'sent' (embedded mode's mailbox)."""

    __tablename__ = "dev_mailbox"

    id: str = Field(primary_key=True, max_length=36)
    email_id: str = Field(max_length=36, unique=True)
    sender: str = Field(max_length=320)
    recipient: str = Field(max_length=320)
    subject: str = Field(sa_type=Text)
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    headers: str = Field(sa_type=Text)
    create_time: datetime = Field(index=True, sa_type=_TS)


# The Core table, for multi-row statements (RETURNING, executemany).
EMAILS: Table = EmailRecord.__table__  # type: ignore[attr-defined]


# --- the chat projection (fed by chat's and auth's events; see projection.py) -----------


class Person(MailTable, table=True):
    """Who a user is to the mail service: where to write, how to greet them
    (from auth's `UserRegistered` and later account events)."""

    __tablename__ = "people"

    user_id: str = Field(primary_key=True, max_length=64)
    email: str = Field(max_length=320)
    username: str = Field(default="", max_length=64)
    display_name: str = Field(default="", max_length=200)
    update_time: datetime = Field(sa_type=_TS)


class ChatRoom(MailTable, table=True):
    __tablename__ = "chat_rooms"

    room_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=200)
    direct: bool = False


class RoomMember(MailTable, table=True):
    """A user's membership of a room and how far they have read and been mailed."""

    __tablename__ = "room_members"

    room_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, index=True, max_length=64)
    member: bool = True
    # The room event seq of the latest membership change applied (events may
    # arrive out of order; the newest change wins).
    change_seq: int = 0
    last_read_seq: int = 0
    # Messages up to this seq were in a missed-messages email already.
    notified_seq: int = 0


class ChatMessage(MailTable, table=True):
    """A recent message (kept `digest_retention_days`): what digests count and quote."""

    __tablename__ = "chat_messages"

    message_id: str = Field(primary_key=True, max_length=64)
    room_id: str = Field(max_length=64)
    seq: int
    sender_id: str = Field(max_length=64)
    excerpt: str = Field(sa_type=Text)
    create_time: datetime = Field(index=True, sa_type=_TS)


class ChatMention(MailTable, table=True):
    __tablename__ = "chat_mentions"

    message_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=64)
    room_id: str = Field(max_length=64)
    seq: int
    create_time: datetime = Field(sa_type=_TS)


class SchedulerRun(MailTable, table=True):
    """One row per scheduled job: who holds it (a lease, so replicas and the
    CronJob never run it at once) and the last period it finished."""

    __tablename__ = "scheduler_runs"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(default="", max_length=200)
    lease_until: datetime = Field(sa_type=_TS)
    last_done: str = Field(default="", max_length=64)
