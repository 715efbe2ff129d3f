"""Blocking: it ends friendships and pending requests both ways, hides the two
users from each other, stops new requests, and is what the chat service asks
before a DM."""

from __future__ import annotations

import asyncio

import grpc

from chatmesh.common.testkit import failure
from chatmesh.user.v1 import user_pb2


async def _block(mesh, blocker, user_id):
    return await mesh.users.BlockUser(
        user_pb2.BlockUserRequest(user_id=user_id), metadata=blocker.auth
    )


async def _unblock(mesh, blocker, user_id):
    return await mesh.users.UnblockUser(
        user_pb2.UnblockUserRequest(user_id=user_id), metadata=blocker.auth
    )


async def _send(mesh, sender, recipient_id):
    return await mesh.users.SendFriendRequest(
        user_pb2.SendFriendRequestRequest(user_id=recipient_id), metadata=sender.auth
    )


async def _friend_ids(mesh, user):
    response = await mesh.users.ListFriends(user_pb2.ListFriendsRequest(), metadata=user.auth)
    return [friend.profile.user_id for friend in response.friends]


async def _request_count(mesh, user):
    response = await mesh.users.ListFriendRequests(
        user_pb2.ListFriendRequestsRequest(), metadata=user.auth
    )
    return len(response.requests)


async def _found(mesh, viewer, query):
    response = await mesh.users.SearchProfiles(
        user_pb2.SearchProfilesRequest(query=query), metadata=viewer.auth
    )
    return [p.user_id for p in response.profiles]


async def _check(mesh, viewer, *user_ids):
    response = await mesh.users.CheckBlocks(
        user_pb2.CheckBlocksRequest(user_ids=user_ids), metadata=viewer.auth
    )
    return list(response.blocked_user_ids)


