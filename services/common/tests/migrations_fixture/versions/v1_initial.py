"""Test schema: a parent/child pair (to check foreign keys) and the outbox.

Revision ID: v1
Revises:
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

from chatmesh.common.migrations import create_outbox_table, drop_outbox_table

revision = "v1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=50), nullable=False, unique=True),
    )
    op.create_table(
        "item_tag",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("item.id"), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
    )
    create_outbox_table()
    # Lets the concurrency test hold the migration open long enough for a second
    # process to collide with it if nothing serialized them.
    pause = float(os.environ.get("CM_TEST_MIGRATION_PAUSE", "0"))
    if pause and op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"SELECT pg_sleep({pause})"))


def downgrade() -> None:
    drop_outbox_table()
    op.drop_table("item_tag")
    op.drop_table("item")
