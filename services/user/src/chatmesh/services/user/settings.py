"""Configuration of the user service (`CHATMESH_*` environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from chatmesh.common.settings import ServiceSettings

# The Postgres schema that holds the user tables (ignored on SQLite). Not
# "user": that is a reserved word in PostgreSQL.
DB_SCHEMA = "users"

# A crashed BFF's users must be offline within this many seconds.
OFFLINE_DEADLINE_SECONDS = 60.0


class UserSettings(ServiceSettings):
    service_name: ClassVar[str] = "user"

    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)

    # A connection without a heartbeat for this long is dropped (the BFF is
    # told to heartbeat every third of it).
    presence_connection_ttl_seconds: float = Field(default=45.0, gt=0, le=45.0)
    # How often expired connections and due offline changes are looked for.
    presence_sweep_interval_seconds: float = Field(default=1.0, gt=0, le=10.0)
    # Going offline is announced only after this quiet time, so a reconnect
    # (page reload, flaky network) causes no offline/online pair.
    presence_offline_delay_seconds: float = Field(default=3.0, ge=0, le=10.0)
    # Connected but without user activity for this long: AWAY.
    presence_away_after_seconds: float = Field(default=300.0, gt=0)

    # Presence operations running at once per replica (each holds one Redis
    # connection at a time); more wait their turn.
    presence_max_concurrency: int = Field(default=32, ge=1, le=1000)

    # The consumer group this service reads `events.auth` with.
    event_consumer_group: str = "user"

    @model_validator(mode="after")
    def _offline_within_deadline(self) -> UserSettings:
        worst = (
            self.presence_connection_ttl_seconds
            + self.presence_sweep_interval_seconds
            + self.presence_offline_delay_seconds
        )
        if worst > OFFLINE_DEADLINE_SECONDS:
            raise ValueError(
                "presence connection TTL + sweep interval + offline delay must stay under "
                f"{OFFLINE_DEADLINE_SECONDS:g} s (is {worst:g} s)"
            )
        return self
