"""Applying the BFF's rate limits (the limiter itself is chatmesh.common's)."""

from __future__ import annotations

import math

from chatmesh.bff.errors import ApiError, retry_after_header
from chatmesh.common.errors import Unavailable
from chatmesh.common.logging import get_logger
from chatmesh.common.ratelimit import RateLimiter

log = get_logger("chatmesh.bff.ratelimit")

# Keys are namespaced: in embedded mode the limiter is shared with the services.
KEY_PREFIX = "bff:"


async def enforce(limiter: RateLimiter, key: str, *, limit: int, window: float) -> None:
    """Count one request for `key`; raise 429 `rate_limited` once over `limit`.

    A limit of 0 disables the check. If the limiter's store is down the request
    is let through (logged): rate limiting must not take the whole API down.
    """
    if limit <= 0:
        return
    try:
        decision = await limiter.hit(KEY_PREFIX + key, limit=limit, window=window)
    except Unavailable:
        log.warning("rate limiter unavailable; request not limited", key=key)
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
