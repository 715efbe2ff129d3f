"""Profiles, relationships (friend requests and friendships), blocks, processed events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
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


def _user_fk(name: str, table: str) -> sa.Column[str]:
    return sa.Column(
        name,
        sa.String(36),
        sa.ForeignKey("profiles.user_id", name=f"fk_{table}_{name}"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("bio", sa.String(500), nullable=False),
        sa.Column("avatar_url", sa.String(2048), nullable=False),
        sa.Column("status_text", sa.String(100), nullable=False),
        sa.Column("status_emoji", sa.String(32), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("search_username", sa.Text(), nullable=False),
        sa.Column("search_name", sa.Text(), nullable=False),
        _ts("create_time"),
        _ts("update_time"),
        _ts("last_seen_time", nullable=True),
        sa.UniqueConstraint("username", name="uq_profiles_username"),
    )
    # Prefix search is `LIKE 'abc%'`: text_pattern_ops lets PostgreSQL use the
    # index for it whatever the database collation (SQLite ignores the option).
    op.create_index(
        "ix_profiles_search_username",
        "profiles",
        ["search_username"],
        postgresql_ops={"search_username": "text_pattern_ops"},
    )
    op.create_index(
        "ix_profiles_search_name",
        "profiles",
        ["search_name"],
        postgresql_ops={"search_name": "text_pattern_ops"},
    )
    op.create_table(
        "relationships",
        _user_fk("user_low_id", "relationships"),
        _user_fk("user_high_id", "relationships"),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requester_id", sa.String(36), nullable=False),
        _ts("create_time"),
        _ts("accept_time", nullable=True),
        sa.UniqueConstraint("request_id", name="uq_relationships_request_id"),
        sa.CheckConstraint("user_low_id < user_high_id", name="ck_relationships_canonical"),
        sa.CheckConstraint("state IN ('pending', 'friends')", name="ck_relationships_state"),
    )
    op.create_index("ix_relationships_user_high_id", "relationships", ["user_high_id"])
    op.create_table(
        "blocks",
        _user_fk("blocker_id", "blocks"),
        _user_fk("blocked_id", "blocks"),
        _ts("create_time"),
        sa.CheckConstraint("blocker_id <> blocked_id", name="ck_blocks_not_self"),
    )
    op.create_index("ix_blocks_blocked_id", "blocks", ["blocked_id"])
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        _ts("process_time"),
    )
    op.create_index("ix_processed_events_process_time", "processed_events", ["process_time"])


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_table("blocks")
    op.drop_table("relationships")
    op.drop_table("profiles")
