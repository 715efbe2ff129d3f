"""History pages (both directions), read markers and unread counts, and the
room event log that reconnecting clients replay."""

from __future__ import annotations

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def room_with_messages(chat, count: int):
    alice, bob = await chat.user(), await chat.user()
    room = await chat.room(alice, members=(bob,))
    sent = []
    for n in range(count):
        sent.append(await chat.send(alice if n % 3 else bob, room.id, f"message {n}"))
    return alice, bob, room, sent


async def page(chat, user, room_id, **fields):
    return await chat.stub.ListMessages(
        api.ListMessagesRequest(room_id=room_id, **fields), metadata=user.md
    )


async def test_backward_pages_cover_history_without_gaps_or_duplicates(chat):
    alice, _, room, sent = await room_with_messages(chat, 23)
    # A reaction and an edit add events between messages: seqs are not contiguous.
    await chat.stub.AddReaction(
        api.AddReactionRequest(message_id=sent[5].id, emoji="👍"), metadata=alice.md
    )
    newest = await page(chat, alice, room.id, page_size=10)
    assert [m.body for m in newest.messages] == [f"message {n}" for n in range(13, 23)]
    assert newest.latest_seq == sent[-1].seq + 1

    collected = list(newest.messages)
    token = newest.next_page_token
    while token:
        older = await page(chat, alice, room.id, page_size=10, page_token=token)
        seqs = [m.seq for m in older.messages]
        assert seqs == sorted(seqs)  # every page reads oldest → newest
        collected = list(older.messages) + collected
        token = older.next_page_token
    assert [m.id for m in collected] == [m.id for m in sent]

    # The BFF's ?before_seq=: the page just before a message.
    before = await page(chat, alice, room.id, page_size=5, before_seq=sent[10].seq)
    assert [m.body for m in before.messages] == [f"message {n}" for n in range(5, 10)]


async def test_forward_pages_from_a_seq_and_windows_between_two_seqs(chat):
    alice, _, room, sent = await room_with_messages(chat, 17)
    first = await page(chat, alice, room.id, page_size=6, after_seq=0)
    assert [m.body for m in first.messages] == [f"message {n}" for n in range(6)]
    collected = list(first.messages)
    token = first.next_page_token
    while token:
        newer = await page(chat, alice, room.id, page_size=6, page_token=token)
        collected += list(newer.messages)
        token = newer.next_page_token
    assert [m.id for m in collected] == [m.id for m in sent]

    after = await page(chat, alice, room.id, after_seq=sent[14].seq)
    assert [m.body for m in after.messages] == ["message 15", "message 16"]
    assert after.next_page_token == ""
    window = await page(chat, alice, room.id, after_seq=sent[3].seq, before_seq=sent[7].seq)
    assert [m.body for m in window.messages] == ["message 4", "message 5", "message 6"]
    # Caught up: an empty page, no token.
    nothing = await page(chat, alice, room.id, after_seq=sent[-1].seq)
    assert list(nothing.messages) == []
    assert nothing.next_page_token == ""


async def test_out_of_range_cursors_and_bad_tokens_are_invalid(chat):
    alice, _, room, sent = await room_with_messages(chat, 3)
    last = sent[-1].seq
    cases = [
        ({"after_seq": -1}, "seq_out_of_range"),
        ({"after_seq": last + 1}, "seq_out_of_range"),
        ({"before_seq": -5}, "seq_out_of_range"),
        ({"before_seq": last + 2}, "seq_out_of_range"),
        ({"page_size": -1}, "invalid_page_size"),
        ({"page_token": "not-a-token"}, "invalid_page_token"),
        ({"page_token": "eyJrIjoicm9vbXMifQ"}, "invalid_page_token"),  # another list's token
    ]
    for fields, code in cases:
        failed = await chat.failure(page(chat, alice, room.id, **fields))
        assert (failed.status, failed.code) == (INVALID, code), fields
    # The upper edges themselves are fine.
    assert len((await page(chat, alice, room.id, before_seq=last + 1)).messages) == 3
    assert len((await page(chat, alice, room.id, after_seq=last)).messages) == 0

    # A token is bound to its room.
    other = await chat.room(alice, name="other")
    for n in range(3):
        await chat.send(alice, other.id, f"other {n}")
    token = (await page(chat, alice, other.id, page_size=1)).next_page_token
    failed = await chat.failure(page(chat, alice, room.id, page_token=token))
    assert failed.code == "invalid_page_token"
    # Page sizes are capped.
    for n in range(110):
        await chat.send(alice, other.id, f"bulk {n}")
    capped = await page(chat, alice, other.id, page_size=10_000)
    assert len(capped.messages) == 100


