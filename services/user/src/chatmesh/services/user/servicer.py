# ruff: noqa: N802 (method names are the RPC names the generated base class declares)
"""The gRPC face of profiles, friends and blocks: protobuf in, domain call,
protobuf out. No rules live here; domain errors (`ServiceError`) pass through
and the server's error interceptor turns them into statuses with stable codes.
The caller is always `current_claims()` (the verified access token)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.common.clock import as_utc
from chatmesh.common.grpc.context import current_claims
from chatmesh.services.user.models import Profile
from chatmesh.services.user.profiles import EDITABLE, ProfileService, Relation
from chatmesh.services.user.relations import (
    BlockedView,
    Direction,
    FriendRequestView,
    FriendView,
    RelationService,
)
from chatmesh.user.v1 import user_pb2, user_pb2_grpc

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Req, Awaitable[Resp]]

_RELATION = {
    Relation.NONE: user_pb2.RELATIONSHIP_NONE,
    Relation.SELF: user_pb2.RELATIONSHIP_SELF,
    Relation.FRIEND: user_pb2.RELATIONSHIP_FRIEND,
    Relation.REQUEST_SENT: user_pb2.RELATIONSHIP_REQUEST_SENT,
    Relation.REQUEST_RECEIVED: user_pb2.RELATIONSHIP_REQUEST_RECEIVED,
    Relation.BLOCKED: user_pb2.RELATIONSHIP_BLOCKED,
}
_DIRECTION = {
    Direction.INCOMING: user_pb2.FRIEND_REQUEST_DIRECTION_INCOMING,
    Direction.OUTGOING: user_pb2.FRIEND_REQUEST_DIRECTION_OUTGOING,
}
_DIRECTION_FILTER = {
    user_pb2.FRIEND_REQUEST_DIRECTION_INCOMING: Direction.INCOMING,
    user_pb2.FRIEND_REQUEST_DIRECTION_OUTGOING: Direction.OUTGOING,
}


def _time(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def profile_message(profile: Profile) -> user_pb2.Profile:
    return user_pb2.Profile(
        user_id=profile.user_id,
        username=profile.username,
        display_name=profile.display_name,
        bio=profile.bio,
        avatar_url=profile.avatar_url,
        status_text=profile.status_text,
        status_emoji=profile.status_emoji,
        time_zone=profile.time_zone,
        create_time=_time(as_utc(profile.create_time)),
        update_time=_time(as_utc(profile.update_time)),
    )


def _friend(view: FriendView) -> user_pb2.Friend:
    return user_pb2.Friend(profile=profile_message(view.profile), create_time=_time(view.since))


def _request(view: FriendRequestView) -> user_pb2.FriendRequest:
    return user_pb2.FriendRequest(
        id=view.id,
        requester_id=view.requester_id,
        recipient_id=view.recipient_id,
        direction=_DIRECTION[view.direction],
        profile=profile_message(view.profile),
        create_time=_time(view.created),
    )


def _blocked(view: BlockedView) -> user_pb2.BlockedUser:
    return user_pb2.BlockedUser(
        profile=profile_message(view.profile), create_time=_time(view.created)
    )


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(self, *, profiles: ProfileService, relations: RelationService) -> None:
        self._profiles = profiles
        self._relations = relations

    # --- profiles ----------------------------------------------------------

    async def GetProfile(
        self,
        request: user_pb2.GetProfileRequest,
        context: Context[user_pb2.GetProfileRequest, user_pb2.GetProfileResponse],
    ) -> user_pb2.GetProfileResponse:
        found = await self._profiles.get(current_claims(), request.user_id)
        return user_pb2.GetProfileResponse(
            profile=profile_message(found.profile),
            relationship=_RELATION[found.relation],
            friend_request_id=found.request_id,
        )

    async def BatchGetProfiles(
        self,
        request: user_pb2.BatchGetProfilesRequest,
        context: Context[user_pb2.BatchGetProfilesRequest, user_pb2.BatchGetProfilesResponse],
    ) -> user_pb2.BatchGetProfilesResponse:
        current_claims()
        profiles = await self._profiles.batch_get(request.user_ids)
        return user_pb2.BatchGetProfilesResponse(profiles=[profile_message(p) for p in profiles])

    async def UpdateProfile(
        self,
        request: user_pb2.UpdateProfileRequest,
        context: Context[user_pb2.UpdateProfileRequest, user_pb2.UpdateProfileResponse],
    ) -> user_pb2.UpdateProfileResponse:
        # Paths that are not editable reach the domain with a dummy value and are
        # rejected there by name.
        changes = {
            path: str(getattr(request.profile, path)) if path in EDITABLE else ""
            for path in request.update_mask.paths
        }
        profile = await self._profiles.update_own(
            current_claims(), user_id=request.profile.user_id, changes=changes
        )
        return user_pb2.UpdateProfileResponse(profile=profile_message(profile))

    async def SearchProfiles(
        self,
        request: user_pb2.SearchProfilesRequest,
        context: Context[user_pb2.SearchProfilesRequest, user_pb2.SearchProfilesResponse],
    ) -> user_pb2.SearchProfilesResponse:
        profiles, token = await self._profiles.search(
            current_claims(),
            query=request.query,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return user_pb2.SearchProfilesResponse(
            profiles=[profile_message(p) for p in profiles], next_page_token=token
        )

    # --- friends -----------------------------------------------------------

    async def SendFriendRequest(
        self,
        request: user_pb2.SendFriendRequestRequest,
        context: Context[user_pb2.SendFriendRequestRequest, user_pb2.SendFriendRequestResponse],
    ) -> user_pb2.SendFriendRequestResponse:
        result = await self._relations.send_request(current_claims(), request.user_id)
        if isinstance(result, FriendView):
            return user_pb2.SendFriendRequestResponse(friend=_friend(result))
        return user_pb2.SendFriendRequestResponse(request=_request(result))

    async def AcceptFriendRequest(
        self,
        request: user_pb2.AcceptFriendRequestRequest,
        context: Context[user_pb2.AcceptFriendRequestRequest, user_pb2.AcceptFriendRequestResponse],
    ) -> user_pb2.AcceptFriendRequestResponse:
        friend = await self._relations.accept(current_claims(), request.request_id)
        return user_pb2.AcceptFriendRequestResponse(friend=_friend(friend))

    async def DeclineFriendRequest(
        self,
        request: user_pb2.DeclineFriendRequestRequest,
        context: Context[
            user_pb2.DeclineFriendRequestRequest, user_pb2.DeclineFriendRequestResponse
        ],
    ) -> user_pb2.DeclineFriendRequestResponse:
        await self._relations.decline(current_claims(), request.request_id)
        return user_pb2.DeclineFriendRequestResponse()

    async def CancelFriendRequest(
        self,
        request: user_pb2.CancelFriendRequestRequest,
        context: Context[user_pb2.CancelFriendRequestRequest, user_pb2.CancelFriendRequestResponse],
    ) -> user_pb2.CancelFriendRequestResponse:
        await self._relations.cancel(current_claims(), request.request_id)
        return user_pb2.CancelFriendRequestResponse()

    async def RemoveFriend(
        self,
        request: user_pb2.RemoveFriendRequest,
        context: Context[user_pb2.RemoveFriendRequest, user_pb2.RemoveFriendResponse],
    ) -> user_pb2.RemoveFriendResponse:
        await self._relations.remove_friend(current_claims(), request.user_id)
        return user_pb2.RemoveFriendResponse()

    async def ListFriends(
        self,
        request: user_pb2.ListFriendsRequest,
        context: Context[user_pb2.ListFriendsRequest, user_pb2.ListFriendsResponse],
    ) -> user_pb2.ListFriendsResponse:
        friends, token = await self._relations.list_friends(
            current_claims(), page_size=request.page_size, page_token=request.page_token
        )
        return user_pb2.ListFriendsResponse(
            friends=[_friend(f) for f in friends], next_page_token=token
        )

    async def ListFriendRequests(
        self,
        request: user_pb2.ListFriendRequestsRequest,
        context: Context[user_pb2.ListFriendRequestsRequest, user_pb2.ListFriendRequestsResponse],
    ) -> user_pb2.ListFriendRequestsResponse:
        requests, token = await self._relations.list_requests(
            current_claims(),
            direction=_DIRECTION_FILTER.get(request.direction),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return user_pb2.ListFriendRequestsResponse(
            requests=[_request(r) for r in requests], next_page_token=token
        )

    # --- blocks ------------------------------------------------------------

    async def BlockUser(
        self,
        request: user_pb2.BlockUserRequest,
        context: Context[user_pb2.BlockUserRequest, user_pb2.BlockUserResponse],
    ) -> user_pb2.BlockUserResponse:
        blocked = await self._relations.block(current_claims(), request.user_id)
        return user_pb2.BlockUserResponse(blocked_user=_blocked(blocked))

    async def UnblockUser(
        self,
        request: user_pb2.UnblockUserRequest,
        context: Context[user_pb2.UnblockUserRequest, user_pb2.UnblockUserResponse],
    ) -> user_pb2.UnblockUserResponse:
        await self._relations.unblock(current_claims(), request.user_id)
        return user_pb2.UnblockUserResponse()

    async def ListBlockedUsers(
        self,
        request: user_pb2.ListBlockedUsersRequest,
        context: Context[user_pb2.ListBlockedUsersRequest, user_pb2.ListBlockedUsersResponse],
    ) -> user_pb2.ListBlockedUsersResponse:
        blocked, token = await self._relations.list_blocked(
            current_claims(), page_size=request.page_size, page_token=request.page_token
        )
        return user_pb2.ListBlockedUsersResponse(
            blocked_users=[_blocked(b) for b in blocked], next_page_token=token
        )

    async def CheckBlocks(
        self,
        request: user_pb2.CheckBlocksRequest,
        context: Context[user_pb2.CheckBlocksRequest, user_pb2.CheckBlocksResponse],
    ) -> user_pb2.CheckBlocksResponse:
        blocked = await self._relations.check_blocks(current_claims(), request.user_ids)
        return user_pb2.CheckBlocksResponse(blocked_user_ids=blocked)
