"""Accounts, sessions, refresh tokens, one-time tokens, signing keys, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

from chatmesh.common.migrations import create_outbox_table, drop_outbox_table

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        _ts("created"),
        # Both are stored lowercase: these make them unique case-insensitively.
        sa.UniqueConstraint("email", name="uq_accounts_email"),
        sa.UniqueConstraint("username", name="uq_accounts_username"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", name="fk_sessions_user_id"),
            nullable=False,
        ),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        _ts("created"),
        _ts("last_used"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoke_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("sessions.id", name="fk_refresh_tokens_session_id"),
            nullable=False,
        ),
        _ts("created"),
        _ts("expires"),
        _ts("rotated_at", nullable=True),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])
    op.create_table(
        "one_time_tokens",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", name="fk_one_time_tokens_user_id"),
            nullable=False,
        ),
        sa.Column("purpose", sa.String(20), nullable=False),
        _ts("created"),
        _ts("expires"),
        _ts("used_at", nullable=True),
    )
    op.create_index("ix_one_time_tokens_user_id", "one_time_tokens", ["user_id"])
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_key_pem", sa.Text(), nullable=False),
        _ts("created"),
        _ts("retired_at", nullable=True),
    )
    op.create_index("ix_signing_keys_created", "signing_keys", ["created"])
    create_outbox_table()


def downgrade() -> None:
    drop_outbox_table()
    op.drop_table("signing_keys")
    op.drop_table("one_time_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("sessions")
    op.drop_table("accounts")
