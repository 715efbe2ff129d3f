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
from collections.abc import Callable
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


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        """Count one event for `key`; deny once `limit` events fall inside `window` seconds."""
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

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _sweep(self, now: float) -> None:
        # A key whose newest hit left its window holds no information any more.
        idle = [k for k, (w, times) in self._hits.items() if not times or times[-1] <= now - w]
        for key in idle:
            del self._hits[key]
        self._next_sweep = now + self._sweep_interval


# KEYS[1] sorted set of allowed hits scored by server time in microseconds.
# ARGV: limit, window in microseconds, a unique member. Server time keeps every
# replica on one clock. Returns {allowed, remaining, retry_after_us}.
_SLIDING_WINDOW = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local retry = window
if oldest[2] then retry = tonumber(oldest[2]) + window - now end
return {0, 0, retry}
"""


class RedisRateLimiter:
    """Atomic (one Lua script per hit). Raises `errors.Unavailable` if Redis is down."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "ratelimit:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        window_us = max(1, int(window * 1_000_000))
        try:
            allowed, remaining, retry_us = await self._script(
                keys=[self._prefix + key], args=[limit, window_us, secrets.token_hex(8)]
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
