"""Presence in the BFF: one :class:`PresenceHub` per process.

The hub does three jobs for the WebSocket handler:

1. it reports this process's WebSockets to the user service's PresenceService
   (``OpenConnection`` when a socket is authenticated, ONE batched ``Heartbeat``
   for all of them every interval, ``CloseConnections`` when they close);
2. it holds ONE ``WatchPresence`` stream for every user that some local
   connection cares about (the connection user's friends, the co-members of
   their small rooms, plus whatever the WebSocket handler adds), and re-opens
   it with the whole watch set when the stream breaks (user service restarted
   or unreachable);
3. it pushes ``{"type": "presence", "user_id": …, "status": …}`` frames to
   the local connections interested in the user whose presence changed
   (``status`` is ``"online"``, ``"away"`` or ``"offline"``; each connection
   sees a user's presence versions in increasing order, never one twice).

The API for the WebSocket handler (all coroutines are cheap unless noted)::

    hub = backends(websocket.scope).presence_hub

    # Once the socket is authenticated (claims = the verified access token):
    connection_id = await hub.open(
        user_id=claims.user_id,
        access_token=claims.token,   # also used to list the user's friends
        send=send_frame,             # async (frame: dict) -> None; must not block long
        interests=co_member_ids,     # optional: room co-members (friends are added here)
    )

    hub.touch(connection_id)                       # on every client frame but `ping`
    hub.add_interests(connection_id, user_ids)     # joined a room / new co-members
    hub.remove_interests(connection_id, user_ids)  # left a room (friends stay)
    hub.befriended(a, b) / hub.blocked(a, b)       # called by the people routes
    await hub.close(connection_id)                 # in the handler's `finally`

Room co-members (``follow_rooms(chat_stub, chat_hub)`` at start-up): ``open``
lists them with ONE ``ListCoMembers`` call (per room, rooms of at most
``max_room_size`` members only: a large public room would make every member
watch every other), and the chat hub's ``MemberChanged`` events keep them
current (``room_member_changed``): a joiner is watched by the room's local
connections, a leaver is dropped unless a friend or in another shared room;
the joiner's own connections list the new room's members. A room that grows
past the cap stops being followed by the connections already following it.
``blocked`` drops friendship interest only: a shared room still shows presence,
as its member list does.

``send`` is awaited with a short timeout; errors from it are logged and
ignored (the socket's own reader notices a dead socket). Frames for a user start
with that user's current presence as soon as it is known.

``on_lost`` (optional argument of :meth:`PresenceHub.open`) is called when the
user service no longer knows the connection and it cannot be re-opened (e.g.
the access token expired after a user-service restart): close the socket so the
client reconnects with a fresh token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as chat_api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.chat.v1 import resources_pb2 as chat_pb
from chatmesh.common.grpc.client import call_metadata
from chatmesh.common.logging import get_logger
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc, user_pb2, user_pb2_grpc

log = get_logger("chatmesh.bff.presence")

Frame = dict[str, Any]
Send = Callable[[Frame], Awaitable[None]]
OnLost = Callable[[], Awaitable[None]]

STATUS_NAMES = {
    presence_pb2.PRESENCE_STATUS_ONLINE: "online",
    presence_pb2.PRESENCE_STATUS_AWAY: "away",
    presence_pb2.PRESENCE_STATUS_OFFLINE: "offline",
}
# Friends read per ListFriends call when a connection opens (and at most this many
# pages).
FRIENDS_PAGE = 1000
MAX_FRIEND_PAGES = 10
# Largest batch per WatchPresence request (the service takes up to 10000).
WATCH_BATCH = 5000
# Rooms with more members than this do not make their members watch each other.
MAX_ROOM_SIZE = 50
_JOINED = (chat_pb.MEMBER_CHANGE_JOINED, chat_pb.MEMBER_CHANGE_ADDED)
_LEFT = (chat_pb.MEMBER_CHANGE_LEFT, chat_pb.MEMBER_CHANGE_REMOVED)


class RoomEvents(Protocol):
    """Where MemberChanged events come from (the chat stream hub)."""

    on_member_changed: Callable[[chat_pb.RoomEvent], None] | None


def presence_frame(presence: presence_pb2.UserPresence) -> Frame:
    """The WebSocket frame announcing one user's presence."""
    return {
        "type": "presence",
        "user_id": presence.user_id,
        "status": STATUS_NAMES.get(presence.status, "offline"),
    }


