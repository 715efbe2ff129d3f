"""The chat REST routes of the contract (§6): rooms, membership, DMs, history
cursors, messages, reactions, read markers, search; authorization (private rooms
are invisible to non-members); bad input gets a clear error in the one shape."""

from __future__ import annotations

import uuid

from openapi_spec_validator import validate


def error_code(response) -> str:
    return response.json()["error"]["code"]


async def test_rooms_dms_history_and_search(stack):
    bff = await stack.bff()
    alice, bob, carol = await stack.user(), await stack.user(), await stack.user()
    a, b = stack.http(bff, alice), stack.http(bff, bob)

    created = await a.post(
        "/api/v1/rooms", json={"name": "lounge", "visibility": "public", "topic": "chit-chat"}
    )
    assert created.status_code == 201, created.text
    room = created.json()
    assert room["type"] == "group"
    assert room["visibility"] == "public"
    assert room["topic"] == "chit-chat"
    assert room["membership"]["role"] == "owner"

    joined = await b.post(f"/api/v1/rooms/{room['id']}/join")
    assert joined.status_code == 200, joined.text
    assert joined.json()["membership"]["role"] == "member"
    got = await b.get(f"/api/v1/rooms/{room['id']}")
    assert got.status_code == 200
    assert got.json()["member_count"] == 2

    sent = []
    for n in range(7):
        reply = await a.post(
            f"/api/v1/rooms/{room['id']}/messages",
            json={
                "body": f"note {n} about penguins" if n == 3 else f"note {n}",
                "client_msg_id": f"n{n}",
            },
        )
        assert reply.status_code == 201, reply.text
        sent.append(reply.json())
    reply_msg = await b.post(
        f"/api/v1/rooms/{room['id']}/messages",
        json={"body": "re", "client_msg_id": "r1", "reply_to": sent[0]["id"]},
    )
    assert reply_msg.json()["reply_to"] == sent[0]["id"]

    newest = await b.get(f"/api/v1/rooms/{room['id']}/messages", params={"limit": 3})
    page = newest.json()
    assert [m["body"] for m in page["messages"]] == ["note 5", "note 6", "re"]
    assert page["has_more"] is True
    assert page["latest_seq"] == reply_msg.json()["seq"]
    older = await b.get(
        f"/api/v1/rooms/{room['id']}/messages",
        params={"before_seq": page["messages"][0]["seq"], "limit": 3},
    )
    assert [m["body"] for m in older.json()["messages"]] == [
        "note 2",
        "note 3 about penguins",
        "note 4",
    ]
    newer = await b.get(
        f"/api/v1/rooms/{room['id']}/messages", params={"after_seq": sent[4]["seq"]}
    )
    assert [m["body"] for m in newer.json()["messages"]] == ["note 5", "note 6", "re"]
    assert newer.json()["has_more"] is False

    rooms = await a.get("/api/v1/rooms")
    assert rooms.status_code == 200
    (listed,) = [r for r in rooms.json()["rooms"] if r["id"] == room["id"]]
    assert listed["membership"]["unread_count"] == 1  # bob's reply
    assert listed["last_message"]["body"] == "re"
    latest = reply_msg.json()["seq"]
    read = await a.post(f"/api/v1/rooms/{room['id']}/read", json={"seq": latest})
    assert read.status_code == 200, read.text
    assert read.json() == {"last_read_seq": latest, "unread_count": 0}

    found = await b.get("/api/v1/search", params={"q": "penguins"})
    assert found.status_code == 200, found.text
    (hit,) = found.json()["results"]
    assert hit["message"]["id"] == sent[3]["id"]
    assert any(span["match"] for span in hit["highlight"])
    scoped = await b.get("/api/v1/search", params={"q": "penguins", "room_id": room["id"]})
    assert len(scoped.json()["results"]) == 1

    dm = await a.post("/api/v1/dms", json={"user_ids": [bob.id]})
    assert dm.status_code == 201, dm.text
    assert dm.json()["created"] is True
    assert dm.json()["room"]["type"] == "direct"
    assert sorted(dm.json()["room"]["member_ids"]) == sorted([alice.id, bob.id])
    again = await b.post("/api/v1/dms", json={"user_ids": [alice.id]})
    assert again.status_code == 200
    assert again.json()["room"]["id"] == dm.json()["room"]["id"]
    group = await a.post("/api/v1/dms", json={"user_ids": [bob.id, carol.id]})
    assert group.status_code == 201
    assert len(group.json()["room"]["member_ids"]) == 3

    left = await b.post(f"/api/v1/rooms/{room['id']}/leave")
    assert left.status_code == 204
    assert (await b.get(f"/api/v1/rooms/{room['id']}/messages")).status_code == 403


