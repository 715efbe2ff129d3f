"""Users directory, rooms, members, messages, reactions, mentions, the room event
log and its publish queue, full-text search, outbox.

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

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, nullable: bool = False, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), nullable=nullable, primary_key=primary_key)


def upgrade() -> None:
    op.create_table(
        "users",
        _id("id", primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(64), nullable=False),
        _ts("register_time"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "rooms",
        _id("id", primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("topic", sa.String(250), nullable=False),
        _id("creator_id"),
        sa.Column("direct_key", sa.String(64), nullable=True),
        sa.Column("last_seq", _SEQ, nullable=False, server_default="0"),
        _id("last_message_id", nullable=True),
        sa.Column("member_count", sa.Integer(), nullable=False, server_default="0"),
        _ts("create_time"),
        _ts("activity_time"),
        sa.UniqueConstraint("direct_key", name="uq_rooms_direct_key"),
    )
    op.create_index("ix_rooms_activity_time", "rooms", ["activity_time"])
    op.create_table(
        "members",
        _id("room_id", primary_key=True),
        _id("user_id", primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("join_time"),
        sa.Column("join_seq", _SEQ, nullable=False),
        sa.Column("last_read_seq", _SEQ, nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_members_room_id"),
    )
    op.create_index("ix_members_user_id", "members", ["user_id"])
    op.create_table(
        "messages",
        # INTEGER PRIMARY KEY on SQLite: a rowid alias that VACUUM never renumbers.
        sa.Column("pk", _SEQ, primary_key=True, autoincrement=True),
        _id("id"),
        _id("room_id"),
        sa.Column("seq", _SEQ, nullable=False),
        _id("sender_id"),
        sa.Column("client_msg_id", sa.String(100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _id("reply_to", nullable=True),
        _ts("create_time"),
        _ts("edit_time", nullable=True),
        _ts("delete_time", nullable=True),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_messages_room_id"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
        sa.UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
        sa.UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg_id"),
    )
    op.create_table(
        "reactions",
        _id("message_id", primary_key=True),
        _id("user_id", primary_key=True),
        sa.Column("emoji", sa.String(64), primary_key=True),
        _ts("create_time"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_reactions_message_id"),
    )
    op.create_table(
        "mentions",
        _id("message_id", primary_key=True),
        _id("user_id", primary_key=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_mentions_message_id"),
    )
    op.create_index("ix_mentions_user_id", "mentions", ["user_id"])
    op.create_table(
        "room_events",
        _id("room_id", primary_key=True),
        sa.Column("seq", _SEQ, primary_key=True),
        _id("message_id", nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        _ts("create_time"),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_room_events_room_id"),
    )
    op.create_index("ix_room_events_message_id", "room_events", ["message_id"])
    op.create_table(
        "room_event_queue",
        _id("room_id", primary_key=True),
        sa.Column("seq", _SEQ, primary_key=True),
    )
    _create_enqueue_trigger()
    create_outbox_table()
    _create_search_index()


def _create_enqueue_trigger() -> None:
    """Every new log row is queued for publishing by the database itself, in the
    same transaction (one statement less on the hot path, and no way to forget)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION enqueue_room_event() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path FROM CURRENT AS $$ BEGIN "
            "INSERT INTO room_event_queue (room_id, seq) VALUES (NEW.room_id, NEW.seq); "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER room_events_enqueue AFTER INSERT ON room_events "
            "FOR EACH ROW EXECUTE FUNCTION enqueue_room_event()"
        )
        return
    op.execute(
        "CREATE TRIGGER room_events_enqueue AFTER INSERT ON room_events BEGIN "
        "INSERT INTO room_event_queue (room_id, seq) VALUES (new.room_id, new.seq); END"
    )


def _create_search_index() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A stored tsvector kept up to date by PostgreSQL itself, under a GIN index.
        op.execute(
            "ALTER TABLE messages ADD COLUMN search_vector tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', body)) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)")
        return
    # SQLite: an FTS5 index over messages.body (external content, keyed by pk),
    # kept in sync by triggers. Tombstones have an empty body, so nothing to find.
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, content='messages', content_rowid='pk', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.pk, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.pk, old.body); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.pk, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.pk, new.body); END"
    )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS room_events_enqueue"
        + (" ON room_events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS enqueue_room_event()")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS messages_fts_update")
        op.execute("DROP TRIGGER IF EXISTS messages_fts_delete")
        op.execute("DROP TRIGGER IF EXISTS messages_fts_insert")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    drop_outbox_table()
    op.drop_table("room_event_queue")
    op.drop_table("room_events")
    op.drop_table("mentions")
    op.drop_table("reactions")
    op.drop_table("messages")
    op.drop_table("members")
    op.drop_table("rooms")
    op.drop_table("users")
