"""Presence of room co-members over /api/v1/ws (real auth, user and chat
services): users who share a room but are not friends see each other's
`presence` frames; a user who joins later is followed at once, and one who
leaves is not followed any more."""

from __future__ import annotations

from typing import Any

from chatmesh.services.user.app import UserServer

from .conftest import Stack, User, WsClient


def _presence_of(client: WsClient, user: User) -> list[str]:
    return [f["status"] for f in client.of_type("presence") if f["user_id"] == user.id]


def _last_is(client: WsClient, user: User, status: str) -> Any:
    return lambda: _presence_of(client, user)[-1:] == [status]


async def test_room_co_members_see_each_others_presence(
    stack: Stack, user_server: UserServer
) -> None:
    bff = await stack.bff(user_address=f"127.0.0.1:{user_server.port}")
    ann, bob, cat = await stack.user(), await stack.user(), await stack.user()
    room = await stack.room(bff, ann, bob)

    ann_ws = await stack.ws(ann, bff)
    bob_ws = await stack.ws(bob, bff)
    await ann_ws.wait_until(_last_is(ann_ws, bob, "online"))
    await bob_ws.wait_until(_last_is(bob_ws, ann, "online"))

    # Cat joins while everyone is connected: both directions follow at once.
    cat_ws = await stack.ws(cat, bff)
    joined = await stack.http(bff, cat).post(f"/api/v1/rooms/{room['id']}/join")
    assert joined.status_code == 200, joined.text
    await cat_ws.wait_until(_last_is(cat_ws, ann, "online"))
    await ann_ws.wait_until(_last_is(ann_ws, cat, "online"))

    await cat_ws.wait_until(_last_is(cat_ws, bob, "online"))
    # Dan shares another room with Bob: he shows when Bob's offline has been sent.
    dan = await stack.user()
    await stack.room(bff, bob, dan, name="other")
    dan_ws = await stack.ws(dan, bff)
    await dan_ws.wait_until(_last_is(dan_ws, bob, "online"))

    # Bob leaves: Ann's presence no longer reaches him, nor his Ann or Cat.
    left = await stack.http(bff, bob).post(f"/api/v1/rooms/{room['id']}/leave")
    assert left.status_code in (200, 204), left.text
    await ann_ws.settle(0.5)
    seen = {
        "bob of ann": _presence_of(bob_ws, ann),
        "ann of bob": _presence_of(ann_ws, bob),
        "cat of bob": _presence_of(cat_ws, bob),
    }
    assert all(statuses[-1] == "online" for statuses in seen.values()), seen
    await ann_ws.close()
    await cat_ws.wait_until(_last_is(cat_ws, ann, "offline"))  # Cat still shares the room
    await bob_ws.close()
    await dan_ws.wait_until(_last_is(dan_ws, bob, "offline"))
    assert {
        "bob of ann": _presence_of(bob_ws, ann),
        "ann of bob": _presence_of(ann_ws, bob),
        "cat of bob": _presence_of(cat_ws, bob),
    } == seen
