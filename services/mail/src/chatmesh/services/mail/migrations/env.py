"""Alembic environment of the mail service (URL and schema come from db.upgrade)."""

from chatmesh.common.migrations import run_env

run_env(target_metadata=None)
