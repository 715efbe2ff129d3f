"""`GET /api/v1/ws`: authentication, the `ready` frame, and the client frame loop
(the protocol is in docs/websocket.md).

A bad frame (malformed JSON, unknown type, bad fields, too large, over the rate
limit) gets an `error` frame and the connection keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import grpc
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.websockets import WebSocket

from chatmesh.auth.v1 import auth_pb2
from chatmesh.bff.cookies import ACCESS_COOKIE
from chatmesh.bff.settings import BffSettings, origin_of
from chatmesh.bff.state import Backends, backends
from chatmesh.bff.ws.connection import (
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    Connection,
    Limits,
    rpc_error_frame,
)
from chatmesh.bff.ws.frames import Frame, encode, error_frame, message_json, room_json
from chatmesh.bff.ws.hub import StreamError
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.common.errors import Unauthenticated, Unavailable
from chatmesh.common.grpc.client import call_metadata
from chatmesh.common.logging import get_logger
from chatmesh.common.tokens import AccessClaims

log = get_logger("chatmesh.bff.ws")

PATH = "/api/v1/ws"
# Rooms listed in `ready` (the most recently active first).
READY_ROOMS = 200
# Rooms one `resume` may name.
MAX_RESUME_ROOMS = 1000
# Frames refused in a row (over the rate limit) before the connection is closed.
MAX_REFUSED = 200


class FrameError(Exception):
    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.frame = error_frame(code, message, **details)


def _string(frame: Frame, name: str, *, required: bool = True, max_length: int = 100) -> str:
    value = frame.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise FrameError("invalid_frame", f"`{name}` must be a non-empty string", field=name)
    if len(value) > max_length:
        raise FrameError("invalid_frame", f"`{name}` is too long", field=name)
    return value


def _seq(frame: Frame, name: str) -> int:
    value = frame.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameError("invalid_frame", f"`{name}` must be an integer >= 0", field=name)
    return value


def _parse(text: str) -> Frame:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("invalid_frame", 'a frame is a JSON object with a string "type"')
    return frame


class WebSocketEndpoint:
    def __init__(self, settings: BffSettings) -> None:
        self.settings = settings
        self.allowed_origins = {settings.public_origin, *settings.cors_origins}
        self.limits = Limits(
            send_queue=settings.ws_send_queue,
            rate_per_second=settings.ws_rate_per_second,
            rate_burst=settings.ws_rate_burst,
            max_replay=settings.ws_max_replay,
            resume_wait=settings.ws_resume_wait,
            timeout=settings.backend_timeout,
        )

    # --- opening ---------------------------------------------------------------

    def _origin_allowed(self, headers: Headers, scheme: str) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser
        origin = origin.strip().lower()
        host = headers.get("host")
        own = origin_of(f"{'https' if scheme == 'wss' else 'http'}://{host}") if host else None
        return origin in self.allowed_origins or origin == own

    async def _close(self, websocket: WebSocket, code: int, frame: Frame) -> None:
        with contextlib.suppress(Exception):
            await websocket.send_text(encode(frame))
            await websocket.close(code, frame.get("message", "")[:120])

    async def _first_frame_token(self, websocket: WebSocket) -> str | None:
        try:
            async with asyncio.timeout(self.settings.ws_auth_timeout):
                message = await websocket.receive()
        except TimeoutError:
            await self._close(
                websocket,
                CLOSE_UNAUTHENTICATED,
                error_frame("auth_timeout", "send an `auth` frame first"),
            )
            return None
        text = message.get("text")
        if message["type"] != "websocket.receive" or not isinstance(text, str):
            return None
        try:
            frame = _parse(text)
            if frame["type"] != "auth":
                raise FrameError("unauthenticated", "the first frame must be `auth`")
            return _string(frame, "token", max_length=4096)
        except FrameError as error:
            await self._close(websocket, CLOSE_UNAUTHENTICATED, error.frame)
            return None

    async def _authenticate(self, websocket: WebSocket, found: Backends) -> AccessClaims | None:
        headers = websocket.headers
        token: str | None = None
        header = headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip() or None
        if token is None:
            token = cookie_parser(headers.get("cookie", "")).get(ACCESS_COOKIE) or None
            if token is not None and not self._origin_allowed(headers, websocket.url.scheme):
                await self._close(
                    websocket,
                    CLOSE_FORBIDDEN,
                    error_frame("origin_not_allowed", "connections from this origin are refused"),
                )
                return None
        if token is None:
            token = await self._first_frame_token(websocket)
            if token is None:
                return None
        try:
            return await found.verifier.verify(token)
        except Unauthenticated as error:
            code = (
                error.code if error.code in ("token_expired", "invalid_token") else "invalid_token"
            )
            await self._close(websocket, CLOSE_UNAUTHENTICATED, error_frame(code, error.message))
            return None

    async def _ready(self, connection: Connection, found: Backends) -> Frame:
        metadata = call_metadata(access_token=connection.access_token)
        timeout = self.settings.backend_timeout
        account, rooms = await asyncio.gather(
            found.auth.GetAccount(auth_pb2.GetAccountRequest(), timeout=timeout, metadata=metadata),
            found.chat.ListRooms(
                api.ListRoomsRequest(page_size=READY_ROOMS), timeout=timeout, metadata=metadata
            ),
        )
        user = {
            "id": account.account.id,
            "username": account.account.username,
            "display_name": account.account.display_name,
        }
        return {"type": "ready", "user": user, "rooms": [room_json(r) for r in rooms.rooms]}

    # --- the connection --------------------------------------------------------

    async def handle(self, websocket: WebSocket) -> None:
        found = backends(websocket.scope)
        await websocket.accept()
        claims = await self._authenticate(websocket, found)
        if claims is None:
            return
        connection = Connection(
            websocket=websocket,
            hub=found.chat_hub,
            chat=found.chat,
            user_id=claims.user_id,
            access_token=claims.token,
            limits=self.limits,
        )
        found.chat_hub.register(connection)
        writer = asyncio.create_task(connection.writer())
        connection.writer_task = writer
        reader: asyncio.Task[None] | None = None
        presence_id: str | None = None
        try:
            try:
                await found.chat_hub.subscribe(connection.subscriber_id, claims.token)
                ready = await self._ready(connection, found)
            except StreamError as error:
                await self._close(
                    websocket, CLOSE_UNAUTHENTICATED, error_frame(error.code, error.message)
                )
                return
            except (Unavailable, grpc.aio.AioRpcError):
                frame = error_frame("service_unavailable", "chat is unavailable; try again")
                await self._close(websocket, CLOSE_TRY_AGAIN, frame)
                return
            connection.send(ready)
            # Heartbeats and frames for users (presence) only after `ready`.
            found.connections.add(connection)
            connection.spawn(connection.release_later())
            presence_id = await self._open_presence(connection, found)
            reader = asyncio.create_task(self._read(connection, found, presence_id))
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            log.exception("websocket failed")
            connection.fail(CLOSE_INTERNAL, "internal error")
        finally:
            for task in (reader, writer):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(
                *(t for t in (reader, writer) if t is not None), return_exceptions=True
            )
            await connection.cancel_tasks()
            found.connections.remove(connection)
            await found.chat_hub.unregister(connection)
            if presence_id is not None:
                with contextlib.suppress(Exception):
                    await found.presence_hub.close(presence_id)

    async def _open_presence(self, connection: Connection, found: Backends) -> str | None:
        """Report the connection to presence; `presence` frames come through it."""

        async def send(frame: Frame) -> None:
            connection.send(frame)

        async def lost() -> None:
            connection.fail(CLOSE_UNAUTHENTICATED, "presence lost: sign in again")

        try:
            async with asyncio.timeout(self.settings.backend_timeout):
                return await found.presence_hub.open(
                    user_id=connection.user_id,
                    access_token=connection.access_token,
                    send=send,
                    on_lost=lost,
                )
        except Exception as error:  # presence is best effort; chat goes on
            log.info("presence unavailable", error=type(error).__name__)
            return None

    async def _read(self, connection: Connection, found: Backends, presence_id: str | None) -> None:
        websocket = connection.websocket
        max_bytes = self.settings.ws_max_frame_bytes
        while connection.close_code is None:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            connection.last_seen = time.monotonic()
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                size = len(raw)
            else:
                size = len(text.encode("utf-8")) if len(text) * 4 > max_bytes else len(text)
            if size > max_bytes:
                connection.send(
                    error_frame(
                        "frame_too_large",
                        f"frames are limited to {max_bytes} bytes",
                        max_bytes=max_bytes,
                    )
                )
                continue
            if text is None:
                connection.send(error_frame("invalid_frame", "frames are JSON text, not binary"))
                continue
            if not connection.bucket.allow():
                if connection.bucket.refused > MAX_REFUSED:
                    connection.fail(CLOSE_RATE_LIMITED, "rate limit exceeded")
                    return
                connection.send(
                    error_frame(
                        "rate_limited",
                        "too many frames; slow down (this frame was dropped)",
                        retry_after=1,
                    )
                )
                continue
            try:
                frame = _parse(text)
                kind = frame["type"]
                if kind != "ping" and presence_id is not None:
                    found.presence_hub.touch(presence_id)
                await self._handle(connection, found, kind, frame)
            except FrameError as error:
                connection.send(error.frame)
            except grpc.aio.AioRpcError as error:
                connection.send(rpc_error_frame(error))
            except Unavailable:
                connection.send(error_frame("service_unavailable", "chat is unavailable"))

    async def _handle(
        self, connection: Connection, found: Backends, kind: str, frame: Frame
    ) -> None:
        if kind == "ping":
            connection.send({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "resume":
            await connection.resume(self._resume_rooms(frame))
        elif kind == "message.send":
            await connection.release()
            await self._send_message(connection, found, frame)
        elif kind == "typing":
            room_id = _string(frame, "room_id")
            if room_id not in connection.sent:
                raise FrameError("room_not_found", "not a room of yours", room_id=room_id)
            await found.chat_hub.typing(connection.subscriber_id, room_id)
        elif kind == "read":
            room_id = _string(frame, "room_id")
            seq = _seq(frame, "seq")
            try:
                await found.chat.MarkRead(
                    api.MarkReadRequest(room_id=room_id, seq=seq),
                    timeout=self.settings.backend_timeout,
                    metadata=call_metadata(access_token=connection.access_token),
                )
            except grpc.aio.AioRpcError as error:
                connection.send(rpc_error_frame(error, room_id=room_id))
        elif kind == "auth":
            await self._reauthenticate(connection, found, frame)
        else:
            raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}", type=kind[:40])

    def _resume_rooms(self, frame: Frame) -> dict[str, int]:
        rooms = frame.get("rooms")
        if not isinstance(rooms, dict) or len(rooms) > MAX_RESUME_ROOMS:
            raise FrameError(
                "invalid_frame",
                f"`rooms` must be an object of up to {MAX_RESUME_ROOMS} room ids → last seq",
                field="rooms",
            )
        parsed: dict[str, int] = {}
        for room_id, seq in rooms.items():
            if not room_id or len(room_id) > 100:
                raise FrameError("invalid_frame", "bad room id in `rooms`", field="rooms")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise FrameError(
                    "invalid_frame", "each last seq must be an integer >= 0", field="rooms"
                )
            parsed[room_id] = seq
        return parsed

    async def _send_message(self, connection: Connection, found: Backends, frame: Frame) -> None:
        client_msg_id = _string(frame, "client_msg_id")
        room_id = _string(frame, "room_id")
        body = frame.get("body")
        if not isinstance(body, str):
            raise FrameError(
                "invalid_frame",
                "`body` must be a string",
                field="body",
                client_msg_id=client_msg_id,
            )
        reply_to = _string(frame, "reply_to", required=False)
        try:
            reply = await found.chat.SendMessage(
                api.SendMessageRequest(
                    room_id=room_id, body=body, client_msg_id=client_msg_id, reply_to=reply_to
                ),
                timeout=self.settings.backend_timeout,
                metadata=call_metadata(access_token=connection.access_token),
            )
        except grpc.aio.AioRpcError as error:
            connection.send(rpc_error_frame(error, client_msg_id=client_msg_id, room_id=room_id))
            return
        connection.send(
            {
                "type": "message.ack",
                "client_msg_id": client_msg_id,
                "message": message_json(reply.message),
            }
        )

    async def _reauthenticate(self, connection: Connection, found: Backends, frame: Frame) -> None:
        """A fresh access token for an open connection (before the old one expires)."""
        token = _string(frame, "token", max_length=4096)
        try:
            claims = await found.verifier.verify(token)
        except Unauthenticated as error:
            raise FrameError("invalid_token", error.message) from None
        if claims.user_id != connection.user_id:
            raise FrameError("user_mismatch", "the token is for another user")
        connection.access_token = claims.token
