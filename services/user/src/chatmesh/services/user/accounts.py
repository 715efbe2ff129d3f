"""The caller's account as the auth service knows it.

Profiles are created from auth's `UserRegistered` events. Right after a
registration the event may not have arrived yet; a caller whose own profile is
missing gets it created from their account (read with their own token), so
"my profile" never answers "not found" for a real account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.common.errors import from_rpc_error
from chatmesh.common.grpc.client import call_metadata
from chatmesh.common.grpc.context import current_request_id


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    username: str
    display_name: str


class AccountSource(Protocol):
    async def own_account(self, access_token: str) -> Account:
        """The account of the token's subject."""
        ...


class AuthAccounts:
    """Reads accounts with `AuthService/GetAccount`, forwarding the caller's token."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 5.0) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout = timeout

    async def own_account(self, access_token: str) -> Account:
        try:
            response = await self._stub.GetAccount(
                auth_pb2.GetAccountRequest(),
                metadata=call_metadata(
                    access_token=access_token, request_id=current_request_id() or None
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        account = response.account
        return Account(
            user_id=account.id, username=account.username, display_name=account.display_name
        )
