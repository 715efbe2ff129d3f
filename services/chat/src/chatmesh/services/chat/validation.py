"""What users type into the chat service: message bodies, room names and
topics, idempotency keys, emoji. Each check returns the normalised value or
raises `InvalidArgument` with a stable code and the offending field."""

from __future__ import annotations

import re
import unicodedata

from chatmesh.common.errors import InvalidArgument
from chatmesh.services.chat.emoji import is_single_emoji

BODY_MAX_LENGTH = 10_000
ROOM_NAME_MAX_LENGTH = 80
TOPIC_MAX_LENGTH = 250
CLIENT_MSG_ID_MAX_LENGTH = 100
DIRECT_MAX_OTHERS = 15

_CLIENT_MSG_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{CLIENT_MSG_ID_MAX_LENGTH}}}")
# C0 controls and DEL except tab, newline, carriage return: invisible, and NUL
# cannot even be stored in PostgreSQL text.
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _invalid(message: str, code: str, field: str, **details: object) -> InvalidArgument:
    return InvalidArgument(message, code=code, details={"field": field, **details})


def message_body(raw: str) -> str:
    """Trimmed; not empty; at most 10,000 characters; no control characters."""
    body = raw.strip()
    if not body:
        raise _invalid("a message cannot be empty", "body_empty", "body")
    if len(body) > BODY_MAX_LENGTH:
        raise _invalid(
            f"a message has at most {BODY_MAX_LENGTH:,} characters",
            "body_too_long",
            "body",
            max_length=BODY_MAX_LENGTH,
            length=len(body),
        )
    if _BODY_CONTROLS.search(body):
        raise _invalid("a message cannot contain control characters", "body_invalid", "body")
    return body


def client_msg_id(raw: str) -> str:
    if not _CLIENT_MSG_ID.fullmatch(raw):
        raise _invalid(
            f"client_msg_id is 1 to {CLIENT_MSG_ID_MAX_LENGTH} characters of A-Z a-z 0-9 . _ : -",
            "invalid_client_msg_id",
            "client_msg_id",
        )
    return raw


def _is_hidden(char: str) -> bool:
    # Controls, format characters (bidi overrides, zero-width), separators.
    return unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")


def room_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).strip()
    if not name or len(name) > ROOM_NAME_MAX_LENGTH:
        raise _invalid(
            f"a room name has 1 to {ROOM_NAME_MAX_LENGTH} characters", "invalid_room_name", "name"
        )
    if any(_is_hidden(char) for char in name):
        raise _invalid(
            "a room name cannot contain control or invisible characters",
            "invalid_room_name",
            "name",
        )
    return name


def room_topic(raw: str) -> str:
    topic = unicodedata.normalize("NFC", raw).strip()
    if len(topic) > TOPIC_MAX_LENGTH:
        raise _invalid(
            f"a topic has at most {TOPIC_MAX_LENGTH} characters", "invalid_topic", "topic"
        )
    if any(_is_hidden(char) for char in topic):
        raise _invalid(
            "a topic cannot contain control or invisible characters", "invalid_topic", "topic"
        )
    return topic


def emoji(raw: str) -> str:
    value = unicodedata.normalize("NFC", raw.strip())
    if not is_single_emoji(value):
        raise _invalid("a reaction is a single emoji", "invalid_emoji", "emoji")
    return value


def seq_value(value: int, field: str, *, last_seq: int, allow_next: bool = False) -> int:
    """A seq cursor within 0..last_seq (last_seq + 1 when `allow_next`)."""
    upper = last_seq + 1 if allow_next else last_seq
    if not 0 <= value <= upper:
        raise _invalid(
            f"{field} must be between 0 and {upper}",
            "seq_out_of_range",
            field,
            last_seq=last_seq,
        )
    return value
