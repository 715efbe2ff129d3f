"""Emails (the queue's ledger), suppressions, preferences, dev mailbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("provider_message_id", sa.String(200), nullable=False),
        _ts("create_time"),
        _ts("update_time"),
        _ts("send_time", nullable=True),
        _ts("due_time", nullable=True),
        _ts("claim_time", nullable=True),
        sa.UniqueConstraint("idempotency_key", name="uq_emails_idempotency_key"),
    )
    op.create_index("ix_emails_due_time", "emails", ["due_time"])
    op.create_index("ix_emails_state_update_time", "emails", ["state", "update_time"])
    op.create_index("ix_emails_provider_message_id", "emails", ["provider_message_id"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        _ts("create_time"),
    )
    op.create_table(
        "preferences",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("security_alerts", sa.Boolean(), nullable=False),
        sa.Column("missed_messages", sa.Boolean(), nullable=False),
        sa.Column("weekly_digest", sa.Boolean(), nullable=False),
        sa.Column("digest_day", sa.Integer(), nullable=False),
        _ts("update_time"),
    )
    op.create_table(
        "dev_mailbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email_id", sa.String(36), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        _ts("create_time"),
        sa.UniqueConstraint("email_id", name="uq_dev_mailbox_email_id"),
    )
    op.create_index("ix_dev_mailbox_create_time", "dev_mailbox", ["create_time"])


def downgrade() -> None:
    op.drop_table("dev_mailbox")
    op.drop_table("preferences")
    op.drop_table("suppressions")
    op.drop_table("emails")
