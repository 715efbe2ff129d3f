"""Rooms: creation, visibility, membership and roles, as a client experiences them."""

from __future__ import annotations

import uuid

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb

NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_create_get_and_list_a_room_with_its_owner(chat):
    alice = await chat.user()
    created = await chat.stub.CreateRoom(
        api.CreateRoomRequest(name="  Design  ", topic="pixels", visibility=pb.VISIBILITY_PRIVATE),
        metadata=alice.md,
    )
    room = created.room
    assert room.name == "Design"  # trimmed
    assert room.topic == "pixels"
    assert room.type == pb.ROOM_TYPE_GROUP
    assert room.visibility == pb.VISIBILITY_PRIVATE
    assert room.creator_id == alice.id
    assert room.member_count == 1
    assert room.membership.role == pb.MEMBER_ROLE_OWNER
    assert room.membership.unread_count == 0

    got = await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=alice.md)
    assert got.room.id == room.id
    assert got.room.name == "Design"
    listed = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=alice.md)
    assert [r.id for r in listed.rooms] == [room.id]

    # Public is the default visibility.
    default = await chat.stub.CreateRoom(api.CreateRoomRequest(name="lobby"), metadata=alice.md)
    assert default.room.visibility == pb.VISIBILITY_PUBLIC


async def test_room_names_and_topics_are_validated(chat):
    alice = await chat.user()
    for name in ("", "   ", "x" * 81, "bad\u202ename", "tab\tname"):
        failed = await chat.failure(
            chat.stub.CreateRoom(api.CreateRoomRequest(name=name), metadata=alice.md)
        )
        assert failed.status == INVALID
        assert failed.code == "invalid_room_name"
        assert failed.details["field"] == "name"
    failed = await chat.failure(
        chat.stub.CreateRoom(api.CreateRoomRequest(name="ok", topic="t" * 251), metadata=alice.md)
    )
    assert failed.code == "invalid_topic"
    failed = await chat.failure(
        chat.stub.CreateRoom(api.CreateRoomRequest(name="ok", visibility=7), metadata=alice.md)
    )
    assert failed.code == "invalid_visibility"
    listed = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=alice.md)
    assert list(listed.rooms) == []  # nothing half-created


async def test_calls_without_a_valid_token_are_unauthenticated(chat):
    alice = await chat.user()
    room = await chat.room(alice)
    for metadata in ((), (("authorization", "Bearer not-a-jwt"),)):
        with_token = chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=metadata)
        failed = await chat.failure(with_token)
        assert failed.status == grpc.StatusCode.UNAUTHENTICATED


async def test_private_rooms_do_not_exist_for_non_members(chat):
    alice, mallory = await chat.user(), await chat.user()
    secret = await chat.room(alice, name="secret", visibility=pb.VISIBILITY_PRIVATE)
    await chat.send(alice, secret.id, "the plan")
    unknown = str(uuid.uuid4())

    calls = {
        "get": lambda room_id: chat.stub.GetRoom(
            api.GetRoomRequest(room_id=room_id), metadata=mallory.md
        ),
        "join": lambda room_id: chat.stub.JoinRoom(
            api.JoinRoomRequest(room_id=room_id), metadata=mallory.md
        ),
        "history": lambda room_id: chat.stub.ListMessages(
            api.ListMessagesRequest(room_id=room_id), metadata=mallory.md
        ),
        "members": lambda room_id: chat.stub.ListMembers(
            api.ListMembersRequest(room_id=room_id), metadata=mallory.md
        ),
        "send": lambda room_id: chat.stub.SendMessage(
            api.SendMessageRequest(room_id=room_id, body="hi", client_msg_id="m1"),
            metadata=mallory.md,
        ),
        "events": lambda room_id: chat.stub.ListRoomEvents(
            api.ListRoomEventsRequest(room_id=room_id), metadata=mallory.md
        ),
        "read": lambda room_id: chat.stub.MarkRead(
            api.MarkReadRequest(room_id=room_id, seq=1), metadata=mallory.md
        ),
    }
    for name, call in calls.items():
        hidden = await chat.failure(call(secret.id))
        missing = await chat.failure(call(unknown))
        # Indistinguishable from a room that does not exist.
        assert (hidden.status, hidden.code, hidden.message) == (
            missing.status,
            missing.code,
            missing.message,
        ), name
        assert hidden.status == NOT_FOUND
        assert hidden.code == "room_not_found"
    listed = await chat.stub.ListRooms(api.ListRoomsRequest(), metadata=mallory.md)
    assert list(listed.rooms) == []


