"""Full-text search: ranked, highlighted, and only over rooms the caller can read."""

from __future__ import annotations

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb


async def search(chat, user, query, **fields):
    return await chat.stub.SearchMessages(
        api.SearchMessagesRequest(query=query, **fields), metadata=user.md
    )


def marked(result) -> str:
    """The highlight as a client would render it, matches in [brackets]."""
    return "".join(f"[{s.text}]" if s.match else s.text for s in result.highlight)


async def test_results_are_ranked_and_highlight_the_matching_words(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    await chat.send(alice, room.id, "the deploy pipeline failed again; deploy logs attached")
    await chat.send(alice, room.id, "lunch at noon?")
    await chat.send(alice, room.id, "we should deploy on friday")
    await chat.send(alice, room.id, "Deploying the new deployment of the pipeline")

    found = await search(chat, alice, "deploy pipeline")
    bodies = [r.message.body for r in found.results]
    # Every word must match; the message with both words, twice "deploy", ranks first.
    assert bodies[0] == "the deploy pipeline failed again; deploy logs attached"
    assert "lunch at noon?" not in bodies
    assert "we should deploy on friday" not in bodies
    assert set(bodies) == {
        "the deploy pipeline failed again; deploy logs attached",
        "Deploying the new deployment of the pipeline",
    }  # stemming: deploying ~ deploy
    scores = [r.score for r in found.results]
    assert scores == sorted(scores, reverse=True)
    top = marked(found.results[0])
    assert "[deploy]" in top
    assert "[pipeline]" in top
    # Spans reassemble to the original text (no markup injected).
    assert "".join(s.text for s in found.results[0].highlight) in found.results[0].message.body
    assert found.results[0].message.room_id == room.id


async def test_search_only_covers_rooms_the_caller_is_a_member_of(chat):
    alice, bob, mallory = await chat.user(), await chat.user(), await chat.user()
    private = await chat.room(alice, name="board", visibility=pb.VISIBILITY_PRIVATE, members=(bob,))
    public = await chat.room(alice, name="lobby")
    await chat.send(alice, private.id, "confidential merger plans")
    await chat.send(alice, public.id, "public merger rumours")

    assert {r.message.room_id for r in (await search(chat, bob, "merger")).results} == {private.id}
    assert {r.message.room_id for r in (await search(chat, alice, "merger")).results} == {
        private.id,
        public.id,
    }
    # Not a member of either (the public one is readable only after joining).
    assert list((await search(chat, mallory, "merger")).results) == []
    hidden = await chat.failure(search(chat, mallory, "merger", room_id=private.id))
    assert (hidden.status, hidden.code) == (grpc.StatusCode.NOT_FOUND, "room_not_found")
    outside = await chat.failure(search(chat, mallory, "merger", room_id=public.id))
    assert outside.status == grpc.StatusCode.PERMISSION_DENIED
    scoped = await search(chat, alice, "merger", room_id=public.id)
    assert [r.message.body for r in scoped.results] == ["public merger rumours"]


async def test_deleted_and_edited_messages_are_searched_as_they_are_now(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    gone = await chat.send(alice, room.id, "password is hunter2")
    typo = await chat.send(alice, room.id, "teh quarterly report")
    await chat.stub.DeleteMessage(api.DeleteMessageRequest(message_id=gone.id), metadata=alice.md)
    await chat.stub.EditMessage(
        api.EditMessageRequest(message_id=typo.id, body="the quarterly summary"), metadata=alice.md
    )
    assert list((await search(chat, alice, "hunter2")).results) == []
    assert list((await search(chat, alice, "report")).results) == []
    (hit,) = (await search(chat, alice, "summary")).results
    assert hit.message.id == typo.id


async def test_search_pages_and_rejects_bad_queries(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    for n in range(7):
        await chat.send(alice, room.id, f"standup note {n}")
    seen, token = [], ""
    while True:
        page = await search(chat, alice, "standup", page_size=3, page_token=token)
        seen += [r.message.id for r in page.results]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 7

    for query in ("", "   ", "x" * 501):
        failed = await chat.failure(search(chat, alice, query))
        assert (failed.status, failed.code) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_query")
    # Query syntax characters are just text, never an error.
    for query in ('"unbalanced', "a AND OR NOT", "NEAR(", "*", "-", "()"):
        page = await search(chat, alice, query)
        assert isinstance(list(page.results), list)
    token = (await search(chat, alice, "standup", page_size=1)).next_page_token
    failed = await chat.failure(search(chat, alice, "note", page_token=token))
    assert failed.code == "invalid_page_token"
