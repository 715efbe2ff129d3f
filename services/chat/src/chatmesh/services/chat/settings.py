"""Configuration of the chat service (`CHATMESH_*` environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from chatmesh.common.settings import ServiceSettings

# The Postgres schema that holds the chat tables (ignored on SQLite).
DB_SCHEMA = "chat"


class ChatSettings(ServiceSettings):
    service_name: ClassVar[str] = "chat"

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    # A user's typing notices in one room are forwarded at most once per interval.
    typing_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    # Room events a BFF stream may have queued before it is ended with
    # `stream_overflow` (the BFF then resubscribes and replays).
    stream_max_pending: int = Field(default=10_000, ge=100)
    # How often the room event relay looks for unpublished events when nobody
    # woke it (a commit in this process wakes it at once).
    relay_poll_seconds: float = Field(default=0.25, gt=0, le=60)
    # How often outbox events (MessageCreated, MentionCreated) go to the bus.
    outbox_poll_seconds: float = Field(default=0.2, gt=0, le=60)
    # Consumer name in the `chat` group of `events.auth` (unique per replica).
    consumer_name: str = Field(default="", max_length=100)
    # The user service, asked whether users blocked each other before a DM is
    # opened or written to. Empty: no blocks are enforced (logged at start-up).
    user_address: str = Field(default="", max_length=300)
    # How long one block check may take before the DM is refused as unavailable.
    user_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
