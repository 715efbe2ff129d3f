"""Fixtures every test package shares (real PostgreSQL / Redis, free ports)."""

pytest_plugins = ["chatmesh.common.testing"]
