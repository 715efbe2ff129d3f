"""Signed one-click unsubscribe tokens: `<user_id>.<category>.<signature>`
(base64url), HMAC-SHA256 with the service's secret. They do not expire: a link
in an old email must keep working (RFC 8058)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, user_id: str, category: str) -> bytes:
    message = f"unsubscribe\x00{user_id}\x00{category}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def make_token(secret: str, user_id: str, category: str) -> str:
    signature = _mac(secret, user_id, category)
    return ".".join((_b64(user_id.encode()), _b64(category.encode()), _b64(signature)))


def read_token(secret: str, token: str) -> tuple[str, str] | None:
    """(user_id, category) if `token` is genuine, else None."""
    try:
        user_part, category_part, signature_part = token.split(".")
        user_id = _unb64(user_part).decode()
        category = _unb64(category_part).decode()
        signature = _unb64(signature_part)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(signature, _mac(secret, user_id, category)):
        return None
    return user_id, category