async def test_private_rooms_are_invisible_to_non_members(stack):
    bff = await stack.bff()
    alice, bob, mallory = await stack.user(), await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob, visibility="private", name="secret")
    await stack.send_many(stack.http(bff, alice), room["id"], "secret plans", 2)
    m = stack.http(bff, mallory)
    rid = room["id"]
    for response in (
        await m.get(f"/api/v1/rooms/{rid}"),
        await m.get(f"/api/v1/rooms/{rid}/messages"),
        await m.post(f"/api/v1/rooms/{rid}/messages", json={"body": "hi", "client_msg_id": "x"}),
        await m.post(f"/api/v1/rooms/{rid}/join"),
        await m.post(f"/api/v1/rooms/{rid}/read", json={"seq": 1}),
    ):
        assert response.status_code == 404, response.text
        assert error_code(response) == "room_not_found"
    searched = await m.get("/api/v1/search", params={"q": "secret"})
    assert searched.status_code == 200
    assert searched.json()["results"] == []
    scoped = await m.get("/api/v1/search", params={"q": "secret", "room_id": rid})
    assert scoped.status_code in (200, 404)
    if scoped.status_code == 200:
        assert scoped.json()["results"] == []
    # Mallory's WebSocket knows nothing of the room either.
    ws = await stack.ws(mallory, bff)
    assert rid not in [r["id"] for r in ws.of_type("ready")[0]["rooms"]]
    await ws.send({"type": "resume", "rooms": {rid: 0}})
    error = await ws.wait_for("error")
    assert error["code"] == "room_not_found"
    await ws.send({"type": "typing", "room_id": rid})
    await ws.wait_until(lambda: len(ws.of_type("error")) == 2)
    await stack.send_many(stack.http(bff, alice), rid, "more secrets", 1)
    await ws.settle()
    assert ws.of_type("message.created") == []
    # Adding members of a private room takes an owner or admin.
    b = stack.http(bff, bob)
    added = await b.post(f"/api/v1/rooms/{rid}/members", json={"user_id": mallory.id})
    assert added.status_code == 403
    # Unauthenticated callers get 401.
    anonymous = stack.http(bff)
    assert (await anonymous.get("/api/v1/rooms")).status_code == 401


async def test_a_removed_member_stops_receiving_at_once(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob, visibility="private", name="team")
    a = await stack.ws(alice, bff)
    b = await stack.ws(bob, bff)
    http_a = stack.http(bff, alice)
    await stack.send_many(http_a, room["id"], "before", 1)
    await b.wait_until(lambda: len(b.created(room["id"])) == 1)

    removed = await http_a.delete(f"/api/v1/rooms/{room['id']}/members/{bob.id}")
    assert removed.status_code == 204, removed.text
    change = await b.wait_for(
        "room.updated", lambda f: f.get("member", {}).get("user_id") == bob.id
    )
    assert change["member"]["change"] == "removed"
    await stack.send_many(http_a, room["id"], "after", 3)
    await a.wait_until(lambda: len(a.created(room["id"])) == 4)
    await b.settle()
    assert [m["body"] for m in b.created(room["id"])] == ["before 0"]
    # Nor can he type there, resume it, or read it over REST.
    await b.send({"type": "resume", "rooms": {room["id"]: 0}})
    assert (await b.wait_for("error"))["code"] == "room_not_found"
    history = await stack.http(bff, bob).get(f"/api/v1/rooms/{room['id']}/messages")
    assert history.status_code == 404


