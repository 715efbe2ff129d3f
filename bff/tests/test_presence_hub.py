"""The BFF's PresenceHub against a real auth and user gRPC service: devices of
one user, a friend's connection receiving the changes, a user-service restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.bff.presence import PresenceHub, presence_frame
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc, user_pb2, user_pb2_grpc

from .conftest import PASSWORD, AuthService, UserService, running_user

QUIET = 0.8  # longer than the test user service's offline debounce (0.2 s) + sweep


@dataclass(frozen=True)
class Account:
    id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


class Inbox:
    """The frames one WebSocket would have been sent."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.frames.put(frame)

    async def next(self, seconds: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(seconds):
            return await self.frames.get()

    async def last_after(self, seconds: float) -> dict[str, Any] | None:
        """The last frame that arrives until none came for `seconds`."""
        last = None
        while True:
            try:
                last = await self.next(seconds)
            except TimeoutError:
                return last

    async def nothing_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert self.frames.empty(), self.frames.get_nowait()


@dataclass
class Stubs:
    auth: auth_pb2_grpc.AuthServiceStub
    users: user_pb2_grpc.UserServiceStub
    presence: presence_pb2_grpc.PresenceServiceStub

    async def account(self, name: str) -> Account:
        reply = await self.auth.Register(
            auth_pb2.RegisterRequest(
                email=f"{name}@example.com",
                username=name,
                password=PASSWORD,
                display_name=name.title(),
            )
        )
        account = Account(id=reply.account.id, token=reply.tokens.access_token)
        async with asyncio.timeout(10):
            while not (  # noqa: ASYNC110
                await self.users.BatchGetProfiles(
                    user_pb2.BatchGetProfilesRequest(user_ids=[account.id]), metadata=account.auth
                )
            ).profiles:
                await asyncio.sleep(0.02)
        return account

    async def befriend(self, a: Account, b: Account) -> None:
        await self.users.SendFriendRequest(
            user_pb2.SendFriendRequestRequest(user_id=b.id), metadata=a.auth
        )
        await self.users.SendFriendRequest(
            user_pb2.SendFriendRequestRequest(user_id=a.id), metadata=b.auth
        )


@contextlib.asynccontextmanager
async def stubs_for(auth: AuthService, user: UserService) -> AsyncIterator[Stubs]:
    async with (
        grpc.aio.insecure_channel(auth.address) as auth_channel,
        grpc.aio.insecure_channel(user.address) as user_channel,
    ):
        yield Stubs(
            auth=auth_pb2_grpc.AuthServiceStub(auth_channel),
            users=user_pb2_grpc.UserServiceStub(user_channel),
            presence=presence_pb2_grpc.PresenceServiceStub(user_channel),
        )


@contextlib.asynccontextmanager
async def hub_on(stubs: Stubs, **options: Any) -> AsyncIterator[PresenceHub]:
    """A hub as one BFF process holds it."""
    hub = PresenceHub(presence=stubs.presence, users=stubs.users, timeout=5.0, **options)
    await hub.start()
    try:
        await hub.wait_watching()
        yield hub
    finally:
        await hub.stop()


def frame(user: Account, status: str) -> dict[str, str]:
    return {"type": "presence", "user_id": user.id, "status": status}


async def test_two_devices_and_a_friend_on_another_bff(
    auth_service: AuthService, user_service: UserService
) -> None:
    async with stubs_for(auth_service, user_service) as stubs:
        ann = await stubs.account("ann")
        bob = await stubs.account("bob")
        stranger = await stubs.account("stranger")
        await stubs.befriend(ann, bob)
        async with hub_on(stubs) as ann_bff, hub_on(stubs) as bob_bff:
            bob_inbox = Inbox()
            await bob_bff.open(user_id=bob.id, access_token=bob.token, send=bob_inbox.send)
            assert bob_bff.watched_users() == {ann.id}
            # Ann's current presence first.
            assert await bob_inbox.next() == frame(ann, "offline")
            stranger_inbox = Inbox()
            await bob_bff.open(
                user_id=stranger.id, access_token=stranger.token, send=stranger_inbox.send
            )

            phone = await ann_bff.open(user_id=ann.id, access_token=ann.token, send=Inbox().send)
            assert await bob_inbox.next() == frame(ann, "online")
            laptop = await ann_bff.open(user_id=ann.id, access_token=ann.token, send=Inbox().send)

            await ann_bff.close(phone)
            await bob_inbox.nothing_for(QUIET)
            presence = await stubs.presence.GetPresence(
                presence_pb2.GetPresenceRequest(user_ids=[ann.id]), metadata=bob.auth
            )
            assert presence.presences[0].status == presence_pb2.PRESENCE_STATUS_ONLINE

            await ann_bff.close(laptop)
            assert await bob_inbox.next() == frame(ann, "offline")
            # Not a friend, not a co-member: nothing.
            assert stranger_inbox.frames.empty()


async def test_interests_added_by_the_handler_and_removed(
    auth_service: AuthService, user_service: UserService
) -> None:
    async with stubs_for(auth_service, user_service) as stubs:
        ann = await stubs.account("ann2")
        carl = await stubs.account("carl2")
        async with hub_on(stubs) as bff:
            carl_inbox = Inbox()
            carl_conn = await bff.open(
                user_id=carl.id, access_token=carl.token, send=carl_inbox.send, interests=[ann.id]
            )
            assert await carl_inbox.next() == frame(ann, "offline")
            ann_conn = await bff.open(user_id=ann.id, access_token=ann.token, send=Inbox().send)
            assert await carl_inbox.next() == frame(ann, "online")

            # A second connection of Carl's gets the known presence at once.
            other_inbox = Inbox()
            await bff.open(
                user_id=carl.id, access_token=carl.token, send=other_inbox.send, interests=[ann.id]
            )
            assert await other_inbox.next() == frame(ann, "online")

            bff.remove_interests(carl_conn, [ann.id])
            await bff.close(ann_conn)
            assert await other_inbox.next() == frame(ann, "offline")
            assert carl_inbox.frames.empty()


async def test_the_hub_survives_a_user_service_restart(auth_service: AuthService) -> None:
    async with running_user(auth_service) as first:
        port = first.server.port
        async with stubs_for(auth_service, first) as stubs:
            ann = await stubs.account("ann3")
            bob = await stubs.account("bob3")
            await stubs.befriend(ann, bob)
    async with (
        running_user(auth_service, grpc_port=port) as user,
        stubs_for(auth_service, user) as stubs,
        hub_on(stubs, heartbeat_interval=0.2, reconnect_delay=0.05) as bff,
    ):
        bob_inbox = Inbox()
        await bff.open(user_id=bob.id, access_token=bob.token, send=bob_inbox.send)
        assert await bob_inbox.next() == frame(ann, "offline")
        ann_conn = await bff.open(user_id=ann.id, access_token=ann.token, send=Inbox().send)
        assert await bob_inbox.next() == frame(ann, "online")

        await user.server.stop(drain=0.0, grace=0.5)
        async with running_user(auth_service, grpc_port=port):
            # The stream comes back and the heartbeat opens Ann's connection
            # again at the new (empty) presence store.
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        found = await stubs.presence.GetPresence(
                            presence_pb2.GetPresenceRequest(user_ids=[ann.id]),
                            metadata=bob.auth,
                        )
                        if found.presences[0].status == presence_pb2.PRESENCE_STATUS_ONLINE:
                            break
                    await asyncio.sleep(0.05)
                await bff.wait_watching()
            assert bff.reconnects >= 1
            assert await bob_inbox.last_after(QUIET) in (None, frame(ann, "online"))

            await bff.close(ann_conn)
            assert await bob_inbox.next() == frame(ann, "offline")


def test_presence_frame_shape() -> None:
    presence = presence_pb2.UserPresence(
        user_id="u1", status=presence_pb2.PRESENCE_STATUS_AWAY, version=3
    )
    assert presence_frame(presence) == {"type": "presence", "user_id": "u1", "status": "away"}


async def test_new_friends_and_blocks_change_what_connections_see(
    auth_service: AuthService, user_service: UserService
) -> None:
    async with stubs_for(auth_service, user_service) as stubs:
        ann = await stubs.account("ann4")
        bob = await stubs.account("bob4")
        async with hub_on(stubs) as bff:
            bob_inbox = Inbox()
            await bff.open(user_id=bob.id, access_token=bob.token, send=bob_inbox.send)
            assert bff.watched_users() == frozenset()
            ann_conn = await bff.open(user_id=ann.id, access_token=ann.token, send=Inbox().send)

            await stubs.befriend(ann, bob)
            bff.befriended(ann.id, bob.id)
            assert await bob_inbox.next() == frame(ann, "online")
            assert bff.watched_users() == {ann.id, bob.id}

            bff.blocked(bob.id, ann.id)
            assert bff.watched_users() == frozenset()
            await bff.close(ann_conn)
            await bob_inbox.nothing_for(QUIET)
