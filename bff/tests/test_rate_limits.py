"""Rate limits: per client address on the API, stricter on /api/v1/auth/*, per user
when signed in. Redis-backed in production (shared by every BFF replica)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.testing import free_port

pytestmark = pytest.mark.redis

PASSWORD = "correct horse battery staple"
LOGIN = "/api/v1/auth/login"


def assert_rate_limited(response) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after
    return retry_after


async def test_auth_routes_are_limited_per_address_across_replicas(
    sqlite_auth, start_bff, redis_url
):
    settings = {
        "auth_address": sqlite_auth.address,
        "redis_url": redis_url,
        "rate_limit_auth_ip": 4,
        "rate_limit_ip": 100,
    }
    first = await start_bff(**settings)
    second = await start_bff(**settings)
    body = {"login": "nobody@example.com", "password": PASSWORD}
    async with first.client() as a, second.client() as b:
        statuses = []
        for client in (a, b, a, b):
            statuses.append((await client.post(LOGIN, json=body)).status_code)
        assert statuses == [401, 401, 401, 401]
        # The fifth attempt is over the shared limit, whichever replica gets it.
        assert_rate_limited(await b.post(LOGIN, json=body))
        assert_rate_limited(await a.post(LOGIN, json=body))
        # Routes outside /api/v1/auth have their own, larger budget.
        assert (await a.get("/api/v1/me")).status_code == 401
        assert (await a.get("/healthz")).status_code == 200

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match="*bff:auth-ip:*")]
    finally:
        await client.aclose()
    assert keys, "the limit lives in Redis"


async def test_every_api_call_is_limited_per_address(sqlite_auth, start_bff, redis_url):
    bff = await start_bff(auth_address=sqlite_auth.address, redis_url=redis_url, rate_limit_ip=3)
    async with bff.client() as client:
        for _ in range(3):
            assert (await client.get("/api/v1/me")).status_code == 401
        assert_rate_limited(await client.get("/api/v1/me"))
        assert_rate_limited(await client.get("/api/openapi.json"))
        # Probes and the web UI are not API calls.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/")).status_code == 200


async def test_signed_in_users_are_limited_per_user_from_any_address(
    sqlite_auth, start_bff, redis_url
):
    bff = await start_bff(
        auth_address=sqlite_auth.address,
        redis_url=redis_url,
        rate_limit_user=3,
        trusted_proxy_hops=1,
    )

    async def register(n: int) -> str:
        async with bff.client() as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "email": f"limited{n}@example.com",
                    "username": f"limited{n}",
                    "password": PASSWORD,
                    "display_name": "Limited",
                },
            )
        assert response.status_code == 201, response.text
        return str(response.json()["access_token"])

    alice, bob = await register(1), await register(2)
    async with bff.client() as client:
        for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            response = await client.get(
                "/api/v1/me",
                headers={"Authorization": f"Bearer {alice}", "X-Forwarded-For": address},
            )
            assert response.status_code == 200
        over = await client.get(
            "/api/v1/me",
            headers={"Authorization": f"Bearer {alice}", "X-Forwarded-For": "198.51.100.4"},
        )
        assert_rate_limited(over)
        # Another user is not affected.
        other = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {bob}"})
        assert other.status_code == 200


async def test_the_embedded_limiter_limits_too(sqlite_auth, start_bff):
    bff = await start_bff(
        auth_address=sqlite_auth.address, rate_limit_auth_ip=2, limiter=InMemoryRateLimiter()
    )
    async with bff.client() as client:
        body = {"login": "nobody", "password": PASSWORD}
        assert (await client.post(LOGIN, json=body)).status_code == 401
        assert (await client.post(LOGIN, json=body)).status_code == 401
        assert_rate_limited(await client.post(LOGIN, json=body))


async def test_the_auth_services_login_throttle_comes_through_as_429(sqlite_api):
    user, _ = await sqlite_api.register()
    statuses = []
    for _ in range(8):
        response = await sqlite_api.post(LOGIN, {"login": user["email"], "password": "wrong guess"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[0] == 401
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["details"]["retry_after"] >= 1


async def test_a_redis_outage_does_not_take_the_api_down(sqlite_auth, sqlite_deps, start_bff):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    bff = await start_bff(auth_address=sqlite_auth.address, redis_url=dead_redis, **sqlite_deps)
    async with bff.client() as client:
        # Limits fail open...
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "email": "outage@example.com",
                "username": "outage",
                "password": PASSWORD,
                "display_name": "Outage",
            },
        )
        assert response.status_code == 201, response.text
        # ...but readiness reports the broken dependency.
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["error"]["details"]["checks"]
        assert checks == {"auth": "ok", "user": "ok", "chat": "ok", "redis": "unavailable"}
