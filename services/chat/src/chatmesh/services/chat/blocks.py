"""Whether one user blocked another. The user service owns blocks; until it
exists (or when it is not configured) every pair is allowed."""

from __future__ import annotations

from typing import Protocol


class BlockChecker(Protocol):
    async def is_blocked(self, *, blocker_id: str, blocked_id: str) -> bool:
        """True when `blocker_id` has blocked `blocked_id`.

        Called with the caller's request context (the access token is available
        through `chatmesh.common.grpc.context.current_claims()` to forward).
        """
        ...


class AllowAll:
    """The default: nobody has blocked anybody."""

    async def is_blocked(self, *, blocker_id: str, blocked_id: str) -> bool:
        return False
