"""Blocks in direct conversations, asked of a real user service over gRPC: a
block in either direction closes the 1:1 DM (open and post), an unblock opens
it again, a group DM cannot be created around a block, and an unreachable user
service refuses (UNAVAILABLE) instead of letting the message through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.services.user.app import UserServer
from chatmesh.services.user.app import serve as serve_user
from chatmesh.services.user.settings import UserSettings
from chatmesh.user.v1 import user_pb2, user_pb2_grpc

from .conftest import Harness, User, running


@dataclass
class Mesh:
    chat: Harness
    user_server: UserServer
    users: user_pb2_grpc.UserServiceStub
    # The chat service configured with the user service's address.
    stub: chat_service_pb2_grpc.ChatServiceStub

    async def user(self) -> User:
        """A registered user known to both the chat and the user service."""
        user = await self.chat.user()
        request = user_pb2.BatchGetProfilesRequest(user_ids=[user.id])
        async with asyncio.timeout(10):
            while True:
                if (await self.users.BatchGetProfiles(request, metadata=user.md)).profiles:
                    return user
                await asyncio.sleep(0.02)

    async def block(self, blocker: User, blocked: User) -> None:
        await self.users.BlockUser(
            user_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md
        )

    async def unblock(self, blocker: User, blocked: User) -> None:
        await self.users.UnblockUser(
            user_pb2.UnblockUserRequest(user_id=blocked.id), metadata=blocker.md
        )

    def open_dm(self, caller: User, *others: User) -> Any:
        return self.stub.GetOrCreateDirectRoom(
            api.GetOrCreateDirectRoomRequest(user_ids=[o.id for o in others]),
            metadata=caller.md,
        )

    async def send(self, sender: User, room_id: str, body: str) -> str:
        message = await self.chat.send(sender, room_id, body, stub=self.stub)
        return message.id


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with running(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", tmp_path) as chat:
        user_server = await serve_user(
            UserSettings(
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'user.db'}",
                redis_url="",
                grpc_port=0,
                metrics_port=0,
                auth_address=f"127.0.0.1:{chat.auth.port}",
            ),
            bus=chat.bus,
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{user_server.port}")
        try:
            assert chat.start_chat is not None
            checked = await chat.start_chat(user_address=f"127.0.0.1:{user_server.port}")
            yield Mesh(
                chat=chat,
                user_server=user_server,
                users=user_pb2_grpc.UserServiceStub(channel),
                stub=checked.stub,
            )
        finally:
            await channel.close()
            await user_server.stop(drain=0.0, grace=0.5)


async def test_a_block_either_way_closes_the_dm_until_it_is_lifted(mesh: Mesh) -> None:
    ann, bob, cat = await mesh.user(), await mesh.user(), await mesh.user()
    dm = (await mesh.open_dm(ann, bob)).room
    await mesh.send(ann, dm.id, "before the block")

    await mesh.block(bob, ann)
    for sender in (ann, bob):  # the blocked one and the blocker alike
        failed = await mesh.chat.failure(mesh.send(sender, dm.id, "are you there?"))
        assert (failed.status, failed.code) == (grpc.StatusCode.PERMISSION_DENIED, "blocked")
        assert "blocked" in failed.message
    for caller, other in ((ann, bob), (bob, ann)):
        failed = await mesh.chat.failure(mesh.open_dm(caller, other))
        assert (failed.status, failed.code) == (grpc.StatusCode.PERMISSION_DENIED, "blocked")
    # Nothing got in; others are unaffected.
    history = await mesh.stub.ListMessages(api.ListMessagesRequest(room_id=dm.id), metadata=bob.md)
    assert [m.body for m in history.messages] == ["before the block"]
    other = (await mesh.open_dm(ann, cat)).room
    await mesh.send(ann, other.id, "hi cat")

    await mesh.unblock(bob, ann)
    reopened = await mesh.open_dm(bob, ann)
    assert (reopened.room.id, reopened.created) == (dm.id, False)
    await mesh.send(ann, dm.id, "friends again?")
    await mesh.send(bob, dm.id, "sure")


async def test_a_group_dm_cannot_be_created_around_a_block(mesh: Mesh) -> None:
    ann, bob, cat = await mesh.user(), await mesh.user(), await mesh.user()
    # An existing group DM stays usable by everyone in it.
    group = (await mesh.open_dm(cat, ann, bob)).room
    dan = await mesh.user()
    await mesh.block(ann, bob)

    failed = await mesh.chat.failure(mesh.open_dm(bob, ann, dan))
    assert (failed.status, failed.code) == (grpc.StatusCode.PERMISSION_DENIED, "blocked")
    again = await mesh.open_dm(ann, bob, cat)
    assert (again.room.id, again.created) == (group.id, False)
    await mesh.send(bob, group.id, "hello all")
    await mesh.send(ann, group.id, "hi cat")
    # A group DM without a block is created as usual.
    assert (await mesh.open_dm(bob, cat, dan)).created


async def test_dms_are_refused_while_the_user_service_is_down(mesh: Mesh) -> None:
    ann, bob = await mesh.user(), await mesh.user()
    dm = (await mesh.open_dm(ann, bob)).room
    room = await mesh.chat.room(ann, members=(bob,))
    await mesh.user_server.stop(drain=0.0, grace=0.5)

    failed = await mesh.chat.failure(mesh.send(ann, dm.id, "is it safe?"))
    assert (failed.status, failed.code) == (grpc.StatusCode.UNAVAILABLE, "blocks_unavailable")
    failed = await mesh.chat.failure(mesh.open_dm(bob, ann))
    assert failed.status == grpc.StatusCode.UNAVAILABLE
    history = await mesh.stub.ListMessages(api.ListMessagesRequest(room_id=dm.id), metadata=ann.md)
    assert list(history.messages) == []
    # Group rooms do not depend on the user service.
    await mesh.send(ann, room.id, "rooms still work")
