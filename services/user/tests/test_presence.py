"""Presence across devices as the BFF reports it: connections open, heartbeat and
close; a crashed BFF's users go offline when their leases expire; changes
reach WatchPresence streams (also on other replicas), without storms.

Runs on both presence backends: in-process (embedded) and Redis. Timings are
short: sweep every 50 ms, offline announced after 0.3 s (connection TTL 5 s, and
1 s where expiry is what is tested).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
import redis.asyncio

from chatmesh.common.testkit import failure
from chatmesh.user.v1 import presence_pb2

ONLINE = presence_pb2.PRESENCE_STATUS_ONLINE
AWAY = presence_pb2.PRESENCE_STATUS_AWAY
OFFLINE = presence_pb2.PRESENCE_STATUS_OFFLINE


def _connection_id() -> str:
    return uuid.uuid4().hex


async def _open(stub, user, connection_id, instance="bff-1"):
    return await stub.OpenConnection(
        presence_pb2.OpenConnectionRequest(connection_id=connection_id, instance_id=instance),
        metadata=user.auth,
    )


async def _close(stub, *connection_ids, instance="bff-1"):
    await stub.CloseConnections(
        presence_pb2.CloseConnectionsRequest(instance_id=instance, connection_ids=connection_ids)
    )


async def _heartbeat(stub, *connection_ids, instance="bff-1", active=()):
    response = await stub.Heartbeat(
        presence_pb2.HeartbeatRequest(
            instance_id=instance, connection_ids=connection_ids, active_connection_ids=active
        )
    )
    return list(response.unknown_connection_ids)


async def _status(stub, user, *user_ids):
    response = await stub.GetPresence(
        presence_pb2.GetPresenceRequest(user_ids=user_ids), metadata=user.auth
    )
    return [p.status for p in response.presences]


async def test_two_devices_one_closes_still_online_both_close_offline(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada, bob = await mesh.register(), await mesh.register()
        watch = watches(mesh.presence)
        await watch.add(ada.id)
        await watch.wait_for(ada.id, OFFLINE)  # the state when watching starts
        phone, laptop = _connection_id(), _connection_id()

        opened = await _open(mesh.presence, ada, phone)
        await _open(mesh.presence, ada, laptop)

        assert opened.presence.status == ONLINE
        # A third of the connection TTL (5 s here, 45 s by default).
        assert opened.heartbeat_interval.ToMilliseconds() == pytest.approx(1667, abs=1)
        await watch.wait_for(ada.id, ONLINE)
        assert await _status(mesh.presence, bob, ada.id) == [ONLINE]

        await _close(mesh.presence, phone)
        # Longer than the offline delay: nothing changes while the laptop is open.
        await asyncio.sleep(0.6)
        assert await _status(mesh.presence, bob, ada.id) == [ONLINE]
        assert watch.of(ada.id) == [OFFLINE, ONLINE]

        await _close(mesh.presence, laptop)

        offline = await watch.wait_for(ada.id, OFFLINE, count=2)
        assert watch.of(ada.id) == [OFFLINE, ONLINE, OFFLINE]
        [presence] = (
            await mesh.presence.GetPresence(
                presence_pb2.GetPresenceRequest(user_ids=[ada.id]), metadata=bob.auth
            )
        ).presences
        assert presence.status == OFFLINE
        assert presence.version == offline.version
        last_seen = presence.last_seen_time.ToDatetime().timestamp()
        assert time.time() - 5 < last_seen <= time.time()
        # last seen is kept in the database too.
        assert (
            await mesh.count(
                "SELECT COUNT(*) FROM profiles WHERE user_id = :id AND last_seen_time IS NOT NULL",
                id=ada.id,
            )
            == 1
        )


async def test_a_crashed_bffs_users_go_offline_when_their_leases_expire(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(
        sqlite_url, presence_connection_ttl_seconds=1.0, **backend_options
    ) as mesh:
        ada, bob = await mesh.register(), await mesh.register()
        watch = watches(mesh.presence)
        await watch.add(ada.id, bob.id)
        await watch.wait_for(bob.id, OFFLINE)
        await watch.wait_for(ada.id, OFFLINE)
        crashed, alive = _connection_id(), _connection_id()
        await _open(mesh.presence, ada, crashed, instance="bff-crashed")
        await _open(mesh.presence, bob, alive, instance="bff-alive")
        started = time.monotonic()

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(0.25)
                await _heartbeat(mesh.presence, alive, instance="bff-alive")

        beating = asyncio.create_task(keep_alive())
        try:
            # bff-crashed sends nothing more (as after SIGKILL): the lease expires after
            # the 1 s TTL, and offline is announced 0.3 s later.
            await watch.wait_for(ada.id, OFFLINE, count=2, within=5)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)
        finally:
            beating.cancel()

        assert 1.0 <= elapsed < 3.0
        assert await _status(mesh.presence, bob, ada.id, bob.id) == [OFFLINE, ONLINE]
        assert watch.of(bob.id) == [OFFLINE, ONLINE]
        # If the BFF comes back, it learns that its connection is gone.
        assert await _heartbeat(mesh.presence, crashed, instance="bff-crashed") == [crashed]


async def test_a_watcher_gets_changes_of_the_users_it_watches_only(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada, bob = await mesh.register(), await mesh.register()
        watch = watches(mesh.presence)
        await watch.add(ada.id)
        await watch.wait_for(ada.id, OFFLINE)

        await _open(mesh.presence, bob, _connection_id())
        ada_connection = _connection_id()
        await _open(mesh.presence, ada, ada_connection)
        await watch.wait_for(ada.id, ONLINE)

        assert watch.of(bob.id) == []
        await watch.remove(ada.id)
        await watch.add(bob.id)
        await watch.wait_for(bob.id, ONLINE)  # current state on add
        await _close(mesh.presence, ada_connection)
        await asyncio.sleep(0.6)
        assert watch.of(ada.id) == [OFFLINE, ONLINE]  # no longer watched


async def test_flapping_connections_cause_no_storm(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada = await mesh.register()
        watch = watches(mesh.presence)
        await watch.add(ada.id)
        await watch.wait_for(ada.id, OFFLINE)
        connection = _connection_id()
        await _open(mesh.presence, ada, connection)
        await watch.wait_for(ada.id, ONLINE)

        # A flaky network: the socket drops and reconnects again and again.
        for _ in range(20):
            await _close(mesh.presence, connection)
            connection = _connection_id()
            await _open(mesh.presence, ada, connection)
        await asyncio.sleep(0.6)

        assert watch.of(ada.id) == [OFFLINE, ONLINE]
        await _close(mesh.presence, connection)
        await watch.wait_for(ada.id, OFFLINE, count=2)
        await asyncio.sleep(0.4)
        assert watch.of(ada.id) == [OFFLINE, ONLINE, OFFLINE]


async def test_idle_connections_turn_away_and_activity_brings_them_back(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(sqlite_url, presence_away_after_seconds=0.4, **backend_options) as mesh:
        ada = await mesh.register()
        watch = watches(mesh.presence)
        await watch.add(ada.id)
        await watch.wait_for(ada.id, OFFLINE)
        connection = _connection_id()
        await _open(mesh.presence, ada, connection)
        await watch.wait_for(ada.id, ONLINE)

        await asyncio.sleep(0.5)
        await _heartbeat(mesh.presence, connection)  # open, but nothing typed
        await watch.wait_for(ada.id, AWAY)
        await _heartbeat(mesh.presence, connection, active=[connection])
        await watch.wait_for(ada.id, ONLINE, count=2)

        assert watch.of(ada.id) == [OFFLINE, ONLINE, AWAY, ONLINE]
        versions = [p.version for p in watch.received if p.user_id == ada.id]
        assert versions == sorted(versions)
        assert len(set(versions)) == len(versions)


async def test_changes_reach_watchers_on_other_replicas(
    start_mesh, sqlite_url, backend_options, watches
):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada = await mesh.register()
        other = await mesh.add_replica()
        near, far = watches(mesh.presence), watches(other.presence)
        for watch in (near, far):
            await watch.add(ada.id)
            await watch.wait_for(ada.id, OFFLINE)

        # The BFF's connection is reported to replica 1 and closed through replica 2.
        connection = _connection_id()
        await _open(mesh.presence, ada, connection)
        await far.wait_for(ada.id, ONLINE)
        await _close(other.presence, connection)

        for watch in (near, far):
            await watch.wait_for(ada.id, OFFLINE, count=2)
            assert watch.of(ada.id) == [OFFLINE, ONLINE, OFFLINE]


async def test_presence_of_many_users_in_one_call(start_mesh, sqlite_url, backend_options):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada, bob, cat = [await mesh.register() for _ in range(3)]
        await _open(mesh.presence, ada, _connection_id())

        response = await mesh.presence.GetPresence(
            presence_pb2.GetPresenceRequest(user_ids=[cat.id, ada.id, bob.id, "never-seen"]),
            metadata=cat.auth,
        )

        assert [(p.user_id, p.status) for p in response.presences] == [
            (cat.id, OFFLINE),
            (ada.id, ONLINE),
            (bob.id, OFFLINE),
            ("never-seen", OFFLINE),
        ]
        assert not response.presences[0].HasField("last_seen_time")


async def test_connections_are_bound_to_their_user_and_instance(
    start_mesh, sqlite_url, backend_options
):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        ada, eve = await mesh.register(), await mesh.register()
        connection = _connection_id()
        await _open(mesh.presence, ada, connection, instance="bff-1")

        # Another user cannot take over the connection id…
        taken = await failure(_open(mesh.presence, eve, connection, instance="bff-1"))
        # …and another instance can neither close it nor keep it alive.
        await _close(mesh.presence, connection, instance="bff-2")
        unknown = await _heartbeat(mesh.presence, connection, instance="bff-2")

        assert (taken.status, taken.code) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "connection_id_in_use",
        )
        assert unknown == [connection]
        assert await _status(mesh.presence, ada, ada.id, eve.id) == [ONLINE, OFFLINE]


async def test_bad_presence_requests(shared_mesh, watches):
    ada = await shared_mesh.register()
    stub = shared_mesh.presence

    no_token = await failure(
        stub.OpenConnection(
            presence_pb2.OpenConnectionRequest(connection_id=_connection_id(), instance_id="b")
        )
    )
    short_id = await failure(_open(stub, ada, "short"))
    bad_chars = await failure(_open(stub, ada, "x" * 20 + "/../" + "y" * 10))
    no_instance = await failure(_open(stub, ada, _connection_id(), instance=""))
    bad_heartbeat = await failure(_heartbeat(stub, "not valid!"))
    too_many = await failure(
        stub.GetPresence(
            presence_pb2.GetPresenceRequest(user_ids=[f"u{i}" for i in range(1001)]),
            metadata=ada.auth,
        )
    )

    assert no_token.status == grpc.StatusCode.UNAUTHENTICATED
    for rejected, code in [
        (short_id, "invalid_connection_id"),
        (bad_chars, "invalid_connection_id"),
        (no_instance, "invalid_instance_id"),
        (bad_heartbeat, "invalid_connection_id"),
        (too_many, "too_many_user_ids"),
    ]:
        assert (rejected.status, rejected.code) == (grpc.StatusCode.INVALID_ARGUMENT, code)

    watch = watches(stub)
    await watch.add("")
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(watch._reader, timeout=5)
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_reconnect_storm_is_absorbed(start_mesh, sqlite_url, backend_options, watches):
    async with start_mesh(sqlite_url, **backend_options) as mesh:
        users = [await mesh.register() for _ in range(3)]
        watch = watches(mesh.presence)
        await watch.add(*(u.id for u in users))
        for user in users:
            await watch.wait_for(user.id, OFFLINE)

        # A BFF restarts and 600 WebSockets reconnect at the same moment.
        connections = [(users[n % 3], _connection_id()) for n in range(600)]
        await asyncio.gather(
            *(_open(mesh.presence, user, c, instance="bff-new") for user, c in connections)
        )

        for user in users:
            await watch.wait_for(user.id, ONLINE)
        assert (
            await _heartbeat(mesh.presence, *(c for _, c in connections), instance="bff-new") == []
        )
        await asyncio.sleep(0.3)
        assert [watch.of(u.id) for u in users] == [[OFFLINE, ONLINE]] * 3


@pytest.mark.redis
async def test_last_seen_survives_a_redis_restart(start_mesh, sqlite_url, redis_url, watches):
    async with start_mesh(sqlite_url, backend="redis", redis_url=redis_url) as mesh:
        ada = await mesh.register()
        connection = _connection_id()
        await _open(mesh.presence, ada, connection)
        await _close(mesh.presence, connection)
        watch = watches(mesh.presence)
        await watch.add(ada.id)
        await watch.wait_for(ada.id, OFFLINE, count=1)
        async with asyncio.timeout(5):
            # The offline change is broadcast, then last-seen is written.
            while True:
                sql = "SELECT COUNT(*) FROM profiles WHERE last_seen_time IS NOT NULL"
                if await mesh.count(sql):
                    break
                await asyncio.sleep(0.05)
        before = (
            await mesh.presence.GetPresence(
                presence_pb2.GetPresenceRequest(user_ids=[ada.id]), metadata=ada.auth
            )
        ).presences[0]

        # Redis comes back empty: the store has forgotten everything.
        client = redis.asyncio.Redis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()

        after = (
            await mesh.presence.GetPresence(
                presence_pb2.GetPresenceRequest(user_ids=[ada.id]), metadata=ada.auth
            )
        ).presences[0]
        assert after.status == OFFLINE
        assert after.last_seen_time.ToMilliseconds() == pytest.approx(
            before.last_seen_time.ToMilliseconds(), abs=1
        )