async def test_bad_input_over_rest(stack):
    bff = await stack.bff(max_body_bytes=16 * 1024)
    alice = await stack.user()
    a = stack.http(bff, alice)
    room = (await a.post("/api/v1/rooms", json={"name": "r"})).json()
    rid = room["id"]
    messages = f"/api/v1/rooms/{rid}/messages"

    async def send(body, client_msg_id=None):
        return await a.post(
            messages, json={"body": body, "client_msg_id": client_msg_id or uuid.uuid4().hex}
        )

    for body, code in (
        ("", "body_empty"),
        ("   \n\t ", "body_empty"),
        ("x" * 10_001, "body_too_long"),
    ):
        response = await send(body)
        assert response.status_code == 422, response.text
        assert error_code(response) == code
    assert (await send("x" * 10_000)).status_code == 201
    bad_json = await a.post(
        messages, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert error_code(bad_json) == "invalid_json"
    wrong_type = await a.post(messages, json={"body": 5, "client_msg_id": "a"})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["details"]["fields"][0]["field"] == "body"
    missing = await a.post(messages, json={"body": "no id"})
    assert error_code(missing) == "validation_failed"
    too_big = await a.post(messages, json={"body": "x" * 20_000, "client_msg_id": "big"})
    assert too_big.status_code == 413
    bad_id = await send("hi", client_msg_id="has spaces!")
    assert bad_id.status_code == 422

    message = (await send("react to me")).json()
    for emoji in ("notanemoji", "👍👍", "a"):
        response = await a.post(
            f"/api/v1/messages/{message['id']}/reactions", json={"emoji": emoji}
        )
        assert response.status_code == 422, response.text
        assert error_code(response) == "invalid_emoji"
    ok = await a.post(f"/api/v1/messages/{message['id']}/reactions", json={"emoji": "👩‍💻"})
    assert ok.status_code == 200

    unknown = str(uuid.uuid4())
    for response in (
        await a.get(f"/api/v1/rooms/{unknown}"),
        await a.get(f"/api/v1/rooms/{unknown}/messages"),
        await a.patch(f"/api/v1/messages/{unknown}", json={"body": "x"}),
        await a.delete(f"/api/v1/messages/{unknown}"),
        await a.post(f"/api/v1/messages/{unknown}/reactions", json={"emoji": "👍"}),
        await a.get("/api/v1/rooms/not-a-uuid"),
    ):
        assert response.status_code == 404, response.text

    latest = (await a.get(messages)).json()["latest_seq"]
    for params in (
        {"before_seq": latest + 5},
        {"after_seq": latest + 1},
        {"before_seq": -1},
        {"limit": 0},
        {"limit": 101},
        {"after_seq": "abc"},
    ):
        response = await a.get(messages, params=params)
        assert response.status_code == 422, (params, response.text)
    out_of_range = await a.get(messages, params={"after_seq": latest + 1})
    assert error_code(out_of_range) == "seq_out_of_range"
    read = await a.post(f"/api/v1/rooms/{rid}/read", json={"seq": latest + 100})
    assert read.status_code == 422
    empty_search = await a.get("/api/v1/search", params={"q": "  "})
    assert empty_search.status_code == 422
    bad_room = await a.post("/api/v1/rooms", json={"name": "", "visibility": "secret"})
    assert bad_room.status_code == 422
    # The server is still fine.
    assert (await send("still working")).status_code == 201


async def test_openapi_documents_the_chat_routes(stack):
    bff = await stack.bff()
    async with bff.client() as http:
        document = (await http.get("/api/openapi.json")).json()
    paths = document["paths"]
    for path, method in (
        ("/api/v1/rooms", "get"),
        ("/api/v1/rooms", "post"),
        ("/api/v1/rooms/{room_id}", "get"),
        ("/api/v1/rooms/{room_id}/join", "post"),
        ("/api/v1/rooms/{room_id}/leave", "post"),
        ("/api/v1/rooms/{room_id}/members", "post"),
        ("/api/v1/rooms/{room_id}/members/{user_id}", "delete"),
        ("/api/v1/dms", "post"),
        ("/api/v1/rooms/{room_id}/messages", "get"),
        ("/api/v1/rooms/{room_id}/messages", "post"),
        ("/api/v1/messages/{message_id}", "patch"),
        ("/api/v1/messages/{message_id}", "delete"),
        ("/api/v1/messages/{message_id}/reactions", "post"),
        ("/api/v1/messages/{message_id}/reactions", "delete"),
        ("/api/v1/rooms/{room_id}/read", "post"),
        ("/api/v1/search", "get"),
    ):
        assert method in paths[path], (path, method)
    message = document["components"]["schemas"]["ChatMessage"]
    assert set(message["properties"]) == {
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
    validate(document)
