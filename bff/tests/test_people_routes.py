"""Profiles, search, friends and blocks through the BFF over real HTTP, against a
real auth and user gRPC service (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from chatmesh.bff.profiles import ProfileDirectory
from chatmesh.user.v1 import user_pb2_grpc

from .conftest import PASSWORD, AuthService, RunningBff, StartBff, UserService

_serial = itertools.count(1)


@dataclass(frozen=True)
class Person:
    id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class People:
    http: httpx.AsyncClient
    bff: RunningBff

    async def join(self, username: str | None = None, display_name: str | None = None) -> Person:
        """Register through the BFF; waits until the user service has the profile."""
        n = next(_serial)
        username = username or f"person{n}"
        response = await self.http.post(
            "/api/v1/auth/register",
            json={
                "email": f"{username}@example.com",
                "username": username,
                "password": PASSWORD,
                "display_name": display_name or f"Person {n}",
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        person = Person(id=body["user"]["id"], username=username, token=body["access_token"])
        self.http.cookies.clear()
        async with asyncio.timeout(10):
            while (await self.get(person, f"/api/v1/users/{person.id}")).status_code != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return person

    async def get(self, who: Person, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=who.auth, **kwargs)

    async def post(self, who: Person, path: str, body: Any = None) -> httpx.Response:
        return await self.http.post(path, json=body, headers=who.auth)

    async def patch(self, who: Person, path: str, body: Any) -> httpx.Response:
        return await self.http.patch(path, json=body, headers=who.auth)

    async def delete(self, who: Person, path: str) -> httpx.Response:
        return await self.http.delete(path, headers=who.auth)

    async def friends(self, who: Person) -> dict[str, Any]:
        response = await self.get(who, "/api/v1/friends")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def search(self, who: Person, q: str, **params: Any) -> list[str]:
        response = await self.get(who, "/api/v1/users", params={"q": q, **params})
        assert response.status_code == 200, response.text
        return [user["username"] for user in response.json()["users"]]


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
async def people(
    auth_service: AuthService, user_service: UserService, start_bff: StartBff
) -> AsyncIterator[People]:
    bff = await start_bff(auth_address=auth_service.address, user_address=user_service.address)
    async with bff.client() as http:
        yield People(http=http, bff=bff)


async def test_own_profile_is_read_and_changed(people: People) -> None:
    ann = await people.join(display_name="Ann")
    bob = await people.join()

    own = await people.get(ann, "/api/v1/users/me/profile")
    assert own.status_code == 200
    assert own.json()["id"] == ann.id
    assert own.json()["display_name"] == "Ann"

    changed = await people.patch(
        ann,
        "/api/v1/users/me/profile",
        {
            "display_name": "Ann Example",
            "bio": "line one\nline two",
            "avatar_url": "https://example.com/ann.png",
            "time_zone": "Europe/Berlin",
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "Ann Example"
    assert changed.json()["time_zone"] == "Europe/Berlin"

    seen = await people.get(bob, f"/api/v1/users/{ann.id}")
    assert seen.status_code == 200
    assert seen.json()["display_name"] == "Ann Example"
    assert seen.json()["bio"] == "line one\nline two"
    assert seen.json()["relationship"] == "none"
    assert (await people.get(ann, f"/api/v1/users/{ann.id}")).json()["relationship"] == "self"

    # Clearing an optional field.
    cleared = await people.patch(ann, "/api/v1/users/me/profile", {"avatar_url": None})
    assert cleared.status_code == 200
    assert cleared.json()["avatar_url"] == ""
    assert cleared.json()["bio"] == "line one\nline two"


async def test_profile_updates_are_validated(people: People) -> None:
    ann = await people.join(display_name="Ann")
    path = "/api/v1/users/me/profile"
    assert error_code(await people.patch(ann, path, {"bio": "x" * 501}), 422) == (
        "validation_failed"
    )
    assert error_code(await people.patch(ann, path, {"display_name": "x" * 65}), 422) == (
        "validation_failed"
    )
    assert error_code(await people.patch(ann, path, {"display_name": ""}), 422) == (
        "validation_failed"
    )
    js = await people.patch(ann, path, {"avatar_url": "javascript:alert(1)"})
    assert error_code(js, 422) == "invalid_avatar_url"
    assert error_code(await people.patch(ann, path, {}), 422) == "validation_failed"
    # Nobody else's profile can be named: the body has no user id.
    other = await people.patch(ann, path, {"user_id": "someone-else", "bio": "hi"})
    assert error_code(other, 422) == "validation_failed"
    assert error_code(await people.patch(ann, path, {"bio": 5}), 422) == "validation_failed"
    unauthenticated = await people.http.patch(path, json={"bio": "hi"})
    assert unauthenticated.status_code == 401
    # Nothing changed.
    own = (await people.get(ann, path)).json()
    assert own["display_name"] == "Ann"
    assert own["bio"] == ""
    assert own["avatar_url"] == ""


async def test_unknown_users_are_404(people: People) -> None:
    ann = await people.join()
    missing = "00000000-0000-4000-8000-000000000000"
    assert error_code(await people.get(ann, f"/api/v1/users/{missing}"), 404) == "user_not_found"
    request = await people.post(ann, "/api/v1/friends/requests", {"user_id": missing})
    assert error_code(request, 404) == "user_not_found"
    assert error_code(await people.post(ann, "/api/v1/blocks", {"user_id": missing}), 404) == (
        "user_not_found"
    )
    accept = await people.post(ann, f"/api/v1/friends/requests/{missing}/accept")
    assert accept.status_code == 404
    assert (await people.delete(ann, f"/api/v1/friends/{missing}")).status_code == 404


async def test_search_is_literal_case_and_accent_insensitive(people: People) -> None:
    seeker = await people.join()
    await people.join(username="zoe_under", display_name="Zoë Underwood")
    await people.join(username="zoexunder", display_name="Émile Zola")
    assert sorted(await people.search(seeker, "ZOE")) == ["zoe_under", "zoexunder"]
    assert await people.search(seeker, "zoe_") == ["zoe_under"]
    assert await people.search(seeker, "emile") == ["zoexunder"]
    assert await people.search(seeker, "UNDERWOOD") == ["zoe_under"]
    assert await people.search(seeker, "%") == []
    assert await people.search(seeker, "z%") == []
    assert await people.search(seeker, "'; DROP TABLE profiles; --") == []
    # Pages.
    first = await people.get(seeker, "/api/v1/users", params={"q": "zoe", "limit": 1})
    assert len(first.json()["users"]) == 1
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await people.get(
        seeker, "/api/v1/users", params={"q": "zoe", "limit": 1, "cursor": cursor}
    )
    assert [u["username"] for u in second.json()["users"]] != [
        u["username"] for u in first.json()["users"]
    ]
    assert error_code(await people.get(seeker, "/api/v1/users"), 422) == "validation_failed"
    too_big = await people.get(seeker, "/api/v1/users", params={"q": "a", "limit": 1000})
    assert error_code(too_big, 422) == "validation_failed"


async def test_the_friends_state_machine(people: People) -> None:
    ann = await people.join()
    bob = await people.join()

    sent = await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "pending"
    request_id = sent.json()["request"]["id"]
    # Sending twice is harmless.
    again = await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    assert again.status_code == 201
    assert again.json()["request"]["id"] == request_id

    assert [r["user"]["id"] for r in (await people.friends(ann))["outgoing"]] == [bob.id]
    incoming = (await people.friends(bob))["incoming"]
    assert [(r["id"], r["user"]["id"]) for r in incoming] == [(request_id, ann.id)]
    seen = (await people.get(bob, f"/api/v1/users/{ann.id}")).json()
    assert seen["relationship"] == "request_received"
    assert seen["friend_request_id"] == request_id

    # Only the recipient accepts or declines.
    wrong_side = await people.post(ann, f"/api/v1/friends/requests/{request_id}/accept")
    assert wrong_side.status_code == 404
    declined = await people.post(bob, f"/api/v1/friends/requests/{request_id}/decline")
    assert declined.status_code == 204
    assert (await people.friends(ann)) == {"friends": [], "incoming": [], "outgoing": []}

    # Cancel one's own request with DELETE /friends/{user_id}.
    await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    assert (await people.delete(ann, f"/api/v1/friends/{bob.id}")).status_code == 204
    assert (await people.friends(bob))["incoming"] == []

    # Request, accept, remove.
    sent = await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    request_id = sent.json()["request"]["id"]
    accepted = await people.post(bob, f"/api/v1/friends/requests/{request_id}/accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["user"]["id"] == ann.id
    assert [f["user"]["id"] for f in (await people.friends(ann))["friends"]] == [bob.id]
    assert [f["user"]["id"] for f in (await people.friends(bob))["friends"]] == [ann.id]
    duplicate = await people.post(bob, "/api/v1/friends/requests", {"user_id": ann.id})
    assert error_code(duplicate, 409) == "already_friends"
    assert (await people.delete(bob, f"/api/v1/friends/{ann.id}")).status_code == 204
    assert (await people.friends(ann))["friends"] == []
    assert error_code(await people.delete(bob, f"/api/v1/friends/{ann.id}"), 404) == "not_friends"

    # Asking someone who asked you first makes you friends at once.
    await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    back = await people.post(bob, "/api/v1/friends/requests", {"user_id": ann.id})
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "friends"
    assert back.json()["friend"]["user"]["id"] == ann.id
    assert (await people.friends(ann))["outgoing"] == []

    myself = await people.post(ann, "/api/v1/friends/requests", {"user_id": ann.id})
    assert error_code(myself, 422) == "cannot_befriend_self"
    assert error_code(await people.post(ann, "/api/v1/friends/requests", {}), 422) == (
        "validation_failed"
    )


async def test_concurrent_mutual_requests_make_one_friendship(people: People) -> None:
    for _ in range(3):
        ann = await people.join()
        bob = await people.join()
        replies = await asyncio.gather(
            people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id}),
            people.post(bob, "/api/v1/friends/requests", {"user_id": ann.id}),
        )
        assert all(reply.status_code in (200, 201) for reply in replies), [
            reply.text for reply in replies
        ]
        assert sorted(reply.json()["status"] for reply in replies) == ["friends", "pending"]
        for me, other in ((ann, bob), (bob, ann)):
            overview = await people.friends(me)
            assert [f["user"]["id"] for f in overview["friends"]] == [other.id]
            assert overview["incoming"] == overview["outgoing"] == []


async def test_blocking_ends_friendship_requests_and_visibility(people: People) -> None:
    ann = await people.join(username="blockerann")
    bob = await people.join(username="blockedbob")
    carl = await people.join(username="blockercarl")

    sent = await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    await people.post(bob, f"/api/v1/friends/requests/{sent.json()['request']['id']}/accept")
    await people.post(carl, "/api/v1/friends/requests", {"user_id": bob.id})
    await people.post(bob, "/api/v1/friends/requests", {"user_id": ann.id})

    blocked = await people.post(ann, "/api/v1/blocks", {"user_id": bob.id})
    assert blocked.status_code == 201, blocked.text
    assert blocked.json()["user"]["id"] == bob.id
    assert (await people.post(ann, "/api/v1/blocks", {"user_id": bob.id})).status_code == 201
    listed = await people.get(ann, "/api/v1/blocks")
    assert [b["user"]["id"] for b in listed.json()["blocked"]] == [bob.id]

    assert (await people.friends(ann)) == {"friends": [], "incoming": [], "outgoing": []}
    assert (await people.friends(bob))["friends"] == []
    assert (await people.search(bob, "blocker")) == ["blockercarl"]
    assert (await people.search(ann, "blocked")) == []
    assert error_code(await people.get(bob, f"/api/v1/users/{ann.id}"), 404) == "user_not_found"
    assert (await people.get(ann, f"/api/v1/users/{bob.id}")).json()["relationship"] == "blocked"
    again = await people.post(bob, "/api/v1/friends/requests", {"user_id": ann.id})
    assert error_code(again, 404) == "user_not_found"
    mine = await people.post(ann, "/api/v1/friends/requests", {"user_id": bob.id})
    assert error_code(mine, 409) == "user_blocked"
    # Others are untouched.
    assert [r["user"]["id"] for r in (await people.friends(carl))["outgoing"]] == [bob.id]

    assert (await people.delete(ann, f"/api/v1/blocks/{bob.id}")).status_code == 204
    assert (await people.delete(ann, f"/api/v1/blocks/{bob.id}")).status_code == 204
    assert (await people.get(ann, "/api/v1/blocks")).json() == {"blocked": []}
    assert (await people.search(bob, "blockerann")) == ["blockerann"]
    myself = await people.post(ann, "/api/v1/blocks", {"user_id": ann.id})
    assert error_code(myself, 422) == "cannot_block_self"


async def test_people_routes_need_a_user_and_are_documented(people: People) -> None:
    for method, path in (
        ("GET", "/api/v1/users/me/profile"),
        ("GET", "/api/v1/users?q=a"),
        ("GET", "/api/v1/friends"),
        ("GET", "/api/v1/blocks"),
    ):
        response = await people.http.request(method, path)
        assert error_code(response, 401) == "unauthenticated"
    document = (await people.http.get("/api/openapi.json")).json()
    for path in (
        "/api/v1/users/me/profile",
        "/api/v1/users/{user_id}",
        "/api/v1/users",
        "/api/v1/friends",
        "/api/v1/friends/requests",
        "/api/v1/friends/requests/{request_id}/accept",
        "/api/v1/friends/requests/{request_id}/decline",
        "/api/v1/friends/{user_id}",
        "/api/v1/blocks",
        "/api/v1/blocks/{user_id}",
    ):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/v1/users/me/profile"]) == {"get", "patch"}


async def test_profiles_are_fetched_in_one_batched_call_and_cached(
    people: People, user_service: UserService
) -> None:
    ann, bob, cid = await people.join(), await people.join(), await people.join()
    now = [0.0]
    async with grpc.aio.insecure_channel(user_service.address) as channel:
        directory = ProfileDirectory(
            user_pb2_grpc.UserServiceStub(channel), timeout=5.0, ttl=10.0, clock=lambda: now[0]
        )
        missing = "00000000-0000-4000-8000-000000000000"
        found = await directory.get_many(
            [cid.id, ann.id, missing, bob.id, ann.id], access_token=ann.token
        )
        assert list(found) == [cid.id, ann.id, bob.id]
        assert found[bob.id].username == bob.username
        assert directory.calls == 1
        # Cached: no call at all.
        assert list(await directory.get_many([bob.id, ann.id], access_token=bob.token)) == [
            bob.id,
            ann.id,
        ]
        assert directory.calls == 1
        # A changed profile shows once it is invalidated (or the TTL ran out).
        await people.patch(ann, "/api/v1/users/me/profile", {"display_name": "Ann Renamed"})
        directory.invalidate(ann.id)
        renamed = await directory.get(ann.id, access_token=ann.token)
        assert renamed is not None
        assert renamed.display_name == "Ann Renamed"
        assert directory.calls == 2
        now[0] = 11.0
        await directory.get_many([ann.id, bob.id, cid.id], access_token=ann.token)
        assert directory.calls == 3
