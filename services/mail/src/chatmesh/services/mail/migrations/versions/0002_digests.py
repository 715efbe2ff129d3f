"""The chat projection for the digest emails (people, rooms, memberships with
read and notified seqs, recent messages, mentions) and scheduler leases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        _ts("update_time"),
    )
    op.create_table(
        "chat_rooms",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("direct", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "room_members",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("member", sa.Boolean(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_read_seq", sa.BigInteger(), nullable=False),
        sa.Column("notified_seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_room_members_user_id", "room_members", ["user_id"])
    op.create_table(
        "chat_messages",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(64), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        _ts("create_time"),
    )
    op.create_index("ix_chat_messages_room_seq", "chat_messages", ["room_id", "seq"])
    op.create_index("ix_chat_messages_create_time", "chat_messages", ["create_time"])
    op.create_table(
        "chat_mentions",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _ts("create_time"),
    )
    op.create_index("ix_chat_mentions_user_room", "chat_mentions", ["user_id", "room_id", "seq"])
    op.create_table(
        "scheduler_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        _ts("lease_until"),
        sa.Column("last_done", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_runs")
    op.drop_table("chat_mentions")
    op.drop_table("chat_messages")
    op.drop_table("room_members")
    op.drop_table("chat_rooms")
    op.drop_table("people")
