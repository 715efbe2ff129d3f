"""Finding people: prefix search on username and display name that ignores case
and accents, pages through results, and treats the query as plain text."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from chatmesh.common.testkit import failure
from chatmesh.user.v1 import user_pb2


async def _search(mesh, viewer, query, *, page_size=0, page_token=""):
    return await mesh.users.SearchProfiles(
        user_pb2.SearchProfilesRequest(query=query, page_size=page_size, page_token=page_token),
        metadata=viewer.auth,
    )


async def _usernames(mesh, viewer, query):
    return [p.username for p in (await _search(mesh, viewer, query)).profiles]


async def test_search_ignores_case_and_accents_and_matches_word_prefixes(mesh):
    viewer = await mesh.register(username="viewer", display_name="Viewer")
    zoe = await mesh.register(username="zoe_a", display_name="Zoë Ångström")
    await mesh.register(username="bjorn", display_name="Björn Borg")
    await mesh.register(username="strasse", display_name="Große Straße")

    assert await _usernames(mesh, viewer, "zoe") == ["zoe_a"]
    assert await _usernames(mesh, viewer, "ZOË") == ["zoe_a"]
    assert await _usernames(mesh, viewer, "angs") == ["zoe_a"]  # second word of the name
    assert await _usernames(mesh, viewer, "Ångs") == ["zoe_a"]
    assert await _usernames(mesh, viewer, "BJÖ") == ["bjorn"]
    assert await _usernames(mesh, viewer, "strasse") == ["strasse"]  # ß folds to ss
    assert await _usernames(mesh, viewer, "@zoe_") == ["zoe_a"]  # as typed in a mention
    assert await _usernames(mesh, viewer, "oe") == []  # a prefix, not a substring
    found = (await _search(mesh, viewer, "zoe")).profiles[0]
    assert found.user_id == zoe.id
    assert found.display_name == "Zoë Ångström"


async def test_search_sees_renames(mesh):
    viewer = await mesh.register()
    ada = await mesh.register(username="ada", display_name="Ada")

    await mesh.users.UpdateProfile(
        user_pb2.UpdateProfileRequest(
            profile=user_pb2.Profile(display_name="Countess Lovelace"),
            update_mask=FieldMask(paths=["display_name"]),
        ),
        metadata=ada.auth,
    )

    assert await _usernames(mesh, viewer, "lovel") == ["ada"]
    assert await _usernames(mesh, viewer, "ada") == ["ada"]  # username still matches


async def test_like_wildcards_and_sql_in_the_query_are_literal(mesh):
    viewer = await mesh.register(username="viewer", display_name="Viewer")
    await mesh.register(username="a_b", display_name="Underscore")
    await mesh.register(username="axb", display_name="Letter")
    await mesh.register(username="percent", display_name="100% Real")
    await mesh.register(username="hundred", display_name="1000 Real")
    await mesh.register(username="backslash", display_name="Back\\slash")

    assert await _usernames(mesh, viewer, "a_") == ["a_b"]  # `_` is not "any character"
    assert await _usernames(mesh, viewer, "100%") == ["percent"]  # `%` is not "anything"
    assert await _usernames(mesh, viewer, "%") == []
    assert await _usernames(mesh, viewer, "_") == []
    assert await _usernames(mesh, viewer, "back\\") == ["backslash"]
    assert await _usernames(mesh, viewer, "' OR '1'='1") == []
    assert await _usernames(mesh, viewer, "x'; DROP TABLE profiles; --") == []
    assert await mesh.count("SELECT COUNT(*) FROM profiles") == 6


async def test_results_come_in_pages_ordered_by_username(mesh):
    viewer = await mesh.register(username="someone", display_name="Someone")
    names = ["sam_e", "sam_a", "sam_d", "sam_b", "sam_c"]
    for name in names:
        await mesh.register(username=name, display_name="Sam")

    pages, token = [], ""
    while True:
        page = await _search(mesh, viewer, "sam", page_size=2, page_token=token)
        pages.append([p.username for p in page.profiles])
        token = page.next_page_token
        if not token:
            break

    assert pages == [["sam_a", "sam_b"], ["sam_c", "sam_d"], ["sam_e"]]
    # A token belongs to its query.
    first = await _search(mesh, viewer, "sam", page_size=2)
    misused = await failure(_search(mesh, viewer, "sa", page_token=first.next_page_token))
    assert misused.status == grpc.StatusCode.INVALID_ARGUMENT
    assert misused.code == "invalid_page_token"


@pytest.mark.parametrize(
    ("query", "page_size", "page_token", "code"),
    [
        ("", 0, "", "invalid_query"),
        ("   ", 0, "", "invalid_query"),
        ("@", 0, "", "invalid_query"),
        ("q" * 65, 0, "", "invalid_query"),
        ("sam", -1, "", "invalid_page_size"),
        ("sam", 0, "garbage!", "invalid_page_token"),
        ("sam", 0, "eyJrIjoiZnJpZW5kcyJ9", "invalid_page_token"),
    ],
)
async def test_bad_search_requests_are_rejected(shared_mesh, query, page_size, page_token, code):
    viewer = await shared_mesh.register()

    rejected = await failure(
        _search(shared_mesh, viewer, query, page_size=page_size, page_token=page_token)
    )

    assert rejected.status == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.code == code


async def test_page_size_is_capped(shared_mesh):
    viewer = await shared_mesh.register(username="capped", display_name="Capped")

    page = await _search(shared_mesh, viewer, "capped", page_size=10_000)

    assert [p.username for p in page.profiles] == ["capped"]
