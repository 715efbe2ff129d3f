"""Fixed-cost rate limiting with two implementations: Redis (shared by every
replica) and in-process (embedded mode). Sliding-window semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


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
    def __init__(self) -> None:
        raise NotImplementedError

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        raise NotImplementedError

    async def reset(self, key: str) -> None:
        raise NotImplementedError


class RedisRateLimiter:
    """Atomic (one Lua script per hit). Raises `errors.Unavailable` if Redis is down."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "ratelimit:") -> None:
        raise NotImplementedError

    async def hit(self, key: str, *, limit: int, window: float) -> RateLimitDecision:
        raise NotImplementedError

    async def reset(self, key: str) -> None:
        raise NotImplementedError
