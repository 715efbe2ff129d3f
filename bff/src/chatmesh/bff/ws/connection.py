"""One WebSocket client's delivery state, and the registry of this process's
connections (heartbeats, idle reaping, frames for given users).

Per room the connection remembers `sent`: the last event seq queued to the
client. Live events are forwarded only above it, so nothing is sent twice.
While a room is being replayed (a `resume`, or a resync after the chat stream
broke) its live events are held in a buffer; the replay reads the room log up to
what was already known, then the buffer is flushed skipping seqs that were
replayed — no gap, no duplicate (docs/websocket.md, "Resume").

Frames go through a bounded queue drained by one writer task; a client that
lets it fill up is closed with 4008 (it resumes on reconnect) instead of
growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from starlette.websockets import WebSocket

from chatmesh.bff.errors import api_error_from_service
from chatmesh.bff.ws.frames import Frame, encode, error_frame, event_frame
from chatmesh.bff.ws.hub import ChatStreamHub, StreamError
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.errors import ServiceError, Unavailable, from_rpc_error
from chatmesh.common.grpc.client import call_metadata
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.ws")

# Close codes (documented in docs/websocket.md).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_IDLE = 4000
CLOSE_UNAUTHENTICATED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_RESUME = 4008
CLOSE_RATE_LIMITED = 4029

# Events per ListRoomEvents page: a message event can be ~40 KB (10,000
# characters of 4-byte UTF-8), and a gRPC message is limited to 4 MB.
REPLAY_PAGE = 64
# A client whose socket accepts nothing (not even the close frame) is dropped
# this many seconds after it was told to close.
ABORT_AFTER_CLOSE = 30.0
_CLOSE = object()


@dataclass(frozen=True, slots=True)
class Limits:
    send_queue: int
    rate_per_second: float
    rate_burst: int
    max_replay: int
    resume_wait: float
    timeout: float


class TokenBucket:
    """`rate` frames per second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        # Frames refused since the last accepted one.
        self.refused = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = 0
            return True
        self.refused += 1
        return False


