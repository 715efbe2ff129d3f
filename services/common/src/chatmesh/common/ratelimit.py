"""Fixed-cost rate limiting with two implementations: Redis (shared by every
replica) and in-process (embedded mode). Sliding-window semantics.

Both keep a log of the allowed hits inside the window (exact, no boundary burst
as with fixed windows). Denied hits are not counted, so a client that keeps
hammering is let in again as soon as its oldest allowed hit leaves the window.
A key must always be used with the same `limit` and `window`.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatmesh.common import errors


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    remaining: int
    # Seconds until the next hit would be allowed (0 when allowed).
    retry_after: float


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    limit: int
    window: float


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Count one event for `key`; deny once `limit` events fall inside `window` seconds."""
        ...

    async def hit_many(self, limits: Sequence[Limit]) -> RateLimitDecision:
        """`hit` for each limit in order, stopping at the first denial (whose
        decision is returned), in one round trip to the store."""
        ...

    async def reset(self, key: str) -> None:
        """Forget `key` (e.g. after a successful login)."""
        ...


class InMemoryRateLimiter:
    """Per key a deque of monotonic hit times; idle keys are swept periodically."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sweep_interval: float = 60.0
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._next_sweep = clock() + sweep_interval
        # key -> (window, times of allowed hits still inside it)
        self._hits: dict[str, tuple[float, deque[float]]] = {}

    def __len__(self) -> int:
        """How many keys are tracked (memory stays bounded by the active keys)."""
        return len(self._hits)

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        _, times = self._hits.setdefault(key, (window, deque()))
        while times and times[0] <= now - window:
            times.popleft()
        if len(times) < limit:
            times.append(now)
            return RateLimitDecision(allowed=True, remaining=limit - len(times), retry_after=0.0)
        retry_after = times[0] + window - now if times else window
        return RateLimitDecision(allowed=False, remaining=0, retry_after=retry_after)

    async def hit_many(self, limits: Sequence[Limit]) -> RateLimitDecision:
        decision = _NO_LIMITS
        for item in limits:
            decision = await self.hit(item.key, limit=item.limit, window=item.window)
            if not decision.allowed:
                break
        return decision

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _sweep(self, now: float) -> None:
        # A key whose newest hit left its window holds no information any more.
        idle = [k for k, (w, times) in self._hits.items() if not times or times[-1] <= now - w]
        for key in idle:
            del self._hits[key]
        self._next_sweep = now + self._sweep_interval


_NO_LIMITS = RateLimitDecision(allowed=True, remaining=0, retry_after=0.0)

# KEYS: one sorted set per limit, of allowed hits scored by server time in
# microseconds. ARGV: a unique member, then limit and window (microseconds) per
# key. Checked in order; the first denial stops (later keys are not counted).
# Server time keeps every replica on one clock.
# Returns {allowed, remaining, retry_after_us} of the last key checked.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local result = {1, 0, 0}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local retry = window
    if oldest[2] then retry = tonumber(oldest[2]) + window - now end
    return {0, 0, retry}
  end
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  result = {1, limit - count - 1, 0}
end
return result
"""


class RedisRateLimiter:
    """Atomic (one Lua script per hit). Raises `errors.Unavailable` if Redis is down."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "ratelimit:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        return await self.hit_many([Limit(key, limit, window)])

    async def hit_many(self, limits: Sequence[Limit]) -> RateLimitDecision:
        if not limits:
            return _NO_LIMITS
        args: list[str | int] = [secrets.token_hex(8)]
        for item in limits:
            args += [item.limit, max(1, int(item.window * 1_000_000))]
        try:
            allowed, remaining, retry_us = await self._script(
                keys=[self._prefix + item.key for item in limits], args=args
            )
        except (RedisError, OSError) as exc:
            raise _unavailable() from exc
        return RateLimitDecision(
            allowed=bool(allowed), remaining=int(remaining), retry_after=int(retry_us) / 1e6
        )

    async def reset(self, key: str) -> None:
        try:
            await self._client.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _unavailable() from exc


def _unavailable() -> errors.Unavailable:
    return errors.Unavailable("rate limiter unavailable", code="rate_limiter_unavailable")
