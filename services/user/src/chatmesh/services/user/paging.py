"""AIP-158 pagination: page sizes and opaque keyset page tokens.

A token carries the sort key of the last item returned, the list it belongs
to (`kind`) and the filter it was made for, so a token is never silently
applied to another list or query.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from chatmesh.common.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class PageSize:
    default: int
    maximum: int

    def resolve(self, requested: int) -> int:
        if requested < 0:
            raise InvalidArgument(
                "page_size must not be negative",
                code="invalid_page_size",
                details={"field": "page_size"},
            )
        return min(requested, self.maximum) if requested else self.default


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "the page token is invalid or belongs to another query",
        code="invalid_page_token",
        details={"field": "page_token"},
    )


def encode_token(kind: str, after: list[str], *, scope: str = "") -> str:
    payload = json.dumps({"k": kind, "s": scope, "a": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, kind: str, *, size: int, scope: str = "") -> list[str] | None:
    """The `after` key of `token` (None for the first page); `size` values expected."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error):
        raise _invalid() from None
    if not isinstance(payload, dict) or payload.get("k") != kind or payload.get("s") != scope:
        raise _invalid()
    after = payload.get("a")
    if (
        not isinstance(after, list)
        or len(after) != size
        or not all(isinstance(value, str) for value in after)
    ):
        raise _invalid()
    return after