class Connection:
    """An authenticated WebSocket: a subscriber of the hub."""

    def __init__(
        self,
        *,
        websocket: WebSocket,
        hub: ChatStreamHub,
        chat: chat_service_pb2_grpc.ChatServiceStub,
        user_id: str,
        access_token: str,
        limits: Limits,
    ) -> None:
        self.subscriber_id = "ws-" + secrets.token_urlsafe(12)
        self.websocket = websocket
        self.hub = hub
        self.chat = chat
        self.user_id = user_id
        self.access_token = access_token
        self.limits = limits
        self.bucket = TokenBucket(limits.rate_per_second, limits.rate_burst)
        self.last_seen = time.monotonic()
        self.close_code: int | None = None
        self.close_reason = ""
        # room id -> last event seq queued to the client
        self.sent: dict[str, int] = {}
        # room id -> the seq after which the stream delivers (last Subscribed)
        self.cursors: dict[str, int] = {}
        # rooms whose live events are held (replay in progress), with the events
        self._held: dict[str, list[tuple[int, str]]] = {}
        self._held_count = 0
        # Everything is held until the client resumes (or the wait ends), and
        # while the chat stream is being re-established.
        self._hold_all = True
        self._sync = asyncio.Lock()
        self._queue: asyncio.Queue[str | object] = asyncio.Queue(limits.send_queue)
        self._tasks: set[asyncio.Task[None]] = set()
        # The task running `writer()` (set by the endpoint).
        self.writer_task: asyncio.Task[None] | None = None

    # --- sending ---------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue a frame; a full queue closes the connection with 4008."""
        if self.close_code is not None:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.fail(CLOSE_RESUME, "resume: the client is not reading fast enough")

    def send(self, frame: Frame) -> None:
        self.push(encode(frame))

    async def push_wait(self, text: str) -> None:
        """Queue a frame, waiting for room (replays); 4008 if the client stalls."""
        if self.close_code is not None:
            return
        try:
            async with asyncio.timeout(self.limits.timeout):
                await self._queue.put(text)
        except TimeoutError:
            self.fail(CLOSE_RESUME, "resume: the client is not reading fast enough")

    def fail(self, code: int, reason: str) -> None:
        """Close the connection (after what is already queued when possible)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        if code == CLOSE_RESUME:
            # Drop what the slow client has not read: it resumes from its seqs.
            while not self._queue.empty():
                self._queue.get_nowait()
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSE)
        asyncio.get_running_loop().call_later(ABORT_AFTER_CLOSE, self._abort)

    def _abort(self) -> None:
        if self.writer_task is not None and not self.writer_task.done():
            log.info("dropping a client that accepts no data", code=self.close_code)
            self.writer_task.cancel()

    async def writer(self) -> None:
        """Drain the queue into the socket; ends by closing it."""
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                with contextlib.suppress(Exception):
                    await self.websocket.close(self.close_code or CLOSE_NORMAL, self.close_reason)
                return
            assert isinstance(item, str)
            await self.websocket.send_text(item)

    def spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the hub's callbacks ---------------------------------------------------

    def on_event(self, room_id: str, seq: int, frame: str) -> None:
        if room_id not in self.sent:
            return
        if seq == 0:  # typing: ephemeral, never held or replayed
            if not self._hold_all:
                self.push(frame)
            return
        if self._hold_all or room_id in self._held:
            self._held.setdefault(room_id, []).append((seq, frame))
            self._held_count += 1
            if self._held_count > self.limits.max_replay:
                self.fail(CLOSE_RESUME, "resume: too many events while catching up")
            return
        self._forward(room_id, seq, frame)

    def on_subscribed(self, cursors: dict[str, int], *, membership: bool) -> None:
        for room_id, seq in cursors.items():
            self.cursors[room_id] = seq
            self.sent.setdefault(room_id, seq)

    def on_unsubscribed(self, room_ids: list[str], *, membership_ended: bool) -> None:
        for room_id in room_ids:
            self.sent.pop(room_id, None)
            self.cursors.pop(room_id, None)
            held = self._held.pop(room_id, None)
            if held:
                self._held_count -= len(held)

    def on_stream_error(self, code: str, message: str) -> None:
        self.send(error_frame(code, message))

    def on_stream_lost(self) -> None:
        self._hold_all = True

    def on_stream_restored(self) -> None:
        self.spawn(self.resync())

    # --- delivery --------------------------------------------------------------

    def _forward(self, room_id: str, seq: int, frame: str) -> None:
        last = self.sent.get(room_id)
        if last is None or seq <= last:
            return
        self.sent[room_id] = seq
        self.push(frame)

    def _flush(self, room_id: str) -> None:
        held = self._held.pop(room_id, [])
        self._held_count -= len(held)
        for seq, frame in held:
            self._forward(room_id, seq, frame)

    def _release_all(self) -> None:
        self._hold_all = False
        for room_id in list(self._held):
            self._flush(room_id)

    async def release(self) -> None:
        """Stop holding live events (the client did not resume)."""
        async with self._sync:
            if self._hold_all:
                self._release_all()

    async def release_later(self) -> None:
        await asyncio.sleep(self.limits.resume_wait)
        await self.release()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return call_metadata(access_token=self.access_token)

    async def _replay(self, room_id: str, after: int, upto: int) -> None:
        """Queue the room's events in (after, upto] from its log."""
        token = ""
        while after < upto and self.close_code is None:
            page = await self.chat.ListRoomEvents(
                api.ListRoomEventsRequest(
                    room_id=room_id, after_seq=after, page_size=REPLAY_PAGE, page_token=token
                ),
                timeout=self.limits.timeout,
                metadata=self._metadata(),
            )
            for event in page.events:
                if event.seq > upto:
                    return
                frame = event_frame(event)
                if frame is not None and event.seq > self.sent.get(room_id, 0):
                    await self.push_wait(encode(frame))
                self.sent[room_id] = max(self.sent.get(room_id, 0), event.seq)
                after = event.seq
            token = page.next_page_token
            if not token or not page.events:
                return

    async def resume(self, rooms: dict[str, int]) -> None:
        """The client has seen each room up to its seq: replay the rest, then go live."""
        async with self._sync:
            for room_id, last in rooms.items():
                if room_id not in self.sent:
                    self.send(
                        error_frame(
                            "room_not_found",
                            "not a room of yours (or not subscribed)",
                            room_id=room_id,
                        )
                    )
                    continue
                upto = self.sent[room_id]
                self._held.setdefault(room_id, [])
                if upto - last > self.limits.max_replay:
                    self.send(
                        error_frame(
                            "resume_gap_too_large",
                            "too much was missed: reload the room's history over REST",
                            room_id=room_id,
                            latest_seq=upto,
                        )
                    )
                elif last < upto:
                    self.sent[room_id] = last
                    try:
                        await self._replay(room_id, last, upto)
                    except grpc.aio.AioRpcError as error:
                        self.sent[room_id] = upto
                        self.send(rpc_error_frame(error, room_id=room_id))
                # Whatever the client claims to have is not sent again.
                self.sent[room_id] = max(self.sent[room_id], last, upto)
                self._flush(room_id)
            if self._hold_all:
                self._release_all()

    async def resync(self) -> None:
        """After the chat stream was re-established: subscribe again, replay the
        gap of every room from the last seq sent, then go live."""
        async with self._sync:
            self._hold_all = True
            before = dict(self.sent)
            try:
                answer = await self.hub.subscribe(self.subscriber_id, self.access_token)
            except StreamError as error:
                self.send(error_frame(error.code, error.message))
                self.fail(CLOSE_UNAUTHENTICATED, "sign in again, then resume")
                return
            except Unavailable:
                return  # the stream broke again; the next restore retries
            rooms = {cursor.room_id: cursor.seq for cursor in answer.rooms}
            for room_id in before:
                if room_id not in rooms:  # membership ended meanwhile
                    self.on_unsubscribed([room_id], membership_ended=True)
            for room_id, cursor in rooms.items():
                last = before.get(room_id, cursor)
                self.sent[room_id] = last
                if last < cursor:
                    try:
                        await self._replay(room_id, last, cursor)
                    except grpc.aio.AioRpcError as error:
                        self.send(rpc_error_frame(error, room_id=room_id))
                        self.sent[room_id] = cursor
            self._release_all()


