"""ChatMesh user service."""
