"""The friends state machine: request, accept, decline, cancel, remove, the
lists both ways, and concurrent requests that must end in one friendship."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from chatmesh.common.testkit import failure
from chatmesh.user.v1 import user_pb2

INCOMING = user_pb2.FRIEND_REQUEST_DIRECTION_INCOMING
OUTGOING = user_pb2.FRIEND_REQUEST_DIRECTION_OUTGOING


async def _send(mesh, sender, recipient_id):
    return await mesh.users.SendFriendRequest(
        user_pb2.SendFriendRequestRequest(user_id=recipient_id), metadata=sender.auth
    )


async def _requests(mesh, user, direction=user_pb2.FRIEND_REQUEST_DIRECTION_UNSPECIFIED):
    response = await mesh.users.ListFriendRequests(
        user_pb2.ListFriendRequestsRequest(direction=direction), metadata=user.auth
    )
    return list(response.requests)


async def _friend_ids(mesh, user):
    response = await mesh.users.ListFriends(user_pb2.ListFriendsRequest(), metadata=user.auth)
    return [friend.profile.user_id for friend in response.friends]


async def _relationship(mesh, viewer, other):
    response = await mesh.users.GetProfile(
        user_pb2.GetProfileRequest(user_id=other.id), metadata=viewer.auth
    )
    return response.relationship, response.friend_request_id


async def test_request_then_accept_makes_friends_on_both_sides(mesh):
    ada, bob = await mesh.register(), await mesh.register()

    sent = await _send(mesh, ada, bob.id)

    assert sent.WhichOneof("result") == "request"
    request = sent.request
    assert (request.requester_id, request.recipient_id) == (ada.id, bob.id)
    assert request.direction == OUTGOING
    assert request.profile.user_id == bob.id
    # Both see it, from their side.
    [incoming] = await _requests(mesh, bob, INCOMING)
    assert incoming.id == request.id
    assert incoming.direction == INCOMING
    assert incoming.profile.user_id == ada.id
    assert [r.id for r in await _requests(mesh, ada, OUTGOING)] == [request.id]
    assert await _requests(mesh, ada, INCOMING) == []
    assert await _relationship(mesh, ada, bob) == (user_pb2.RELATIONSHIP_REQUEST_SENT, request.id)
    assert await _relationship(mesh, bob, ada) == (
        user_pb2.RELATIONSHIP_REQUEST_RECEIVED,
        request.id,
    )

    accepted = await mesh.users.AcceptFriendRequest(
        user_pb2.AcceptFriendRequestRequest(request_id=request.id), metadata=bob.auth
    )

    assert accepted.friend.profile.user_id == ada.id
    assert await _friend_ids(mesh, ada) == [bob.id]
    assert await _friend_ids(mesh, bob) == [ada.id]
    assert await _requests(mesh, ada) == []
    assert await _requests(mesh, bob) == []
    assert await _relationship(mesh, ada, bob) == (user_pb2.RELATIONSHIP_FRIEND, "")


async def test_sending_twice_keeps_one_request(mesh):
    ada, bob = await mesh.register(), await mesh.register()

    first = await _send(mesh, ada, bob.id)
    second = await _send(mesh, ada, bob.id)

    assert second.request.id == first.request.id
    assert len(await _requests(mesh, bob)) == 1


async def test_asking_someone_who_already_asked_you_makes_you_friends(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    await _send(mesh, ada, bob.id)

    answer = await _send(mesh, bob, ada.id)

    assert answer.WhichOneof("result") == "friend"
    assert answer.friend.profile.user_id == ada.id
    assert await _friend_ids(mesh, ada) == [bob.id]
    assert await _requests(mesh, ada) == []


async def test_concurrent_mutual_requests_end_in_exactly_one_friendship(mesh):
    pairs = [(await mesh.register(), await mesh.register()) for _ in range(4)]

    answers = await asyncio.gather(
        *(_send(mesh, a, b.id) for a, b in pairs), *(_send(mesh, b, a.id) for a, b in pairs)
    )

    for a, b in pairs:
        assert await _friend_ids(mesh, a) == [b.id]
        assert await _friend_ids(mesh, b) == [a.id]
        assert await _requests(mesh, a) == []
    # Per pair, one call left a request and the other turned it into a friendship.
    kinds = sorted(answer.WhichOneof("result") for answer in answers)
    assert kinds == ["friend"] * 4 + ["request"] * 4
    assert await mesh.count("SELECT COUNT(*) FROM relationships") == 4


async def test_concurrent_identical_requests_leave_one_request(mesh):
    ada, bob = await mesh.register(), await mesh.register()

    answers = await asyncio.gather(*(_send(mesh, ada, bob.id) for _ in range(6)))

    assert len({answer.request.id for answer in answers}) == 1
    assert len(await _requests(mesh, bob)) == 1


async def test_decline_removes_the_request_and_allows_a_new_one(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    request = (await _send(mesh, ada, bob.id)).request

    await mesh.users.DeclineFriendRequest(
        user_pb2.DeclineFriendRequestRequest(request_id=request.id), metadata=bob.auth
    )

    assert await _requests(mesh, ada) == []
    assert await _friend_ids(mesh, bob) == []
    assert await _relationship(mesh, ada, bob) == (user_pb2.RELATIONSHIP_NONE, "")
    again = (await _send(mesh, ada, bob.id)).request
    assert again.id != request.id
    stale = await failure(
        mesh.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id=request.id), metadata=bob.auth
        )
    )
    assert stale.code == "friend_request_not_found"


async def test_cancel_withdraws_a_request_so_it_cannot_be_accepted(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    request = (await _send(mesh, ada, bob.id)).request

    await mesh.users.CancelFriendRequest(
        user_pb2.CancelFriendRequestRequest(request_id=request.id), metadata=ada.auth
    )

    assert await _requests(mesh, bob) == []
    late = await failure(
        mesh.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id=request.id), metadata=bob.auth
        )
    )
    assert late.status == grpc.StatusCode.NOT_FOUND
    assert late.code == "friend_request_not_found"


async def test_only_the_right_side_can_answer_a_request(mesh):
    ada, bob, eve = await mesh.register(), await mesh.register(), await mesh.register()
    request_id = (await _send(mesh, ada, bob.id)).request.id

    attempts = [
        # The requester cannot accept or decline their own request…
        mesh.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id=request_id), metadata=ada.auth
        ),
        mesh.users.DeclineFriendRequest(
            user_pb2.DeclineFriendRequestRequest(request_id=request_id), metadata=ada.auth
        ),
        # …the recipient cannot cancel it, and a third user can do nothing with it.
        mesh.users.CancelFriendRequest(
            user_pb2.CancelFriendRequestRequest(request_id=request_id), metadata=bob.auth
        ),
        mesh.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id=request_id), metadata=eve.auth
        ),
        mesh.users.CancelFriendRequest(
            user_pb2.CancelFriendRequestRequest(request_id=request_id), metadata=eve.auth
        ),
    ]
    for attempt in attempts:
        rejected = await failure(attempt)
        assert rejected.status == grpc.StatusCode.NOT_FOUND
        assert rejected.code == "friend_request_not_found"

    assert [r.id for r in await _requests(mesh, bob, INCOMING)] == [request_id]
    assert await _friend_ids(mesh, eve) == []


async def test_remove_ends_the_friendship_for_both(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    await _send(mesh, ada, bob.id)
    await _send(mesh, bob, ada.id)

    await mesh.users.RemoveFriend(user_pb2.RemoveFriendRequest(user_id=ada.id), metadata=bob.auth)

    assert await _friend_ids(mesh, ada) == []
    assert await _friend_ids(mesh, bob) == []
    again = await failure(
        mesh.users.RemoveFriend(user_pb2.RemoveFriendRequest(user_id=ada.id), metadata=bob.auth)
    )
    assert again.status == grpc.StatusCode.NOT_FOUND
    assert again.code == "not_friends"


async def test_already_friends_is_reported(mesh):
    ada, bob = await mesh.register(), await mesh.register()
    await _send(mesh, ada, bob.id)
    await _send(mesh, bob, ada.id)

    repeated = await failure(_send(mesh, ada, bob.id))

    assert repeated.status == grpc.StatusCode.ALREADY_EXISTS
    assert repeated.code == "already_friends"


async def test_requests_to_yourself_or_unknown_users_are_rejected(mesh):
    ada = await mesh.register()

    to_self = await failure(_send(mesh, ada, ada.id))
    unknown = await failure(_send(mesh, ada, "00000000-0000-0000-0000-000000000000"))
    empty = await failure(_send(mesh, ada, ""))
    no_request = await failure(
        mesh.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id="nope"), metadata=ada.auth
        )
    )

    assert (to_self.status, to_self.code) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "cannot_befriend_self",
    )
    assert (unknown.status, unknown.code) == (grpc.StatusCode.NOT_FOUND, "user_not_found")
    assert empty.status == grpc.StatusCode.INVALID_ARGUMENT
    assert no_request.status == grpc.StatusCode.NOT_FOUND
    assert await mesh.count("SELECT COUNT(*) FROM relationships") == 0


async def test_friend_lists_come_in_pages(mesh):
    me = await mesh.register(username="myself")
    friends = [await mesh.register(username=f"friend_{c}") for c in "dcba"]
    for friend in friends:
        await _send(mesh, friend, me.id)
        await _send(mesh, me, friend.id)

    seen, token = [], ""
    while True:
        page = await mesh.users.ListFriends(
            user_pb2.ListFriendsRequest(page_size=3, page_token=token), metadata=me.auth
        )
        seen.append([f.profile.username for f in page.friends])
        token = page.next_page_token
        if not token:
            break

    assert seen == [["friend_a", "friend_b", "friend_c"], ["friend_d"]]


async def test_request_lists_come_in_pages_newest_first(mesh):
    me = await mesh.register()
    senders = [await mesh.register() for _ in range(3)]
    for sender in senders:
        await _send(mesh, sender, me.id)

    first = await mesh.users.ListFriendRequests(
        user_pb2.ListFriendRequestsRequest(page_size=2), metadata=me.auth
    )
    second = await mesh.users.ListFriendRequests(
        user_pb2.ListFriendRequestsRequest(page_size=2, page_token=first.next_page_token),
        metadata=me.auth,
    )

    order = [r.requester_id for r in [*first.requests, *second.requests]]
    assert order == [s.id for s in reversed(senders)]
    assert second.next_page_token == ""


@pytest.mark.parametrize("token", ["%%%", "eyJrIjoiYmxvY2tzIiwicyI6IiIsImEiOlsieCJdfQ"])
async def test_bad_page_tokens_are_rejected(shared_mesh, token):
    me = await shared_mesh.register()

    rejected = await failure(
        shared_mesh.users.ListFriends(
            user_pb2.ListFriendsRequest(page_token=token), metadata=me.auth
        )
    )

    assert rejected.status == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.code == "invalid_page_token"
