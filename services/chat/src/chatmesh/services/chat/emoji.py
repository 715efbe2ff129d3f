"""Is a string exactly one emoji? (UTS #51 sequences, without a data file.)

Accepted: a pictographic character with an optional emoji presentation selector
(U+FE0F) and skin-tone modifier; flags (two regional indicators); keycaps
(`1️⃣`); subdivision flags (black flag + tag characters); and ZWJ sequences of
those (`👩‍💻`, `❤️‍🔥`). Text, several emoji side by side, or stray joiners are not.
Emoji blocks are accepted even where this Python's Unicode tables are older than
the client's, so new emoji are not rejected; elsewhere the code point must exist.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CODE_POINTS = 32

_ZWJ = "\u200d"
_VS16 = "\ufe0f"
_KEYCAP = re.compile("[0-9#*]\ufe0f?\u20e3")
_BLACK_FLAG = "\U0001f3f4"
_CANCEL_TAG = "\U000e007f"

# Extended_Pictographic, approximately: the emoji blocks of the SMP, plus the
# BMP symbols that have emoji presentations.
_PICTOGRAPHIC_RANGES = (
    (0x1F000, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
    (0x2600, 0x27BF),
    (0x2190, 0x21FF),
    (0x2300, 0x23FF),
    (0x2B00, 0x2BFF),
    (0x25A0, 0x25FF),
    (0x2900, 0x297F),
)
_PICTOGRAPHIC_SINGLES = frozenset(
    ord(c) for c in "\u00a9\u00ae\u203c\u2049\u2122\u2139\u24c2\u3030\u303d\u3297\u3299"
)
# Reserved for future emoji: accepted even if this Python does not name them yet.
_FUTURE_PROOF = ((0x1F000, 0x1FAFF),)


def _in(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _is_modifier(char: str) -> bool:
    return 0x1F3FB <= ord(char) <= 0x1F3FF


def _is_tag(char: str) -> bool:
    return 0xE0020 <= ord(char) <= 0xE007E


def _is_pictographic(char: str) -> bool:
    code = ord(char)
    if _is_regional_indicator(char) or _is_modifier(char):
        return False
    if code not in _PICTOGRAPHIC_SINGLES and not _in(code, _PICTOGRAPHIC_RANGES):
        return False
    return _in(code, _FUTURE_PROOF) or bool(unicodedata.name(char, ""))


def _is_element(element: str) -> bool:
    """One ZWJ-sequence element: pictograph [FE0F] [modifier] [tags + cancel tag]."""
    if not element or not _is_pictographic(element[0]):
        return False
    rest = element[1:]
    if rest.startswith(_VS16):
        rest = rest[1:]
    if rest and _is_modifier(rest[0]):
        rest = rest[1:]
    if rest and element[0] == _BLACK_FLAG and rest.endswith(_CANCEL_TAG):
        tags = rest[:-1]
        if tags and all(_is_tag(c) for c in tags):
            rest = ""
    return rest == ""


def is_single_emoji(text: str) -> bool:
    if not text or len(text) > MAX_CODE_POINTS:
        return False
    if len(text) == 2 and all(_is_regional_indicator(c) for c in text):
        return True
    if _KEYCAP.fullmatch(text):
        return True
    return all(_is_element(element) for element in text.split(_ZWJ))