async def test_public_rooms_are_visible_but_only_members_read_and_post(chat):
    alice, bob = await chat.user(), await chat.user()
    room = await chat.room(alice, name="town-square")
    await chat.send(alice, room.id, "welcome")

    seen = await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=bob.md)
    assert seen.room.name == "town-square"
    assert not seen.room.HasField("membership")
    assert not seen.room.HasField("last_message")  # reading is for members

    for call in (
        chat.stub.ListMessages(api.ListMessagesRequest(room_id=room.id), metadata=bob.md),
        chat.stub.SendMessage(
            api.SendMessageRequest(room_id=room.id, body="hi", client_msg_id="b1"),
            metadata=bob.md,
        ),
    ):
        failed = await chat.failure(call)
        assert failed.status == DENIED
        assert failed.code == "not_a_member"

    joined = await chat.stub.JoinRoom(api.JoinRoomRequest(room_id=room.id), metadata=bob.md)
    assert joined.room.membership.role == pb.MEMBER_ROLE_MEMBER
    assert joined.room.member_count == 2
    # Joining twice is harmless.
    again = await chat.stub.JoinRoom(api.JoinRoomRequest(room_id=room.id), metadata=bob.md)
    assert again.room.member_count == 2
    await chat.send(bob, room.id, "hello all")
    history = await chat.stub.ListMessages(
        api.ListMessagesRequest(room_id=room.id), metadata=bob.md
    )
    assert [m.body for m in history.messages] == ["welcome", "hello all"]


async def test_roles_decide_who_manages_members(chat):
    owner, admin, member, newcomer, other = [await chat.user() for _ in range(5)]
    room = await chat.room(
        owner, name="ops", visibility=pb.VISIBILITY_PRIVATE, members=(admin, member)
    )
    promoted = await chat.stub.UpdateMemberRole(
        api.UpdateMemberRoleRequest(room_id=room.id, user_id=admin.id, role=pb.MEMBER_ROLE_ADMIN),
        metadata=owner.md,
    )
    assert promoted.member.role == pb.MEMBER_ROLE_ADMIN
    assert promoted.member.username == admin.username

    # A plain member cannot add people to a private room, an admin can.
    denied = await chat.failure(
        chat.stub.AddMember(
            api.AddMemberRequest(room_id=room.id, user_id=newcomer.id), metadata=member.md
        )
    )
    assert (denied.status, denied.code) == (DENIED, "insufficient_role")
    added = await chat.stub.AddMember(
        api.AddMemberRequest(room_id=room.id, user_id=newcomer.id), metadata=admin.md
    )
    assert added.member.role == pb.MEMBER_ROLE_MEMBER
    # Adding again is idempotent.
    await chat.stub.AddMember(
        api.AddMemberRequest(room_id=room.id, user_id=newcomer.id), metadata=admin.md
    )

    # Only the owner changes roles; the owner's own role cannot change.
    denied = await chat.failure(
        chat.stub.UpdateMemberRole(
            api.UpdateMemberRoleRequest(
                room_id=room.id, user_id=member.id, role=pb.MEMBER_ROLE_ADMIN
            ),
            metadata=admin.md,
        )
    )
    assert denied.code == "insufficient_role"
    invalid = await chat.failure(
        chat.stub.UpdateMemberRole(
            api.UpdateMemberRoleRequest(
                room_id=room.id, user_id=member.id, role=pb.MEMBER_ROLE_OWNER
            ),
            metadata=owner.md,
        )
    )
    assert (invalid.status, invalid.code) == (INVALID, "invalid_role")

    # Members cannot remove; admins remove members but not admins or the owner.
    denied = await chat.failure(
        chat.stub.RemoveMember(
            api.RemoveMemberRequest(room_id=room.id, user_id=newcomer.id), metadata=member.md
        )
    )
    assert denied.code == "insufficient_role"
    denied = await chat.failure(
        chat.stub.RemoveMember(
            api.RemoveMemberRequest(room_id=room.id, user_id=owner.id), metadata=admin.md
        )
    )
    assert denied.code == "cannot_remove_owner"
    await chat.stub.RemoveMember(
        api.RemoveMemberRequest(room_id=room.id, user_id=newcomer.id), metadata=admin.md
    )
    # The removed member lost access to the private room entirely.
    gone = await chat.failure(
        chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=newcomer.md)
    )
    assert gone.status == NOT_FOUND
    missing = await chat.failure(
        chat.stub.RemoveMember(
            api.RemoveMemberRequest(room_id=room.id, user_id=other.id), metadata=owner.md
        )
    )
    assert (missing.status, missing.code) == (NOT_FOUND, "member_not_found")
    unknown_user = await chat.failure(
        chat.stub.AddMember(
            api.AddMemberRequest(room_id=room.id, user_id=str(uuid.uuid4())), metadata=owner.md
        )
    )
    assert (unknown_user.status, unknown_user.code) == (NOT_FOUND, "user_not_found")

    members = await chat.stub.ListMembers(
        api.ListMembersRequest(room_id=room.id), metadata=member.md
    )
    assert {(m.user_id, m.role) for m in members.members} == {
        (owner.id, pb.MEMBER_ROLE_OWNER),
        (admin.id, pb.MEMBER_ROLE_ADMIN),
        (member.id, pb.MEMBER_ROLE_MEMBER),
    }


