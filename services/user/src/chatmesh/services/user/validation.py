"""Normalisation and validation of what users type into their profile.

Each function returns the normalised value or raises `InvalidArgument` with a
field-specific code and `details={"field": ...}` a client can point at.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable
from urllib.parse import urlsplit

from chatmesh.common.errors import InvalidArgument

DISPLAY_NAME_MAX_LENGTH = 64
BIO_MAX_LENGTH = 500
AVATAR_URL_MAX_LENGTH = 2048
STATUS_TEXT_MAX_LENGTH = 100
STATUS_EMOJI_MAX_LENGTH = 16
USER_ID_MAX_LENGTH = 64
MAX_BATCH = 1000

_AVATAR_SCHEMES = ("http", "https")
# Auth issues UUIDs; anything printable and short is accepted so ids stay opaque.
_USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

# One emoji: a keycap ("1️⃣"), a flag (two regional indicators), or pictographs
# joined by zero-width joiners, each optionally followed by a variation selector,
# a skin tone modifier or tag characters (subdivision flags).
_ZWJ = "\u200d"
_KEYCAP = re.compile("[0-9#*]\ufe0f?\u20e3")
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_TAGS = range(0xE0020, 0xE0080)
_VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, code=f"invalid_{field}", details={"field": field})


def _is_hidden(char: str, *, allow_newlines: bool = False) -> bool:
    """Controls, bidi overrides, zero-width and other invisible formatting characters."""
    if allow_newlines and char in "\n\t":
        return False
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def normalize_display_name(raw: str) -> str:
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name or len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise _invalid(
            "display_name", f"a display name has 1 to {DISPLAY_NAME_MAX_LENGTH} characters"
        )
    if any(_is_hidden(char) for char in name):
        raise _invalid(
            "display_name",
            "a display name cannot contain control or invisible formatting characters",
        )
    return name


def normalize_bio(raw: str) -> str:
    bio = unicodedata.normalize("NFC", raw.replace("\r\n", "\n")).strip()
    if len(bio) > BIO_MAX_LENGTH:
        raise _invalid("bio", f"a bio has at most {BIO_MAX_LENGTH} characters")
    if any(_is_hidden(char, allow_newlines=True) for char in bio):
        raise _invalid("bio", "a bio cannot contain control or invisible formatting characters")
    return bio


def normalize_avatar_url(raw: str) -> str:
    """Empty (no avatar) or an absolute http(s) URL: never javascript:, data:, file: …"""
    url = raw.strip()
    if not url:
        return ""
    message = "an avatar URL must be an http:// or https:// address"
    if len(url) > AVATAR_URL_MAX_LENGTH:
        raise _invalid(
            "avatar_url", f"an avatar URL has at most {AVATAR_URL_MAX_LENGTH} characters"
        )
    # Whitespace or controls anywhere could smuggle a second scheme past a browser.
    if any(char.isspace() or _is_hidden(char) for char in url):
        raise _invalid("avatar_url", message)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a malformed port)
    except ValueError:
        raise _invalid("avatar_url", message) from None
    if parts.scheme.lower() not in _AVATAR_SCHEMES or not hostname or parts.username:
        raise _invalid("avatar_url", message)
    return url


def normalize_status_text(raw: str) -> str:
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if len(text) > STATUS_TEXT_MAX_LENGTH:
        raise _invalid("status_text", f"a status has at most {STATUS_TEXT_MAX_LENGTH} characters")
    if any(_is_hidden(char) for char in text):
        raise _invalid(
            "status_text", "a status cannot contain control or invisible formatting characters"
        )
    return text


def _is_modifier(char: str) -> bool:
    code = ord(char)
    return char in _VARIATION_SELECTORS or code in _SKIN_TONES or code in _TAGS


def _is_single_emoji(text: str) -> bool:
    if _KEYCAP.fullmatch(text):
        return True
    if len(text) == 2 and all(ord(char) in _REGIONAL_INDICATORS for char in text):
        return True
    for part in text.split(_ZWJ):
        if not part:
            return False
        base, modifiers = part[0], part[1:]
        pictograph = unicodedata.category(base) == "So" and ord(base) > 0x7F
        if not pictograph or ord(base) in _REGIONAL_INDICATORS:
            return False
        if not all(_is_modifier(char) for char in modifiers):
            return False
    return True


def normalize_status_emoji(raw: str) -> str:
    """Empty, or one emoji (possibly a ZWJ sequence, flag, keycap or with skin tone)."""
    emoji = raw.strip()
    if not emoji:
        return ""
    if len(emoji) > STATUS_EMOJI_MAX_LENGTH or not _is_single_emoji(emoji):
        raise _invalid("status_emoji", "a status emoji is a single emoji")
    return emoji


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalize_time_zone(raw: str) -> str:
    """Empty or an IANA name known to this machine's zoneinfo ("Europe/Berlin")."""
    name = raw.strip()
    if not name:
        return ""
    # Membership, not ZoneInfo(name): a name is never treated as a path.
    if name not in _time_zones():
        raise _invalid("time_zone", "unknown time zone: use an IANA name such as Europe/Berlin")
    return name


def check_user_id(raw: str, *, field: str = "user_id") -> str:
    if not _USER_ID.fullmatch(raw):
        raise InvalidArgument(
            "a user id is required", code="invalid_user_id", details={"field": field}
        )
    return raw


def check_user_ids(raw: Iterable[str], *, field: str = "user_ids") -> list[str]:
    """Distinct ids in their first order; at most `MAX_BATCH`."""
    ids = list(dict.fromkeys(raw))
    if len(ids) > MAX_BATCH:
        raise InvalidArgument(
            f"at most {MAX_BATCH} user ids per call",
            code="too_many_user_ids",
            details={"field": field, "max": MAX_BATCH},
        )
    for user_id in ids:
        check_user_id(user_id, field=field)
    return ids