def new_instance_id() -> str:
    """This BFF process's id for the presence service (host, pid, random suffix)."""
    host = socket.gethostname()[:80] or "bff"
    return f"bff-{host}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(eq=False)
class _Connection:
    id: str
    user_id: str
    access_token: str
    send: Send
    on_lost: OnLost | None
    # Users whose presence this connection gets: `explicit` (friends + what the
    # handler added) and the members of the followed `rooms` (room id → ids).
    interests: set[str] = field(default_factory=set)
    explicit: set[str] = field(default_factory=set)
    rooms: dict[str, set[str]] = field(default_factory=dict)
    # What was last sent per user: (stream epoch, version, status). Within one
    # stream versions only go up; a new stream (service restart) starts afresh.
    sent: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    active: bool = False


class _Requests:
    """The request side of one WatchPresence stream: what is put on `outbox`,
    until None. (A plain iterator, not an async generator: gRPC may abandon it
    mid-`get()` when the stream breaks, which an async generator's finalizer
    reports as an error.)"""

    def __init__(self, outbox: asyncio.Queue[presence_pb2.WatchPresenceRequest | None]) -> None:
        self._outbox = outbox

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> presence_pb2.WatchPresenceRequest:
        request = await self._outbox.get()
        if request is None:
            raise StopAsyncIteration
        return request


