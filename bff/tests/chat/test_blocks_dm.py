"""Blocks end to end over HTTP: a real BFF, auth, user and chat service (the
chat service asks the user service). Ann blocks Bob → Bob can neither open
their DM nor post in it (403 in the one error shape, also over the WebSocket);
the block is lifted → both work again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from chatmesh.services.user.app import UserServer

from .conftest import Stack, profile_exists


def _assert_blocked(reply: httpx.Response) -> None:
    assert reply.status_code == 403, reply.text
    error = reply.json()["error"]
    assert error["code"] == "blocked"
    assert "blocked" in error["message"]


async def _post(http: httpx.AsyncClient, room_id: str, body: str) -> httpx.Response:
    return await http.post(
        f"/api/v1/rooms/{room_id}/messages",
        json={"body": body, "client_msg_id": uuid.uuid4().hex},
    )


async def test_a_block_closes_the_dm_until_it_is_lifted(
    stack: Stack, user_server: UserServer
) -> None:
    stack.user_address = f"127.0.0.1:{user_server.port}"
    await stack.restart_chat()
    bff = await stack.bff(user_address=stack.user_address)
    ann, bob = await stack.user(), await stack.user()
    ann_http, bob_http = stack.http(bff, ann), stack.http(bff, bob)
    await profile_exists(ann_http, bob)

    opened = await bob_http.post("/api/v1/dms", json={"user_ids": [ann.id]})
    assert opened.status_code == 201, opened.text
    dm: dict[str, Any] = opened.json()["room"]
    assert (await _post(bob_http, dm["id"], "hi ann")).status_code == 201

    blocked = await ann_http.post("/api/v1/blocks", json={"user_id": bob.id})
    assert blocked.status_code in (200, 201), blocked.text
    _assert_blocked(await bob_http.post("/api/v1/dms", json={"user_ids": [ann.id]}))
    _assert_blocked(await _post(bob_http, dm["id"], "are you there?"))
    _assert_blocked(await _post(ann_http, dm["id"], "go away"))
    bob_ws = await stack.ws(bob, bff)
    await bob_ws.send(
        {"type": "message.send", "room_id": dm["id"], "client_msg_id": "ws-1", "body": "hello?"}
    )
    refused = await bob_ws.wait_for("error", lambda f: f["details"].get("client_msg_id") == "ws-1")
    assert refused["code"] == "blocked"
    history = await ann_http.get(f"/api/v1/rooms/{dm['id']}/messages")
    assert [m["body"] for m in history.json()["messages"]] == ["hi ann"]

    lifted = await ann_http.delete(f"/api/v1/blocks/{bob.id}")
    assert lifted.status_code in (200, 204), lifted.text
    again = await bob_http.post("/api/v1/dms", json={"user_ids": [ann.id]})
    assert again.status_code == 200, again.text
    assert again.json()["room"]["id"] == dm["id"]
    assert (await _post(bob_http, dm["id"], "sorry")).status_code == 201
    assert (await _post(ann_http, dm["id"], "ok")).status_code == 201


async def test_dms_are_refused_while_the_user_service_is_down(
    stack: Stack, user_server: UserServer
) -> None:
    stack.user_address = f"127.0.0.1:{user_server.port}"
    await stack.restart_chat()
    bff = await stack.bff(user_address=stack.user_address)
    ann, bob = await stack.user(), await stack.user()
    bob_http = stack.http(bff, bob)
    opened = await bob_http.post("/api/v1/dms", json={"user_ids": [ann.id]})
    assert opened.status_code == 201, opened.text
    await user_server.stop(drain=0.0, grace=0.5)

    reply = await _post(bob_http, opened.json()["room"]["id"], "is it safe?")
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "service_unavailable"
    reply = await bob_http.post("/api/v1/dms", json={"user_ids": [ann.id]})
    assert reply.status_code == 503, reply.text
