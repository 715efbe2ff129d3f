"""This BFF process's ONE StreamRoomEvents stream to the chat service, fanned out
to the local WebSocket connections (docs/websocket.md, ARCHITECTURE §5).

The chat service sends each room event once per stream; the hub keeps the index
room → local subscribers (from the Subscribed / Unsubscribed answers, which the
stream orders with the events) and hands every subscriber of the room the
event's frame, encoded once. Membership changes come on the same ordered
stream, so a removed member's connection is dropped from the index before the
room's next event is dispatched.

When the stream breaks (the chat service restarts or sheds a slow reader), the
hub reconnects with backoff and asks every subscriber to resync: subscribe
again and replay its gap from the room logs (chatmesh.bff.ws.connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Protocol

import grpc

from chatmesh.bff.ws.frames import encode, event_frame
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.errors import Unavailable
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.ws.hub")

Request = api.StreamRoomEventsRequest
Response = api.StreamRoomEventsResponse
Subscribed = Response.Subscribed
Unsubscribed = Response.Unsubscribed

# A stream that lived this long resets the reconnect backoff.
STABLE_STREAM_SECONDS = 5.0


class StreamError(Exception):
    """A Subscribe / Unsubscribe the chat service refused as a whole."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Subscriber(Protocol):
    """What the hub needs of a connection. Callbacks run in the hub's reader, in
    stream order, and must not block."""

    @property
    def subscriber_id(self) -> str: ...

    def on_event(self, room_id: str, seq: int, frame: str) -> None:
        """A room event (seq 0: ephemeral) as its encoded frame."""

    def on_subscribed(self, cursors: dict[str, int], *, membership: bool) -> None:
        """Now subscribed to these rooms; their events follow each seq."""

    def on_unsubscribed(self, room_ids: list[str], *, membership_ended: bool) -> None:
        """No more events of these rooms."""

    def on_stream_error(self, code: str, message: str) -> None:
        """A request of this subscriber failed (e.g. typing in a room not subscribed)."""

    def on_stream_lost(self) -> None:
        """The stream broke; events stop until `on_stream_restored`."""

    def on_stream_restored(self) -> None:
        """A new stream is up: subscribe again and replay what was missed."""


