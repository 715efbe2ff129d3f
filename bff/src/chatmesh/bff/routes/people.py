"""/api/v1/users, /api/v1/friends, /api/v1/blocks: profiles, search, the friends
state machine and blocking, in front of user.v1.UserService.

Every call is made with the caller's own access token: the user service decides
what the caller may see and do (blocked users are "not found", only the caller's
own profile can be changed, …); these routes translate shapes, not rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from chatmesh.bff.auth import Authenticator
from chatmesh.bff.body import read_json
from chatmesh.bff.errors import ApiError
from chatmesh.bff.openapi import ApiRoute, Operation
from chatmesh.bff.people_models import (
    BlockedUser,
    BlockedUserList,
    Friend,
    FriendRequest,
    FriendRequestResult,
    FriendsOverview,
    Profile,
    ProfilePage,
    ProfileUpdate,
    UserProfile,
    UserRef,
)
from chatmesh.bff.responses import model_response, outgoing_metadata
from chatmesh.bff.state import backends
from chatmesh.user.v1 import user_pb2

BACKEND_ERRORS = (500, 503)
MAX_QUERY = 64
MAX_PAGE = 100
DEFAULT_PAGE = 20
# Lists the API returns whole are read from the service this many at a time.
LIST_PAGE = 1000
# ... and at most this many pages (100k entries) per request.
MAX_LIST_PAGES = 100

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


def _query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            422,
            "validation_failed",
            f"`{name}` must be an integer from {low} to {high}",
            details={"fields": [{"field": name, "type": "int_range", "message": "out of range"}]},
        )
    return value


async def _all_pages(fetch: Callable[[str], Awaitable[tuple[list[T], str]]]) -> list[T]:
    """Every item of a paginated list call (`fetch(page_token)` → items, next token)."""
    items: list[T] = []
    token = ""
    for _ in range(MAX_LIST_PAGES):
        page, token = await fetch(token)
        items.extend(page)
        if not token:
            break
    return items


class PeopleRoutes:
    def __init__(self, *, authenticator: Authenticator, timeout: float) -> None:
        self.authenticator = authenticator
        self.timeout = timeout

    async def _caller(self, request: Request) -> tuple[str, Metadata]:
        """The caller's user id and the metadata of calls made on their behalf."""
        claims = await self.authenticator.require(request)
        return claims.user_id, outgoing_metadata(request, access_token=claims.token)

    # --- profiles ------------------------------------------------------------

    async def get_own_profile(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        reply = await backends(request.scope).users.GetProfile(
            user_pb2.GetProfileRequest(), timeout=self.timeout, metadata=metadata
        )
        return model_response(Profile.from_proto(reply.profile))

    async def update_own_profile(self, request: Request) -> Response:
        user_id, metadata = await self._caller(request)
        body = await read_json(request, ProfileUpdate)
        fields = sorted(body.model_fields_set)
        if not fields:
            raise ApiError(
                422,
                "validation_failed",
                "name at least one field to change",
                details={"fields": [{"field": "body", "type": "empty", "message": "no fields"}]},
            )
        profile = user_pb2.Profile(user_id=user_id)
        for name in fields:
            setattr(profile, name, getattr(body, name) or "")
        update = user_pb2.UpdateProfileRequest(profile=profile)
        update.update_mask.paths.extend(fields)
        found = backends(request.scope)
        reply = await found.users.UpdateProfile(update, timeout=self.timeout, metadata=metadata)
        found.profiles.put(reply.profile)
        return model_response(Profile.from_proto(reply.profile))

    async def get_user(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        reply = await backends(request.scope).users.GetProfile(
            user_pb2.GetProfileRequest(user_id=str(request.path_params["user_id"])),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(UserProfile.from_reply(reply))

    async def search_users(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        query = request.query_params.get("q", "").strip()
        if not query or len(query) > MAX_QUERY:
            raise ApiError(
                422,
                "validation_failed",
                f"`q` must be 1 to {MAX_QUERY} characters",
                details={"fields": [{"field": "q", "type": "length", "message": "1 to 64"}]},
            )
        limit = _query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        reply = await backends(request.scope).users.SearchProfiles(
            user_pb2.SearchProfilesRequest(
                query=query, page_size=limit, page_token=request.query_params.get("cursor", "")
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            ProfilePage(
                users=[Profile.from_proto(profile) for profile in reply.profiles],
                next_cursor=reply.next_page_token or None,
            )
        )

    # --- friends -------------------------------------------------------------

    async def list_friends(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        users = backends(request.scope).users

        async def friends(token: str) -> tuple[list[Friend], str]:
            reply = await users.ListFriends(
                user_pb2.ListFriendsRequest(page_size=LIST_PAGE, page_token=token),
                timeout=self.timeout,
                metadata=metadata,
            )
            return [Friend.from_proto(f) for f in reply.friends], reply.next_page_token

        async def requests(token: str) -> tuple[list[FriendRequest], str]:
            reply = await users.ListFriendRequests(
                user_pb2.ListFriendRequestsRequest(page_size=LIST_PAGE, page_token=token),
                timeout=self.timeout,
                metadata=metadata,
            )
            return [FriendRequest.from_proto(r) for r in reply.requests], reply.next_page_token

        pending = await _all_pages(requests)
        return model_response(
            FriendsOverview(
                friends=await _all_pages(friends),
                incoming=[r for r in pending if r.direction == "incoming"],
                outgoing=[r for r in pending if r.direction == "outgoing"],
            )
        )

    async def send_friend_request(self, request: Request) -> Response:
        user_id, metadata = await self._caller(request)
        body = await read_json(request, UserRef)
        reply = await backends(request.scope).users.SendFriendRequest(
            user_pb2.SendFriendRequestRequest(user_id=body.user_id),
            timeout=self.timeout,
            metadata=metadata,
        )
        if reply.WhichOneof("result") == "friend":
            backends(request.scope).presence_hub.befriended(user_id, body.user_id)
            result = FriendRequestResult(
                status="friends", request=None, friend=Friend.from_proto(reply.friend)
            )
            return model_response(result)
        result = FriendRequestResult(
            status="pending", request=FriendRequest.from_proto(reply.request), friend=None
        )
        return model_response(result, 201)

    async def accept_friend_request(self, request: Request) -> Response:
        user_id, metadata = await self._caller(request)
        found = backends(request.scope)
        reply = await found.users.AcceptFriendRequest(
            user_pb2.AcceptFriendRequestRequest(request_id=str(request.path_params["request_id"])),
            timeout=self.timeout,
            metadata=metadata,
        )
        found.presence_hub.befriended(user_id, reply.friend.profile.user_id)
        return model_response(Friend.from_proto(reply.friend))

    async def decline_friend_request(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        await backends(request.scope).users.DeclineFriendRequest(
            user_pb2.DeclineFriendRequestRequest(request_id=str(request.path_params["request_id"])),
            timeout=self.timeout,
            metadata=metadata,
        )
        return Response(status_code=204)

    async def remove_friend(self, request: Request) -> Response:
        """Ends a friendship, or withdraws the caller's pending request to the user."""
        _, metadata = await self._caller(request)
        users = backends(request.scope).users
        user_id = str(request.path_params["user_id"])
        seen = await users.GetProfile(
            user_pb2.GetProfileRequest(user_id=user_id), timeout=self.timeout, metadata=metadata
        )
        if seen.relationship == user_pb2.RELATIONSHIP_REQUEST_SENT:
            await users.CancelFriendRequest(
                user_pb2.CancelFriendRequestRequest(request_id=seen.friend_request_id),
                timeout=self.timeout,
                metadata=metadata,
            )
        else:
            # Also for non-friends: the service answers 404 `not_friends`.
            await users.RemoveFriend(
                user_pb2.RemoveFriendRequest(user_id=user_id),
                timeout=self.timeout,
                metadata=metadata,
            )
        return Response(status_code=204)

    # --- blocks --------------------------------------------------------------

    async def list_blocks(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        users = backends(request.scope).users

        async def blocked(token: str) -> tuple[list[BlockedUser], str]:
            reply = await users.ListBlockedUsers(
                user_pb2.ListBlockedUsersRequest(page_size=LIST_PAGE, page_token=token),
                timeout=self.timeout,
                metadata=metadata,
            )
            return [BlockedUser.from_proto(b) for b in reply.blocked_users], reply.next_page_token

        return model_response(BlockedUserList(blocked=await _all_pages(blocked)))

    async def block_user(self, request: Request) -> Response:
        user_id, metadata = await self._caller(request)
        body = await read_json(request, UserRef)
        found = backends(request.scope)
        reply = await found.users.BlockUser(
            user_pb2.BlockUserRequest(user_id=body.user_id),
            timeout=self.timeout,
            metadata=metadata,
        )
        found.presence_hub.blocked(user_id, body.user_id)
        return model_response(BlockedUser.from_proto(reply.blocked_user), 201)

    async def unblock_user(self, request: Request) -> Response:
        _, metadata = await self._caller(request)
        await backends(request.scope).users.UnblockUser(
            user_pb2.UnblockUserRequest(user_id=str(request.path_params["user_id"])),
            timeout=self.timeout,
            metadata=metadata,
        )
        return Response(status_code=204)

    def routes(self) -> list[ApiRoute]:
        def op(
            summary: str,
            tag: str,
            *errors: int,
            response: type[BaseModel] | None = None,
            request: type[BaseModel] | None = None,
            success: int = 200,
            success_description: str = "OK",
            description: str = "",
        ) -> Operation:
            return Operation(
                summary=summary,
                tag=tag,
                success=success,
                success_description=success_description,
                request=request,
                response=response,
                errors=(401, *errors, *BACKEND_ERRORS),
                security="user",
                description=description,
            )

        return [
            ApiRoute(
                "/api/v1/users/me/profile",
                self.get_own_profile,
                method="GET",
                operation=op("The caller's profile", "users", response=Profile),
            ),
            ApiRoute(
                "/api/v1/users/me/profile",
                self.update_own_profile,
                method="PATCH",
                operation=op(
                    "Change the caller's profile",
                    "users",
                    response=Profile,
                    request=ProfileUpdate,
                    description=(
                        "Only the fields present change. 422 `invalid_avatar_url` for anything "
                        "but an http(s) URL, `invalid_display_name`, `invalid_time_zone`, …"
                    ),
                ),
            ),
            ApiRoute(
                "/api/v1/users",
                self.search_users,
                method="GET",
                operation=op(
                    "Find users by username or display name prefix",
                    "users",
                    422,
                    response=ProfilePage,
                    description=(
                        "Query `q` (1-64 characters, matched literally, ignoring case and "
                        "accents), `limit` (1-100, default 20), `cursor` (from `next_cursor`). "
                        "Users blocked either way are not returned."
                    ),
                ),
            ),
            ApiRoute(
                "/api/v1/users/{user_id}",
                self.get_user,
                method="GET",
                operation=op(
                    "A user's profile and relationship to the caller",
                    "users",
                    404,
                    response=UserProfile,
                    description="404 `user_not_found` also when that user blocked the caller.",
                ),
            ),
            ApiRoute(
                "/api/v1/friends",
                self.list_friends,
                method="GET",
                operation=op(
                    "Friends and pending requests both ways", "friends", response=FriendsOverview
                ),
            ),
            ApiRoute(
                "/api/v1/friends/requests",
                self.send_friend_request,
                method="POST",
                operation=op(
                    "Ask a user to be friends",
                    "friends",
                    404,
                    409,
                    success=201,
                    success_description=(
                        "201: request pending; 200: the user had already asked, now friends"
                    ),
                    request=UserRef,
                    response=FriendRequestResult,
                    description=(
                        "422 `cannot_befriend_self`; 409 `already_friends` / `user_blocked`; "
                        "404 `user_not_found`. Sending twice is harmless."
                    ),
                ),
            ),
            ApiRoute(
                "/api/v1/friends/requests/{request_id}/accept",
                self.accept_friend_request,
                method="POST",
                operation=op("Accept a request to the caller", "friends", 404, response=Friend),
            ),
            ApiRoute(
                "/api/v1/friends/requests/{request_id}/decline",
                self.decline_friend_request,
                method="POST",
                operation=op(
                    "Decline a request to the caller",
                    "friends",
                    404,
                    success=204,
                    success_description="Declined",
                ),
            ),
            ApiRoute(
                "/api/v1/friends/{user_id}",
                self.remove_friend,
                method="DELETE",
                operation=op(
                    "End a friendship, or withdraw the caller's request to the user",
                    "friends",
                    404,
                    success=204,
                    success_description="Removed",
                ),
            ),
            ApiRoute(
                "/api/v1/blocks",
                self.list_blocks,
                method="GET",
                operation=op("Users the caller blocked", "blocks", response=BlockedUserList),
            ),
            ApiRoute(
                "/api/v1/blocks",
                self.block_user,
                method="POST",
                operation=op(
                    "Block a user (ends a friendship and pending requests)",
                    "blocks",
                    404,
                    success=201,
                    success_description="Blocked (idempotent)",
                    request=UserRef,
                    response=BlockedUser,
                ),
            ),
            ApiRoute(
                "/api/v1/blocks/{user_id}",
                self.unblock_user,
                method="DELETE",
                operation=op(
                    "Lift a block (idempotent)",
                    "blocks",
                    404,
                    success=204,
                    success_description="Unblocked",
                ),
            ),
        ]
