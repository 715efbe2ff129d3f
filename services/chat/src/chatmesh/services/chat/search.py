"""Full-text search over message bodies, restricted to the caller's rooms.

PostgreSQL: a stored `tsvector` column (english configuration) under a GIN
index, `websearch_to_tsquery` for what users type (quotes, -word, or), ranked by
`ts_rank_cd`, excerpts from `ts_headline`. SQLite (embedded): an FTS5 index with
the porter stemmer, every word of the query required, ranked by `bm25`,
excerpts from `snippet()`. Matches are delimited with two private-use
characters and returned as spans, so no markup ever mixes with user text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.chat.v1 import resources_pb2 as pb

MARK_START = "\ue000"
MARK_END = "\ue001"
_MARKS = re.compile(f"({MARK_START}|{MARK_END})")
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 20
QUERY_MAX_LENGTH = 500

_HEADLINE_OPTIONS = (
    f'StartSel="{MARK_START}", StopSel="{MARK_END}", '
    'MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "'
)

_POSTGRES = """
SELECT m.id AS id,
       ts_rank_cd(m.search_vector, q.query) AS score,
       ts_headline('english', m.body, q.query, :options) AS highlight
FROM messages AS m
JOIN members AS mb ON mb.room_id = m.room_id AND mb.user_id = :user_id
CROSS JOIN websearch_to_tsquery('english', :query) AS q(query)
WHERE m.search_vector @@ q.query AND m.delete_time IS NULL
  AND (:room_id = '' OR m.room_id = :room_id)
ORDER BY score DESC, m.pk DESC
LIMIT :limit OFFSET :offset
"""

_SQLITE = """
SELECT m.id AS id,
       -bm25(messages_fts) AS score,
       snippet(messages_fts, 0, :mark_start, :mark_end, ' … ', 24) AS highlight
FROM messages_fts
JOIN messages AS m ON m.pk = messages_fts.rowid
JOIN members AS mb ON mb.room_id = m.room_id AND mb.user_id = :user_id
WHERE messages_fts MATCH :query AND m.delete_time IS NULL
  AND (:room_id = '' OR m.room_id = :room_id)
ORDER BY bm25(messages_fts), m.pk DESC
LIMIT :limit OFFSET :offset
"""


@dataclass(frozen=True, slots=True)
class Hit:
    message_id: str
    score: float
    highlight: list[pb.HighlightSpan]


def fts5_query(query: str) -> str:
    """Every word of `query`, each quoted (FTS5 syntax in user input cannot break
    the query). Empty when the query has no words."""
    words = _WORD.findall(query)[:MAX_QUERY_WORDS]
    return " ".join('"' + word + '"' for word in words)


def spans(marked: str) -> list[pb.HighlightSpan]:
    result: list[pb.HighlightSpan] = []
    inside = False
    for piece in _MARKS.split(marked):
        if piece == MARK_START:
            inside = True
        elif piece == MARK_END:
            inside = False
        elif piece:
            if result and result[-1].match == inside:
                result[-1].text += piece
            else:
                result.append(pb.HighlightSpan(text=piece, match=inside))
    return result


async def search(
    session: AsyncSession,
    *,
    sqlite: bool,
    user_id: str,
    query: str,
    room_id: str,
    limit: int,
    offset: int,
) -> list[Hit]:
    """Up to `limit` hits after `offset`, best first, in the rooms `user_id` is in."""
    params: dict[str, object] = {
        "user_id": user_id,
        "room_id": room_id,
        "limit": limit,
        "offset": offset,
    }
    if sqlite:
        match = fts5_query(query)
        if not match:
            return []
        params |= {"query": match, "mark_start": MARK_START, "mark_end": MARK_END}
        statement = text(_SQLITE)
    else:
        params |= {"query": query, "options": _HEADLINE_OPTIONS}
        statement = text(_POSTGRES)
    connection = await session.connection()
    rows = (await connection.execute(statement, params)).all()
    return [
        Hit(message_id=row.id, score=float(row.score), highlight=spans(row.highlight))
        for row in rows
    ]
