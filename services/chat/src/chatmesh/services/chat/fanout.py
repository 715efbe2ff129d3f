"""Live room events for BFF processes: one pub/sub subscription per chat process
(the `Hub`), one `StreamSession` per StreamRoomEvents call (one per BFF process).

The hub subscribes a channel when the first session needs it and unsubscribes
it when the last one lets go; it parses each message once and hands the event
to the sessions listening on that channel.

A session keeps, per room, the seq it has delivered up to (its cursor) and which
of the BFF's subscribers want the room. Per room it delivers every event once,
in seq order, with no gaps: an event at or below the cursor is a duplicate and
dropped; an event beyond cursor + 1 means something was missed (a relay replica
published out of order, or pub/sub lost messages), and the missing events are
read from the log first. Membership events change the subscriber sets as they
are delivered (see the StreamRoomEvents comment in chat_service.proto).

Everything a session does happens on one task, in arrival order: the BFF's
requests and the events from the hub share one inbox. Memory per session is
bounded: when more than `max_pending` items wait (the BFF does not read fast
enough), the stream ends with RESOURCE_EXHAUSTED and the BFF starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.errors import ResourceExhausted, ServiceError, Unavailable
from chatmesh.common.logging import get_logger
from chatmesh.common.pubsub import PubSub
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.tokens import TokenVerifier
from chatmesh.services.chat.eventlog import (
    ROOM_CHANNEL_PREFIX,
    USER_CHANNEL_PREFIX,
    room_channel,
    user_channel,
)
from chatmesh.services.chat.service import SubscribeCheck

log = get_logger("chatmesh.chat.fanout")

STREAMS = Gauge("chat_streams", "Open StreamRoomEvents calls (BFF processes).")
STREAM_OVERFLOWS = Counter(
    "chat_stream_overflows_total", "Streams ended because the BFF did not keep up."
)
GAP_FILLS = Counter(
    "chat_stream_gap_fills_total", "Times a stream read missed room events from the log."
)

Response = api.StreamRoomEventsResponse
Request = api.StreamRoomEventsRequest

CATCH_UP_BATCH = 500
# Requests from the BFF read ahead of the session task before the reader waits.
MAX_PENDING_REQUESTS = 1_000


class EventStore(Protocol):
    """What a session needs from the chat domain (see ChatService)."""

    async def subscribable(
        self, user_id: str, room_ids: Sequence[str], *, all_rooms: bool
    ) -> SubscribeCheck: ...

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]: ...

    async def events_after(
        self, room_id: str, after_seq: int, limit: int
    ) -> list[pb.RoomEvent]: ...

    async def memberships(self, user_id: str) -> dict[str, int]: ...


class Listener(Protocol):
    def on_event(self, channel: str, event: pb.RoomEvent) -> None: ...

    def on_resync(self) -> None: ...


class Hub:
    """The process's one pub/sub subscription, shared by every stream."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._subscription = pubsub.subscription(on_resync=self._on_resync)
        self._listeners: dict[str, set[Listener]] = {}
        self._sessions: set[StreamSession] = set()
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="chat-hub-reader")

    async def attach(self, channels: Iterable[str], listener: Listener) -> None:
        """Deliver `channels` to `listener`; when this returns, the channels are live."""
        async with self._lock:
            wanted = list(dict.fromkeys(channels))
            new = [channel for channel in wanted if channel not in self._listeners]
            if new:
                await self._subscription.add(new)
            for channel in wanted:
                self._listeners.setdefault(channel, set()).add(listener)

    async def detach(self, channels: Iterable[str], listener: Listener) -> None:
        async with self._lock:
            unused = []
            for channel in dict.fromkeys(channels):
                listeners = self._listeners.get(channel)
                if listeners is None:
                    continue
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[channel]
                    unused.append(channel)
            if unused:
                try:
                    await self._subscription.remove(unused)
                except ServiceError as exc:  # pragma: no cover (Redis down: it resubscribes less)
                    log.warning("hub_unsubscribe_failed", error=exc.message)

    async def publish(self, channel: str, event: pb.RoomEvent) -> None:
        await self._pubsub.publish(channel, event.SerializeToString())

    def register(self, session: StreamSession) -> None:
        self._sessions.add(session)
        STREAMS.set(len(self._sessions))

    def unregister(self, session: StreamSession) -> None:
        self._sessions.discard(session)
        STREAMS.set(len(self._sessions))

    def end_streams(self, error: ServiceError) -> None:
        """End every open stream with `error` (shutdown: the BFFs reconnect elsewhere)."""
        for session in tuple(self._sessions):
            session.fail(error)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._subscription.close()

    def _on_resync(self) -> None:
        log.info("hub_resync", streams=len(self._sessions))
        for session in tuple(self._sessions):
            session.on_resync()

    async def _read(self) -> None:
        async for channel, data in self._subscription.messages():
            listeners = self._listeners.get(channel)
            if not listeners:
                continue
            try:
                event = pb.RoomEvent.FromString(data)
            except DecodeError:
                log.error("hub_undecodable_event", channel=channel)
                continue
            for listener in tuple(listeners):
                try:
                    listener.on_event(channel, event)
                except Exception:  # one broken stream must not stop the others
                    log.exception("hub_listener_failed", channel=channel)


