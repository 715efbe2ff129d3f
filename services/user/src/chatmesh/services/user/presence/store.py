"""Where presence lives: connection leases with expiry times, and each user's
*published* presence (the last status announced, with a version).

Every operation is one atomic step that updates the leases and then
re-evaluates the users it touched:

- computed status: OFFLINE without connections; AWAY when no connection was
  active within `away_after`; ONLINE otherwise;
- unchanged from the published status: nothing happens (no-op changes are
  never announced);
- going OFFLINE: not announced yet, but scheduled `offline_delay` later, so a
  reconnect within that time (a reload, a flaky network) announces nothing;
- anything else: published with a new version, and returned as a change for
  the caller to broadcast.

`sweep` drops leases whose TTL ran out (a crashed BFF stops heartbeating) and
publishes the offline changes that are due. Versions are
`max(previous + 1, now in µs)`, so they keep increasing even after a published
state expired from the store.

Two implementations: `InMemoryPresenceStore` (one process, embedded mode) and
`RedisPresenceStore` (shared by every replica, in `redis_store`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Status(enum.Enum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class PresencePolicy:
    """Timings, in seconds."""

    # A lease without a heartbeat for this long expires.
    connection_ttl: float
    # A user connected but inactive for this long is AWAY.
    away_after: float
    # Quiet time before OFFLINE is announced.
    offline_delay: float
    # How long an OFFLINE state (and last-seen time) is kept in the store; the
    # database keeps last-seen for good.
    offline_state_ttl: float = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class PresenceState:
    user_id: str
    status: Status
    # 0: never published.
    version: int
    # Epoch seconds the user was last connected (OFFLINE states only).
    last_seen: float | None = None


class ConnectionConflictError(Exception):
    """The connection id is registered to another user."""


def next_version(previous: int, now: float) -> int:
    return max(previous + 1, int(now * 1_000_000))


class PresenceStore(Protocol):
    async def open(
        self,
        *,
        user_id: str,
        connection_id: str,
        instance_id: str,
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        """Register a connection (active now). Raises ConnectionConflictError when the id
        belongs to another user. Returns the published changes."""
        ...

    async def heartbeat(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        active_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> tuple[list[PresenceState], list[str]]:
        """Extend the leases of `instance_id`'s connections; `active_ids` had user
        activity. Returns (published changes, ids that are not leases of `instance_id`)."""
        ...

    async def close(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        """Remove connections of `instance_id` (others are ignored)."""
        ...

    async def sweep(self, *, now: float, policy: PresencePolicy) -> list[PresenceState]:
        """Expire leases past their TTL and publish the OFFLINE changes that are due."""
        ...

    async def get(self, user_ids: Sequence[str]) -> list[PresenceState]:
        """The published presence of each user (OFFLINE, version 0 if never published)."""
        ...

    async def close_store(self) -> None: ...


@dataclass(slots=True)
class _Lease:
    user_id: str
    instance_id: str
    expires: float
    last_active: float


@dataclass(slots=True)
class _User:
    connections: set[str] = field(default_factory=set)
    last_seen: float | None = None


class InMemoryPresenceStore:
    """One process's presence. Each method runs without awaiting, so it is atomic."""

    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        self._users: dict[str, _User] = {}
        self._published: dict[str, PresenceState] = {}
        # user id → when their OFFLINE change is due.
        self._pending: dict[str, float] = {}

    def _computed(self, user_id: str, now: float, policy: PresencePolicy) -> Status:
        user = self._users.get(user_id)
        if user is None or not user.connections:
            return Status.OFFLINE
        last_active = max(self._leases[c].last_active for c in user.connections)
        return Status.AWAY if now - last_active >= policy.away_after else Status.ONLINE

    def _evaluate(
        self,
        user_ids: Sequence[str] | set[str],
        now: float,
        policy: PresencePolicy,
        *,
        commit_offline: bool,
    ) -> list[PresenceState]:
        changes = []
        for user_id in sorted(user_ids):
            status = self._computed(user_id, now, policy)
            published = self._published.get(user_id)
            old_status = published.status if published else Status.OFFLINE
            if status == old_status:
                continue
            if status is Status.OFFLINE and not commit_offline:
                self._pending[user_id] = now + policy.offline_delay
                continue
            self._pending.pop(user_id, None)
            last_seen = None
            if status is Status.OFFLINE:
                user = self._users.get(user_id)
                last_seen = user.last_seen if user and user.last_seen is not None else now
            state = PresenceState(
                user_id=user_id,
                status=status,
                version=next_version(published.version if published else 0, now),
                last_seen=last_seen,
            )
            self._published[user_id] = state
            changes.append(state)
        return changes

    def _drop(self, connection_id: str) -> str:
        lease = self._leases.pop(connection_id)
        user = self._users[lease.user_id]
        user.connections.discard(connection_id)
        return lease.user_id

    async def open(
        self,
        *,
        user_id: str,
        connection_id: str,
        instance_id: str,
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        existing = self._leases.get(connection_id)
        if existing is not None and existing.user_id != user_id:
            raise ConnectionConflictError(connection_id)
        self._leases[connection_id] = _Lease(
            user_id=user_id,
            instance_id=instance_id,
            expires=now + policy.connection_ttl,
            last_active=now,
        )
        user = self._users.setdefault(user_id, _User())
        user.connections.add(connection_id)
        user.last_seen = now
        return self._evaluate([user_id], now, policy, commit_offline=False)

    async def heartbeat(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        active_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> tuple[list[PresenceState], list[str]]:
        active = set(active_ids)
        touched: set[str] = set()
        unknown: list[str] = []
        for connection_id in connection_ids:
            lease = self._leases.get(connection_id)
            if lease is None or lease.instance_id != instance_id:
                unknown.append(connection_id)
                continue
            lease.expires = now + policy.connection_ttl
            if connection_id in active:
                lease.last_active = now
            self._users[lease.user_id].last_seen = now
            touched.add(lease.user_id)
        return self._evaluate(touched, now, policy, commit_offline=False), unknown

    async def close(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        touched: set[str] = set()
        for connection_id in connection_ids:
            lease = self._leases.get(connection_id)
            if lease is None or lease.instance_id != instance_id:
                continue
            user_id = self._drop(connection_id)
            self._users[user_id].last_seen = now
            touched.add(user_id)
        return self._evaluate(touched, now, policy, commit_offline=False)

    async def sweep(self, *, now: float, policy: PresencePolicy) -> list[PresenceState]:
        expired = [c for c, lease in self._leases.items() if lease.expires <= now]
        # The last heartbeat stays the user's last-seen time.
        touched = {self._drop(connection_id) for connection_id in expired}
        changes = self._evaluate(touched, now, policy, commit_offline=False)
        due = [user_id for user_id, when in self._pending.items() if when <= now]
        for user_id in due:
            del self._pending[user_id]
        changes += self._evaluate(due, now, policy, commit_offline=True)
        for user_id in touched | set(due):
            user = self._users.get(user_id)
            if user is not None and not user.connections and user_id not in self._pending:
                # Nothing left to track; the published state keeps last-seen.
                del self._users[user_id]
        return changes

    async def get(self, user_ids: Sequence[str]) -> list[PresenceState]:
        return [
            self._published.get(user_id) or PresenceState(user_id, Status.OFFLINE, 0)
            for user_id in user_ids
        ]

    async def close_store(self) -> None:
        return None
