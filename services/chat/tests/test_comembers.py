"""ListCoMembers: who shares a small room with the caller (for presence), per
room, without large rooms and without rooms the caller is not in."""

from __future__ import annotations

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api

from .conftest import Harness, User


async def _co_members(
    chat: Harness, user: User, *, room_ids: tuple[str, ...] = (), max_room_size: int = 0
) -> tuple[dict[str, set[str]], bool]:
    reply = await chat.stub.ListCoMembers(
        api.ListCoMembersRequest(room_ids=room_ids, max_room_size=max_room_size),
        metadata=user.md,
    )
    return {r.room_id: set(r.user_ids) for r in reply.rooms}, reply.truncated


async def test_co_members_of_small_rooms_per_room(chat: Harness) -> None:
    ann, bob, cat, dan, eve = [await chat.user() for _ in range(5)]
    small = await chat.room(ann, members=(bob, cat))
    big = await chat.room(ann, name="big", members=(bob, cat, dan, eve))
    dm = await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[dan.id]), metadata=ann.md
    )
    elsewhere = await chat.room(eve, name="elsewhere", members=(bob,))

    rooms, truncated = await _co_members(chat, ann, max_room_size=4)
    assert rooms == {small.id: {bob.id, cat.id}, dm.room.id: {dan.id}}
    assert not truncated
    rooms, _ = await _co_members(chat, ann)  # the default size takes the big room too
    assert rooms[big.id] == {bob.id, cat.id, dan.id, eve.id}
    # Only the named rooms, and only the caller's.
    rooms, _ = await _co_members(chat, ann, room_ids=(small.id, elsewhere.id))
    assert rooms == {small.id: {bob.id, cat.id}}

    failed = await chat.failure(
        chat.stub.ListCoMembers(api.ListCoMembersRequest(max_room_size=-1), metadata=ann.md)
    )
    assert (failed.status, failed.code) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_max_room_size",
    )
