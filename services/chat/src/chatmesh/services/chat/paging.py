"""Opaque AIP-158 page tokens: URL-safe base64 of a small JSON object naming
what it continues (`k`), so a token from one list cannot be replayed on another."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from chatmesh.common.errors import InvalidArgument


def invalid_token() -> InvalidArgument:
    return InvalidArgument(
        "the page token is invalid; start again without one",
        code="invalid_page_token",
        details={"field": "page_token"},
    )


def encode_token(kind: str, **fields: Any) -> str:
    raw = json.dumps({"k": kind, **fields}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, kind: str) -> dict[str, Any]:
    """The fields of a token made by `encode_token(kind, ...)`; InvalidArgument otherwise."""
    if len(token) > 1024:
        raise invalid_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error):
        raise invalid_token() from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise invalid_token()
    return data


def field(data: dict[str, Any], name: str, kind: type[Any]) -> Any:
    """One field of a decoded token, type-checked (bool is not an int here)."""
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_token()
    return value


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument(
            "page_size cannot be negative", code="invalid_page_size", details={"field": "page_size"}
        )
    return default if requested == 0 else min(requested, maximum)
