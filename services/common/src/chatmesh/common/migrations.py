"""What a service's Alembic `env.py` calls, so each env.py is two lines:

    from chatmesh.common.migrations import run_env
    run_env(target_metadata=None)
"""

from __future__ import annotations

from sqlalchemy import MetaData


def run_env(target_metadata: MetaData | None = None) -> None:
    """Run migrations online with the URL/schema that `db.upgrade` put into the config."""
    raise NotImplementedError


def create_outbox_table() -> None:
    """`op.create_table` for the outbox; call from a service's first migration."""
    raise NotImplementedError


def drop_outbox_table() -> None:
    raise NotImplementedError
