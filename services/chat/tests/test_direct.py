"""Direct conversations: one room per set of users, even when created concurrently
(blocks: test_blocks.py)."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb


async def test_a_dm_is_created_once_and_found_from_either_side(chat):
    alice, bob = await chat.user(), await chat.user()
    first = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[bob.id]), metadata=alice.md
    )
    assert first.created
    room = first.room
    assert room.type == pb.ROOM_TYPE_DIRECT
    assert room.visibility == pb.VISIBILITY_PRIVATE
    assert sorted(room.member_ids) == sorted([alice.id, bob.id])
    assert room.member_count == 2

    from_bob = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[alice.id, bob.id, alice.id]), metadata=bob.md
    )
    assert not from_bob.created
    assert from_bob.room.id == room.id

    await chat.send(alice, room.id, "hi bob")
    listed = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=bob.md)
    assert [r.id for r in listed.rooms] == [room.id]
    assert listed.rooms[0].membership.unread_count == 1
    assert listed.rooms[0].last_message.body == "hi bob"


async def test_concurrent_creates_of_one_dm_yield_one_room(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    everyone = [alice, bob, carol]
    # Each of the three asks for "me and the other two" at the same time, twice.
    results = await asyncio.gather(
        *(
            chat.stub.GetOrCreateDirectRoom(
                api.GetOrCreateDirectRoomRequest(
                    user_ids=[u.id for u in everyone if u is not caller]
                ),
                metadata=caller.md,
            )
            for caller in everyone * 2
        )
    )
    assert len({result.room.id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    room = results[0].room
    assert sorted(room.member_ids) == sorted([alice.id, bob.id, carol.id])
    # A group DM is a different set of users from each pair.
    pair = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[bob.id]), metadata=alice.md
    )
    assert pair.room.id != room.id


async def test_dm_requests_with_bad_users_are_rejected(chat):
    alice = await chat.user()
    for user_ids in ([], [alice.id], [""], [str(uuid.uuid4()) for _ in range(16)]):
        failed = await chat.failure(
            chat.stub.GetOrCreateDirectRoom(
                api.GetOrCreateDirectRoomRequest(user_ids=user_ids), metadata=alice.md
            )
        )
        assert failed.status == grpc.StatusCode.INVALID_ARGUMENT
        assert failed.code == "invalid_direct_users"
    stranger = str(uuid.uuid4())
    failed = await chat.failure(
        chat.stub.GetOrCreateDirectRoom(
            api.GetOrCreateDirectRoomRequest(user_ids=[stranger]), metadata=alice.md
        )
    )
    assert (failed.status, failed.code) == (grpc.StatusCode.NOT_FOUND, "user_not_found")
    assert failed.details["user_id"] == stranger


async def test_dm_membership_is_fixed(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    dm = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[bob.id]), metadata=alice.md
    )
    room_id = dm.room.id
    for call in (
        chat.stub.AddMember(
            api.AddMemberRequest(room_id=room_id, user_id=carol.id), metadata=alice.md
        ),
        chat.stub.RemoveMember(
            api.RemoveMemberRequest(room_id=room_id, user_id=bob.id), metadata=alice.md
        ),
        chat.stub.LeaveRoom(api.LeaveRoomRequest(room_id=room_id), metadata=alice.md),
    ):
        failed = await chat.failure(call)
        assert (failed.status, failed.code) == (grpc.StatusCode.FAILED_PRECONDITION, "direct_room")
    # Outsiders cannot see it.
    hidden = await chat.failure(
        chat.stub.GetRoom(api.GetRoomRequest(room_id=room_id), metadata=carol.md)
    )
    assert hidden.status == grpc.StatusCode.NOT_FOUND
