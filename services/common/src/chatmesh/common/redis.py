"""One way to open a Redis client from a URL (timeouts and health checks set)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

# Longer than any blocking read we issue (the bus blocks for 1 s by default), short
# enough that a hung Redis turns into an error instead of a stuck request.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# A request should fail fast when Redis is down: two quick retries, not the
# library default of several seconds of backoff.
RETRIES = 2
# Connections per process. A burst beyond it waits up to POOL_TIMEOUT for a free
# connection (BlockingConnectionPool) instead of failing at once.
MAX_CONNECTIONS = 100
POOL_TIMEOUT = 5.0


def create_redis(url: str) -> aioredis.Redis:
    """A client for `url` (redis://, rediss://, unix://) returning raw bytes."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT,
        decode_responses=False,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        # Ping idle connections before use so a Redis restart is noticed up front.
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES),
    )
    # The client owns the pool: aclose() closes both.
    return aioredis.Redis.from_pool(pool)
