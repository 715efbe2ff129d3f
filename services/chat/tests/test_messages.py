"""Messages: idempotent sends, body rules, edits, deletes, replies, reactions,
mentions, and the events other services get."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.events.v1 import chat_events_pb2 as ev

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def history(chat, user, room_id):
    page = await chat.stub.ListMessages(
        api.ListMessagesRequest(room_id=room_id, page_size=100), metadata=user.md
    )
    return list(page.messages)


async def test_a_sent_message_has_the_next_seq_and_the_fields_clients_show(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    response = await chat.stub.SendMessage(
        api.SendMessageRequest(room_id=room.id, body="  hello world \n", client_msg_id="c-1"),
        metadata=alice.md,
    )
    message = response.message
    assert response.created
    assert message.body == "hello world"
    assert message.sender_id == alice.id
    assert message.room_id == room.id
    assert message.client_msg_id == "c-1"
    assert message.seq == room.last_seq + 1
    assert message.create_time.seconds > 0
    assert not message.HasField("edit_time")
    second = await chat.send(alice, room.id, "again")
    assert second.seq == message.seq + 1
    got = await chat.stub.GetMessage(
        api.GetMessageRequest(message_id=message.id), metadata=alice.md
    )
    assert got.message == message


async def test_a_retried_send_returns_the_original_message(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    request = api.SendMessageRequest(room_id=room.id, body="only once", client_msg_id="retry-1")
    first = await chat.stub.SendMessage(request, metadata=alice.md)
    # A retry, even with a different body, is the same message.
    request.body = "changed on retry"
    second = await chat.stub.SendMessage(request, metadata=alice.md)
    assert first.created
    assert not second.created
    assert second.message == first.message
    assert [m.body for m in await history(chat, alice, room.id)] == ["only once"]
    # The key is per sender: another user may use the same key.
    bob = await chat.user()
    await chat.stub.JoinRoom(api.JoinRoomRequest(room_id=room.id), metadata=bob.md)
    theirs = await chat.stub.SendMessage(request, metadata=bob.md)
    assert theirs.created
    assert theirs.message.id != first.message.id
    # Reusing a key for another room is a conflict, not a silent no-op.
    other = await chat.room(alice, name="other")
    conflict = await chat.failure(
        chat.stub.SendMessage(
            api.SendMessageRequest(room_id=other.id, body="x", client_msg_id="retry-1"),
            metadata=alice.md,
        )
    )
    assert (conflict.status, conflict.code) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "client_msg_id_conflict",
    )
    created = await chat.chat_events.wait_count(ev.MessageCreated, 2)
    await asyncio.sleep(0.2)
    assert len(chat.chat_events.of_type(ev.MessageCreated)) == len(created) == 2


async def test_concurrent_sends_with_one_client_msg_id_make_one_message(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    request = api.SendMessageRequest(room_id=room.id, body="raced", client_msg_id="race-1")
    responses = await asyncio.gather(
        *(chat.stub.SendMessage(request, metadata=alice.md) for _ in range(8))
    )
    assert len({r.message.id for r in responses}) == 1
    assert sum(r.created for r in responses) == 1
    assert len({r.message.seq for r in responses}) == 1
    messages = await history(chat, alice, room.id)
    assert [m.body for m in messages] == ["raced"]
    # No seq was burnt by the losers: the next message follows directly.
    following = await chat.send(alice, room.id, "next")
    assert following.seq == messages[0].seq + 1


async def test_a_burst_into_one_room_gets_consecutive_seqs_and_individual_answers(chat):
    # Sends racing into one room are committed together; each still gets its own
    # answer: a new message, the original of a repeated key, or its own refusal.
    alice, bob, outsider = await chat.user(), await chat.user(), await chat.user()
    room = await chat.room(alice, members=(bob,))
    other = await chat.room(alice, name="elsewhere")
    taken = await chat.send(alice, other.id, "keeps its key", client_msg_id="taken")

    def request(body: str, client_msg_id: str, reply_to: str = "") -> api.SendMessageRequest:
        return api.SendMessageRequest(
            room_id=room.id, body=body, client_msg_id=client_msg_id, reply_to=reply_to
        )

    calls = [
        *(chat.stub.SendMessage(request(f"a{n}", f"a{n}"), metadata=alice.md) for n in range(25)),
        *(chat.stub.SendMessage(request(f"b{n}", f"b{n}"), metadata=bob.md) for n in range(25)),
        *(chat.stub.SendMessage(request("same", "dup"), metadata=bob.md) for _ in range(5)),
        *(chat.stub.SendMessage(request("no", f"o{n}"), metadata=outsider.md) for n in range(3)),
        chat.stub.SendMessage(request("bad reply", "r1", reply_to=taken.id), metadata=bob.md),
        chat.stub.SendMessage(request("key used", "taken"), metadata=alice.md),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    sent, dups = results[:50], results[50:55]
    refused = [r.code() for r in results[55:58]]
    bad_reply, reused = results[58], results[59]

    assert all(isinstance(r, api.SendMessageResponse) and r.created for r in sent)
    assert len({r.message.id for r in dups}) == 1
    assert sum(r.created for r in dups) == 1
    assert refused == [grpc.StatusCode.PERMISSION_DENIED] * 3
    assert bad_reply.code() == grpc.StatusCode.NOT_FOUND
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    seqs = sorted([r.message.seq for r in sent] + [dups[0].message.seq])
    assert seqs == list(range(seqs[0], seqs[0] + 51))  # gapless, no seq burnt by refusals
    messages = await history(chat, bob, room.id)
    assert len(messages) == 51
    assert [m.seq for m in messages] == seqs
    for r in sent:
        assert r.message.body == r.message.client_msg_id  # each got its own message
    # Sending marks everything up to one's own last message read, for each sender.
    for user in (alice, bob):
        own = max(m.seq for m in messages if m.sender_id == user.id)
        listed = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=user.md)
        mine = next(r for r in listed.rooms if r.id == room.id)
        assert mine.membership.unread_count == sum(m.seq > own for m in messages)


async def test_bodies_must_be_non_empty_and_at_most_10000_characters(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    cases = {
        "": "body_empty",
        "   \n\t ": "body_empty",
        "x" * 10_001: "body_too_long",
        "nul\x00byte": "body_invalid",
        "bell\x07": "body_invalid",
    }
    for body, code in cases.items():
        failed = await chat.failure(chat.send(alice, room.id, body))
        assert (failed.status, failed.code) == (INVALID, code)
        assert failed.details["field"] == "body"
    exactly = await chat.send(alice, room.id, "é" * 10_000)
    assert len(exactly.body) == 10_000
    unicode = await chat.send(alice, room.id, "multi\nline\ttabs and 🎉 emoji")
    assert unicode.body == "multi\nline\ttabs and 🎉 emoji"
    for client_msg_id in ("", "has space", "x" * 101):
        failed = await chat.failure(
            chat.stub.SendMessage(
                api.SendMessageRequest(room_id=room.id, body="ok", client_msg_id=client_msg_id),
                metadata=alice.md,
            )
        )
        assert failed.code == "invalid_client_msg_id"
    assert len(await history(chat, alice, room.id)) == 2
    # The server still answers normally afterwards.
    assert (await chat.send(alice, room.id, "still fine")).body == "still fine"


async def test_unknown_rooms_and_messages_are_not_found(chat):
    alice = await chat.user()
    unknown = str(uuid.uuid4())
    failed = await chat.failure(chat.send(alice, unknown, "hello"))
    assert (failed.status, failed.code) == (NOT_FOUND, "room_not_found")
    for call in (
        chat.stub.GetMessage(api.GetMessageRequest(message_id=unknown), metadata=alice.md),
        chat.stub.EditMessage(
            api.EditMessageRequest(message_id=unknown, body="x"), metadata=alice.md
        ),
        chat.stub.DeleteMessage(api.DeleteMessageRequest(message_id=unknown), metadata=alice.md),
        chat.stub.AddReaction(
            api.AddReactionRequest(message_id=unknown, emoji="👍"), metadata=alice.md
        ),
        chat.stub.GetMessage(api.GetMessageRequest(message_id="not even an id"), metadata=alice.md),
    ):
        failed = await chat.failure(call)
        assert (failed.status, failed.code) == (NOT_FOUND, "message_not_found")


async def test_only_the_sender_edits_and_the_edit_time_is_kept(chat):
    alice, bob = await chat.user(), await chat.user()
    room = await chat.room(alice, members=(bob,))
    message = await chat.send(alice, room.id, "first draft")
    denied = await chat.failure(
        chat.stub.EditMessage(
            api.EditMessageRequest(message_id=message.id, body="hijacked"), metadata=bob.md
        )
    )
    assert (denied.status, denied.code) == (DENIED, "not_message_sender")
    edited = await chat.stub.EditMessage(
        api.EditMessageRequest(message_id=message.id, body="final text"), metadata=alice.md
    )
    assert edited.message.body == "final text"
    assert edited.message.HasField("edit_time")
    assert edited.message.seq == message.seq  # an edit keeps the message's place
    invalid = await chat.failure(
        chat.stub.EditMessage(
            api.EditMessageRequest(message_id=message.id, body=" "), metadata=alice.md
        )
    )
    assert invalid.code == "body_empty"
    (seen,) = await history(chat, bob, room.id)
    assert seen.body == "final text"
    assert seen.edit_time == edited.message.edit_time


async def test_deletes_leave_a_tombstone_and_need_the_sender_or_an_admin(chat):
    owner, alice, bob = await chat.user(), await chat.user(), await chat.user()
    room = await chat.room(owner, members=(alice, bob))
    mine = await chat.send(alice, room.id, "oops")
    theirs = await chat.send(bob, room.id, "rude words")
    await chat.stub.AddReaction(
        api.AddReactionRequest(message_id=mine.id, emoji="😂"), metadata=bob.md
    )

    denied = await chat.failure(
        chat.stub.DeleteMessage(api.DeleteMessageRequest(message_id=theirs.id), metadata=alice.md)
    )
    assert (denied.status, denied.code) == (DENIED, "not_message_sender")
    deleted = await chat.stub.DeleteMessage(
        api.DeleteMessageRequest(message_id=mine.id), metadata=alice.md
    )
    assert deleted.message.HasField("delete_time")
    assert deleted.message.body == ""
    assert list(deleted.message.reactions) == []
    # The owner (an admin role) may delete anyone's message.
    await chat.stub.DeleteMessage(api.DeleteMessageRequest(message_id=theirs.id), metadata=owner.md)
    # Deleting again is a no-op, editing or reacting to a tombstone is refused.
    again = await chat.stub.DeleteMessage(
        api.DeleteMessageRequest(message_id=mine.id), metadata=alice.md
    )
    assert again.message.delete_time == deleted.message.delete_time
    for call in (
        chat.stub.EditMessage(
            api.EditMessageRequest(message_id=mine.id, body="x"), metadata=alice.md
        ),
        chat.stub.AddReaction(
            api.AddReactionRequest(message_id=mine.id, emoji="👍"), metadata=bob.md
        ),
    ):
        failed = await chat.failure(call)
        assert (failed.status, failed.code) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "message_deleted",
        )
    messages = await history(chat, bob, room.id)
    # History keeps the tombstones in place: no gaps for clients.
    assert [(m.id, m.body, m.HasField("delete_time")) for m in messages] == [
        (mine.id, "", True),
        (theirs.id, "", True),
    ]


async def test_replies_point_at_a_message_of_the_same_room(chat):
    alice = await chat.user()
    room, other = await chat.room(alice), await chat.room(alice, name="other")
    question = await chat.send(alice, room.id, "lunch?")
    elsewhere = await chat.send(alice, other.id, "elsewhere")
    answer = await chat.send(alice, room.id, "yes", reply_to=question.id)
    assert answer.reply_to == question.id
    for reply_to in (elsewhere.id, str(uuid.uuid4())):
        failed = await chat.failure(chat.send(alice, room.id, "no", reply_to=reply_to))
        assert (failed.status, failed.code) == (NOT_FOUND, "reply_to_not_found")


async def test_reactions_count_who_reacted_and_are_idempotent(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    room = await chat.room(alice, members=(bob, carol))
    message = await chat.send(alice, room.id, "ship it?")

    async def react(user, emoji, add=True):
        if add:
            response = await chat.stub.AddReaction(
                api.AddReactionRequest(message_id=message.id, emoji=emoji), metadata=user.md
            )
        else:
            response = await chat.stub.RemoveReaction(
                api.RemoveReactionRequest(message_id=message.id, emoji=emoji), metadata=user.md
            )
        return [(r.emoji, r.count, list(r.user_ids)) for r in response.message.reactions]

    assert await react(bob, "👍") == [("👍", 1, [bob.id])]
    assert await react(carol, "👍") == [("👍", 2, [bob.id, carol.id])]
    assert await react(carol, "👍") == [("👍", 2, [bob.id, carol.id])]  # twice = once
    assert await react(bob, "🇫🇷") == [("👍", 2, [bob.id, carol.id]), ("🇫🇷", 1, [bob.id])]
    assert await react(bob, "👍", add=False) == [("👍", 1, [carol.id]), ("🇫🇷", 1, [bob.id])]
    assert await react(bob, "👍", add=False) == [("👍", 1, [carol.id]), ("🇫🇷", 1, [bob.id])]
    assert await react(alice, "👩‍💻") == [
        ("👍", 1, [carol.id]),
        ("🇫🇷", 1, [bob.id]),
        ("👩‍💻", 1, [alice.id]),
    ]
    for emoji in ("", "thumbsup", ":+1:", "👍👍", "a👍", "\u200d"):
        failed = await chat.failure(
            chat.stub.AddReaction(
                api.AddReactionRequest(message_id=message.id, emoji=emoji), metadata=bob.md
            )
        )
        assert (failed.status, failed.code) == (INVALID, "invalid_emoji")
    (seen,) = await history(chat, carol, room.id)
    assert [(r.emoji, r.count) for r in seen.reactions] == [("👍", 1), ("🇫🇷", 1), ("👩‍💻", 1)]
    stranger = await chat.user()
    failed = await chat.failure(
        chat.stub.AddReaction(
            api.AddReactionRequest(message_id=message.id, emoji="👍"), metadata=stranger.md
        )
    )
    assert failed.status == DENIED  # a public room: visible, but not theirs to react in


async def test_mentions_of_members_are_recorded_and_announced(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    outsider = await chat.user()
    room = await chat.room(alice, name="team", members=(bob, carol))
    message = await chat.send(
        alice,
        room.id,
        f"@{bob.username} and @{outsider.username}: ask @{alice.username}, "
        f"or mail {carol.username}@example.com. @{bob.username.upper()} again.",
    )
    # Only members are mentioned (an outsider cannot read it), never the sender,
    # an e-mail address is not a mention, and case does not matter.
    assert list(message.mention_user_ids) == [bob.id]
    (mention,) = await chat.chat_events.wait_count(ev.MentionCreated, 1)
    assert mention.mentioned_user_id == bob.id
    assert mention.message_id == message.id
    assert mention.room_id == room.id
    assert mention.sender_id == alice.id
    assert mention.room_name == "team"
    assert mention.excerpt.startswith(f"@{bob.username}")
    (created,) = await chat.chat_events.wait_count(ev.MessageCreated, 1)
    assert created.message_id == message.id
    assert created.seq == message.seq
    assert list(created.mention_user_ids) == [bob.id]
    assert not created.direct

    # Editing in a new mention announces only the new one.
    edited = await chat.stub.EditMessage(
        api.EditMessageRequest(
            message_id=message.id, body=f"@{bob.username} @{carol.username} look"
        ),
        metadata=alice.md,
    )
    assert sorted(edited.message.mention_user_ids) == sorted([bob.id, carol.id])
    mentions = await chat.chat_events.wait_count(ev.MentionCreated, 2)
    await asyncio.sleep(0.2)
    assert [m.mentioned_user_id for m in chat.chat_events.of_type(ev.MentionCreated)] == [
        bob.id,
        carol.id,
    ]
    assert len(mentions) == 2
