"""Resume: a client that reconnects with its last seq per room receives exactly
what it missed, in order, once, then live events; also after the chat service
restarts under a live connection, after the BFF restarts, and after a slow
client was cut off (4008)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

from websockets.asyncio.client import connect

# 7 MB: more than the kernel's socket buffers hold for a client that stops reading.
TOTAL = 16 * 50


def durable(client, room_id):
    """(event_seq, type) of the durable frames of a room, in arrival order."""
    return [
        f["event_seq"]
        for f in client.frames
        if "event_seq" in f
        and (f.get("room_id") or f.get("message", {}).get("room_id") or f["room"]["id"]) == room_id
    ]


async def test_reconnect_replays_exactly_the_missed_messages(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    http = stack.http(bff, alice)
    b = await stack.ws(bob, bff)
    await stack.send_many(http, room["id"], "seen", 3)
    await b.wait_until(lambda: len(b.created(room["id"])) == 3)
    last = b.last_seqs()
    await b.close()

    await stack.send_many(http, room["id"], "missed", 50)
    again = await stack.ws(bob, bff, resume=last)
    await again.wait_until(lambda: len(again.created(room["id"])) == 50)
    await stack.send_many(http, room["id"], "live", 2)
    await again.wait_until(lambda: len(again.created(room["id"])) == 52)
    await again.settle()
    bodies = [m["body"] for m in again.created(room["id"])]
    assert bodies == [f"missed {n}" for n in range(50)] + ["live 0", "live 1"]
    seqs = durable(again, room["id"])
    assert seqs == list(range(last[room["id"]] + 1, seqs[-1] + 1))  # no gap, no duplicate


async def test_resume_sent_with_first_frame_auth(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    await stack.send_many(stack.http(bff, alice), room["id"], "old", 5)
    history = await stack.http(bff, bob).get(f"/api/v1/rooms/{room['id']}/messages")
    after = history.json()["messages"][1]["seq"]  # bob has seen "old 0" and "old 1"
    url = bff.url.replace("http://", "ws://") + "/api/v1/ws"
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": bob.token}))
        await ws.send(json.dumps({"type": "resume", "rooms": {room["id"]: after}}))
        frames = []
        while len([f for f in frames if f["type"] == "message.created"]) < 3:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        assert frames[0]["type"] == "ready"
        assert [f["message"]["body"] for f in frames if f["type"] == "message.created"] == [
            "old 2",
            "old 3",
            "old 4",
        ]


async def test_resume_after_the_chat_service_restarts(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    http = stack.http(bff, alice)
    b = await stack.ws(bob, bff)
    await stack.send_many(http, room["id"], "before", 5)
    await b.wait_until(lambda: len(b.created(room["id"])) == 5)

    await stack.restart_chat()
    # Sent while the BFF may not have re-established its stream yet.
    await stack.send_many(http, room["id"], "after", 50)
    await b.wait_until(lambda: len(b.created(room["id"])) == 55, within=20)
    await b.settle(0.5)
    bodies = [m["body"] for m in b.created(room["id"])]
    assert bodies == [f"before {n}" for n in range(5)] + [f"after {n}" for n in range(50)]
    seqs = durable(b, room["id"])
    assert seqs == sorted(set(seqs))
    assert b.closed is None  # the WebSocket itself never dropped


async def test_resume_after_the_bff_restarts(stack):
    first = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(first, alice, bob)
    b = await stack.ws(bob, first)
    await stack.send_many(stack.http(first, alice), room["id"], "seen", 2)
    await b.wait_until(lambda: len(b.created(room["id"])) == 2)
    last = b.last_seqs()
    await first.stop()
    await b.wait_until(lambda: b.closed is not None)

    second = await stack.bff()
    await stack.send_many(stack.http(second, alice), room["id"], "missed", 50)
    again = await stack.ws(bob, second, resume=last)
    await again.wait_until(lambda: len(again.created(room["id"])) == 50)
    await again.settle()
    assert [m["body"] for m in again.created(room["id"])] == [f"missed {n}" for n in range(50)]
    assert durable(again, room["id"]) == list(range(last[room["id"]] + 1, last[room["id"]] + 51))


class RawSocket:
    """A WebSocket client on a bare socket with a tiny receive buffer, so that a
    test decides exactly when (and whether) it reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, token: str) -> RawSocket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        raw = cls(sock)
        while b"\r\n\r\n" not in raw.buffer:
            raw.buffer += await loop.sock_recv(sock, 4096)
        head, _, raw.buffer = raw.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    async def _exactly(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        while len(self.buffer) < size:
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (the server never fragments)."""
        first, second = await self._exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self._exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self._exactly(8))[0]
        return first & 0x0F, await self._exactly(size)

    async def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        header = bytes([0x81, 0x80 | len(payload)]) + mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, header + masked)

    def close(self) -> None:
        self.sock.close()


async def test_a_slow_client_is_closed_with_4008_and_resumes(stack):
    bff = await stack.bff(ws_send_queue=20)
    alice, bob = await stack.user(), await stack.user()
    room = await stack.room(bff, alice, bob)
    slow = await RawSocket.open(bff.settings.http_port, bob.token)
    opcode, payload = await slow.frame()
    assert json.loads(payload)["type"] == "ready"
    await slow.send_text(json.dumps({"type": "resume", "rooms": {}}))
    # The client stops reading while 7 MB of messages are sent.
    http = stack.http(bff, alice)
    await asyncio.gather(
        *(stack.send_many(http, room["id"], f"big{k}", 50, body="x" * 9_000) for k in range(16))
    )
    received, code = [], None
    async with asyncio.timeout(20):
        while True:
            opcode, payload = await slow.frame()
            if opcode == 0x8:  # close
                code = struct.unpack("!H", payload[:2])[0]
                break
            if opcode == 0x1:
                received.append(json.loads(payload))
    slow.close()
    assert code == 4008
    seen = {}
    for frame in received:
        if "event_seq" in frame:
            seen[room["id"]] = max(seen.get(room["id"], 0), frame["event_seq"])
    have = [f["message"]["id"] for f in received if f["type"] == "message.created"]
    assert len(have) < TOTAL

    again = await stack.ws(bob, bff, resume=seen)
    await again.wait_until(lambda: len(have) + len(again.created(room["id"])) >= TOTAL, within=30)
    await again.settle()
    ids = have + [m["id"] for m in again.created(room["id"])]
    assert len(ids) == len(set(ids)) == TOTAL
