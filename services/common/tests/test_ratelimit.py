"""Both rate limiters (in-process and real Redis) enforce the same sliding window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from chatmesh.common import errors
from chatmesh.common.ratelimit import InMemoryRateLimiter, Limit, RateLimiter, RedisRateLimiter
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return InMemoryRateLimiter()
    return RedisRateLimiter(request.getfixturevalue("redis_client"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_allows_the_limit_then_denies_with_retry_after(limiter: RateLimiter) -> None:
    decisions = [await limiter.hit("login:alice", limit=3, window=10) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].retry_after == 0
    assert 9 < decisions[3].retry_after <= 10


async def test_the_window_slides(limiter: RateLimiter) -> None:
    window = 1.0
    assert (await limiter.hit("k", limit=2, window=window)).allowed
    await asyncio.sleep(0.5)
    assert (await limiter.hit("k", limit=2, window=window)).allowed
    denied = await limiter.hit("k", limit=2, window=window)
    assert not denied.allowed
    # Only the first hit has to leave the window, not a whole fixed period.
    assert 0 < denied.retry_after <= 0.5
    await asyncio.sleep(denied.retry_after + 0.02)
    assert (await limiter.hit("k", limit=2, window=window)).allowed
    # The second hit is still inside the window: the freed slot is used up again.
    assert not (await limiter.hit("k", limit=2, window=window)).allowed


async def test_denied_hits_do_not_extend_the_block(limiter: RateLimiter) -> None:
    assert (await limiter.hit("k", limit=1, window=0.3)).allowed
    for _ in range(10):
        assert not (await limiter.hit("k", limit=1, window=0.3)).allowed
    await asyncio.sleep(0.33)
    assert (await limiter.hit("k", limit=1, window=0.3)).allowed


async def test_reset_forgets_the_key(limiter: RateLimiter) -> None:
    for _ in range(2):
        await limiter.hit("login:bob", limit=2, window=60)
    assert not (await limiter.hit("login:bob", limit=2, window=60)).allowed
    await limiter.reset("login:bob")
    decision = await limiter.hit("login:bob", limit=2, window=60)
    assert decision.allowed
    assert decision.remaining == 1


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    assert (await limiter.hit("ip:1", limit=1, window=60)).allowed
    assert not (await limiter.hit("ip:1", limit=1, window=60)).allowed
    assert (await limiter.hit("ip:2", limit=1, window=60)).allowed
    await limiter.reset("ip:2")
    assert not (await limiter.hit("ip:1", limit=1, window=60)).allowed


async def test_several_limits_in_one_call_stop_at_the_first_denial(
    limiter: RateLimiter,
) -> None:
    per_ip, per_user = Limit("ip:9", 3, 60), Limit("user:u", 1, 60)
    first = await limiter.hit_many([per_ip, per_user])
    assert first.allowed
    assert first.remaining == 0  # of the last limit checked: the user's
    denied = await limiter.hit_many([per_ip, per_user])
    assert not denied.allowed
    assert 59 < denied.retry_after <= 60
    # The IP hits of both calls were counted; the denied user hit was not.
    assert (await limiter.hit("ip:9", limit=3, window=60)).remaining == 0
    assert (await limiter.hit_many([])).allowed


async def test_in_memory_retry_after_is_exact() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(clock=clock)
    await limiter.hit("k", limit=2, window=10)
    clock.now += 4
    await limiter.hit("k", limit=2, window=10)
    clock.now += 1
    assert (await limiter.hit("k", limit=2, window=10)).retry_after == pytest.approx(5.0)
    clock.now += 5  # the first hit is exactly one window old
    assert (await limiter.hit("k", limit=2, window=10)).allowed


async def test_in_memory_limiter_forgets_idle_keys() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(clock=clock, sweep_interval=60)
    for i in range(1000):
        await limiter.hit(f"ip:{i}", limit=5, window=10)
    assert len(limiter) == 1000
    clock.now += 61
    await limiter.hit("ip:new", limit=5, window=10)
    assert len(limiter) == 1


@pytest.mark.redis
async def test_redis_replicas_share_one_count(redis_client: aioredis.Redis) -> None:
    first, second = RedisRateLimiter(redis_client), RedisRateLimiter(redis_client)
    assert (await first.hit("ip:1", limit=2, window=60)).allowed
    assert (await second.hit("ip:1", limit=2, window=60)).allowed
    assert not (await first.hit("ip:1", limit=2, window=60)).allowed


@pytest.mark.redis
async def test_redis_keys_expire_with_their_window(redis_client: aioredis.Redis) -> None:
    await RedisRateLimiter(redis_client, prefix="rl:").hit("k", limit=5, window=2)
    assert 0 < await redis_client.pttl("rl:k") <= 2000


@pytest.mark.redis
async def test_redis_limiter_reports_unavailable_when_redis_is_down() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RedisRateLimiter(client)
    try:
        with pytest.raises(errors.Unavailable) as raised:
            await limiter.hit("k", limit=1, window=1)
        assert raised.value.code == "rate_limiter_unavailable"
        with pytest.raises(errors.Unavailable):
            await limiter.reset("k")
    finally:
        await client.aclose()


async def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing(redis_url: str) -> None:
    # 300 concurrent hits through one client with a 100-connection pool: each
    # waits for a free connection; none fails with "too many connections".
    client = create_redis(redis_url)
    limiter = RedisRateLimiter(client)
    try:
        decisions = await asyncio.gather(
            *(limiter.hit(f"burst-{i}", limit=1, window=60) for i in range(300))
        )
    finally:
        await client.aclose()
    assert all(decision.allowed for decision in decisions)
