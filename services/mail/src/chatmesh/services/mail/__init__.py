"""Mailchip: the ChatMesh email notification service."""
