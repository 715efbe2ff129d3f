"""`@username` mentions in message bodies."""

from __future__ import annotations

import re

# A username as auth accepts it (3-32 of a-z 0-9 _ . -), after an @ that does
# not follow a word character (so e-mail addresses are not mentions).
_MENTION = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9_.-]{1,31})", re.IGNORECASE | re.ASCII)
MAX_MENTIONS = 50


def mentioned_usernames(body: str) -> list[str]:
    """Lowercased usernames mentioned in `body`, first occurrence order, no duplicates.

    Trailing punctuation that a username may contain but a sentence ends with
    ("thanks @ana." or "@bob-") is left out.
    """
    found: dict[str, None] = {}
    for match in _MENTION.finditer(body):
        name = match.group(1).lower().rstrip("._-")
        if len(name) >= 3:
            found.setdefault(name, None)
        if len(found) >= MAX_MENTIONS:
            break
    return list(found)
