"""Presence as the service runs it: store operations, then the broadcast of
each published change on pub/sub channel `presence.<user id>` (every replica's
watchers hear it), and the last-seen time of users who went offline written
to the database. A sweeper loop expires leases and publishes due changes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Sequence

from chatmesh.common.clock import from_epoch
from chatmesh.common.errors import InvalidArgument
from chatmesh.common.logging import get_logger
from chatmesh.common.pubsub import PubSub
from chatmesh.services.user import metrics
from chatmesh.services.user.presence.codec import to_proto
from chatmesh.services.user.presence.store import (
    ConnectionConflictError,
    PresencePolicy,
    PresenceState,
    PresenceStore,
    Status,
)
from chatmesh.services.user.profiles import ProfileService
from chatmesh.user.v1 import presence_pb2

log = get_logger(__name__)

CHANNEL_PREFIX = "presence."
MAX_CONNECTIONS_PER_CALL = 10_000
_CONNECTION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_INSTANCE_ID = re.compile(r"[\x21-\x7e]{1,128}")


def channel(user_id: str) -> str:
    return CHANNEL_PREFIX + user_id


def check_connection_ids(ids: Sequence[str], *, field: str = "connection_ids") -> list[str]:
    unique = list(dict.fromkeys(ids))
    if len(unique) > MAX_CONNECTIONS_PER_CALL:
        raise InvalidArgument(
            f"at most {MAX_CONNECTIONS_PER_CALL} connection ids per call",
            code="too_many_connection_ids",
            details={"field": field, "max": MAX_CONNECTIONS_PER_CALL},
        )
    for connection_id in unique:
        if not _CONNECTION_ID.fullmatch(connection_id):
            raise InvalidArgument(
                "a connection id has 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
                code="invalid_connection_id",
                details={"field": field},
            )
    return unique


def check_instance_id(instance_id: str) -> str:
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise InvalidArgument(
            "an instance id has 1 to 128 printable characters",
            code="invalid_instance_id",
            details={"field": "instance_id"},
        )
    return instance_id


class PresenceTracker:
    def __init__(
        self,
        *,
        store: PresenceStore,
        pubsub: PubSub,
        profiles: ProfileService,
        policy: PresencePolicy,
        sweep_interval: float,
        max_concurrency: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._pubsub = pubsub
        self._profiles = profiles
        self.policy = policy
        self._sweep_interval = sweep_interval
        self._clock = clock
        # At most this many store operations (each with its broadcast) at once: a
        # reconnect storm of BFF connections queues here instead of exhausting
        # the shared Redis connection pool.
        self._limit = asyncio.Semaphore(max_concurrency)

    @property
    def heartbeat_interval(self) -> float:
        """What the BFF is told: three heartbeats per TTL survive one lost beat."""
        return self.policy.connection_ttl / 3

    async def open(self, *, user_id: str, connection_id: str, instance_id: str) -> PresenceState:
        """Register a connection; the user's presence afterwards."""
        check_connection_ids([connection_id], field="connection_id")
        check_instance_id(instance_id)
        async with self._limit:
            try:
                changes = await self._store.open(
                    user_id=user_id,
                    connection_id=connection_id,
                    instance_id=instance_id,
                    now=self._clock(),
                    policy=self.policy,
                )
            except ConnectionConflictError:
                raise InvalidArgument(
                    "this connection id is already in use",
                    code="connection_id_in_use",
                    details={"field": "connection_id"},
                ) from None
            metrics.PRESENCE_CONNECTIONS.labels("opened").inc()
            await self._announce(changes)
            mine = [change for change in changes if change.user_id == user_id]
            return mine[-1] if mine else (await self._store.get([user_id]))[0]

    async def heartbeat(
        self, *, instance_id: str, connection_ids: Sequence[str], active_ids: Sequence[str]
    ) -> list[str]:
        """Extend leases; the ids that are not (or no longer) leases of `instance_id`."""
        check_instance_id(instance_id)
        ids = check_connection_ids(connection_ids)
        known = set(ids)
        active = [c for c in check_connection_ids(active_ids) if c in known]
        async with self._limit:
            changes, unknown = await self._store.heartbeat(
                instance_id=instance_id,
                connection_ids=ids,
                active_ids=active,
                now=self._clock(),
                policy=self.policy,
            )
            await self._announce(changes)
        return unknown

    async def close(self, *, instance_id: str, connection_ids: Sequence[str]) -> None:
        check_instance_id(instance_id)
        ids = check_connection_ids(connection_ids)
        async with self._limit:
            changes = await self._store.close(
                instance_id=instance_id, connection_ids=ids, now=self._clock(), policy=self.policy
            )
            metrics.PRESENCE_CONNECTIONS.labels("closed").inc(len(ids))
            await self._announce(changes)

    async def get(self, user_ids: Sequence[str]) -> list[PresenceState]:
        """Published presence; last-seen from the database once the store forgot it."""
        async with self._limit:
            states = await self._store.get(user_ids)
        missing = [
            state.user_id
            for state in states
            if state.status is Status.OFFLINE and state.last_seen is None
        ]
        if not missing:
            return states
        seen = await self._profiles.last_seen(missing)
        return [
            PresenceState(s.user_id, s.status, s.version, seen[s.user_id].timestamp())
            if s.user_id in seen and s.last_seen is None and s.status is Status.OFFLINE
            else s
            for s in states
        ]

    async def snapshot(self, user_ids: Sequence[str]) -> list[presence_pb2.UserPresence]:
        """`get` as protobuf messages (GetPresence, and the start of a watch)."""
        return [to_proto(state) for state in await self.get(user_ids)]

    async def sweep(self) -> None:
        async with self._limit:
            changes = await self._store.sweep(now=self._clock(), policy=self.policy)
            await self._announce(changes)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_interval` until `stop` is set; errors are logged."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("presence_sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._sweep_interval)

    async def _announce(self, changes: Sequence[PresenceState]) -> None:
        for change in changes:
            metrics.PRESENCE_CHANGES.labels(change.status.value).inc()
            try:
                await self._pubsub.publish(
                    channel(change.user_id), to_proto(change).SerializeToString()
                )
            except Exception as exc:
                # The change is stored (GetPresence and later changes are right);
                # only this broadcast is lost.
                log.warning("presence_publish_failed", user_id=change.user_id, error=repr(exc))
        offline = {
            change.user_id: from_epoch(change.last_seen)
            for change in changes
            if change.status is Status.OFFLINE and change.last_seen is not None
        }
        if offline:
            try:
                await self._profiles.record_last_seen(offline)
            except Exception as exc:
                # The store still has it; the next offline transition writes again.
                log.warning("last_seen_not_saved", users=len(offline), error=repr(exc))
