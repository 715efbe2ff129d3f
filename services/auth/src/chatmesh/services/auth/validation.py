"""Normalisation and validation of what users type: email, username, display name.

Each function returns the normalised value or raises `InvalidArgument` with a
field-specific code and `details={"field": ...}` a client can point at.
"""

from __future__ import annotations

import re
import unicodedata

from chatmesh.common.errors import InvalidArgument

EMAIL_MAX_LENGTH = 254
USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32
DISPLAY_NAME_MAX_LENGTH = 64

# Deliberately plain: one @, no spaces or controls, a dotted domain. Deliverability
# is proven by the verification mail, not by a regex.
_EMAIL = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
)
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_MAX_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidArgument(
            "enter a valid email address", code="invalid_email", details={"field": "email"}
        )
    return email


def normalize_username(raw: str) -> str:
    # NFKC folds look-alikes such as full-width letters onto ASCII before the check.
    username = unicodedata.normalize("NFKC", raw.strip()).lower()
    if not USERNAME_MIN_LENGTH <= len(username) <= USERNAME_MAX_LENGTH or not _USERNAME.fullmatch(
        username
    ):
        raise InvalidArgument(
            f"a username has {USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} characters: "
            "letters a-z, digits, '_', '.', '-', starting with a letter or digit",
            code="invalid_username",
            details={"field": "username"},
        )
    return username


def _is_hidden(char: str) -> bool:
    # Cc/Cf/Cs/Co/Cn (controls, bidi overrides, zero-width…) and line/paragraph separators.
    return unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")


def normalize_display_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).strip()
    if not name or len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise InvalidArgument(
            f"a display name has 1 to {DISPLAY_NAME_MAX_LENGTH} characters",
            code="invalid_display_name",
            details={"field": "display_name"},
        )
    if any(_is_hidden(char) for char in name):
        raise InvalidArgument(
            "a display name cannot contain control or invisible formatting characters",
            code="invalid_display_name",
            details={"field": "display_name"},
        )
    return name


def looks_like_email(login: str) -> bool:
    """Login accepts an email or a username; usernames never contain '@'."""
    return "@" in login
