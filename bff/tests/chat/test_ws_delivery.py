"""Live delivery over /api/v1/ws: two clients in a room see each other's
messages once, in order, with seq; edits, deletes, reactions, typing and read
markers arrive; sends are idempotent; the sender gets `message.ack`."""

from __future__ import annotations

import asyncio
import uuid


async def test_two_clients_see_each_others_messages_once_in_order(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    a = await stack.ws(alice, bff)
    b = await stack.ws(bob, bff)
    ready = b.of_type("ready")[0]
    assert ready["user"]["id"] == bob.id
    assert room["id"] in [r["id"] for r in ready["rooms"]]

    ids = []
    for n in range(20):
        client_msg_id = f"m-{n}-{uuid.uuid4().hex[:8]}"
        ids.append(client_msg_id)
        await a.send(
            {
                "type": "message.send",
                "room_id": room["id"],
                "body": f"hi {n}",
                "client_msg_id": client_msg_id,
            }
        )
    await b.wait_until(lambda: len(b.created(room["id"])) >= 20)
    await a.wait_until(lambda: len(a.of_type("message.ack")) >= 20)
    await b.settle()
    received = b.created(room["id"])
    assert [m["client_msg_id"] for m in received] == ids  # once each, in order
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 20
    first = received[0]
    assert set(first) == {
        "id",
        "room_id",
        "seq",
        "sender_id",
        "body",
        "client_msg_id",
        "reply_to",
        "created_at",
        "edited_at",
        "reactions",
    }
    assert first["sender_id"] == alice.id
    assert first["body"] == "hi 0"
    acks = a.of_type("message.ack")
    assert [ack["client_msg_id"] for ack in acks] == ids
    assert acks[0]["message"]["id"] == first["id"]
    # The sender's own connection receives the event too (other tabs, ordering).
    assert [m["id"] for m in a.created(room["id"])] == [m["id"] for m in received]


async def test_edits_deletes_reactions_typing_and_read_markers_arrive(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    a = await stack.ws(alice, bff)
    b = await stack.ws(bob, bff)
    http_a, http_b = stack.http(bff, alice), stack.http(bff, bob)

    sent = await http_a.post(
        f"/api/v1/rooms/{room['id']}/messages", json={"body": "hello", "client_msg_id": "c1"}
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()
    await b.wait_for("message.created", lambda f: f["message"]["id"] == message["id"])

    edited = await http_a.patch(f"/api/v1/messages/{message['id']}", json={"body": "hello!"})
    assert edited.status_code == 200
    assert edited.json()["edited_at"]
    update = await b.wait_for("message.updated")
    assert update["message"]["body"] == "hello!"
    assert update["message"]["edited_at"]

    reacted = await http_b.post(f"/api/v1/messages/{message['id']}/reactions", json={"emoji": "👍"})
    assert reacted.status_code == 200, reacted.text
    reaction = await a.wait_for("reaction.updated")
    assert reaction["message_id"] == message["id"]
    assert reaction["added"] is True
    assert reaction["reactions"] == [{"emoji": "👍", "count": 1, "user_ids": [bob.id]}]
    removed = await http_b.request(
        "DELETE", f"/api/v1/messages/{message['id']}/reactions", json={"emoji": "👍"}
    )
    assert removed.status_code == 200
    assert removed.json()["reactions"] == []
    await a.wait_for("reaction.updated", lambda f: f["added"] is False)

    await b.send({"type": "typing", "room_id": room["id"]})
    typing = await a.wait_for("typing")
    assert typing == {"type": "typing", "room_id": room["id"], "user_id": bob.id}

    await b.send({"type": "read", "room_id": room["id"], "seq": message["seq"]})
    read = await a.wait_for("read", lambda f: f["user_id"] == bob.id)
    assert read["room_id"] == room["id"]
    assert read["seq"] == message["seq"]

    deleted = await http_a.delete(f"/api/v1/messages/{message['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["body"] == ""
    gone = await b.wait_for("message.deleted")
    assert gone["message_id"] == message["id"]
    assert gone["seq"] == message["seq"]
    assert gone["room_id"] == room["id"]

    await a.send({"type": "ping"})
    await a.wait_for("pong")


async def test_the_same_client_msg_id_makes_one_message_also_concurrently(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    a = await stack.ws(alice, bff)
    b = await stack.ws(bob, bff)
    frame = {
        "type": "message.send",
        "room_id": room["id"],
        "body": "once",
        "client_msg_id": "dup-1",
    }
    await a.send(frame)
    await a.send(frame)
    await a.wait_until(lambda: len(a.of_type("message.ack")) == 2)
    first, second = a.of_type("message.ack")
    assert first["message"]["id"] == second["message"]["id"]

    # Concurrently over REST, through two BFF connections.
    http = stack.http(bff, alice)
    body = {"body": "racing", "client_msg_id": "dup-2"}
    replies = await asyncio.gather(
        *(http.post(f"/api/v1/rooms/{room['id']}/messages", json=body) for _ in range(8))
    )
    assert sorted(r.status_code for r in replies) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in replies}) == 1

    await b.settle(0.5)
    bodies = [m["body"] for m in b.created(room["id"])]
    assert bodies == ["once", "racing"]


async def test_a_user_added_later_receives_the_room_live(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    b = await stack.ws(bob, bff)
    room = await stack.room(bff, alice, bob, visibility="private", name="secret")
    joined = await b.wait_for("room.updated", lambda f: f["room"]["id"] == room["id"])
    assert joined["member"] == {"user_id": bob.id, "change": "added", "role": "member"}
    await stack.http(bff, alice).post(
        f"/api/v1/rooms/{room['id']}/messages", json={"body": "welcome", "client_msg_id": "w"}
    )
    await b.wait_for("message.created", lambda f: f["message"]["body"] == "welcome")


async def test_senders_and_receivers_on_two_bff_processes(stack):
    first, second = await stack.bff(), await stack.bff()
    alice, bob, carol = await stack.user(), await stack.user(), await stack.user()
    room = await stack.room(first, alice, bob, carol)
    a = await stack.ws(alice, first)
    b = await stack.ws(bob, second)
    c = await stack.ws(carol, second)
    for n in range(10):
        await a.send(
            {
                "type": "message.send",
                "room_id": room["id"],
                "body": f"x{n}",
                "client_msg_id": f"x{n}",
            }
        )
    for client in (b, c):
        await client.wait_until(lambda client=client: len(client.created(room["id"])) >= 10)
    await c.settle()
    for client in (b, c):
        assert [m["body"] for m in client.created(room["id"])] == [f"x{n}" for n in range(10)]