async def test_only_owner_and_admins_rename_a_room(chat):
    owner, member = await chat.user(), await chat.user()
    room = await chat.room(owner, name="old", members=(member,))
    denied = await chat.failure(
        chat.stub.UpdateRoom(api.UpdateRoomRequest(room_id=room.id, name="new"), metadata=member.md)
    )
    assert denied.code == "insufficient_role"
    updated = await chat.stub.UpdateRoom(
        api.UpdateRoomRequest(room_id=room.id, topic="now with a topic"), metadata=owner.md
    )
    assert (updated.room.name, updated.room.topic) == ("old", "now with a topic")
    renamed = await chat.stub.UpdateRoom(
        api.UpdateRoomRequest(room_id=room.id, name="new"), metadata=owner.md
    )
    assert (renamed.room.name, renamed.room.topic) == ("new", "now with a topic")


async def test_an_owner_who_leaves_hands_the_room_to_an_admin(chat):
    owner, member, admin = await chat.user(), await chat.user(), await chat.user()
    room = await chat.room(owner, members=(member, admin))
    await chat.stub.UpdateMemberRole(
        api.UpdateMemberRoleRequest(room_id=room.id, user_id=admin.id, role=pb.MEMBER_ROLE_ADMIN),
        metadata=owner.md,
    )
    await chat.stub.LeaveRoom(api.LeaveRoomRequest(room_id=room.id), metadata=owner.md)
    members = await chat.stub.ListMembers(
        api.ListMembersRequest(room_id=room.id), metadata=member.md
    )
    roles = {m.user_id: m.role for m in members.members}
    assert roles == {admin.id: pb.MEMBER_ROLE_OWNER, member.id: pb.MEMBER_ROLE_MEMBER}
    got = await chat.stub.GetRoom(api.GetRoomRequest(room_id=room.id), metadata=admin.md)
    assert got.room.member_count == 2
    # Leaving again: no longer a member.
    failed = await chat.failure(
        chat.stub.LeaveRoom(api.LeaveRoomRequest(room_id=room.id), metadata=owner.md)
    )
    assert failed.code == "not_a_member"


async def test_list_rooms_pages_with_unread_counts_and_last_messages(chat):
    alice, bob = await chat.user(), await chat.user()
    rooms = [await chat.room(alice, name=f"room {n}", members=(bob,)) for n in range(5)]
    for n, room in enumerate(rooms):
        for k in range(n):
            await chat.send(alice, room.id, f"message {k} in room {n}")

    seen: list[pb.Room] = []
    token = ""
    while True:
        page = await chat.stub.ListRooms(
            api.ListRoomsRequest(page_size=2, page_token=token), metadata=bob.md
        )
        assert len(page.rooms) <= 2
        seen.extend(page.rooms)
        token = page.next_page_token
        if not token:
            break
    assert sorted(r.id for r in seen) == sorted(r.id for r in rooms)
    assert len({r.id for r in seen}) == 5  # no duplicates across pages
    by_id = {r.id: r for r in seen}
    for n, room in enumerate(rooms):
        assert by_id[room.id].membership.unread_count == n
        if n:
            assert by_id[room.id].last_message.body == f"message {n - 1} in room {n}"
        else:
            assert not by_id[room.id].HasField("last_message")
    # Most recently active first.
    assert seen[0].id == rooms[4].id

    # The sender has no unread messages of their own.
    mine = await chat.stub.ListRooms(api.ListRoomsRequest(page_size=10), metadata=alice.md)
    assert all(r.membership.unread_count == 0 for r in mine.rooms)

    bad = await chat.failure(
        chat.stub.ListRooms(api.ListRoomsRequest(page_token="garbage!"), metadata=bob.md)
    )
    assert (bad.status, bad.code) == (INVALID, "invalid_page_token")