class ChatStreamHub:
    def __init__(
        self,
        stub: chat_service_pb2_grpc.ChatServiceStub,
        *,
        timeout: float = 5.0,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 2.0,
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._subscribers: dict[str, Subscriber] = {}
        self._rooms: dict[str, set[str]] = {}
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._request_ids = itertools.count(1)
        self._call: grpc.aio.StreamStreamCall[Request, Response] | None = None
        self._ready = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0
        self.events_received = 0
        # Told of every MemberChanged event (presence follows room co-members).
        self.on_member_changed: Callable[[pb.RoomEvent], None] | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-stream-hub")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_pending()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def connection_count(self) -> int:
        return len(self._subscribers)

    # --- the connections' API --------------------------------------------------

    def register(self, subscriber: Subscriber) -> None:
        self._subscribers[subscriber.subscriber_id] = subscriber

    async def unregister(self, subscriber: Subscriber) -> None:
        """The connection is gone: forget it here and at the chat service."""
        sid = subscriber.subscriber_id
        self._subscribers.pop(sid, None)
        for room_id in [r for r, ids in self._rooms.items() if sid in ids]:
            self._drop(room_id, sid)
        if self.connected:
            with contextlib.suppress(Unavailable):
                await self._write(Request(detach=Request.Detach(subscriber_id=sid)))

    async def subscribe(
        self, subscriber_id: str, access_token: str, *, all_rooms: bool = True
    ) -> Subscribed:
        """Attach the subscriber and subscribe it to all its user's rooms (the
        cursors reach the subscriber through `on_subscribed` first)."""
        request_id = f"s{next(self._request_ids)}"
        answer = await self._ask(
            request_id,
            Request(
                subscribe=Request.Subscribe(
                    request_id=request_id,
                    subscriber_id=subscriber_id,
                    access_token=access_token,
                    all_rooms=all_rooms,
                )
            ),
        )
        return answer.subscribed

    async def typing(self, subscriber_id: str, room_id: str) -> None:
        await self._write(
            Request(typing=Request.SendTyping(subscriber_id=subscriber_id, room_id=room_id))
        )

    # --- internals -------------------------------------------------------------

    async def _ask(self, request_id: str, request: Request) -> Response:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._write(request)
            async with asyncio.timeout(self._timeout):
                answer = await future
        except TimeoutError:
            raise Unavailable("the chat service did not answer in time") from None
        finally:
            self._pending.pop(request_id, None)
        if answer.WhichOneof("item") == "error":
            raise StreamError(answer.error.code, answer.error.message)
        return answer

    async def _write(self, request: Request) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._ready.wait()
        except TimeoutError:
            raise Unavailable("the chat service is unavailable") from None
        call = self._call
        if call is None:
            raise Unavailable("the chat service is unavailable")
        try:
            async with self._write_lock:
                await call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError) as error:
            raise Unavailable("the chat stream broke") from error

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable("the chat stream broke"))

    def _drop(self, room_id: str, subscriber_id: str) -> None:
        ids = self._rooms.get(room_id)
        if ids is not None:
            ids.discard(subscriber_id)
            if not ids:
                del self._rooms[room_id]

    async def _run(self) -> None:
        delay = self._reconnect_delay
        first = True
        loop = asyncio.get_running_loop()
        while not self._closing:
            call = self._stub.StreamRoomEvents(wait_for_ready=True)
            self._call = call
            self._ready.set()
            if not first:
                self.reconnects += 1
                for subscriber in list(self._subscribers.values()):
                    subscriber.on_stream_restored()
            first = False
            started = loop.time()
            try:
                async for response in call:
                    self._handle(response)
                log.warning("chat stream ended; reconnecting")
            except grpc.aio.AioRpcError as error:
                log.warning("chat stream failed; reconnecting", grpc_code=error.code().name)
            except asyncio.CancelledError:
                call.cancel()
                raise
            finally:
                self._ready.clear()
                self._call = None
                self._rooms.clear()
                self._fail_pending()
            call.cancel()
            if self.closing:
                break
            for subscriber in list(self._subscribers.values()):
                subscriber.on_stream_lost()
            if loop.time() - started > STABLE_STREAM_SECONDS:
                delay = self._reconnect_delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_reconnect_delay)

    def _handle(self, response: Response) -> None:
        kind = response.WhichOneof("item")
        if kind == "event":
            self._dispatch(response.event)
        elif kind == "subscribed":
            self._subscribed(response.subscribed)
        elif kind == "unsubscribed":
            self._unsubscribed(response.unsubscribed)
        elif kind == "error":
            error = response.error
            future = self._pending.get(error.request_id) if error.request_id else None
            if future is not None and not future.done():
                future.set_result(response)
                return
            subscriber = self._subscribers.get(error.subscriber_id)
            if subscriber is not None:
                subscriber.on_stream_error(error.code, error.message)
        if kind in ("subscribed", "unsubscribed"):
            request_id = getattr(response, kind).request_id
            future = self._pending.get(request_id) if request_id else None
            if future is not None and not future.done():
                future.set_result(response)

    def _dispatch(self, event: pb.RoomEvent) -> None:
        self.events_received += 1
        if self.on_member_changed is not None and event.HasField("member_changed"):
            self.on_member_changed(event)
        ids = self._rooms.get(event.room_id)
        if not ids:
            return
        frame = event_frame(event)
        if frame is None:
            return
        text = encode(frame)
        for sid in list(ids):
            subscriber = self._subscribers.get(sid)
            if subscriber is not None:
                subscriber.on_event(event.room_id, event.seq, text)

    def _subscribed(self, answer: Subscribed) -> None:
        subscriber = self._subscribers.get(answer.subscriber_id)
        if subscriber is None:
            return
        cursors = {cursor.room_id: cursor.seq for cursor in answer.rooms}
        for room_id in cursors:
            self._rooms.setdefault(room_id, set()).add(answer.subscriber_id)
        subscriber.on_subscribed(cursors, membership=answer.reason == Subscribed.REASON_MEMBERSHIP)

    def _unsubscribed(self, answer: Unsubscribed) -> None:
        for room_id in answer.room_ids:
            self._drop(room_id, answer.subscriber_id)
        subscriber = self._subscribers.get(answer.subscriber_id)
        if subscriber is not None:
            subscriber.on_unsubscribed(
                list(answer.room_ids),
                membership_ended=answer.reason == Unsubscribed.REASON_MEMBERSHIP_ENDED,
            )
