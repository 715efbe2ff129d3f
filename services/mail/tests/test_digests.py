"""Missed-message and weekly digest emails computed from real chat data: real auth,
user (presence), chat and mail services on one bus, on SQLite files and on
PostgreSQL. Chat's events build the mail service's projection; the digest passes
are run directly with the mail service's clock moved forward (no sleeping)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.chat.v1 import chat_service_pb2 as chat_api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.bus import InProcessEventBus
from chatmesh.common.clock import utcnow
from chatmesh.common.db import Database
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.common.testkit import User
from chatmesh.services.auth.app import serve as serve_auth
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat import models as chat_models
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.settings import DB_SCHEMA as CHAT_SCHEMA
from chatmesh.services.chat.settings import ChatSettings
from chatmesh.services.mail.app import MailServer
from chatmesh.services.mail.app import serve as serve_mail
from chatmesh.services.mail.models import ChatMessage, EmailRecord, Person, RoomMember
from chatmesh.services.mail.service import PreferenceValues
from chatmesh.services.mail.settings import DB_SCHEMA as MAIL_SCHEMA
from chatmesh.services.user.app import serve as serve_user
from chatmesh.services.user.settings import UserSettings
from chatmesh.user.v1 import presence_pb2, presence_pb2_grpc

DELAY = timedelta(minutes=15)


class MovableClock:
    """The mail service's time: real time plus an offset the test sets."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - utcnow()


@dataclass
class Mesh:
    auth: auth_pb2_grpc.AuthServiceStub
    chat: chat_service_pb2_grpc.ChatServiceStub
    presence: presence_pb2_grpc.PresenceServiceStub
    chat_db: Database
    mail_db: Database
    mail_url: str
    clock: MovableClock
    start_mail: Callable[[], Awaitable[MailServer]]
    mails: list[MailServer] = field(default_factory=list)

    @property
    def mail(self) -> MailServer:
        return self.mails[0]

    async def user(self, name: str) -> User:
        username = f"{name}_{uuid.uuid4().hex[:6]}"
        response = await self.auth.Register(
            auth_pb2.RegisterRequest(
                email=f"{username}@example.com",
                username=username,
                password="correct horse battery",
                display_name=name.title(),
            )
        )
        user = User(response.account.id, response.account.username, response.tokens.access_token)
        await until(lambda: self._known(user.id), "chat and mail never learned of the user")
        return user

    async def _known(self, user_id: str) -> bool:
        async with self.chat_db.read() as session:
            in_chat = await session.get(chat_models.User, user_id)
        async with self.mail_db.read() as session:
            in_mail = await session.get(Person, user_id)
        return in_chat is not None and in_mail is not None

    async def dm(self, sender: User, *others: User) -> str:
        response = await self.chat.GetOrCreateDirectRoom(
            chat_api.GetOrCreateDirectRoomRequest(user_ids=[o.id for o in others]),
            metadata=sender.md,
        )
        return response.room.id

    async def room(self, owner: User, name: str, *members: User) -> str:
        room = await self.chat.CreateRoom(chat_api.CreateRoomRequest(name=name), metadata=owner.md)
        for member in members:
            await self.chat.AddMember(
                chat_api.AddMemberRequest(room_id=room.room.id, user_id=member.id),
                metadata=owner.md,
            )
        return room.room.id

    async def send(self, sender: User, room_id: str, body: str) -> Any:
        """Send a message and wait until the mail service has projected it."""
        response = await self.chat.SendMessage(
            chat_api.SendMessageRequest(room_id=room_id, body=body, client_msg_id=uuid.uuid4().hex),
            metadata=sender.md,
        )
        message = response.message

        async def projected() -> bool:
            async with self.mail_db.read() as session:
                return await session.get(ChatMessage, message.id) is not None

        await until(projected, "the mail service never saw the message")
        return message

    async def read(self, reader: User, room_id: str, seq: int) -> None:
        await self.chat.MarkRead(
            chat_api.MarkReadRequest(room_id=room_id, seq=seq), metadata=reader.md
        )

        async def projected() -> bool:
            async with self.mail_db.read() as session:
                member = await session.get(RoomMember, (room_id, reader.id))
            return member is not None and member.last_read_seq >= seq

        await until(projected, "the mail service never saw the read marker")

    async def emails(self, template_id: str, user: User | None = None) -> list[EmailRecord]:
        query = select(EmailRecord).where(col(EmailRecord.template_id) == template_id)
        if user is not None:
            query = query.where(col(EmailRecord.user_id) == user.id)
        async with self.mail_db.read() as session:
            return list((await session.exec(query.order_by(col(EmailRecord.create_time)))).all())

    async def missed_pass(self, at: datetime) -> int:
        self.clock.set(at)
        return await self.mail.digests.send_missed_messages()


