"""The service events the mail service's digests are built from: a read marker
that moves emits `RoomRead` (one that does not move emits nothing), and joining,
being added, leaving and removal emit `RoomMembershipChanged` (role changes do not)."""

from __future__ import annotations

import asyncio

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.events.v1 import chat_events_pb2 as ev


async def test_a_moved_read_marker_emits_room_read_once(chat):
    alice, bob = await chat.user(), await chat.user()
    room = await chat.room(alice, members=(bob,))
    await chat.send(alice, room.id, "one")
    second = await chat.send(alice, room.id, "two")

    await chat.stub.MarkRead(api.MarkReadRequest(room_id=room.id, seq=second.seq), metadata=bob.md)
    read = await chat.chat_events.wait_for(ev.RoomRead, lambda e: e.user_id == bob.id)
    assert (read.room_id, read.seq) == (room.id, second.seq)
    assert read.read_time.seconds > 0

    # Reading again up to the same message moves nothing and emits nothing.
    await chat.stub.MarkRead(api.MarkReadRequest(room_id=room.id, seq=second.seq), metadata=bob.md)
    await asyncio.sleep(0.3)
    assert len(chat.chat_events.of_type(ev.RoomRead)) == 1


async def test_membership_changes_are_announced_with_their_room_seq(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    room = await chat.room(alice, name="ops", members=(bob,))
    await chat.stub.RemoveMember(
        api.RemoveMemberRequest(room_id=room.id, user_id=bob.id), metadata=alice.md
    )
    dm = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[carol.id]), metadata=alice.md
    )

    changes = await chat.chat_events.wait_count(ev.RoomMembershipChanged, 5)
    in_room = [(c.user_id, c.member) for c in changes if c.room_id == room.id]
    assert in_room == [(alice.id, True), (bob.id, True), (bob.id, False)]
    assert all(c.room_name == "ops" and not c.direct for c in changes if c.room_id == room.id)
    seqs = [c.seq for c in changes if c.room_id == room.id]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    in_dm = {c.user_id for c in changes if c.room_id == dm.room.id and c.member and c.direct}
    assert in_dm == {alice.id, carol.id}
