"""Shared runtime of every ChatMesh service (a library, not a service)."""
