"""The public room directory and member management over REST (additive to the
contract): browse and search public rooms, join from there; list members with
roles, change roles, and the errors people meet on the way."""

from __future__ import annotations

from openapi_spec_validator import validate


def error_code(response) -> str:
    return response.json()["error"]["code"]


async def test_browse_search_and_join_public_rooms(stack):
    bff = await stack.bff()
    alice, bob = await stack.user(), await stack.user()
    a, b = stack.http(bff, alice), stack.http(bff, bob)
    design = await stack.room(bff, alice, name="Design")
    await stack.room(bff, alice, name="design-crit")
    await stack.room(bff, alice, name="Random")
    await stack.room(bff, alice, name="design secrets", visibility="private")

    # /rooms/public is the directory, not a room called "public".
    listed = await b.get("/api/v1/rooms/public")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [e["room"]["name"] for e in body["rooms"]] == ["Design", "design-crit", "Random"]
    assert [e["is_member"] for e in body["rooms"]] == [False, False, False]
    assert body["rooms"][0]["room"]["member_count"] == 1
    assert body["rooms"][0]["room"]["membership"] is None
    assert body["next_cursor"] is None

    found = await b.get("/api/v1/rooms/public", params={"q": "DESIGN", "limit": 1})
    page = found.json()
    assert [e["room"]["id"] for e in page["rooms"]] == [design["id"]]
    rest = await b.get(
        "/api/v1/rooms/public", params={"q": "DESIGN", "cursor": page["next_cursor"]}
    )
    assert [e["room"]["name"] for e in rest.json()["rooms"]] == ["design-crit"]
    assert rest.json()["next_cursor"] is None

    joined = await b.post(f"/api/v1/rooms/{design['id']}/join")
    assert joined.status_code == 200, joined.text
    again = (await b.get("/api/v1/rooms/public", params={"q": "design"})).json()
    assert [(e["is_member"], e["room"]["member_count"]) for e in again["rooms"]] == [
        (True, 2),
        (False, 1),
    ]
    # The owner sees themselves as a member of all three.
    mine = (await a.get("/api/v1/rooms/public")).json()
    assert all(e["is_member"] for e in mine["rooms"])


async def test_directory_rejects_bad_queries_in_the_one_error_shape(stack):
    bff = await stack.bff()
    alice = await stack.user()
    a = stack.http(bff, alice)
    for params, field in (
        ({"q": "x" * 81}, "q"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
    ):
        response = await a.get("/api/v1/rooms/public", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["details"]["fields"][0]["field"] == field
    bad_cursor = await a.get("/api/v1/rooms/public", params={"cursor": "garbage!"})
    assert (bad_cursor.status_code, error_code(bad_cursor)) == (422, "invalid_page_token")
    async with bff.client() as anonymous:
        response = await anonymous.get("/api/v1/rooms/public")
        assert response.status_code == 401


async def test_members_with_roles_and_role_changes(stack):
    bff = await stack.bff()
    alice, bob, carol, mallory = (
        await stack.user(),
        await stack.user(),
        await stack.user(),
        await stack.user(),
    )
    a, b, m = stack.http(bff, alice), stack.http(bff, bob), stack.http(bff, mallory)
    room = await stack.room(bff, alice, bob, carol, visibility="private")
    members = f"/api/v1/rooms/{room['id']}/members"

    listed = await b.get(members)
    assert listed.status_code == 200, listed.text
    assert [(x["user_id"], x["role"]) for x in listed.json()["members"]] == [
        (alice.id, "owner"),
        (bob.id, "member"),
        (carol.id, "member"),
    ]
    assert listed.json()["members"][1]["username"] == bob.username
    first = (await b.get(members, params={"limit": 2})).json()
    assert len(first["members"]) == 2
    second = (await b.get(members, params={"cursor": first["next_cursor"]})).json()
    assert [x["user_id"] for x in second["members"]] == [carol.id]

    promoted = await a.patch(f"{members}/{bob.id}", json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["user_id"], promoted.json()["role"]) == (bob.id, "admin")
    # An admin manages members but only the owner changes roles.
    denied = await b.patch(f"{members}/{carol.id}", json={"role": "admin"})
    assert (denied.status_code, error_code(denied)) == (403, "insufficient_role")
    removed = await b.delete(f"{members}/{carol.id}")
    assert removed.status_code == 204
    assert [x["user_id"] for x in (await a.get(members)).json()["members"]] == [
        alice.id,
        bob.id,
    ]
    demoted = await a.patch(f"{members}/{bob.id}", json={"role": "member"})
    assert demoted.json()["role"] == "member"

    owner = await a.patch(f"{members}/{alice.id}", json={"role": "member"})
    assert owner.status_code == 409, owner.text
    assert error_code(owner) == "owner_role"
    bad = await a.patch(f"{members}/{bob.id}", json={"role": "owner"})
    assert (bad.status_code, error_code(bad)) == (422, "validation_failed")
    # A private room's members are nobody else's business.
    hidden = await m.get(members)
    assert (hidden.status_code, error_code(hidden)) == (404, "room_not_found")


async def test_openapi_documents_the_directory_and_member_routes(stack):
    bff = await stack.bff()
    async with bff.client() as http:
        document = (await http.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert "get" in paths["/api/v1/rooms/public"]
    assert "get" in paths["/api/v1/rooms/{room_id}/members"]
    assert "patch" in paths["/api/v1/rooms/{room_id}/members/{user_id}"]
    assert "is_member" in document["components"]["schemas"]["PublicRoom"]["properties"]
    validate(document)
