"""Helpers for the services' tests (the fixtures live in `chatmesh.common.testing`):
a signed-in test user, an event-bus consumer that records what it gets, and a
failed gRPC call described the way the BFF sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message

from chatmesh.common.bus import unpack
from chatmesh.common.errors import from_rpc_error
from chatmesh.events.v1 import envelope_pb2

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class User:
    """A registered account and its access token."""

    id: str
    username: str
    token: str

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata that makes a call as this user."""
        return (("authorization", f"Bearer {self.token}"),)


class EventLog:
    """Everything a consumer of one bus stream received, in order.
    Pass `handle` as the consumer's handler."""

    def __init__(self) -> None:
        self.received: list[envelope_pb2.Event] = []
        self._changed = asyncio.Condition()

    async def handle(self, event: envelope_pb2.Event) -> None:
        async with self._changed:
            self.received.append(event)
            self._changed.notify_all()

    def of_type(self, message_type: type[M]) -> list[M]:
        found = (unpack(event, message_type) for event in self.received)
        return [message for message in found if message is not None]

    async def wait_for_event(
        self,
        message_type: type[M],
        where: Callable[[M], bool] = lambda _: True,
        *,
        within: float = 10.0,
    ) -> envelope_pb2.Event:
        """The first envelope whose payload is a `message_type` matching `where`."""

        def match() -> envelope_pb2.Event | None:
            for event in self.received:
                payload = unpack(event, message_type)
                if payload is not None and where(payload):
                    return event
            return None

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: match() is not None)
        found = match()
        assert found is not None
        return found

    async def wait_for(
        self,
        message_type: type[M],
        where: Callable[[M], bool] = lambda _: True,
        *,
        within: float = 10.0,
    ) -> M:
        """The first `message_type` payload matching `where` (waits for it)."""
        event = await self.wait_for_event(message_type, where, within=within)
        payload = unpack(event, message_type)
        assert payload is not None
        return payload

    async def wait_count(
        self, message_type: type[M], count: int, *, within: float = 10.0
    ) -> list[M]:
        """Wait until `count` events of `message_type` arrived; returns them."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.of_type(message_type)) >= count)
        return self.of_type(message_type)

    async def settle(self, delay: float = 0.3) -> None:
        """Give a relay time to publish anything pending (for "no event" checks)."""
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class Failure:
    """How a call failed, as the BFF sees it: status, stable code, message, details."""

    status: grpc.StatusCode
    code: str
    message: str
    details: dict[str, Any]


async def failure(call: Awaitable[object]) -> Failure:
    """Await a gRPC call that must fail and describe the failure."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    parsed = from_rpc_error(info.value)
    return Failure(
        status=info.value.code(),
        code=parsed.code,
        message=info.value.details() or "",
        details=parsed.details,
    )
