"""StreamRoomEvents, as a BFF process uses it: one stream, many subscribers
(WebSocket connections), events once per room in seq order, membership changes
applied at once, typing on the same path, resume by replaying the log."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.chat.v1 import resources_pb2 as pb

Subscribed = api.StreamRoomEventsResponse.Subscribed
Unsubscribed = api.StreamRoomEventsResponse.Unsubscribed


def cursor_of(answer, room_id: str) -> int:
    assert answer.WhichOneof("item") == "subscribed", answer
    (seq,) = [c.seq for c in answer.subscribed.rooms if c.room_id == room_id]
    return seq


async def last_seq(chat, user, room_id: str) -> int:
    got = await chat.stub.GetRoom(api.GetRoomRequest(room_id=room_id), metadata=user.md)
    return got.room.last_seq


async def test_a_subscriber_gets_every_room_change_in_seq_order(live):
    alice, bob = await live.user(), await live.user()
    room = await live.room(alice, members=(bob,))
    stream = await live.main.open_stream()
    answer = await stream.subscribe("ws-bob", bob, all_rooms=True)
    start = cursor_of(answer, room.id)
    assert answer.subscribed.user_id == bob.id
    assert answer.subscribed.reason == Subscribed.REASON_REQUESTED
    assert start == await last_seq(live, bob, room.id)

    sent = [await live.send(alice, room.id, f"message {n}") for n in range(10)]
    await live.stub.EditMessage(
        api.EditMessageRequest(message_id=sent[0].id, body="edited"), metadata=alice.md
    )
    await live.stub.AddReaction(
        api.AddReactionRequest(message_id=sent[1].id, emoji="🔥"), metadata=bob.md
    )
    await live.stub.DeleteMessage(
        api.DeleteMessageRequest(message_id=sent[2].id), metadata=alice.md
    )
    await live.stub.MarkRead(
        api.MarkReadRequest(room_id=room.id, seq=sent[-1].seq), metadata=bob.md
    )
    end = await last_seq(live, bob, room.id)

    await stream.wait_until(lambda: stream.seqs(room.id)[-1:] == [end])
    assert stream.seqs(room.id) == list(range(start + 1, end + 1))
    events = stream.events(room.id)
    created = [e.message_created.message for e in events if e.HasField("message_created")]
    assert [m.id for m in created] == [m.id for m in sent]
    kinds = [e.WhichOneof("payload") for e in events[len(sent) :]]
    assert kinds == [
        "message_updated",
        "reaction_updated",
        "message_deleted",
        "read_marker_updated",
    ]
    assert events[-1].read_marker_updated.user_id == bob.id


async def test_events_go_once_per_stream_for_all_its_subscribers(live):
    alice, bob, carol = await live.user(), await live.user(), await live.user()
    room = await live.room(alice, members=(bob, carol))
    stream = await live.main.open_stream()
    for subscriber, user in (("ws-1", bob), ("ws-2", carol), ("ws-3", bob)):
        await stream.subscribe(subscriber, user, [room.id])
    message = await live.send(alice, room.id, "to everyone")
    await stream.wait_until(lambda: message.seq in stream.seqs(room.id))
    await stream.settle(0.2)
    # No per-recipient copies: the BFF fans out to its three connections.
    assert stream.seqs(room.id) == [message.seq]


async def test_unsubscribed_rooms_stop_and_others_continue(live):
    alice, bob = await live.user(), await live.user()
    quiet = await live.room(alice, name="quiet", members=(bob,))
    busy = await live.room(alice, name="busy", members=(bob,))
    stream = await live.main.open_stream()
    await stream.subscribe("ws-bob", bob, [quiet.id, busy.id])
    ack = await stream.unsubscribe("ws-bob", [quiet.id])
    assert ack.unsubscribed.reason == Unsubscribed.REASON_REQUESTED
    assert list(ack.unsubscribed.room_ids) == [quiet.id]
    await live.send(alice, quiet.id, "not for bob")
    marker = await live.send(alice, busy.id, "for bob")
    await stream.wait_until(lambda: marker.seq in stream.seqs(busy.id))
    await stream.settle(0.2)
    assert stream.events(quiet.id) == []


async def test_a_removed_member_stops_receiving_at_once(live):
    alice, bob = await live.user(), await live.user()
    room = await live.room(alice, visibility=pb.VISIBILITY_PRIVATE, members=(bob,))
    bobs = await live.main.open_stream()
    alices = await live.main.open_stream()
    await bobs.subscribe("ws-bob", bob, [room.id])
    await alices.subscribe("ws-alice", alice, [room.id])
    before = await live.send(alice, room.id, "still here?")
    await bobs.wait_until(lambda: before.seq in bobs.seqs(room.id))

    await live.stub.RemoveMember(
        api.RemoveMemberRequest(room_id=room.id, user_id=bob.id), metadata=alice.md
    )
    await bobs.wait_until(lambda: bobs.of_kind("unsubscribed") != [])
    (ended,) = bobs.of_kind("unsubscribed")
    assert ended.subscriber_id == "ws-bob"
    assert list(ended.room_ids) == [room.id]
    assert ended.reason == Unsubscribed.REASON_MEMBERSHIP_ENDED
    # Bob's stream saw his removal as the last event of the room, then nothing.
    removal = bobs.events(room.id)[-1]
    assert removal.member_changed.user_id == bob.id
    assert removal.member_changed.change == pb.MEMBER_CHANGE_REMOVED
    position = bobs.responses.index(api.StreamRoomEventsResponse(event=removal))
    assert bobs.responses[position + 1].WhichOneof("item") == "unsubscribed"

    after = await live.send(alice, room.id, "secret after removal")
    await alices.wait_until(lambda: after.seq in alices.seqs(room.id))
    await bobs.settle(0.2)
    assert after.seq not in bobs.seqs(room.id)
    # And he cannot come back by subscribing again.
    again = await bobs.subscribe("ws-bob", bob, [room.id])
    assert list(again.subscribed.rooms) == []
    assert [(f.room_id, f.code) for f in again.subscribed.failures] == [(room.id, "room_not_found")]


async def test_a_user_added_to_a_room_is_subscribed_automatically(live):
    alice, bob = await live.user(), await live.user()
    stream = await live.main.open_stream()
    attached = await stream.subscribe("ws-bob", bob)  # no rooms yet: just attached
    assert list(attached.subscribed.rooms) == []

    room = await live.room(alice, visibility=pb.VISIBILITY_PRIVATE, members=(bob,))
    await stream.wait_until(lambda: stream.of_kind("subscribed")[1:] != [])
    auto = stream.of_kind("subscribed")[1]
    assert auto.reason == Subscribed.REASON_MEMBERSHIP
    assert auto.subscriber_id == "ws-bob"
    (room_cursor,) = auto.rooms
    assert room_cursor.room_id == room.id
    # The membership event itself follows, carrying the room for the client.
    await stream.wait_until(lambda: stream.events(room.id) != [])
    added = stream.events(room.id)[0]
    assert added.seq == room_cursor.seq + 1
    assert added.member_changed.user_id == bob.id
    assert added.member_changed.change == pb.MEMBER_CHANGE_ADDED
    assert added.member_changed.room.id == room.id
    message = await live.send(alice, room.id, "welcome bob")
    await stream.wait_until(lambda: message.seq in stream.seqs(room.id))

    # The same for a new DM.
    dm = await live.stub.GetOrCreateDirectRoom(
        api.GetOrCreateDirectRoomRequest(user_ids=[bob.id]), metadata=alice.md
    )
    hello = await live.send(alice, dm.room.id, "psst")
    await stream.wait_until(lambda: hello.seq in stream.seqs(dm.room.id))
    assert any(
        s.reason == Subscribed.REASON_MEMBERSHIP and s.rooms[0].room_id == dm.room.id
        for s in stream.of_kind("subscribed")
    )


async def test_resume_replays_exactly_the_missed_events_then_goes_live(live):
    alice, bob = await live.user(), await live.user()
    room = await live.room(alice, members=(bob,))
    first = await live.main.open_stream()
    await first.subscribe("ws-bob", bob, [room.id])
    await live.send(alice, room.id, "seen")
    await first.wait_until(lambda: first.events(room.id) != [])
    seen_up_to = first.seqs(room.id)[-1]
    await first.close()  # bob's connection drops

    missed = [await live.send(alice, room.id, f"missed {n}") for n in range(50)]

    # Reconnect: subscribe first (live events after the cursor are now coming),
    # then replay (seen_up_to, cursor] from the log, then forward the live ones.
    second = await live.main.open_stream()
    cursor = cursor_of(await second.subscribe("ws-bob", bob, [room.id]), room.id)
    live_message = await live.send(alice, room.id, "live again")
    replayed, token = [], ""
    while True:
        page = await live.stub.ListRoomEvents(
            api.ListRoomEventsRequest(room_id=room.id, after_seq=seen_up_to, page_token=token),
            metadata=bob.md,
        )
        replayed += [e for e in page.events if e.seq <= cursor]
        token = page.next_page_token
        if not token or page.events[-1].seq >= cursor:
            break
    await second.wait_until(lambda: live_message.seq in second.seqs(room.id))
    delivered = replayed + [e for e in second.events(room.id) if e.seq > cursor]
    ids = [e.message_created.message.id for e in delivered]
    assert ids == [m.id for m in missed] + [live_message.id]  # exactly, in order, once
    assert [e.seq for e in delivered] == list(range(seen_up_to + 1, live_message.seq + 1))


async def test_after_a_chat_restart_resubscribing_and_replaying_loses_nothing(live):
    alice, bob = await live.user(), await live.user()
    room = await live.room(alice, members=(bob,))
    stream = await live.main.open_stream()
    await stream.subscribe("ws-bob", bob, [room.id])
    first = await live.send(alice, room.id, "before the restart")
    await stream.wait_until(lambda: first.seq in stream.seqs(room.id))
    seen_up_to = stream.seqs(room.id)[-1]

    await live.main.server.stop()  # the replica the BFF streamed from goes away
    await stream.wait_until(lambda: stream.ended)
    replacement = await live.start_chat()
    missed = [
        await live.send(alice, room.id, f"while away {n}", stub=replacement.stub) for n in range(20)
    ]
    again = await replacement.open_stream()
    cursor = cursor_of(await again.subscribe("ws-bob", bob, [room.id]), room.id)
    replay = await replacement.stub.ListRoomEvents(
        api.ListRoomEventsRequest(room_id=room.id, after_seq=seen_up_to), metadata=bob.md
    )
    live_message = await live.send(alice, room.id, "back", stub=replacement.stub)
    await again.wait_until(lambda: live_message.seq in again.seqs(room.id))
    delivered = [e for e in replay.events if e.seq <= cursor] + [
        e for e in again.events(room.id) if e.seq > cursor
    ]
    assert [e.message_created.message.id for e in delivered] == [m.id for m in missed] + [
        live_message.id
    ]


async def test_typing_is_ephemeral_and_rate_limited(live):
    alice, bob = await live.user(), await live.user()
    room = await live.room(alice, members=(bob,))
    stream = await live.main.open_stream()
    await stream.subscribe("ws-alice", alice, [room.id])
    await stream.subscribe("ws-bob", bob, [room.id])
    for _ in range(5):
        await stream.typing("ws-alice", room.id)
    await stream.wait_until(lambda: stream.events(room.id, durable=False) != [])
    await stream.settle(0.3)
    (typing,) = stream.events(room.id, durable=False)
    assert typing.seq == 0
    assert typing.typing.user_id == alice.id
    assert typing.room_id == room.id
    # Not stored: the log has no trace of it.
    replay = await live.stub.ListRoomEvents(
        api.ListRoomEventsRequest(room_id=room.id, after_seq=0), metadata=bob.md
    )
    assert all(not e.HasField("typing") for e in replay.events)
    # Typing needs a subscription to the room.
    other = await live.room(alice, name="other")
    await stream.typing("ws-bob", other.id)
    await stream.wait_until(lambda: stream.of_kind("error") != [])
    assert stream.of_kind("error")[0].code == "not_subscribed"


async def test_subscriptions_are_authorized(live):
    alice, bob, mallory = await live.user(), await live.user(), await live.user()
    private = await live.room(alice, name="p", visibility=pb.VISIBILITY_PRIVATE, members=(bob,))
    public = await live.room(alice, name="q")
    stream = await live.main.open_stream()

    for token, code in (("", "invalid_token"), ("x.y.z", "invalid_token")):
        answer = await stream.subscribe("ws-m", mallory, [private.id], token=token)
        assert answer.WhichOneof("item") == "error"
        assert answer.error.code == code
    answer = await stream.subscribe("ws-m", mallory, [private.id, public.id, str(uuid.uuid4())])
    assert list(answer.subscribed.rooms) == []
    codes = sorted(f.code for f in answer.subscribed.failures)
    assert codes == ["not_a_member", "room_not_found", "room_not_found"]
    # A subscriber belongs to one user.
    taken = await stream.subscribe("ws-m", bob, [private.id])
    assert taken.error.code == "subscriber_user_mismatch"
    # Mallory's subscriber receives nothing from the private room.
    message = await live.send(alice, private.id, "members only")
    await stream.subscribe("ws-bob", bob, [private.id])
    later = await live.send(alice, private.id, "members only, again")
    await stream.wait_until(lambda: later.seq in stream.seqs(private.id))
    assert message.seq not in stream.seqs(private.id)  # before bob subscribed: replay's job

    await stream.call.write(api.StreamRoomEventsRequest())
    await stream.wait_until(
        lambda: any(e.code == "invalid_request" for e in stream.of_kind("error"))
    )
    assert not stream.ended  # bad requests never break the stream


async def test_shutdown_ends_streams_so_bffs_reconnect(live):
    alice = await live.user()
    room = await live.room(alice)
    stream = await live.main.open_stream()
    await stream.subscribe("ws-alice", alice, [room.id])
    await live.main.server.stop(grace=1.0)
    await stream.wait_until(lambda: stream.ended)
    assert stream.error is not None
    assert stream.error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_stream_that_is_not_read_is_ended_instead_of_growing(live):
    alice = await live.user()
    room = await live.room(alice)
    chat = await live.start_chat(stream_max_pending=100)
    # A BFF whose receive window stays small (no BDP growth), so that what it
    # does not read piles up on the chat service's side quickly.
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{chat.server.port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    call = chat_service_pb2_grpc.ChatServiceStub(channel).StreamRoomEvents()
    await call.write(
        api.StreamRoomEventsRequest(
            subscribe=api.StreamRoomEventsRequest.Subscribe(
                request_id="1", subscriber_id="slow", access_token=alice.token, room_ids=[room.id]
            )
        )
    )
    first = await call.read()  # the Subscribed answer; then the BFF stops reading
    assert first.WhichOneof("item") == "subscribed"
    body = "x" * 9_000
    await asyncio.gather(*(live.send(alice, room.id, body) for _ in range(400)))
    status = None
    async with asyncio.timeout(20):
        try:
            while True:
                await call.read()
        except grpc.aio.AioRpcError as error:
            status = error.code()
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
    await channel.close()