async def test_blocking_a_friend_ends_the_friendship_for_both(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    await _send(mesh, ada, bob.id)
    await _send(mesh, bob, ada.id)

    blocked = await _block(mesh, ada, bob.id)

    assert blocked.blocked_user.profile.user_id == bob.id
    assert await _friend_ids(mesh, ada) == []
    assert await _friend_ids(mesh, bob) == []
    # Unblocking does not bring the friendship back.
    await _unblock(mesh, ada, bob.id)
    assert await _friend_ids(mesh, ada) == []


async def test_blocking_deletes_pending_requests_in_both_directions(mesh):
    ada, bob, cat = await mesh.register(), await mesh.register(), await mesh.register()
    await _send(mesh, ada, bob.id)  # ada → bob, then ada blocks bob
    await _send(mesh, cat, ada.id)  # cat → ada, then ada blocks cat

    await _block(mesh, ada, bob.id)
    await _block(mesh, ada, cat.id)

    for user in (ada, bob, cat):
        assert await _request_count(mesh, user) == 0
    assert await mesh.count("SELECT COUNT(*) FROM relationships") == 0


async def test_after_a_block_neither_side_can_send_requests(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    await _block(mesh, ada, bob.id)

    from_blocker = await failure(_send(mesh, ada, bob.id))
    from_blocked = await failure(_send(mesh, bob, ada.id))

    assert (from_blocker.status, from_blocker.code) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "user_blocked",
    )
    # The blocked user is not told about the block: the blocker just looks gone.
    assert (from_blocked.status, from_blocked.code) == (
        grpc.StatusCode.NOT_FOUND,
        "user_not_found",
    )
    assert await _request_count(mesh, ada) == 0


async def test_blocked_users_disappear_from_each_others_search_and_profile_view(mesh):
    ada = await mesh.register(username="ada_x", display_name="Ada")
    bob = await mesh.register(username="bob_x", display_name="Bob")
    cat = await mesh.register(username="cat_x", display_name="Cat")
    assert set(await _found(mesh, ada, "bob")) == {bob.id}

    await _block(mesh, bob, ada.id)

    assert await _found(mesh, ada, "bob") == []
    assert await _found(mesh, bob, "ada") == []
    assert await _found(mesh, cat, "ada") == [ada.id]  # others are unaffected
    hidden = await failure(
        mesh.users.GetProfile(user_pb2.GetProfileRequest(user_id=bob.id), metadata=ada.auth)
    )
    assert hidden.code == "user_not_found"
    # The blocker still sees whom they blocked (to unblock them).
    view = await mesh.users.GetProfile(
        user_pb2.GetProfileRequest(user_id=ada.id), metadata=bob.auth
    )
    assert view.relationship == user_pb2.RELATIONSHIP_BLOCKED

    await _unblock(mesh, bob, ada.id)

    assert await _found(mesh, ada, "bob") == [bob.id]
    assert await _found(mesh, bob, "ada") == [ada.id]


async def test_check_blocks_answers_for_many_users_in_either_direction(mesh):
    ada, bob, cat, dan = [await mesh.register() for _ in range(4)]
    await _block(mesh, ada, bob.id)  # ada blocked bob
    await _block(mesh, cat, ada.id)  # cat blocked ada

    assert await _check(mesh, ada, bob.id, cat.id, dan.id) == [bob.id, cat.id]
    assert await _check(mesh, bob, ada.id, cat.id) == [ada.id]
    assert await _check(mesh, dan, ada.id, bob.id, cat.id) == []
    assert await _check(mesh, ada) == []


async def test_block_list_and_idempotent_block_and_unblock(mesh):
    ada, bob, cat = await mesh.register(), await mesh.register(), await mesh.register()

    first = await _block(mesh, ada, bob.id)
    again = await _block(mesh, ada, bob.id)
    await _block(mesh, ada, cat.id)

    assert again.blocked_user.create_time == first.blocked_user.create_time
    listed = await mesh.users.ListBlockedUsers(
        user_pb2.ListBlockedUsersRequest(), metadata=ada.auth
    )
    assert sorted(b.profile.user_id for b in listed.blocked_users) == sorted([bob.id, cat.id])
    other_side = await mesh.users.ListBlockedUsers(
        user_pb2.ListBlockedUsersRequest(), metadata=bob.auth
    )
    assert list(other_side.blocked_users) == []

    await _unblock(mesh, ada, bob.id)
    await _unblock(mesh, ada, bob.id)

    listed = await mesh.users.ListBlockedUsers(
        user_pb2.ListBlockedUsersRequest(), metadata=ada.auth
    )
    assert [b.profile.user_id for b in listed.blocked_users] == [cat.id]


async def test_a_block_racing_a_friend_request_never_leaves_both(mesh):
    pairs = [(await mesh.register(), await mesh.register()) for _ in range(4)]

    await asyncio.gather(
        *(_block(mesh, a, b.id) for a, b in pairs),
        *(_send(mesh, b, a.id) for a, b in pairs),
        return_exceptions=True,
    )

    # Whatever the order, a block wins: no pending request or friendship remains.
    assert await mesh.count("SELECT COUNT(*) FROM relationships") == 0
    assert await mesh.count("SELECT COUNT(*) FROM blocks") == 4


async def test_bad_block_requests(mesh):
    ada = await mesh.register()

    on_self = await failure(_block(mesh, ada, ada.id))
    unknown = await failure(_block(mesh, ada, "00000000-0000-0000-0000-000000000000"))
    unknown_unblock = await failure(_unblock(mesh, ada, "00000000-0000-0000-0000-000000000000"))
    too_many = await failure(
        mesh.users.CheckBlocks(
            user_pb2.CheckBlocksRequest(user_ids=[f"u{i}" for i in range(1001)]),
            metadata=ada.auth,
        )
    )

    assert (on_self.status, on_self.code) == (grpc.StatusCode.INVALID_ARGUMENT, "cannot_block_self")
    assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "user_not_found")
    assert unknown_unblock.status == grpc.StatusCode.NOT_FOUND
    assert too_many.status == grpc.StatusCode.INVALID_ARGUMENT
    assert await mesh.count("SELECT COUNT(*) FROM blocks") == 0
