"""The auth service's tables. Migrations in `migrations/versions` create them.

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


class AuthTable(SQLModel, registry=_registry):
    """Base of the auth tables (a metadata separate from other services')."""


class Account(AuthTable, table=True):
    __tablename__ = "accounts"

    id: str = Field(primary_key=True, max_length=36)
    # Stored lowercase, so uniqueness is case-insensitive.
    email: str = Field(max_length=254, unique=True)
    username: str = Field(max_length=32, unique=True)
    display_name: str = Field(max_length=64)
    password_hash: str = Field(max_length=255)
    email_verified: bool = False
    created: datetime = Field(sa_type=_TS)


class Session(AuthTable, table=True):
    """A signed-in device: one refresh-token family."""

    __tablename__ = "sessions"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(foreign_key="accounts.id", index=True, max_length=36)
    ip: str = Field(max_length=64)
    user_agent: str = Field(max_length=512)
    created: datetime = Field(sa_type=_TS)
    last_used: datetime = Field(sa_type=_TS)
    revoked_at: datetime | None = Field(default=None, sa_type=_TS)
    revoke_reason: str | None = Field(default=None, max_length=32)


class RefreshToken(AuthTable, table=True):
    __tablename__ = "refresh_tokens"

    # sha256 hex of the secret: a database leak gives no usable tokens.
    hash: str = Field(primary_key=True, max_length=64)
    session_id: str = Field(foreign_key="sessions.id", index=True, max_length=36)
    created: datetime = Field(sa_type=_TS)
    expires: datetime = Field(sa_type=_TS)
    # Set when the token was exchanged; presenting it again is a reuse.
    rotated_at: datetime | None = Field(default=None, sa_type=_TS)


class OneTimeToken(AuthTable, table=True):
    """Email verification and password reset secrets (stored hashed)."""

    __tablename__ = "one_time_tokens"

    hash: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="accounts.id", index=True, max_length=36)
    purpose: str = Field(max_length=20)
    created: datetime = Field(sa_type=_TS)
    expires: datetime = Field(sa_type=_TS)
    used_at: datetime | None = Field(default=None, sa_type=_TS)


class SigningKey(AuthTable, table=True):
    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_key_pem: str = Field(sa_type=Text)
    created: datetime = Field(sa_type=_TS, index=True)
    # Retired keys no longer sign but stay published until their tokens expire.
    retired_at: datetime | None = Field(default=None, sa_type=_TS)


PURPOSE_VERIFY_EMAIL = "verify_email"
PURPOSE_PASSWORD_RESET = "password_reset"  # noqa: S105 (a label, not a secret)
