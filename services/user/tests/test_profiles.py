"""Profiles: read one or many, update your own (and only your own), and the
rules each field follows."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from chatmesh.common.testkit import failure
from chatmesh.user.v1 import user_pb2


def _update(**fields: str) -> user_pb2.UpdateProfileRequest:
    return user_pb2.UpdateProfileRequest(
        profile=user_pb2.Profile(**fields), update_mask=FieldMask(paths=list(fields))
    )


async def _get(mesh, viewer, user_id=""):
    return await mesh.users.GetProfile(
        user_pb2.GetProfileRequest(user_id=user_id), metadata=viewer.auth
    )


async def test_owner_updates_fields_named_in_the_mask_and_others_see_them(mesh):
    ada = await mesh.register(display_name="Ada")
    bob = await mesh.register()

    updated = await mesh.users.UpdateProfile(
        _update(
            display_name="  Ada   Lovelace ",
            bio="Poet of\nmathematics.",
            avatar_url="https://cdn.example.com/ada.png",
            status_text="Analysing engines",
            status_emoji="🧮",
            time_zone="Europe/London",
        ),
        metadata=ada.auth,
    )

    profile = updated.profile
    assert profile.display_name == "Ada Lovelace"  # whitespace collapsed
    assert profile.bio == "Poet of\nmathematics."
    assert profile.avatar_url == "https://cdn.example.com/ada.png"
    assert profile.status_text == "Analysing engines"
    assert profile.status_emoji == "🧮"
    assert profile.time_zone == "Europe/London"
    assert profile.update_time.ToDatetime() >= profile.create_time.ToDatetime()
    seen_by_bob = await _get(mesh, bob, ada.id)
    assert seen_by_bob.profile == profile
    assert seen_by_bob.relationship == user_pb2.RELATIONSHIP_NONE


async def test_fields_outside_the_mask_stay_and_empty_values_clear(mesh):
    ada = await mesh.register()
    await mesh.users.UpdateProfile(
        _update(bio="Hello", status_text="Busy", time_zone="Asia/Tokyo"), metadata=ada.auth
    )

    # status_text is set in the message but not named in the mask: it stays.
    request = user_pb2.UpdateProfileRequest(
        profile=user_pb2.Profile(bio="", status_text="ignored"),
        update_mask=FieldMask(paths=["bio"]),
    )
    profile = (await mesh.users.UpdateProfile(request, metadata=ada.auth)).profile

    assert profile.bio == ""
    assert profile.status_text == "Busy"
    assert profile.time_zone == "Asia/Tokyo"


async def test_nobody_can_update_another_users_profile(mesh):
    ada = await mesh.register(display_name="Ada")
    mallory = await mesh.register()

    request = user_pb2.UpdateProfileRequest(
        profile=user_pb2.Profile(user_id=ada.id, display_name="Hacked"),
        update_mask=FieldMask(paths=["display_name"]),
    )
    denied = await failure(mesh.users.UpdateProfile(request, metadata=mallory.auth))

    assert denied.status == grpc.StatusCode.PERMISSION_DENIED
    assert denied.code == "not_own_profile"
    assert (await _get(mesh, ada)).profile.display_name == "Ada"
    # Without a user id, the update goes to the caller's own profile, not Ada's.
    request.profile.user_id = ""
    await mesh.users.UpdateProfile(request, metadata=mallory.auth)
    assert (await _get(mesh, ada)).profile.display_name == "Ada"
    assert (await _get(mesh, mallory)).profile.display_name == "Hacked"


@pytest.mark.parametrize(
    ("paths", "code"),
    [
        ([], "invalid_update_mask"),
        (["username"], "invalid_update_mask"),
        (["user_id"], "invalid_update_mask"),
        (["create_time"], "invalid_update_mask"),
        (["no_such_field"], "invalid_update_mask"),
    ],
)
async def test_only_editable_fields_can_be_named(shared_mesh, paths, code):
    ada = await shared_mesh.register()
    request = user_pb2.UpdateProfileRequest(
        profile=user_pb2.Profile(username="root"), update_mask=FieldMask(paths=paths)
    )

    rejected = await failure(shared_mesh.users.UpdateProfile(request, metadata=ada.auth))

    assert rejected.status == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.code == code
    assert (await _get(shared_mesh, ada)).profile.username == ada.username


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("display_name", "x" * 65, "invalid_display_name"),
        ("display_name", "   ", "invalid_display_name"),
        ("display_name", "evil\u202eeman", "invalid_display_name"),
        ("bio", "b" * 501, "invalid_bio"),
        ("bio", "zero\u200bwidth", "invalid_bio"),
        ("avatar_url", "javascript:alert(1)", "invalid_avatar_url"),
        ("avatar_url", " JaVaScRiPt:alert(document.cookie)", "invalid_avatar_url"),
        ("avatar_url", "data:image/svg+xml;base64,PHN2Zz4=", "invalid_avatar_url"),
        ("avatar_url", "file:///etc/passwd", "invalid_avatar_url"),
        ("avatar_url", "//evil.example/x.png", "invalid_avatar_url"),
        ("avatar_url", "https://", "invalid_avatar_url"),
        ("avatar_url", "https://user:secret@evil.example/x.png", "invalid_avatar_url"),
        ("avatar_url", "https://example.com/a b.png", "invalid_avatar_url"),
        ("avatar_url", "https://example.com/" + "a" * 2048, "invalid_avatar_url"),
        ("status_text", "s" * 101, "invalid_status_text"),
        ("status_emoji", "ok", "invalid_status_emoji"),
        ("status_emoji", "🎉🎉🎉🎉🎉🎉🎉🎉🎉", "invalid_status_emoji"),
        ("time_zone", "Mars/Olympus_Mons", "invalid_time_zone"),
        ("time_zone", "../../../etc/passwd", "invalid_time_zone"),
    ],
)
async def test_invalid_values_are_rejected_and_nothing_changes(shared_mesh, field, value, code):
    ada = await shared_mesh.register()
    before = (await _get(shared_mesh, ada)).profile

    rejected = await failure(
        shared_mesh.users.UpdateProfile(_update(**{field: value}), metadata=ada.auth)
    )

    assert rejected.status == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.code == code
    assert rejected.details == {"field": field}
    assert (await _get(shared_mesh, ada)).profile == before


async def test_a_rejected_field_rejects_the_whole_update(mesh):
    ada = await mesh.register(display_name="Ada")

    rejected = await failure(
        mesh.users.UpdateProfile(
            _update(display_name="New Name", avatar_url="javascript:alert(1)"), metadata=ada.auth
        )
    )

    assert rejected.code == "invalid_avatar_url"
    assert (await _get(mesh, ada)).profile.display_name == "Ada"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bio", "b" * 500),
        ("display_name", "Ünïcødé Ñame 名前"),
        ("avatar_url", "http://localhost:8080/avatar.png"),
        ("status_emoji", "👍🏽"),
        ("status_emoji", "🇩🇪"),
        ("status_emoji", "👩‍💻"),
        ("status_emoji", "1️⃣"),
        ("time_zone", "America/Argentina/Buenos_Aires"),
        ("time_zone", "UTC"),
    ],
)
async def test_valid_edge_values_are_accepted(shared_mesh, field, value):
    ada = await shared_mesh.register()

    profile = (
        await shared_mesh.users.UpdateProfile(_update(**{field: value}), metadata=ada.auth)
    ).profile

    assert getattr(profile, field) == value


async def test_batch_get_answers_many_ids_in_one_call_in_request_order(mesh):
    users = [await mesh.register() for _ in range(3)]
    viewer = users[0]
    ids = [users[2].id, "no-such-user", users[0].id, users[2].id, users[1].id]

    response = await mesh.users.BatchGetProfiles(
        user_pb2.BatchGetProfilesRequest(user_ids=ids), metadata=viewer.auth
    )

    assert [p.user_id for p in response.profiles] == [users[2].id, users[0].id, users[1].id]
    assert [p.username for p in response.profiles] == [
        users[2].username,
        users[0].username,
        users[1].username,
    ]


async def test_batch_get_refuses_more_than_a_thousand_ids(mesh):
    viewer = await mesh.register()

    rejected = await failure(
        mesh.users.BatchGetProfiles(
            user_pb2.BatchGetProfilesRequest(user_ids=[f"id-{i}" for i in range(1001)]),
            metadata=viewer.auth,
        )
    )

    assert rejected.status == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.code == "too_many_user_ids"


async def test_unknown_and_malformed_user_ids(mesh):
    viewer = await mesh.register()

    unknown = await failure(_get(mesh, viewer, "00000000-0000-0000-0000-000000000000"))
    malformed = await failure(_get(mesh, viewer, "x" * 65))
    injected = await failure(_get(mesh, viewer, "' OR '1'='1"))

    assert unknown.status == grpc.StatusCode.NOT_FOUND
    assert unknown.code == "user_not_found"
    assert malformed.status == grpc.StatusCode.INVALID_ARGUMENT
    assert injected.status == grpc.StatusCode.INVALID_ARGUMENT
