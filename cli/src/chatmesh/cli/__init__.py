"""The `chatmesh` command."""
