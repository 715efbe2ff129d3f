"""Whether users blocked each other. The user service owns blocks; the chat
service asks it (`CheckBlocks`, batched) before a DM is opened or written to.
Without a configured user service every pair is allowed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from chatmesh.common.errors import Unavailable
from chatmesh.common.grpc.client import call_metadata
from chatmesh.common.grpc.context import claims_var, current_request_id
from chatmesh.common.logging import get_logger
from chatmesh.user.v1 import user_pb2, user_pb2_grpc

log = get_logger("chatmesh.chat.blocks")


class BlockChecker(Protocol):
    async def blocked_among(self, user_id: str, others: Sequence[str]) -> set[str]:
        """The ids of `others` with a block between them and `user_id`, in either
        direction. Raises `Unavailable` when that cannot be known: callers must
        fail closed, never treat "unknown" as "not blocked".

        Called inside `user_id`'s request (the verified access token is in
        `chatmesh.common.grpc.context.claims_var`, to forward).
        """
        ...


class AllowAll:
    """No user service configured: nobody has blocked anybody."""

    async def blocked_among(self, user_id: str, others: Sequence[str]) -> set[str]:
        return set()


def _unavailable() -> Unavailable:
    return Unavailable("blocks cannot be checked right now; try again", code="blocks_unavailable")


class UserServiceBlocks:
    """Asks the user service's `CheckBlocks` with the caller's own access token
    (the mesh has no service tokens: the user service answers for the caller,
    in both directions)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float) -> None:
        self._stub = user_pb2_grpc.UserServiceStub(channel)
        self._timeout = timeout

    async def blocked_among(self, user_id: str, others: Sequence[str]) -> set[str]:
        if not others:
            return set()
        claims = claims_var.get()
        if claims is None or claims.user_id != user_id:
            # Only reachable through a programming error; still never "allowed".
            log.error("block check outside the caller's request")
            raise _unavailable()
        try:
            reply = await self._stub.CheckBlocks(
                user_pb2.CheckBlocksRequest(user_ids=list(others)),
                timeout=self._timeout,
                metadata=call_metadata(
                    access_token=claims.token, request_id=current_request_id() or None
                ),
            )
        except grpc.aio.AioRpcError as error:
            # Fail closed: a DM must not open because the user service is down.
            log.warning("block check failed", grpc_code=error.code().name)
            raise _unavailable() from None
        return set(reply.blocked_user_ids)