async def until(check: Callable[[], Awaitable[bool]], message: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)


def _service_url(db_url: str, tmp_path: Path, name: str) -> str:
    """A service's database: its own schema on PostgreSQL, its own file on SQLite."""
    if make_url(db_url).get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
    return db_url


@asynccontextmanager
async def running_mesh(db_url: str, tmp_path: Path, kit: Any) -> AsyncIterator[Mesh]:
    async with AsyncExitStack() as stack:
        bus = InProcessEventBus()
        stack.push_async_callback(bus.close)
        auth = await serve_auth(
            AuthSettings(
                database_url=_service_url(db_url, tmp_path, "auth"),
                grpc_port=0,
                metrics_port=0,
                argon2_memory_kib=8 * 1024,
                argon2_time_cost=1,
            ),
            bus=bus,
            limiter=InMemoryRateLimiter(),
        )
        stack.push_async_callback(auth.stop)
        auth_address = f"127.0.0.1:{auth.port}"
        user = await serve_user(
            UserSettings(
                database_url=_service_url(db_url, tmp_path, "user"),
                grpc_port=0,
                metrics_port=0,
                auth_address=auth_address,
                presence_offline_delay_seconds=0.1,
                presence_sweep_interval_seconds=0.05,
            ),
            bus=bus,
        )
        stack.push_async_callback(user.stop)
        chat_url = _service_url(db_url, tmp_path, "chat")
        chat = await serve_chat(
            ChatSettings(
                database_url=chat_url,
                grpc_port=0,
                metrics_port=0,
                auth_address=auth_address,
                outbox_poll_seconds=0.02,
            ),
            bus=bus,
        )
        stack.push_async_callback(chat.stop)
        mail_url = _service_url(db_url, tmp_path, "mail")
        clock = MovableClock()
        settings = kit.settings_for(
            mail_url,
            rest_port=0,
            auth_address=auth_address,
            user_address=f"127.0.0.1:{user.port}",
            digest_scheduler=False,  # the tests run the passes
            missed_messages_delay_seconds=DELAY.total_seconds(),
        )

        async def start_mail() -> MailServer:
            server = await serve_mail(settings, bus=bus, limiter=InMemoryRateLimiter(), clock=clock)
            stack.push_async_callback(server.stop)
            mesh.mails.append(server)
            return server

        channels = []
        for port in (auth.port, chat.port, user.port):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            channels.append(channel)
        chat_db = Database(chat_url, schema=CHAT_SCHEMA)
        stack.push_async_callback(chat_db.close)
        mail_db = Database(mail_url, schema=MAIL_SCHEMA)
        stack.push_async_callback(mail_db.close)
        mesh = Mesh(
            auth=auth_pb2_grpc.AuthServiceStub(channels[0]),
            chat=chat_service_pb2_grpc.ChatServiceStub(channels[1]),
            presence=presence_pb2_grpc.PresenceServiceStub(channels[2]),
            chat_db=chat_db,
            mail_db=mail_db,
            mail_url=mail_url,
            clock=clock,
            start_mail=start_mail,
        )
        await start_mail()
        yield mesh


@pytest.fixture
async def mesh(db_url: str, tmp_path: Path, kit: Any) -> AsyncIterator[Mesh]:
    async with running_mesh(db_url, tmp_path, kit) as started:
        yield started


def _headers(email: EmailRecord) -> dict[str, str]:
    headers: dict[str, str] = json.loads(email.headers)
    return headers


# --- missed messages ---------------------------------------------------------------------


async def test_missed_dms_and_mentions_are_mailed_once_in_one_email(mesh: Mesh, kit: Any) -> None:
    alice, bob, carol = await mesh.user("alice"), await mesh.user("bob"), await mesh.user("carol")
    dm = await mesh.dm(alice, bob)
    await mesh.send(alice, dm, "are you coming to the review?")
    await mesh.send(alice, dm, "it starts at 3")
    design = await mesh.room(carol, "design", bob, alice)
    await mesh.send(carol, design, f"@{bob.username} can you check the mockups?")
    await mesh.send(carol, design, "new colours are in")  # neither a DM nor a mention

    # Not yet: the messages are younger than the delay.
    assert await mesh.missed_pass(utcnow() + DELAY / 2) == 0
    assert await mesh.missed_pass(utcnow() + DELAY + timedelta(minutes=1)) == 1

    [email] = await mesh.emails("missed_messages")
    assert email.user_id == bob.id
    assert email.recipient == f"{bob.username}@example.com"
    assert email.subject == "You have 3 unread messages"
    assert "are you coming to the review?" in email.text_body
    assert "it starts at 3" in email.text_body
    assert "Carol mentioned you: @" in email.text_body
    assert "new colours are in" not in email.text_body
    assert f"{kit.public_url}/room?id={dm}" in email.text_body
    assert f"/room?id={design}" in email.html_body
    headers = _headers(email)
    assert headers["List-Unsubscribe"].startswith(f"<{kit.public_url}/unsubscribe?token=")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Already notified: never twice, also not for another replica's pass.
    assert await mesh.missed_pass(utcnow() + DELAY * 2) == 0
    await mesh.start_mail()
    assert await mesh.mails[1].digests.send_missed_messages() == 0

    # A new DM gets its own email, covering only what is new.
    await mesh.send(alice, dm, "never mind, moved to tomorrow")
    assert await mesh.missed_pass(utcnow() + DELAY + timedelta(minutes=1)) == 1
    emails = await mesh.emails("missed_messages", bob)
    assert len(emails) == 2
    assert emails[1].subject == "You have 1 unread message"
    assert "moved to tomorrow" in emails[1].text_body
    assert "review" not in emails[1].text_body


