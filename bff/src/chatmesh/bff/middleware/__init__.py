"""ASGI middleware of the BFF, one concern per module (see app.py for the order)."""
