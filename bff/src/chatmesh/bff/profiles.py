"""Batched profile look-ups with a short TTL cache.

Anything that shows people next to data (room member lists, message authors,
the WebSocket `ready` frame) asks :class:`ProfileDirectory` for all the ids it
needs at once; the ids not cached are fetched in ONE ``BatchGetProfiles`` call,
never one call per user::

    profiles = await backends(scope).profiles.get_many(author_ids, access_token=token)
    names = {user_id: profile.display_name for user_id, profile in profiles.items()}

``BatchGetProfiles`` does not hide anyone (blocks only affect search and
``GetProfile``), so one cache serves every caller of this process. Entries live
for ``ttl`` seconds: a changed display name shows up everywhere within that time,
and at once in this process after :meth:`ProfileDirectory.invalidate` (which
``PATCH /api/v1/users/me/profile`` calls).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from chatmesh.common.grpc.client import call_metadata
from chatmesh.user.v1 import user_pb2, user_pb2_grpc

# The user service answers at most this many ids per BatchGetProfiles call.
MAX_BATCH = 1000


class ProfileDirectory:
    """Profiles by user id, cached for `ttl` seconds (at most `max_entries`)."""

    def __init__(
        self,
        users: user_pb2_grpc.UserServiceStub,
        *,
        timeout: float,
        ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = users
        self._timeout = timeout
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        # user id -> (expiry, profile); oldest insertion first.
        self._cache: OrderedDict[str, tuple[float, user_pb2.Profile]] = OrderedDict()
        # How many BatchGetProfiles calls were made (for tests and metrics).
        self.calls = 0

    async def get_many(
        self, user_ids: Iterable[str], *, access_token: str, request_id: str | None = None
    ) -> dict[str, user_pb2.Profile]:
        """The profiles of `user_ids` that exist, by id (unknown ids are left out).

        `access_token` is any signed-in user's token (the call needs one)."""
        wanted = list(dict.fromkeys(user_id for user_id in user_ids if user_id))
        now = self._clock()
        found: dict[str, user_pb2.Profile] = {}
        missing: list[str] = []
        for user_id in wanted:
            entry = self._cache.get(user_id)
            if entry is not None and entry[0] > now:
                found[user_id] = entry[1]
            else:
                missing.append(user_id)
        for start in range(0, len(missing), MAX_BATCH):
            chunk = missing[start : start + MAX_BATCH]
            self.calls += 1
            reply = await self._users.BatchGetProfiles(
                user_pb2.BatchGetProfilesRequest(user_ids=chunk),
                timeout=self._timeout,
                metadata=call_metadata(access_token=access_token, request_id=request_id),
            )
            for profile in reply.profiles:
                found[profile.user_id] = profile
                self.put(profile)
        return {user_id: found[user_id] for user_id in wanted if user_id in found}

    async def get(
        self, user_id: str, *, access_token: str, request_id: str | None = None
    ) -> user_pb2.Profile | None:
        """One profile (through the same cache), or None when unknown."""
        found = await self.get_many([user_id], access_token=access_token, request_id=request_id)
        return found.get(user_id)

    def put(self, profile: user_pb2.Profile) -> None:
        """Cache a profile that arrived another way (e.g. an update's answer)."""
        self._cache.pop(profile.user_id, None)
        self._cache[profile.user_id] = (self._clock() + self._ttl, profile)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def invalidate(self, user_id: str) -> None:
        self._cache.pop(user_id, None)