def rpc_error_frame(error: grpc.aio.AioRpcError, **details: object) -> Frame:
    return service_error_frame(from_rpc_error(error), **details)


def service_error_frame(error: ServiceError, **details: object) -> Frame:
    public = api_error_from_service(error)
    return error_frame(public.code, public.message, **{**public.details, **details})


class ConnectionRegistry:
    """This process's connections: heartbeats, idle reaping, frames by user."""

    def __init__(self, *, ping_interval: float, idle_timeout: float) -> None:
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self._connections: dict[str, Connection] = {}
        self._by_user: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeats(), name="ws-heartbeats")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, connection: Connection) -> None:
        self._connections[connection.subscriber_id] = connection
        self._by_user.setdefault(connection.user_id, set()).add(connection.subscriber_id)

    def remove(self, connection: Connection) -> None:
        self._connections.pop(connection.subscriber_id, None)
        ids = self._by_user.get(connection.user_id)
        if ids is not None:
            ids.discard(connection.subscriber_id)
            if not ids:
                del self._by_user[connection.user_id]

    def __len__(self) -> int:
        return len(self._connections)

    def of_users(self, user_ids: Iterable[str]) -> list[Connection]:
        found = []
        for user_id in user_ids:
            for sid in self._by_user.get(user_id, ()):
                found.append(self._connections[sid])
        return found

    def send_to_users(self, user_ids: Iterable[str], frame: Frame) -> int:
        """Push a frame (e.g. `presence`) to every local connection of these users."""
        text = encode(frame)
        connections = self.of_users(user_ids)
        for connection in connections:
            connection.push(text)
        return len(connections)

    async def _heartbeats(self) -> None:
        ping = encode({"type": "ping"})
        while True:
            await asyncio.sleep(self.ping_interval)
            now = time.monotonic()
            for connection in list(self._connections.values()):
                if now - connection.last_seen > self.idle_timeout:
                    connection.fail(CLOSE_IDLE, "idle: no frame within the idle timeout")
                else:
                    connection.push(ping)
