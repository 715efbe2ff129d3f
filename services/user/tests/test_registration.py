"""A new account gets exactly one profile, made from auth's `UserRegistered`
event, however often the event is delivered."""

from __future__ import annotations

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from chatmesh.common.bus import make_event, stream_name, unpack
from chatmesh.common.testkit import failure
from chatmesh.events.v1 import auth_events_pb2
from chatmesh.user.v1 import user_pb2


async def test_registration_creates_the_profile_from_the_event(mesh):
    user = await mesh.register(username="ada", display_name="Ada Lovelace")

    profile = await mesh.wait_for_profile(user)

    assert profile.user_id == user.id
    assert profile.username == "ada"
    assert profile.display_name == "Ada Lovelace"
    assert profile.bio == ""
    assert profile.avatar_url == ""
    assert profile.create_time.seconds > 0


async def test_an_event_delivered_twice_creates_one_profile_and_keeps_later_edits(mesh):
    user = await mesh.register(username="grace", display_name="Grace Hopper")
    event = await mesh.events.registration_of(user.id)
    # The user edits their profile before the duplicate arrives.
    await mesh.users.UpdateProfile(
        user_pb2.UpdateProfileRequest(
            profile=user_pb2.Profile(display_name="Amazing Grace", bio="COBOL"),
            update_mask=FieldMask(paths=["display_name", "bio"]),
        ),
        metadata=user.auth,
    )

    # The same envelope again (at-least-once redelivery), and the same payload in a
    # new envelope (a replay): neither may create or reset anything.
    await mesh.bus.publish(stream_name("auth"), event)
    replay = unpack(event, auth_events_pb2.UserRegistered)
    assert replay is not None
    await mesh.bus.publish(stream_name("auth"), make_event("auth", replay))
    # Events are consumed in order: once a later registration is handled, so are they.
    await mesh.register()

    assert await mesh.count("SELECT COUNT(*) FROM profiles WHERE user_id = :id", id=user.id) == 1
    profile = (
        await mesh.users.GetProfile(user_pb2.GetProfileRequest(user_id=user.id), metadata=user.auth)
    ).profile
    assert profile.display_name == "Amazing Grace"
    assert profile.bio == "COBOL"


async def test_concurrent_duplicate_deliveries_create_one_profile(mesh):
    user = await mesh.register()
    event = await mesh.events.registration_of(user.id)
    payload = unpack(event, auth_events_pb2.UserRegistered)
    assert payload is not None

    for _ in range(5):
        await mesh.bus.publish(stream_name("auth"), make_event("auth", payload))
    await mesh.register()

    assert await mesh.count("SELECT COUNT(*) FROM profiles WHERE user_id = :id", id=user.id) == 1
    assert await mesh.count("SELECT COUNT(*) FROM profiles") == 2


async def test_own_profile_is_available_before_the_event_arrives(start_mesh, sqlite_url):
    async with start_mesh(sqlite_url, deliver_events=False) as mesh:
        user = await mesh.register_only(username="early", display_name="Early Bird")

        # The event has not reached the user service, yet "my profile" works: it
        # is made from the account auth returns for the caller's token.
        own = await mesh.users.GetProfile(user_pb2.GetProfileRequest(), metadata=user.auth)

        assert own.profile.user_id == user.id
        assert own.profile.username == "early"
        assert own.profile.display_name == "Early Bird"
        assert own.relationship == user_pb2.RELATIONSHIP_SELF
        # When the late event finally arrives, there is still one profile.
        event = await mesh.events.registration_of(user.id)
        await mesh.user_bus.publish(stream_name("auth"), event)
        other = await mesh.register_only()
        await mesh.user_bus.publish(
            stream_name("auth"), await mesh.events.registration_of(other.id)
        )
        await mesh.wait_for_profile(other)
        assert (
            await mesh.count("SELECT COUNT(*) FROM profiles WHERE user_id = :id", id=user.id) == 1
        )


async def test_calls_without_a_valid_token_are_rejected(mesh):
    user = await mesh.register()

    missing = await failure(mesh.users.GetProfile(user_pb2.GetProfileRequest(user_id=user.id)))
    forged = await failure(
        mesh.users.GetProfile(
            user_pb2.GetProfileRequest(user_id=user.id),
            metadata=(("authorization", "Bearer not.a.token"),),
        )
    )

    assert missing.status == grpc.StatusCode.UNAUTHENTICATED
    assert forged.status == grpc.StatusCode.UNAUTHENTICATED
    assert forged.code == "invalid_token"
