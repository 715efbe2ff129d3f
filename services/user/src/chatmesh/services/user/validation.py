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

# Code points that may appear in an emoji sequence besides pictographs (category So):
# zero-width joiner, variation selectors, the keycap combiner, tag characters.
_ZWJ = "\u200d"
_EMOJI_JOINERS = {_ZWJ, "\ufe0e", "\ufe0f", "\u20e3"}
_KEYCAP_BASES = set("0123456789#*")


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


def _is_pictograph(char: str) -> bool:
    # So: pictographs, regional indicators; Sk covers the skin tone modifiers.
    return unicodedata.category(char) in ("So", "Sk") and ord(char) > 0x7F


def normalize_status_emoji(raw: str) -> str:
    """Empty, or one emoji (possibly a ZWJ sequence, flag, keycap or with skin tone)."""
    emoji = raw.strip()
    if not emoji:
        return ""
    keycap = "\u20e3" in emoji
    valid = (
        len(emoji) <= STATUS_EMOJI_MAX_LENGTH
        and all(
            _is_pictograph(char)
            or char in _EMOJI_JOINERS
            or (keycap and char in _KEYCAP_BASES)
            or 0xE0020 <= ord(char) <= 0xE007F  # tag sequences (subdivision flags)
            for char in emoji
        )
        and (keycap or any(_is_pictograph(char) for char in emoji))
    )
    if not valid:
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
