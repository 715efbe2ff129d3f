"""How names are folded for search and how a query becomes a LIKE pattern.

A profile stores folded copies of its username and display name; a query is
folded the same way, so "Zoë", "zoe" and "ZOË" all find each other. The
query is matched literally: LIKE's wildcards (`%`, `_`) and the escape
character in it are escaped, and it is always a bound parameter.
"""

from __future__ import annotations

import unicodedata

from chatmesh.common.errors import InvalidArgument

QUERY_MAX_LENGTH = 64
LIKE_ESCAPE = "\\"


def fold(text: str) -> str:
    """NFKD, combining marks removed, casefolded, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    # casefold can produce new decomposable characters; NFKC tidies them.
    folded = unicodedata.normalize("NFKC", stripped.casefold())
    return " ".join(folded.split())


def escape_like(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (use with ESCAPE '\\')."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def normalize_query(raw: str) -> str:
    """The folded query; a leading "@" (as in a mention) is ignored."""
    query = raw.strip()
    if query.startswith("@"):
        query = query[1:]
    folded = fold(query)
    if not folded or len(query) > QUERY_MAX_LENGTH:
        raise InvalidArgument(
            f"a search query has 1 to {QUERY_MAX_LENGTH} characters",
            code="invalid_query",
            details={"field": "query"},
        )
    return folded


def prefix_patterns(folded_query: str) -> tuple[str, str]:
    """(whole-value prefix, word prefix) LIKE patterns for a folded query."""
    escaped = escape_like(folded_query)
    return f"{escaped}%", f"% {escaped}%"
