"""Fan-out of presence changes to the WatchPresence streams of this replica.

The replica holds ONE pub/sub subscription and adds the channel
`presence.<user id>` while at least one local stream watches that user. Each
stream has a `Watcher`: a map user → latest undelivered presence, so a burst of
changes of one user collapses into its latest state, memory stays bounded by
the watched users, and a presence older (lower version) than one already
delivered is dropped.

Race-free start: a watcher is registered and the channel subscribed *before*
the current presence is read, so a change that happens meanwhile arrives
through the channel, and the versions sort out which of the two is newer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence

from chatmesh.common.errors import InvalidArgument
from chatmesh.common.logging import get_logger
from chatmesh.common.pubsub import PubSub, Subscription
from chatmesh.services.user import metrics
from chatmesh.services.user.presence.tracker import CHANNEL_PREFIX, channel
from chatmesh.user.v1 import presence_pb2

log = get_logger(__name__)

MAX_WATCHED_PER_STREAM = 100_000
SNAPSHOT_BATCH = 1000

Snapshot = Callable[[Sequence[str]], Awaitable[list[presence_pb2.UserPresence]]]


class Watcher:
    """The state of one WatchPresence stream."""

    def __init__(self) -> None:
        self.users: set[str] = set()
        self._pending: dict[str, presence_pb2.UserPresence] = {}
        # Highest version delivered or pending, per watched user.
        self._versions: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None

    def offer(self, presence: presence_pb2.UserPresence) -> None:
        user_id = presence.user_id
        if user_id not in self.users:
            return
        known = self._versions.get(user_id)
        if known is not None and presence.version <= known:
            return  # stale or already delivered
        self._versions[user_id] = presence.version
        self._pending[user_id] = presence
        self._ready.set()

    def forget(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            self.users.discard(user_id)
            self._pending.pop(user_id, None)
            self._versions.pop(user_id, None)

    def close(self, error: BaseException | None = None) -> None:
        self._closed = True
        self._error = error
        self._ready.set()

    async def next_batch(self) -> list[presence_pb2.UserPresence] | None:
        """The latest presence of every user that changed; None once closed."""
        while not self._pending:
            if self._closed:
                if self._error is not None:
                    raise self._error
                return None
            await self._ready.wait()
            self._ready.clear()
        batch = list(self._pending.values())
        self._pending.clear()
        return batch


class PresenceHub:
    def __init__(self, pubsub: PubSub, snapshot: Snapshot) -> None:
        self._pubsub = pubsub
        self._snapshot = snapshot
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[Watcher]] = {}
        # Serialises channel bookkeeping, so add/remove of one channel never interleave.
        self._lock = asyncio.Lock()
        self._streams = 0
        self._stopped = False
        self._resyncs: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subscription = self._pubsub.subscription(on_resync=self._on_resync)
        self._reader = asyncio.create_task(self._read(self._subscription))

    def _on_resync(self) -> None:
        """Changes may have been missed (Redis reconnect, buffer overflow): re-read
        the current presence of every watched user; versions drop what is not new."""
        task = asyncio.create_task(self.resync())
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def resync(self) -> None:
        try:
            presences = await self._snapshot_all(list(self._watchers))
        except Exception as exc:
            log.warning("presence_resync_failed", error=repr(exc))
            return
        for presence in presences:
            for watcher in tuple(self._watchers.get(presence.user_id, ())):
                watcher.offer(presence)

    async def _snapshot_all(self, user_ids: Sequence[str]) -> list[presence_pb2.UserPresence]:
        presences = []
        for start in range(0, len(user_ids), SNAPSHOT_BATCH):
            presences += await self._snapshot(user_ids[start : start + SNAPSHOT_BATCH])
        return presences

    async def stop(self) -> None:
        self._stopped = True
        for task in tuple(self._resyncs):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._subscription is not None:
            await self._subscription.close()
        metrics.PRESENCE_WATCHED_USERS.dec(len(self._watchers))
        self._watchers.clear()

    def open_stream(self) -> Watcher:
        self._streams += 1
        metrics.PRESENCE_WATCH_STREAMS.inc()
        return Watcher()

    async def close_stream(self, watcher: Watcher) -> None:
        self._streams -= 1
        metrics.PRESENCE_WATCH_STREAMS.dec()
        await self.unwatch(watcher, list(watcher.users))

    async def watch(self, watcher: Watcher, user_ids: Sequence[str]) -> None:
        added = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in watcher.users]
        if not added:
            return
        if len(watcher.users) + len(added) > MAX_WATCHED_PER_STREAM:
            raise InvalidArgument(
                f"a stream watches at most {MAX_WATCHED_PER_STREAM} users",
                code="too_many_watched_users",
                details={"max": MAX_WATCHED_PER_STREAM},
            )
        assert self._subscription is not None, "start() the hub first"
        async with self._lock:
            watcher.users.update(added)
            new_channels = []
            for user_id in added:
                watchers = self._watchers.setdefault(user_id, set())
                if not watchers:
                    new_channels.append(channel(user_id))
                watchers.add(watcher)
            if new_channels:
                await self._subscription.add(new_channels)
                metrics.PRESENCE_WATCHED_USERS.inc(len(new_channels))
        for presence in await self._snapshot_all(added):
            watcher.offer(presence)

    async def unwatch(self, watcher: Watcher, user_ids: Sequence[str]) -> None:
        removed = [user_id for user_id in dict.fromkeys(user_ids) if user_id in watcher.users]
        watcher.forget(removed)
        if not removed or self._subscription is None or self._stopped:
            return
        async with self._lock:
            gone = []
            for user_id in removed:
                watchers = self._watchers.get(user_id)
                if watchers is None:
                    continue
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[user_id]
                    gone.append(channel(user_id))
            if gone:
                await self._subscription.remove(gone)
                metrics.PRESENCE_WATCHED_USERS.dec(len(gone))

    async def _read(self, subscription: Subscription) -> None:
        async for name, data in subscription.messages():
            if not name.startswith(CHANNEL_PREFIX):
                continue
            try:
                presence = presence_pb2.UserPresence.FromString(data)
            except Exception:
                log.warning("presence_message_undecodable", channel=name)
                continue
            for watcher in tuple(self._watchers.get(presence.user_id, ())):
                watcher.offer(presence)
