"""What counts as one emoji (reactions) and as a mention, on the text users type."""

from __future__ import annotations

import pytest

from chatmesh.services.chat.emoji import is_single_emoji
from chatmesh.services.chat.mentions import mentioned_usernames

ACCEPTED = [
    "👍",  # plain
    "👍🏽",  # skin tone
    "❤️",  # text-default symbol with presentation selector
    "❤",  # ... and without
    "🇫🇷",  # flag
    "1️⃣",  # keycap
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿",  # subdivision flag (tag sequence)
    "👩‍💻",  # ZWJ sequence
    "👨‍👩‍👧‍👦",  # family
    "❤️‍🔥",
    "🧑🏿‍🤝‍🧑🏻",  # ZWJ with modifiers
    "🫠",  # newer than some Unicode tables
    "✅",
    "©️",
]
REJECTED = [
    "",
    "a",
    ":)",
    ":thumbsup:",
    "👍👍",  # two emoji
    "👍 ",
    "x👍",
    "\u200d👍",  # stray joiner
    "👍\u200d",
    "🇫",  # half a flag
    "🏽",  # a modifier alone
    "1",
    "#",
    "<b>",
    "\U0010ffff",
    "👍" * 40,
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_single_emoji_are_accepted(text: str) -> None:
    assert is_single_emoji(text)


@pytest.mark.parametrize("text", REJECTED)
def test_anything_else_is_not_an_emoji(text: str) -> None:
    assert not is_single_emoji(text)


def test_mentions_are_usernames_after_an_at_sign() -> None:
    body = "hi @Alice and @bob. mail me at carol@example.com, @alice again, @x, (@dave_-)"
    assert mentioned_usernames(body) == ["alice", "bob", "dave"]
    assert mentioned_usernames("no mentions here") == []
    assert mentioned_usernames("@@double") == []