class PresenceHub:
    """This process's presence reporting and fan-out (see the module docstring)."""

    def __init__(
        self,
        *,
        presence: presence_pb2_grpc.PresenceServiceStub,
        users: user_pb2_grpc.UserServiceStub,
        timeout: float,
        instance_id: str | None = None,
        heartbeat_interval: float = 15.0,
        send_timeout: float = 2.0,
        reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 5.0,
        max_room_size: int = MAX_ROOM_SIZE,
    ) -> None:
        self._presence = presence
        self._chat: chat_service_pb2_grpc.ChatServiceStub | None = None
        self._max_room_size = max_room_size
        # room id -> ids of the local connections following its members.
        self._room_followers: dict[str, set[str]] = {}
        self._users = users
        self._timeout = timeout
        self.instance_id = instance_id or new_instance_id()
        self._heartbeat_interval = heartbeat_interval
        self._send_timeout = send_timeout
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connections: dict[str, _Connection] = {}
        # watched user id -> ids of the local connections interested in them.
        self._watchers: dict[str, set[str]] = {}
        # The latest presence seen per watched user.
        self._latest: dict[str, presence_pb2.UserPresence] = {}
        # Requests for the current WatchPresence stream (replaced on reconnect).
        self._outbox: asyncio.Queue[presence_pb2.WatchPresenceRequest | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stream_ready = asyncio.Event()
        # Counts WatchPresence streams; versions are compared within one only.
        self._epoch = 0
        self.reconnects = 0

    # --- lifecycle -------------------------------------------------------------

    def follow_rooms(self, chat: chat_service_pb2_grpc.ChatServiceStub, events: RoomEvents) -> None:
        """Watch room co-members too: list them through `chat`, and keep them
        current from `events` (the chat hub's MemberChanged events)."""
        self._chat = chat
        events.on_member_changed = self.room_member_changed

    async def start(self) -> None:
        """Start the watch stream and the heartbeat loop (the app's lifespan)."""
        self._tasks = [
            asyncio.create_task(self._watch_forever(), name="presence-watch"),
            asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat"),
        ]

    async def stop(self) -> None:
        """Close every local connection at the service, then stop the loops."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        ids = list(self._connections)
        self._connections.clear()
        self._watchers.clear()
        self._room_followers.clear()
        if ids:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._presence.CloseConnections(
                    presence_pb2.CloseConnectionsRequest(
                        instance_id=self.instance_id, connection_ids=ids
                    ),
                    timeout=self._timeout,
                )

    async def wait_watching(self, seconds: float = 5.0) -> None:
        """Wait until the watch stream is open (tests, readiness)."""
        async with asyncio.timeout(seconds):
            await self._stream_ready.wait()

    # --- the WebSocket handler's API -------------------------------------------

    async def open(
        self,
        *,
        user_id: str,
        access_token: str,
        send: Send,
        interests: Iterable[str] = (),
        on_lost: OnLost | None = None,
    ) -> str:
        """Register an authenticated WebSocket; returns its connection id.

        Reports the connection to the presence service (the user is online),
        and watches the user's friends plus `interests`. A failing user service
        is logged, not raised: the heartbeat loop opens the connection again."""
        connection = _Connection(
            id=secrets.token_urlsafe(24),
            user_id=user_id,
            access_token=access_token,
            send=send,
            on_lost=on_lost,
        )
        self._connections[connection.id] = connection
        try:
            await self._open_at_service(connection)
        except grpc.aio.AioRpcError as error:
            log.warning("presence open failed", grpc_code=error.code().name)
        friends, rooms = await asyncio.gather(
            self._friend_ids(access_token), self._co_members(access_token)
        )
        if connection.id in self._connections:
            self.add_interests(connection.id, [*friends, *interests])
            for room_id, members in rooms:
                self._follow_room(connection, room_id, members)
        return connection.id

    def touch(self, connection_id: str) -> None:
        """The user did something on this connection (any frame but `ping`)."""
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.active = True

    def add_interests(self, connection_id: str, user_ids: Iterable[str]) -> None:
        """Send this connection the presence of `user_ids` from now on (their
        current presence first)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return
        ids = list(dict.fromkeys(user_ids))
        connection.explicit.update(ids)
        self._watch(connection, ids)

    def _watch(self, connection: _Connection, user_ids: Iterable[str]) -> None:
        added: list[str] = []
        for user_id in user_ids:
            if not user_id or user_id == connection.user_id or user_id in connection.interests:
                continue
            connection.interests.add(user_id)
            watchers = self._watchers.setdefault(user_id, set())
            if not watchers:
                added.append(user_id)
            watchers.add(connection.id)
            latest = self._latest.get(user_id)
            if latest is not None:
                self._deliver_later(connection, latest)
        for start in range(0, len(added), WATCH_BATCH):
            self._outbox.put_nowait(
                presence_pb2.WatchPresenceRequest(add_user_ids=added[start : start + WATCH_BATCH])
            )

    def remove_interests(self, connection_id: str, user_ids: Iterable[str]) -> None:
        """Stop sending this connection the presence of `user_ids`."""
        connection = self._connections.get(connection_id)
        if connection is not None:
            ids = set(user_ids)
            connection.explicit -= ids
            self._unwatch_unneeded(connection, ids)

    def _unwatch_unneeded(self, connection: _Connection, user_ids: Iterable[str]) -> None:
        """Stop watching those of `user_ids` no friendship or shared room explains."""
        unneeded = {
            user_id
            for user_id in user_ids
            if user_id in connection.interests
            and user_id not in connection.explicit
            and not any(user_id in members for members in connection.rooms.values())
        }
        self._drop_interests(connection, unneeded)

    # --- room co-members ---------------------------------------------------------

    def room_member_changed(self, event: chat_pb.RoomEvent) -> None:
        """A MemberChanged event of a room some local connection is in. Called
        on the chat stream's dispatch path: a failure here is logged, never
        raised into room event delivery."""
        try:
            self._member_changed(event)
        except Exception:
            log.exception("following a room membership change for presence failed")

    def _member_changed(self, event: chat_pb.RoomEvent) -> None:
        change = event.member_changed
        room_id, user_id = event.room_id, change.user_id
        too_big = change.room.member_count > self._max_room_size
        followers = [
            connection
            for cid in self._room_followers.get(room_id, ())
            if (connection := self._connections.get(cid)) is not None
        ]
        if change.change in _JOINED:
            for connection in followers:
                if too_big:
                    self._unfollow_room(connection, room_id)
                elif connection.user_id != user_id:
                    connection.rooms[room_id].add(user_id)
                    self._watch(connection, [user_id])
            if not too_big and self._chat is not None:
                for connection in list(self._connections.values()):
                    if connection.user_id == user_id and room_id not in connection.rooms:
                        self._spawn(self._list_and_follow(connection, room_id))
        elif change.change in _LEFT:
            for connection in followers:
                if connection.user_id == user_id:
                    self._unfollow_room(connection, room_id)
                else:
                    connection.rooms[room_id].discard(user_id)
                    self._unwatch_unneeded(connection, [user_id])

    async def _list_and_follow(self, connection: _Connection, room_id: str) -> None:
        """The connection's user joined `room_id`: watch its members."""
        for listed, members in await self._co_members(connection.access_token, [room_id]):
            if connection.id in self._connections:
                self._follow_room(connection, listed, members)

    def _follow_room(self, connection: _Connection, room_id: str, members: Iterable[str]) -> None:
        ids = set(members) - {connection.user_id}
        connection.rooms[room_id] = ids
        self._room_followers.setdefault(room_id, set()).add(connection.id)
        self._watch(connection, ids)

    def _unfollow_room(self, connection: _Connection, room_id: str) -> None:
        members = connection.rooms.pop(room_id, set())
        followers = self._room_followers.get(room_id)
        if followers is not None:
            followers.discard(connection.id)
            if not followers:
                del self._room_followers[room_id]
        self._unwatch_unneeded(connection, members)

    async def _co_members(
        self, access_token: str, room_ids: Iterable[str] = ()
    ) -> list[tuple[str, list[str]]]:
        if self._chat is None:
            return []
        try:
            reply = await self._chat.ListCoMembers(
                chat_api.ListCoMembersRequest(
                    room_ids=list(room_ids), max_room_size=self._max_room_size
                ),
                timeout=self._timeout,
                metadata=call_metadata(access_token=access_token),
            )
        except grpc.aio.AioRpcError as error:
            log.warning("listing room co-members for presence failed", grpc_code=error.code().name)
            return []
        return [(room.room_id, list(room.user_ids)) for room in reply.rooms]

    async def close(self, connection_id: str) -> None:
        """The WebSocket closed: unregister it (the user goes offline with their
        last connection, after the service's debounce)."""
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            return
        for room_id in list(connection.rooms):
            self._unfollow_room(connection, room_id)
        self._drop_interests(connection, set(connection.interests))
        try:
            await self._presence.CloseConnections(
                presence_pb2.CloseConnectionsRequest(
                    instance_id=self.instance_id, connection_ids=[connection_id]
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            # The service drops it when its heartbeats stop (connection TTL).
            log.warning("presence close failed", grpc_code=error.code().name)

    def befriended(self, user_a: str, user_b: str) -> None:
        """Two users became friends: their local connections see each other's
        presence from now on (the people routes call this)."""
        self._for_user(user_a, lambda cid: self.add_interests(cid, [user_b]))
        self._for_user(user_b, lambda cid: self.add_interests(cid, [user_a]))

    def blocked(self, user_a: str, user_b: str) -> None:
        """One blocked the other: their local connections stop seeing each other
        as friends (a room they share still shows presence)."""
        self._for_user(user_a, lambda cid: self.remove_interests(cid, [user_b]))
        self._for_user(user_b, lambda cid: self.remove_interests(cid, [user_a]))

    def _for_user(self, user_id: str, action: Callable[[str], None]) -> None:
        for connection in list(self._connections.values()):
            if connection.user_id == user_id:
                action(connection.id)

    def connection_count(self) -> int:
        return len(self._connections)

    def watched_users(self) -> frozenset[str]:
        return frozenset(self._watchers)

    # --- internals -------------------------------------------------------------

    async def _open_at_service(self, connection: _Connection) -> None:
        reply = await self._presence.OpenConnection(
            presence_pb2.OpenConnectionRequest(
                connection_id=connection.id, instance_id=self.instance_id
            ),
            timeout=self._timeout,
            metadata=call_metadata(access_token=connection.access_token),
        )
        interval = reply.heartbeat_interval.ToTimedelta().total_seconds()
        if 0 < interval < self._heartbeat_interval:
            self._heartbeat_interval = interval

    async def _friend_ids(self, access_token: str) -> list[str]:
        ids: list[str] = []
        token = ""
        try:
            for _ in range(MAX_FRIEND_PAGES):
                reply = await self._users.ListFriends(
                    user_pb2.ListFriendsRequest(page_size=FRIENDS_PAGE, page_token=token),
                    timeout=self._timeout,
                    metadata=call_metadata(access_token=access_token),
                )
                ids.extend(friend.profile.user_id for friend in reply.friends)
                token = reply.next_page_token
                if not token:
                    break
        except grpc.aio.AioRpcError as error:
            log.warning("listing friends for presence failed", grpc_code=error.code().name)
        return ids

    def _drop_interests(self, connection: _Connection, user_ids: set[str]) -> None:
        removed: list[str] = []
        for user_id in user_ids:
            connection.interests.discard(user_id)
            connection.sent.pop(user_id, None)
            watchers = self._watchers.get(user_id)
            if watchers is None:
                continue
            watchers.discard(connection.id)
            if not watchers:
                del self._watchers[user_id]
                self._latest.pop(user_id, None)
                removed.append(user_id)
        for start in range(0, len(removed), WATCH_BATCH):
            self._outbox.put_nowait(
                presence_pb2.WatchPresenceRequest(
                    remove_user_ids=removed[start : start + WATCH_BATCH]
                )
            )

    def _deliver_later(self, connection: _Connection, presence: presence_pb2.UserPresence) -> None:
        self._spawn(self._deliver([(connection, presence)]))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _deliver(self, items: list[tuple[_Connection, presence_pb2.UserPresence]]) -> None:
        sends = []
        for connection, presence in items:
            if connection.id not in self._connections:
                continue
            sent = connection.sent.get(presence.user_id)
            if sent is not None:
                epoch, version, status = sent
                if epoch == self._epoch and presence.version <= version:
                    continue  # stale or seen
                if status == presence.status:
                    continue  # nothing new to tell
            connection.sent[presence.user_id] = (self._epoch, presence.version, presence.status)
            sends.append(self._send(connection, presence_frame(presence)))
        if sends:
            await asyncio.gather(*sends)

    async def _send(self, connection: _Connection, frame: Frame) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await connection.send(frame)
        except Exception as error:  # a closing socket; its handler cleans up
            log.info("presence frame not sent", error=type(error).__name__)

    async def _dispatch(self, presences: Iterable[presence_pb2.UserPresence]) -> None:
        items: list[tuple[_Connection, presence_pb2.UserPresence]] = []
        for presence in presences:
            watchers = self._watchers.get(presence.user_id)
            if not watchers:
                continue
            latest = self._latest.get(presence.user_id)
            if latest is not None and presence.version < latest.version:
                continue  # stale
            self._latest[presence.user_id] = presence
            for connection_id in watchers:
                connection = self._connections.get(connection_id)
                if connection is not None:
                    items.append((connection, presence))
        await self._deliver(items)

    async def _watch_forever(self) -> None:
        delay = self._reconnect_delay
        while True:
            # A fresh outbox that starts with the whole watch set; adds and removes
            # queued for a broken stream are covered by it.
            outbox: asyncio.Queue[presence_pb2.WatchPresenceRequest | None] = asyncio.Queue()
            watched = list(self._watchers)
            for start in range(0, len(watched), WATCH_BATCH):
                outbox.put_nowait(
                    presence_pb2.WatchPresenceRequest(
                        add_user_ids=watched[start : start + WATCH_BATCH]
                    )
                )
            self._outbox = outbox
            # Versions of the previous stream may not compare (a restarted service
            # with an in-process store counts from zero again).
            self._epoch += 1
            self._latest.clear()
            call = self._presence.WatchPresence(_Requests(outbox))
            try:
                await call.wait_for_connection()
                self._stream_ready.set()
                async for reply in call:
                    delay = self._reconnect_delay
                    await self._dispatch(reply.presences)
                log.warning("presence stream ended; reconnecting")
            except grpc.aio.AioRpcError as error:
                log.warning("presence stream failed; reconnecting", grpc_code=error.code().name)
            finally:
                self._stream_ready.clear()
                outbox.put_nowait(None)  # ends the request iterator
                call.cancel()
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_reconnect_delay)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self.heartbeat()
            except grpc.aio.AioRpcError as error:
                log.warning("presence heartbeat failed", grpc_code=error.code().name)

    async def heartbeat(self) -> None:
        """One batched heartbeat for every local connection (run by the loop;
        public for tests). Connections the service forgot are opened again."""
        if not self._connections:
            return
        ids = list(self._connections)
        active = [cid for cid in ids if self._connections[cid].active]
        reply = await self._presence.Heartbeat(
            presence_pb2.HeartbeatRequest(
                instance_id=self.instance_id, connection_ids=ids, active_connection_ids=active
            ),
            timeout=self._timeout,
        )
        for cid in active:
            if cid in self._connections:
                self._connections[cid].active = False
        for cid in reply.unknown_connection_ids:
            connection = self._connections.get(cid)
            if connection is None:
                continue
            try:
                await self._open_at_service(connection)
            except grpc.aio.AioRpcError as error:
                log.warning("presence re-open failed", grpc_code=error.code().name)
                if connection.on_lost is not None:
                    await connection.on_lost()