async def test_messages_read_before_the_delay_are_not_mailed(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    dm = await mesh.dm(alice, bob)
    await mesh.send(alice, dm, "lunch?")
    second = await mesh.send(alice, dm, "12:30 at the usual place")
    # Bob reads them (another device, the web UI) before the delay is up.
    await mesh.read(bob, dm, second.seq)

    assert await mesh.missed_pass(utcnow() + DELAY + timedelta(minutes=1)) == 0
    assert await mesh.emails("missed_messages") == []

    # Partly read: only the unread rest is mailed.
    third = await mesh.send(alice, dm, "or 13:00 if you are late")
    await mesh.send(alice, dm, "ping")
    await mesh.read(bob, dm, third.seq)
    assert await mesh.missed_pass(utcnow() + DELAY + timedelta(minutes=1)) == 1
    [email] = await mesh.emails("missed_messages", bob)
    assert email.subject == "You have 1 unread message"
    assert "ping" in email.text_body
    assert "13:00" not in email.text_body


async def test_only_users_offline_for_the_delay_get_mail(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    dm = await mesh.dm(alice, bob)
    await mesh.send(alice, dm, "call me when you can")

    # Bob is connected (the web UI is open): nothing, however old the message.
    connection_id = uuid.uuid4().hex
    await mesh.presence.OpenConnection(
        presence_pb2.OpenConnectionRequest(connection_id=connection_id, instance_id="bff-test"),
        metadata=bob.md,
    )
    assert await mesh.missed_pass(utcnow() + DELAY * 3) == 0

    # He closes the tab: offline, but not for the delay yet.
    await mesh.presence.CloseConnections(
        presence_pb2.CloseConnectionsRequest(instance_id="bff-test", connection_ids=[connection_id])
    )

    async def offline() -> bool:
        got = await mesh.presence.GetPresence(
            presence_pb2.GetPresenceRequest(user_ids=[bob.id]), metadata=bob.md
        )
        return got.presences[0].status == presence_pb2.PRESENCE_STATUS_OFFLINE

    await until(offline, "bob never went offline")
    got = await mesh.presence.GetPresence(
        presence_pb2.GetPresenceRequest(user_ids=[bob.id]), metadata=bob.md
    )
    last_seen = got.presences[0].last_seen_time.ToDatetime(tzinfo=UTC)
    assert await mesh.missed_pass(last_seen + DELAY - timedelta(seconds=30)) == 0
    assert await mesh.emails("missed_messages") == []

    assert await mesh.missed_pass(last_seen + DELAY + timedelta(seconds=1)) == 1
    [email] = await mesh.emails("missed_messages", bob)
    assert "call me when you can" in email.text_body


async def test_turned_off_missed_messages_send_nothing(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    await mesh.mail.service.update_preferences(
        bob.id, PreferenceValues(missed_messages=False), ["missed_messages"]
    )
    dm = await mesh.dm(alice, bob)
    await mesh.send(alice, dm, "hello?")
    assert await mesh.missed_pass(utcnow() + DELAY * 2) == 0
    assert await mesh.emails("missed_messages") == []


# --- weekly digest -----------------------------------------------------------------------


def _next_monday_morning() -> datetime:
    """A moment on the default digest day (Monday) whose past week is now."""
    today = utcnow().date()
    monday = today + timedelta(days=7 - today.weekday())
    return datetime(monday.year, monday.month, monday.day, 10, tzinfo=UTC)


async def test_weekly_digest_lists_rooms_counts_and_unread(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    carol, dave = await mesh.user("carol"), await mesh.user("dave")
    general = await mesh.room(alice, "general", bob, carol)
    quiet = await mesh.room(bob, "quiet")  # bob's, no messages: not listed
    for n in range(3):
        await mesh.send(alice, general, f"standup note {n}")
    await mesh.send(carol, general, "thanks!")
    await mesh.send(bob, general, "on it")  # sending reads the room up to here
    await mesh.send(alice, general, "one more thing")
    dm = await mesh.dm(carol, bob)
    await mesh.send(carol, dm, "coffee tomorrow?")
    # Carol wants her digest on Thursdays; Dave has nothing to read about.
    await mesh.mail.service.update_preferences(carol.id, PreferenceValues(digest_day=4), [])

    mesh.clock.set(_next_monday_morning())
    sent = await mesh.mail.digests.send_weekly_digests()
    assert sent == 2  # alice and bob: carol's day is Thursday, dave had no activity
    assert await mesh.emails("weekly_digest", carol) == []
    assert await mesh.emails("weekly_digest", dave) == []

    [bobs] = await mesh.emails("weekly_digest", bob)
    assert bobs.subject == "Your week in ChatMesh: 7 messages, 2 unread"
    lines = bobs.text_body.splitlines()
    general_line = next(line for line in lines if line.startswith("general:"))
    assert general_line == "general: 6 messages, 1 unread (most active: Alice, Bob, Carol)"
    dm_line = next(line for line in lines if line.startswith("Direct message with Carol"))
    assert dm_line == "Direct message with Carol: 1 message, 1 unread (most active: Carol)"
    # Busiest conversation first; rooms without activity are left out.
    assert lines.index(general_line) < lines.index(dm_line)
    assert quiet not in bobs.text_body
    assert f"/room?id={general}" in bobs.html_body
    assert "List-Unsubscribe" in _headers(bobs)

    [alices] = await mesh.emails("weekly_digest", alice)
    # Her own last message read the room for her.
    assert "general: 6 messages, 0 unread" in alices.text_body

    # Today's digest is done: a later tick (or the CronJob) sends nothing.
    assert await mesh.mail.digests.send_weekly_digests() == 0


async def test_weekly_digest_respects_the_preference(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    general = await mesh.room(alice, "general", bob)
    await mesh.send(alice, general, "hello all")
    await mesh.mail.service.update_preferences(
        bob.id, PreferenceValues(weekly_digest=False), ["weekly_digest"]
    )
    mesh.clock.set(_next_monday_morning())
    assert await mesh.mail.digests.send_weekly_digests() == 1
    assert await mesh.emails("weekly_digest", bob) == []
    assert len(await mesh.emails("weekly_digest", alice)) == 1


async def test_two_schedulers_send_one_digest_per_user(mesh: Mesh) -> None:
    users = [await mesh.user(name) for name in ("alice", "bob", "carol")]
    general = await mesh.room(users[0], "general", *users[1:])
    dm = await mesh.dm(users[1], users[2])
    for user in users:
        await mesh.send(user, general, f"hi from {user.username}")
    await mesh.send(users[1], dm, "psst")
    second = await mesh.start_mail()  # another replica, same database
    first = mesh.mail

    mesh.clock.set(_next_monday_morning())
    counts = await asyncio.gather(
        first.digests.send_weekly_digests(),
        second.digests.send_weekly_digests(),
        first.digests.send_weekly_digests(),
    )
    assert sum(counts) == 3
    for user in users:
        assert len(await mesh.emails("weekly_digest", user)) == 1

    # The same for missed messages: one pass wins, the other finds nothing left.
    mesh.clock.set(utcnow() + DELAY * 2)
    missed = await asyncio.gather(
        first.digests.send_missed_messages(), second.digests.send_missed_messages()
    )
    assert sum(missed) == 1
    assert len(await mesh.emails("missed_messages", users[2])) == 1


async def test_cronjob_command_sends_todays_digests_once(mesh: Mesh) -> None:
    alice, bob = await mesh.user("alice"), await mesh.user("bob")
    general = await mesh.room(alice, "general", bob)
    await mesh.send(alice, general, "release notes are up")
    today = utcnow().isoweekday()
    for user in (alice, bob):
        await mesh.mail.service.update_preferences(
            user.id, PreferenceValues(digest_day=today), ["digest_day"]
        )
    env = {
        **os.environ,
        "CHATMESH_DATABASE_URL": mesh.mail_url,
        "CHATMESH_REDIS_URL": "",
        "CHATMESH_LOG_FORMAT": "console",
    }
    command = [sys.executable, "-m", "chatmesh.services.mail", "send-weekly-digests"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr
    assert "weekly digests queued: 2" in done.stdout
    [email] = await mesh.emails("weekly_digest", bob)
    assert "general: 1 message, 1 unread" in email.text_body

    again = await asyncio.to_thread(run)
    assert again.returncode == 0, again.stderr
    assert "weekly digests queued: 0" in again.stdout
    assert await mesh.mail.digests.send_weekly_digests() == 0

    command[-1] = "send-daily-digests"
    wrong = await asyncio.to_thread(run)
    assert wrong.returncode == 2
    assert "send-weekly-digests" in wrong.stderr