@dataclass
class _Subscriber:
    id: str
    user_id: str
    rooms: set[str] = field(default_factory=set)


@dataclass
class _Room:
    # The seq delivered up to on this stream.
    cursor: int
    subscribers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Incoming:
    channel: str
    event: pb.RoomEvent


class _Resync:
    pass


class _Finished:
    """The BFF closed its side of the stream."""


_Item = Request | _Incoming | _Resync | _Finished


class _Outbox:
    """Responses waiting for the BFF to read them; ends with None or an error."""

    def __init__(self) -> None:
        self._items: deque[Response] = deque()
        self._ready = asyncio.Event()
        self._end: ServiceError | None = None
        self._ended = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Response) -> None:
        if not self._ended:
            self._items.append(item)
            self._ready.set()

    def finish(self, error: ServiceError | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._end = error
        if error is not None:
            self._items.clear()  # nothing more will be read: free it now
        self._ready.set()

    async def get(self) -> Response | None:
        while not self._items:
            if self._ended:
                if self._end is not None:
                    raise self._end
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


def _member_change(event: pb.RoomEvent) -> tuple[str, int] | None:
    if event.WhichOneof("payload") != "member_changed":
        return None
    return event.member_changed.user_id, event.member_changed.change


_GAINED = (pb.MEMBER_CHANGE_JOINED, pb.MEMBER_CHANGE_ADDED)
_LOST = (pb.MEMBER_CHANGE_LEFT, pb.MEMBER_CHANGE_REMOVED)


class StreamSession:
    """The state behind one StreamRoomEvents call."""

    def __init__(
        self,
        *,
        hub: Hub,
        store: EventStore,
        verifier: TokenVerifier | None,
        limiter: RateLimiter,
        typing_interval: float,
        max_pending: int,
    ) -> None:
        self._hub = hub
        self._store = store
        self._verifier = verifier
        self._limiter = limiter
        self._typing_interval = typing_interval
        self._max_pending = max_pending
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._pending_events = 0
        self._request_slots = asyncio.Semaphore(MAX_PENDING_REQUESTS)
        self._outbox = _Outbox()
        self._subscribers: dict[str, _Subscriber] = {}
        self._users: dict[str, set[str]] = {}
        self._rooms: dict[str, _Room] = {}
        # Per user: the memberships this stream knows of (room -> join seq). A
        # membership event at or below what is known is old news (it may arrive
        # late on the user's channel) and subscribes nobody.
        self._known: dict[str, dict[str, int]] = {}

    # --- called from other tasks (never block) ----------------------------------------

    def on_event(self, channel: str, event: pb.RoomEvent) -> None:
        self._pending_events += 1
        if self._pending_events + len(self._outbox) > self._max_pending:
            STREAM_OVERFLOWS.inc()
            self.fail(
                ResourceExhausted(
                    "the stream fell behind; reconnect and resume",
                    retry_after=1,
                    code="stream_overflow",
                )
            )
            return
        self._inbox.put_nowait(_Incoming(channel, event))

    def on_resync(self) -> None:
        self._inbox.put_nowait(_Resync())

    def fail(self, error: ServiceError) -> None:
        self._outbox.finish(error)

    # --- the call ---------------------------------------------------------------------

    async def run(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response]:
        """The responses of the call whose requests are `requests`."""
        self._hub.register(self)
        reader = asyncio.create_task(self._read_requests(requests))
        worker = asyncio.create_task(self._work())
        try:
            while (response := await self._outbox.get()) is not None:
                yield response
        finally:
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)
            self._hub.unregister(self)
            await self._release_all()

    async def _read_requests(self, requests: AsyncIterator[Request]) -> None:
        try:
            async for request in requests:
                await self._request_slots.acquire()
                self._inbox.put_nowait(request)
        finally:
            self._inbox.put_nowait(_Finished())

    async def _work(self) -> None:
        try:
            while True:
                item = await self._inbox.get()
                if isinstance(item, _Incoming):
                    self._pending_events -= 1
                    await self._on_incoming(item.channel, item.event)
                elif isinstance(item, _Resync):
                    await self._resync()
                elif isinstance(item, _Finished):
                    self._outbox.finish()
                    return
                else:
                    self._request_slots.release()
                    await self._on_request(item)
        except ServiceError as error:
            log.warning("stream_failed", code=error.code)
            self._outbox.finish(error)
        except Exception:
            log.exception("stream_crashed")
            self._outbox.finish(Unavailable("the stream failed; reconnect", code="stream_failed"))

    async def _release_all(self) -> None:
        channels = [room_channel(room_id) for room_id in self._rooms]
        channels += [user_channel(user_id) for user_id in self._users]
        self._rooms.clear()
        self._users.clear()
        self._subscribers.clear()
        with contextlib.suppress(Exception):
            await self._hub.detach(channels, self)

    # --- requests ---------------------------------------------------------------------

    def _error(self, request_id: str, subscriber_id: str, code: str, message: str) -> None:
        self._outbox.put(
            Response(
                error=Response.StreamError(
                    request_id=request_id, subscriber_id=subscriber_id, code=code, message=message
                )
            )
        )

    async def _on_request(self, request: Request) -> None:
        action = request.WhichOneof("action")
        if action == "subscribe":
            await self._subscribe(request.subscribe)
        elif action == "unsubscribe":
            await self._unsubscribe(request.unsubscribe)
        elif action == "detach":
            await self._detach(request.detach.subscriber_id)
        elif action == "typing":
            await self._typing(request.typing)
        else:
            self._error("", "", "invalid_request", "unknown or empty request")

    async def _subscribe(self, request: Request.Subscribe) -> None:
        request_id, subscriber_id = request.request_id, request.subscriber_id
        if not subscriber_id:
            self._error(request_id, "", "invalid_request", "subscriber_id is required")
            return
        try:
            if self._verifier is None:
                raise Unavailable("tokens cannot be verified", code="unavailable")
            claims = await self._verifier.verify(request.access_token)
        except ServiceError as error:
            self._error(request_id, subscriber_id, error.code, error.message)
            return
        user_id = claims.user_id
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is not None and subscriber.user_id != user_id:
            self._error(
                request_id,
                subscriber_id,
                "subscriber_user_mismatch",
                "this subscriber belongs to another user",
            )
            return
        try:
            if subscriber is None:
                # The user's channel first: a membership change committed after the
                # check below is then sure to reach this session.
                if user_id not in self._users:
                    await self._hub.attach([user_channel(user_id)], self)
                    self._users[user_id] = set()
                subscriber = _Subscriber(subscriber_id, user_id)
                self._subscribers[subscriber_id] = subscriber
                self._users[user_id].add(subscriber_id)
            check = await self._store.subscribable(
                user_id, list(request.room_ids), all_rooms=request.all_rooms
            )
            self._learn(user_id, check.memberships)
            await self._track(check.rooms)
        except ServiceError as error:
            self._error(request_id, subscriber_id, error.code, error.message)
            return
        for room_id in check.rooms:
            self._rooms[room_id].subscribers.add(subscriber_id)
            subscriber.rooms.add(room_id)
        self._outbox.put(
            Response(
                subscribed=Response.Subscribed(
                    request_id=request_id,
                    subscriber_id=subscriber_id,
                    user_id=user_id,
                    rooms=[
                        Response.RoomCursor(room_id=room_id, seq=self._rooms[room_id].cursor)
                        for room_id in check.rooms
                    ],
                    failures=[
                        Response.RoomFailure(room_id=room_id, code=code, message=message)
                        for room_id, code, message in check.failures
                    ],
                    reason=Response.Subscribed.REASON_REQUESTED,
                )
            )
        )

    async def _track(
        self, room_ids: Sequence[str], *, starts: dict[str, int] | None = None
    ) -> None:
        """Start following rooms not followed yet: subscribe their channels, then
        take the cursor (the room's last seq, or the given start) from the log."""
        new = [room_id for room_id in room_ids if room_id not in self._rooms]
        if not new:
            return
        await self._hub.attach([room_channel(room_id) for room_id in new], self)
        # Read after the channels are live: anything later arrives on them.
        cursors = dict(starts) if starts is not None else await self._store.last_seqs(new)
        for room_id in new:
            if room_id in cursors:
                self._rooms[room_id] = _Room(cursor=cursors[room_id])
        unknown = [room_id for room_id in new if room_id not in cursors]
        if unknown:  # deleted between the check and now: nothing to follow
            await self._hub.detach([room_channel(room_id) for room_id in unknown], self)

    async def _unsubscribe(self, request: Request.Unsubscribe) -> None:
        subscriber = self._subscribers.get(request.subscriber_id)
        if subscriber is None:
            self._error(
                request.request_id, request.subscriber_id, "not_subscribed", "unknown subscriber"
            )
            return
        for room_id in request.room_ids:
            await self._drop(subscriber, room_id)
        self._outbox.put(
            Response(
                unsubscribed=Response.Unsubscribed(
                    request_id=request.request_id,
                    subscriber_id=subscriber.id,
                    room_ids=list(request.room_ids),
                    reason=Response.Unsubscribed.REASON_REQUESTED,
                )
            )
        )

    async def _drop(self, subscriber: _Subscriber, room_id: str) -> None:
        subscriber.rooms.discard(room_id)
        room = self._rooms.get(room_id)
        if room is None:
            return
        room.subscribers.discard(subscriber.id)
        if not room.subscribers:
            del self._rooms[room_id]
            await self._hub.detach([room_channel(room_id)], self)

    async def _detach(self, subscriber_id: str) -> None:
        subscriber = self._subscribers.pop(subscriber_id, None)
        if subscriber is None:
            return
        for room_id in list(subscriber.rooms):
            await self._drop(subscriber, room_id)
        siblings = self._users.get(subscriber.user_id)
        if siblings is not None:
            siblings.discard(subscriber_id)
            if not siblings:
                del self._users[subscriber.user_id]
                self._known.pop(subscriber.user_id, None)
                await self._hub.detach([user_channel(subscriber.user_id)], self)

    async def _typing(self, request: Request.SendTyping) -> None:
        subscriber = self._subscribers.get(request.subscriber_id)
        if subscriber is None or request.room_id not in subscriber.rooms:
            self._error(
                "",
                request.subscriber_id,
                "not_subscribed",
                "typing needs a subscription to the room",
            )
            return
        decision = await self._limiter.hit(
            f"chat:typing:{subscriber.user_id}:{request.room_id}",
            limit=1,
            window=self._typing_interval,
        )
        if not decision.allowed:
            return
        event = pb.RoomEvent(
            room_id=request.room_id,
            seq=0,
            actor_id=subscriber.user_id,
            typing=pb.RoomEvent.Typing(user_id=subscriber.user_id),
        )
        event.create_time.GetCurrentTime()
        try:
            await self._hub.publish(room_channel(request.room_id), event)
        except ServiceError as error:
            # Typing is best effort: a pub/sub hiccup must not end the stream.
            log.warning("typing_publish_failed", code=error.code)

    # --- events -----------------------------------------------------------------------

    async def _on_incoming(self, channel: str, event: pb.RoomEvent) -> None:
        room_id = event.room_id
        if channel.startswith(USER_CHANNEL_PREFIX):
            await self._on_user_event(event)
            return
        if not channel.startswith(ROOM_CHANNEL_PREFIX):  # pragma: no cover
            return
        room = self._rooms.get(room_id)
        if room is None:
            return  # let go of meanwhile
        if event.seq == 0:
            if room.subscribers:
                self._outbox.put(Response(event=event))
        elif event.seq == room.cursor + 1:
            await self._deliver(room_id, event)
        elif event.seq > room.cursor:
            GAP_FILLS.inc()
            await self._catch_up(room_id)

    async def _on_user_event(self, event: pb.RoomEvent) -> None:
        """A membership change of one of this stream's users, in any room."""
        change = _member_change(event)
        if change is None:
            return
        user_id, kind = change
        if event.room_id in self._rooms:
            # Followed already: the log decides what happens, in seq order.
            await self._catch_up(event.room_id)
        elif kind in _GAINED and self._users.get(user_id) and self._is_news(user_id, event):
            # Follow from just before the join; delivering the join subscribes
            # the user's subscribers (see _deliver).
            await self._track([event.room_id], starts={event.room_id: event.seq - 1})
            await self._catch_up(event.room_id)

    async def _catch_up(self, room_id: str) -> None:
        """Deliver what the log has after the room's cursor."""
        while (room := self._rooms.get(room_id)) is not None:
            events = await self._store.events_after(room_id, room.cursor, CATCH_UP_BATCH)
            for event in events:
                if room_id not in self._rooms:
                    return
                await self._deliver(room_id, event)
            if len(events) < CATCH_UP_BATCH:
                return

    async def _deliver(self, room_id: str, event: pb.RoomEvent) -> None:
        room = self._rooms[room_id]
        if event.seq <= room.cursor:
            return
        change = _member_change(event)
        gained = change is not None and change[1] in _GAINED and change[0] in self._users
        if change is not None and gained and self._is_news(change[0], event):
            self._subscribe_for_membership(room_id, room, change[0], event.seq - 1)
            self._learn(change[0], {room_id: event.seq})
        room.cursor = event.seq
        if room.subscribers:
            self._outbox.put(Response(event=event))
        if change is not None and change[1] in _LOST:
            ended = [
                self._subscribers[subscriber_id]
                for subscriber_id in sorted(self._users.get(change[0], ()))
                if room_id in self._subscribers[subscriber_id].rooms
            ]
            for subscriber in ended:
                subscriber.rooms.discard(room_id)
                room.subscribers.discard(subscriber.id)
                self._outbox.put(
                    Response(
                        unsubscribed=Response.Unsubscribed(
                            subscriber_id=subscriber.id,
                            room_ids=[room_id],
                            reason=Response.Unsubscribed.REASON_MEMBERSHIP_ENDED,
                        )
                    )
                )
        if not room.subscribers:
            del self._rooms[room_id]
            await self._hub.detach([room_channel(room_id)], self)

    def _subscribe_for_membership(self, room_id: str, room: _Room, user_id: str, seq: int) -> None:
        for subscriber_id in sorted(self._users.get(user_id, ())):
            subscriber = self._subscribers[subscriber_id]
            if room_id in subscriber.rooms:
                continue
            subscriber.rooms.add(room_id)
            room.subscribers.add(subscriber_id)
            self._outbox.put(
                Response(
                    subscribed=Response.Subscribed(
                        subscriber_id=subscriber_id,
                        user_id=user_id,
                        rooms=[Response.RoomCursor(room_id=room_id, seq=seq)],
                        reason=Response.Subscribed.REASON_MEMBERSHIP,
                    )
                )
            )

    def _learn(self, user_id: str, memberships: dict[str, int]) -> None:
        known = self._known.setdefault(user_id, {})
        for room_id, seq in memberships.items():
            known[room_id] = max(seq, known.get(room_id, 0))

    def _is_news(self, user_id: str, event: pb.RoomEvent) -> bool:
        return event.seq > self._known.get(user_id, {}).get(event.room_id, 0)

    async def _resync(self) -> None:
        """Pub/sub may have lost messages: read the log for every followed room,
        and subscribe memberships the stream's users gained meanwhile."""
        for room_id in list(self._rooms):
            await self._catch_up(room_id)
        for user_id in [user for user, subscribers in self._users.items() if subscribers]:
            known = self._known.get(user_id, {})
            for room_id, join_seq in (await self._store.memberships(user_id)).items():
                if room_id not in self._rooms and join_seq > known.get(room_id, 0):
                    await self._track([room_id], starts={room_id: join_seq - 1})
                    await self._catch_up(room_id)


def make_session_factory(
    *,
    hub: Hub,
    store: EventStore,
    verifier: TokenVerifier | None,
    limiter: RateLimiter,
    typing_interval: float,
    max_pending: int,
) -> Callable[[], StreamSession]:
    def factory() -> StreamSession:
        return StreamSession(
            hub=hub,
            store=store,
            verifier=verifier,
            limiter=limiter,
            typing_interval=typing_interval,
            max_pending=max_pending,
        )

    return factory
