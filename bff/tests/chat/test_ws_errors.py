"""Authentication, limits and bad frames on /api/v1/ws: every bad frame gets an
`error` frame and the connection keeps working; failed authentication, idle
clients and abusive clients are closed with the documented codes."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chatmesh.bff.cookies import ACCESS_COOKIE


def ws_url(bff) -> str:
    return bff.url.replace("http://", "ws://") + "/api/v1/ws"


async def closed_with(ws) -> tuple[int, list[dict]]:
    """Read until the server closes; (close code, frames received)."""
    frames = []
    try:
        async with asyncio.timeout(10):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else 1006), frames


async def test_bad_frames_get_error_frames_and_the_connection_keeps_working(stack):
    bff = await stack.bff(ws_max_frame_bytes=4096)
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    a = await stack.ws(alice, bff)
    b = await stack.ws(bob, bff)
    rid = room["id"]

    cases = [
        ("{not json", "invalid_json"),
        (json.dumps([1, 2]), "invalid_frame"),
        (json.dumps({"no": "type"}), "invalid_frame"),
        (json.dumps({"type": "explode"}), "unknown_type"),
        (json.dumps({"type": "message.send", "room_id": rid, "body": "x"}), "invalid_frame"),
        (
            json.dumps({"type": "message.send", "room_id": rid, "body": 5, "client_msg_id": "c"}),
            "invalid_frame",
        ),
        (
            json.dumps({"type": "message.send", "room_id": rid, "body": "", "client_msg_id": "e1"}),
            "body_empty",
        ),
        (
            json.dumps(
                {"type": "message.send", "room_id": rid, "body": " \n ", "client_msg_id": "e2"}
            ),
            "body_empty",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "room_id": rid,
                    "body": "y" * 3000 + "é" * 600,
                    "client_msg_id": "e3",
                }
            ),
            "frame_too_large",
        ),
        (
            json.dumps(
                {
                    "type": "message.send",
                    "room_id": "00000000-0000-0000-0000-000000000000",
                    "body": "hi",
                    "client_msg_id": "e4",
                }
            ),
            "room_not_found",
        ),
        (json.dumps({"type": "resume", "rooms": [rid]}), "invalid_frame"),
        (json.dumps({"type": "resume", "rooms": {rid: -1}}), "invalid_frame"),
        (json.dumps({"type": "read", "room_id": rid, "seq": "3"}), "invalid_frame"),
        (json.dumps({"type": "read", "room_id": rid, "seq": 10_000}), "seq_out_of_range"),
        (json.dumps({"type": "typing"}), "invalid_frame"),
        (json.dumps({"type": "auth", "token": "x.y.z"}), "invalid_token"),
    ]
    for text, code in cases:
        await a.send(text)
        error = await a.wait_for("error", lambda f, c=code: f["code"] == c)
        assert error["message"]
    errors = a.of_type("error")
    assert len(errors) == len(cases)
    send_errors = [e for e in errors if e.get("details", {}).get("client_msg_id") == "e4"]
    assert send_errors  # a failed send names its client_msg_id
    await a.connection.send(b"\x00binary")
    await a.wait_until(lambda: len(a.of_type("error")) == len(cases) + 1)

    # 10,000 characters is the limit (the frame limit is raised for this part).
    big = await stack.bff(ws_max_frame_bytes=64 * 1024)
    c = await stack.ws(alice, big)
    await c.send(
        {"type": "message.send", "room_id": rid, "body": "z" * 10_001, "client_msg_id": "long1"}
    )
    assert (await c.wait_for("error"))["code"] == "body_too_long"
    await c.send(
        {"type": "message.send", "room_id": rid, "body": "z" * 10_000, "client_msg_id": "long2"}
    )
    await c.wait_for("message.ack")

    # Still working after all that.
    await a.send({"type": "message.send", "room_id": rid, "body": "fine", "client_msg_id": "ok"})
    ack = await a.wait_for("message.ack", lambda f: f["client_msg_id"] == "ok")
    assert ack["message"]["body"] == "fine"
    await b.wait_for("message.created", lambda f: f["message"]["body"] == "fine")
    assert a.closed is None


async def test_rate_limit_sends_error_frames_then_recovers(stack):
    bff = await stack.bff(ws_rate_per_second=5, ws_rate_burst=5)
    alice = await stack.user()
    a = await stack.ws(alice, bff)
    for _ in range(15):
        await a.send({"type": "ping"})
    await a.wait_until(lambda: len(a.of_type("pong")) + len(a.of_type("error")) >= 15)
    limited = [e for e in a.of_type("error") if e["code"] == "rate_limited"]
    assert limited
    assert len(a.of_type("pong")) < 15
    await asyncio.sleep(1.2)
    before = len(a.of_type("pong"))
    await a.send({"type": "ping"})
    await a.wait_until(lambda: len(a.of_type("pong")) == before + 1)
    assert a.closed is None


async def test_authentication(stack):
    bff = await stack.bff(ws_auth_timeout=0.5)
    alice = await stack.user()
    url = ws_url(bff)

    # First-frame token.
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": alice.token}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        assert ready["user"]["id"] == alice.id

    # The session cookie (from an allowed origin, or no Origin at all).
    cookie = {"Cookie": f"{ACCESS_COOKIE}={alice.token}"}
    async with connect(url, additional_headers=cookie, origin=bff.url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
    async with connect(url, additional_headers=cookie, origin="https://evil.example") as ws:
        code, frames = await closed_with(ws)
        assert code == 4003
        assert frames[-1]["code"] == "origin_not_allowed"

    # Failures: bad token, a first frame that is not `auth`, silence.
    for first, expected in (
        ({"type": "auth", "token": "not-a-jwt"}, "invalid_token"),
        ({"type": "ping"}, "unauthenticated"),
        ("garbage", "invalid_json"),
    ):
        async with connect(url) as ws:
            await ws.send(first if isinstance(first, str) else json.dumps(first))
            code, frames = await closed_with(ws)
            assert code == 4001
            assert frames[-1]["code"] == expected
    async with connect(url) as ws:
        code, frames = await closed_with(ws)
        assert code == 4001
        assert frames[-1]["code"] == "auth_timeout"


async def test_server_pings_and_idle_clients_are_reaped(stack):
    bff = await stack.bff(ws_ping_interval=0.2, ws_idle_timeout=1.0)
    alice = await stack.user()
    a = await stack.ws(alice, bff)
    await a.wait_for("ping")
    # Answering keeps it alive ...
    for _ in range(6):
        await a.send({"type": "pong"})
        await asyncio.sleep(0.25)
    assert a.closed is None
    # ... silence does not.
    await a.wait_until(lambda: a.closed is not None, within=5)
    assert a.closed[0] == 4000
