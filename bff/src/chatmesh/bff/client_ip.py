"""The address of the client, honouring only the proxies we were told to trust."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope


def client_ip(scope: Scope, trusted_hops: int) -> str:
    """The client's IP address.

    Each of the `trusted_hops` proxies in front of us appends the address it got
    the request from to X-Forwarded-For, so the client is the entry `trusted_hops`
    places from the right (counting the peer address as the last). Entries further
    left were written by the client and are not believed.
    """
    client = scope.get("client")
    peer = client[0] if client else ""
    if trusted_hops <= 0:
        return peer or "unknown"
    forwarded = Headers(scope=scope).getlist("x-forwarded-for")
    chain = [item.strip() for value in forwarded for item in value.split(",") if item.strip()]
    chain.append(peer)
    index = max(0, len(chain) - 1 - trusted_hops)
    return chain[index] or "unknown"
