"""ChatMesh chat service."""
