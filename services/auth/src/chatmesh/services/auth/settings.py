"""Configuration of the auth service (`CHATMESH_*` environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from chatmesh.common.settings import ServiceSettings

# The Postgres schema that holds the auth tables (ignored on SQLite).
DB_SCHEMA = "auth"

_DAY = 24 * 3600


class AuthSettings(ServiceSettings):
    service_name: ClassVar[str] = "auth"

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)

    # Lifetimes of the secrets the service hands out.
    refresh_token_ttl_seconds: int = Field(default=30 * _DAY, ge=60)
    email_verification_ttl_seconds: int = Field(default=48 * 3600, ge=60)
    password_reset_ttl_seconds: int = Field(default=3600, ge=60)

    # Login throttling: attempts per account and per client address in a window.
    login_account_limit: int = Field(default=5, ge=1)
    login_ip_limit: int = Field(default=50, ge=1)
    login_window_seconds: float = Field(default=15 * 60, gt=0)

    # Mails a single address can trigger (reset requests, verification resends).
    password_reset_limit: int = Field(default=3, ge=1)
    verification_resend_limit: int = Field(default=3, ge=1)
    mail_window_seconds: float = Field(default=3600, gt=0)

    # argon2id cost. The default is OWASP's second recommended profile (19 MiB,
    # 2 passes, 1 lane): ~20 ms a hash here, so logins are not CPU-bound at 2 cores;
    # stored hashes with other parameters are upgraded at the next login.
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8 * 1024)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)

    # A new signing key is made when the active one is older than this.
    signing_key_rotation_seconds: int = Field(default=30 * _DAY, ge=60)
