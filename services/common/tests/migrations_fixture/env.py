"""Alembic environment of the test migrations: exactly what a service's env.py is."""

from chatmesh.common.migrations import run_env

run_env(target_metadata=None)
