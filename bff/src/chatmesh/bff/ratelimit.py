"""Applying the BFF's rate limits (the limiter itself is chatmesh.common's)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from chatmesh.bff.errors import ApiError, retry_after_header
from chatmesh.common.errors import Unavailable
from chatmesh.common.logging import get_logger
from chatmesh.common.ratelimit import Limit, RateLimiter

log = get_logger("chatmesh.bff.ratelimit")

# Keys are namespaced: in embedded mode the limiter is shared with the services.
KEY_PREFIX = "bff:"


async def enforce(limiter: RateLimiter, key: str, *, limit: int, window: float) -> None:
    """Count one request for `key`; raise 429 `rate_limited` once over `limit`."""
    await enforce_all(limiter, [Limit(key, limit, window)])


async def enforce_all(limiter: RateLimiter, limits: Sequence[Limit]) -> None:
    """Count one request against each limit (one round trip to the store); raise
    429 `rate_limited` at the first one exceeded.

    A limit of 0 disables that check. If the limiter's store is down the request
    is let through (logged): rate limiting must not take the whole API down.
    """
    active = [
        Limit(KEY_PREFIX + item.key, item.limit, item.window) for item in limits if item.limit > 0
    ]
    if not active:
        return
    try:
        decision = await limiter.hit_many(active)
    except Unavailable:
        log.warning("rate limiter unavailable; request not limited", keys=[i.key for i in active])
        return
    if decision.allowed:
        return
    retry_after = max(1, math.ceil(decision.retry_after))
    raise ApiError(
        429,
        "rate_limited",
        f"too many requests; try again in {retry_after} s",
        details={"retry_after": retry_after},
        headers=retry_after_header(retry_after),
    )
