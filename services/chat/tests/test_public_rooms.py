"""The public room directory (ListPublicRooms): what someone browsing for rooms
to join sees, on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _all_pages(chat, user, *, query: str = "", page_size: int) -> list[api.PublicRoom]:
    found: list[api.PublicRoom] = []
    token = ""
    while True:
        page = await chat.stub.ListPublicRooms(
            api.ListPublicRoomsRequest(query=query, page_size=page_size, page_token=token),
            metadata=user.md,
        )
        assert len(page.rooms) <= page_size
        found.extend(page.rooms)
        token = page.next_page_token
        if not token:
            return found


async def test_lists_public_group_rooms_only_by_name_with_membership(chat):
    alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
    zebra = await chat.room(alice, name="zebra crossing", members=(bob,))
    apples = await chat.room(bob, name="Apples")
    await chat.room(alice, name="apple secrets", visibility=pb.VISIBILITY_PRIVATE)
    await chat.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[bob.id]), metadata=alice.md
    )

    listed = await chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(), metadata=carol.md)
    # Private rooms and DMs are never listed; names sort ignoring case.
    assert [r.room.name for r in listed.rooms] == ["Apples", "zebra crossing"]
    assert [r.is_member for r in listed.rooms] == [False, False]
    assert listed.rooms[1].room.member_count == 2
    assert listed.rooms[1].room.id == zebra.id
    assert listed.next_page_token == ""

    as_bob = await chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(), metadata=bob.md)
    assert {r.room.id: r.is_member for r in as_bob.rooms} == {apples.id: True, zebra.id: True}

    # Joining from the directory flips is_member and the count.
    await chat.stub.JoinRoom(api.JoinRoomRequest(room_id=apples.id), metadata=carol.md)
    after = await chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(), metadata=carol.md)
    assert (after.rooms[0].is_member, after.rooms[0].room.member_count) == (True, 2)


async def test_name_prefix_search_ignores_case_and_wildcards(chat):
    alice = await chat.user()
    for name in ("Design", "design-review", "Redesign", "100% fun", "1000 things", "a_b", "axb"):
        await chat.room(alice, name=name)

    async def names(query: str) -> list[str]:
        page = await chat.stub.ListPublicRooms(
            api.ListPublicRoomsRequest(query=query), metadata=alice.md
        )
        return [r.room.name for r in page.rooms]

    assert await names("des") == ["Design", "design-review"]  # a prefix, not a substring
    assert await names("  DESIGN-") == ["design-review"]  # trimmed
    assert await names("100%") == ["100% fun"]  # % is a character, not a wildcard
    assert await names("a_") == ["a_b"]  # so is _
    assert await names("nothing like it") == []


async def test_pages_cover_every_room_once_and_tokens_belong_to_their_query(chat):
    alice, bob = await chat.user(), await chat.user()
    created = {(await chat.room(alice, name=f"Room {i:02d}")).id for i in range(7)}
    await chat.room(alice, name="Other")

    pages = await _all_pages(chat, bob, query="room", page_size=3)
    assert [r.room.id for r in pages if r.room.id in created] == [r.room.id for r in pages]
    assert {r.room.id for r in pages} == created
    assert len(pages) == 7
    assert [r.room.name for r in pages] == sorted(r.room.name for r in pages)

    first = await chat.stub.ListPublicRooms(
        api.ListPublicRoomsRequest(query="room", page_size=3), metadata=bob.md
    )
    reused = await chat.failure(
        chat.stub.ListPublicRooms(
            api.ListPublicRoomsRequest(query="other", page_token=first.next_page_token),
            metadata=bob.md,
        )
    )
    assert (reused.status, reused.code) == (INVALID, "invalid_page_token")
    garbage = await chat.failure(
        chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(page_token="x!"), metadata=bob.md)
    )
    assert (garbage.status, garbage.code) == (INVALID, "invalid_page_token")


async def test_bad_requests_get_clear_errors(chat):
    alice = await chat.user()
    too_long = await chat.failure(
        chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(query="x" * 81), metadata=alice.md)
    )
    assert (too_long.status, too_long.code, too_long.details["field"]) == (
        INVALID,
        "invalid_query",
        "query",
    )
    negative = await chat.failure(
        chat.stub.ListPublicRooms(api.ListPublicRoomsRequest(page_size=-1), metadata=alice.md)
    )
    assert (negative.status, negative.code) == (INVALID, "invalid_page_size")
    anonymous = await chat.failure(chat.stub.ListPublicRooms(api.ListPublicRoomsRequest()))
    assert anonymous.status == grpc.StatusCode.UNAUTHENTICATED