async def test_read_markers_drive_unread_counts_and_receipts(chat):
    alice, bob, room, sent = await room_with_messages(chat, 6)
    # bob sent messages 0 and 3; alice the other four.
    rooms = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=bob.md)
    assert rooms.rooms[0].membership.unread_count == 2  # alice's 4 and 5 after bob's 3

    marked = await chat.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=sent[4].seq), metadata=bob.md
    )
    assert marked.last_read_seq == sent[4].seq
    assert marked.unread_count == 1
    # Markers never move back.
    back = await chat.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=sent[1].seq), metadata=bob.md
    )
    assert (back.last_read_seq, back.unread_count) == (sent[4].seq, 1)
    latest = (await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)).room
    done = await chat.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=latest.last_seq), metadata=bob.md
    )
    assert (done.last_read_seq, done.unread_count) == (sent[5].seq, 0)

    # Receipts: every member sees how far the others have read.
    members = await chat.stub.ListMembers(
        api.ListMembersRequest(room_id=room.id), metadata=alice.md
    )
    reads = {m.user_id: m.last_read_seq for m in members.members}
    assert reads[bob.id] == sent[5].seq
    assert reads[alice.id] == sent[5].seq  # sending implies having read

    for seq in (-1, latest.last_seq + 5):
        failed = await chat.failure(
            chat.stub.MarkRead(api.MarkReadRequest(room_id=room.id, seq=seq), metadata=bob.md)
        )
        assert (failed.status, failed.code) == (INVALID, "seq_out_of_range")

    # A deleted message no longer counts as unread.
    extra = await chat.send(alice, room.id, "will be deleted")
    assert (
        await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)
    ).room.membership.unread_count == 1
    await chat.stub.DeleteMessage(api.DeleteMessageRequest(message_id=extra.id), metadata=alice.md)
    got = await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)
    assert got.room.membership.unread_count == 0


async def test_reading_up_to_a_receipt_does_not_produce_another_receipt(chat):
    # A client that marks every event it sees as read must not ping-pong receipts.
    _, bob, room, _ = await room_with_messages(chat, 2)
    room_now = (await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)).room
    await chat.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=room_now.last_seq), metadata=bob.md
    )
    after_receipt = (
        await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)
    ).room.last_seq
    assert after_receipt == room_now.last_seq + 1  # the receipt is one event
    await chat.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=after_receipt), metadata=bob.md
    )
    again = (await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)).room
    assert again.last_seq == after_receipt


async def test_room_events_after_a_seq_are_exactly_the_missed_changes(chat):
    alice, bob, room, sent = await room_with_messages(chat, 3)
    seen_up_to = (
        await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)
    ).room.last_seq
    fourth = await chat.send(alice, room.id, "fourth")
    await chat.stub.EditMessage(
        api.EditMessageRequest(message_id=sent[0].id, body="edited"), metadata=bob.md
    )
    await chat.stub.AddReaction(
        api.AddReactionRequest(message_id=fourth.id, emoji="🎉"), metadata=bob.md
    )
    await chat.stub.DeleteMessage(
        api.DeleteMessageRequest(message_id=sent[1].id), metadata=alice.md
    )
    await chat.stub.MarkRead(api.MarkReadRequest(room_id=room.id, seq=fourth.seq), metadata=bob.md)
    replay = await chat.stub.ListRoomEvents(
        api.ListRoomEventsRequest(room_id=room.id, after_seq=seen_up_to), metadata=bob.md
    )
    kinds = [event.WhichOneof("payload") for event in replay.events]
    assert kinds == [
        "message_created",
        "message_updated",
        "reaction_updated",
        "message_deleted",
        "read_marker_updated",
    ]
    assert [e.seq for e in replay.events] == list(range(seen_up_to + 1, seen_up_to + 6))
    assert replay.latest_seq == seen_up_to + 5
    created, updated, reacted, deleted, receipt = replay.events
    assert created.message_created.message.body == "fourth"
    assert updated.message_updated.message.body == "edited"
    assert updated.actor_id == bob.id
    assert [(r.emoji, list(r.user_ids)) for r in reacted.reaction_updated.reactions] == [
        ("🎉", [bob.id])
    ]
    assert deleted.message_deleted.message_id == sent[1].id
    assert deleted.message_deleted.message.body == ""  # a replay never shows deleted text
    assert receipt.read_marker_updated.user_id == bob.id
    assert receipt.read_marker_updated.last_read_seq == fourth.seq

    # Paged replay returns the same sequence.
    paged, token = [], ""
    while True:
        response = await chat.stub.ListRoomEvents(
            api.ListRoomEventsRequest(room_id=room.id, after_seq=0, page_size=4, page_token=token),
            metadata=alice.md,
        )
        paged += [e.seq for e in response.events]
        token = response.next_page_token
        if not token:
            break
    assert paged == list(range(1, replay.latest_seq + 1))

    # The deleted message's text is gone from every event of it, not just hidden.
    everything = await chat.stub.ListRoomEvents(
        api.ListRoomEventsRequest(room_id=room.id, after_seq=0), metadata=bob.md
    )
    (original,) = [
        e
        for e in everything.events
        if e.HasField("message_created") and e.message_created.message.id == sent[1].id
    ]
    assert original.message_created.message.body == ""
    assert original.message_created.message.HasField("delete_time")
    assert "message 1" not in str(everything)

    for after_seq in (-1, replay.latest_seq + 1):
        failed = await chat.failure(
            chat.stub.ListRoomEvents(
                api.ListRoomEventsRequest(room_id=room.id, after_seq=after_seq), metadata=bob.md
            )
        )
        assert (failed.status, failed.code) == (INVALID, "seq_out_of_range")
