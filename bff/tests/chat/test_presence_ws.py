"""Presence over /api/v1/ws: a user's two devices on one BFF, their friend's
WebSocket on another BFF receiving the `presence` frames (real auth, user and
chat services)."""

from __future__ import annotations

from typing import Any

from chatmesh.services.user.app import UserServer

from .conftest import Stack, User, WsClient, profile_exists


def _presence_of(client: WsClient, user: User) -> list[str]:
    return [f["status"] for f in client.of_type("presence") if f["user_id"] == user.id]


async def test_a_friend_sees_two_devices_come_and_go(stack: Stack, user_server: UserServer) -> None:
    user_address = f"127.0.0.1:{user_server.port}"
    bob_bff = await stack.bff(user_address=user_address)
    ann_bff = await stack.bff(user_address=user_address)
    ann, bob = await stack.user(), await stack.user()
    ann_http, bob_http = stack.http(ann_bff, ann), stack.http(bob_bff, bob)
    await profile_exists(ann_http, bob)
    await profile_exists(bob_http, ann)
    asked = await ann_http.post("/api/v1/friends/requests", json={"user_id": bob.id})
    assert asked.status_code == 201, asked.text
    answered = await bob_http.post("/api/v1/friends/requests", json={"user_id": ann.id})
    assert answered.json()["status"] == "friends"

    bob_ws = await stack.ws(bob, bob_bff)

    def last_is(status: str) -> Any:
        return lambda: _presence_of(bob_ws, ann)[-1:] == [status]

    await bob_ws.wait_until(last_is("offline"))
    phone = await stack.ws(ann, ann_bff)
    laptop = await stack.ws(ann, ann_bff)
    await bob_ws.wait_until(last_is("online"))

    await phone.close()
    await bob_ws.settle(0.8)
    assert _presence_of(bob_ws, ann)[-1] == "online"

    await laptop.close()
    await bob_ws.wait_until(last_is("offline"))
    assert _presence_of(bob_ws, ann) == ["offline", "online", "offline"]
