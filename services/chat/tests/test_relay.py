"""Publishing from the room event log, not from memory: a crash between commit
and publish loses nothing; several chat replicas share one Redis; a pub/sub
connection that drops mid-stream costs a subscriber nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.pubsub import RedisPubSub
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port
from chatmesh.services.chat.eventlog import room_channel

from .conftest import running


async def test_events_committed_while_publishing_fails_go_out_after_a_restart(
    db_url: str, redis_url: str, tmp_path: Path
):
    # The first replica's Redis is unreachable: sends commit (clients get their
    # acks) but nothing can be published. Then it dies. A replica that starts
    # later publishes every stored event, in order, exactly as committed.
    dead_client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    dead = RedisPubSub(dead_client, confirm_timeout=0.2)
    watcher_client = create_redis(redis_url)
    watcher = RedisPubSub(watcher_client).subscription()
    received: list[pb.RoomEvent] = []

    async def watch() -> None:
        async for _channel, data in watcher.messages():
            received.append(pb.RoomEvent.FromString(data))

    reader = asyncio.create_task(watch())
    try:
        async with running(db_url, tmp_path, redis_url=redis_url, first_pubsub=dead) as chat:
            alice = await chat.user()
            room = await chat.room(alice)
            await watcher.add([room_channel(room.id)])
            sent = [await chat.send(alice, room.id, f"during the outage {n}") for n in range(20)]
            await asyncio.sleep(0.3)
            assert received == []  # nothing could go out
            await chat.main.server.stop()  # the crash

            await chat.start_chat()  # a healthy replica on the same database
            deadline = time.monotonic() + 10
            while len(received) < sent[-1].seq:
                assert time.monotonic() < deadline, f"published {len(received)}"
                await asyncio.sleep(0.02)
            assert [e.seq for e in received] == list(range(1, sent[-1].seq + 1))
            bodies = [
                e.message_created.message.body for e in received if e.HasField("message_created")
            ]
            assert bodies == [f"during the outage {n}" for n in range(20)]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await watcher.close()
        await watcher_client.aclose()
        await dead.close()
        await dead_client.aclose()


async def test_two_replicas_on_one_redis_both_deliver_everything(
    postgres_url: str, redis_url: str, tmp_path: Path
):
    async with running(postgres_url, tmp_path, redis_url=redis_url) as chat:
        first = chat.main
        second = await chat.start_chat()
        alice, bob, carol = await chat.user(), await chat.user(), await chat.user()
        room = await chat.room(alice, members=(bob, carol))
        on_first = await first.open_stream()
        on_second = await second.open_stream()
        start = (await on_first.subscribe("ws-bob", bob, [room.id])).subscribed.rooms[0].seq
        await on_second.subscribe("ws-carol", carol, [room.id])

        # Senders on both replicas, concurrently.
        sent = await asyncio.gather(
            *(
                chat.send(alice, room.id, f"m{n}", stub=(first if n % 2 else second).stub)
                for n in range(30)
            )
        )
        last = max(m.seq for m in sent)
        for stream in (on_first, on_second):
            await stream.wait_until(lambda s=stream: last in s.seqs(room.id))
            assert stream.seqs(room.id) == list(range(start + 1, last + 1))
            ids = [e.message_created.message.id for e in stream.events(room.id)]
            assert sorted(ids) == sorted(m.id for m in sent)

        # A membership change made on one replica reaches a stream on the other.
        await first.stub.RemoveMember(
            api.RemoveMemberRequest(room_id=room.id, user_id=carol.id), metadata=alice.md
        )
        await on_second.wait_until(lambda: on_second.of_kind("unsubscribed") != [])
        assert on_second.of_kind("unsubscribed")[0].subscriber_id == "ws-carol"


async def test_a_dropped_pubsub_connection_costs_a_subscriber_nothing(
    db_url: str, redis_url: str, tmp_path: Path
):
    name = f"chat-test-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_url, client_name=name)
    admin = aioredis.from_url(redis_url)
    pubsub = RedisPubSub(client)
    try:
        async with running(db_url, tmp_path, redis_url=redis_url, first_pubsub=pubsub) as chat:
            alice, bob = await chat.user(), await chat.user()
            room = await chat.room(alice, members=(bob,))
            stream = await chat.main.open_stream()
            start = (await stream.subscribe("ws-bob", bob, [room.id])).subscribed.rooms[0].seq

            async def sends() -> list[pb.Message]:
                return [await chat.send(alice, room.id, f"n{n}") for n in range(40)]

            sending = asyncio.create_task(sends())
            await asyncio.sleep(0.05)
            # Cut the chat service's subscriber connection while messages flow.
            killed = 0
            for connection in await admin.client_list(_type="pubsub"):
                if connection["name"] == name:
                    killed += await admin.client_kill_filter(_id=connection["id"])
            assert killed == 1
            sent = await sending
            last = sent[-1].seq
            await stream.wait_until(lambda: last in stream.seqs(room.id), within=10)
            assert stream.seqs(room.id) == list(range(start + 1, last + 1))
    finally:
        await pubsub.close()
        await client.aclose()
        await admin.aclose()
