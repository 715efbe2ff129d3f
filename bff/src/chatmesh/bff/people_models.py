"""Request and response bodies of the people API (profiles, friends, blocks).

As in :mod:`chatmesh.bff.models`, request models check shape and sane lengths
only; the user service owns the rules (what a valid avatar URL or time zone is)
and answers with precise reasons.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from chatmesh.bff.models import RequestBody, Utf8
from chatmesh.user.v1 import user_pb2

# Ids are opaque to the BFF; the user service checks their form.
UserIdText = Annotated[str, Field(min_length=1, max_length=64), Utf8]

RelationshipName = Literal["none", "self", "friend", "request_sent", "request_received", "blocked"]
_RELATIONSHIPS: dict[int, RelationshipName] = {
    user_pb2.RELATIONSHIP_NONE: "none",
    user_pb2.RELATIONSHIP_SELF: "self",
    user_pb2.RELATIONSHIP_FRIEND: "friend",
    user_pb2.RELATIONSHIP_REQUEST_SENT: "request_sent",
    user_pb2.RELATIONSHIP_REQUEST_RECEIVED: "request_received",
    user_pb2.RELATIONSHIP_BLOCKED: "blocked",
}


def _time(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def _optional_time(value: Timestamp) -> datetime | None:
    return None if value.seconds == 0 and value.nanos == 0 else _time(value)


# --- requests ------------------------------------------------------------------


class UserRef(RequestBody):
    """Names another user (friend requests, blocks)."""

    user_id: UserIdText


class ProfileUpdate(RequestBody):
    """Only the fields present change; `null` or `""` clears an optional field."""

    display_name: Annotated[str, Field(min_length=1, max_length=64), Utf8] | None = None
    bio: Annotated[str, Field(max_length=500), Utf8] | None = None
    avatar_url: Annotated[str, Field(max_length=2048), Utf8] | None = Field(
        default=None, description="An http(s) URL, or empty."
    )
    status_text: Annotated[str, Field(max_length=100), Utf8] | None = None
    status_emoji: Annotated[str, Field(max_length=32), Utf8] | None = Field(
        default=None, description="One emoji, or empty."
    )
    time_zone: Annotated[str, Field(max_length=64), Utf8] | None = Field(
        default=None, description='An IANA time zone name such as "Europe/Berlin", or empty.'
    )


# --- responses -----------------------------------------------------------------


class Profile(BaseModel):
    id: str
    username: str
    display_name: str
    bio: str
    avatar_url: str
    status_text: str
    status_emoji: str
    time_zone: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, profile: user_pb2.Profile) -> Profile:
        return cls(
            id=profile.user_id,
            username=profile.username,
            display_name=profile.display_name,
            bio=profile.bio,
            avatar_url=profile.avatar_url,
            status_text=profile.status_text,
            status_emoji=profile.status_emoji,
            time_zone=profile.time_zone,
            created_at=_optional_time(profile.create_time),
            updated_at=_optional_time(profile.update_time),
        )


class UserProfile(Profile):
    """Another user's profile, seen from the caller."""

    relationship: RelationshipName
    friend_request_id: str | None = Field(
        description="The pending request between the two (to accept, decline or cancel)."
    )

    @classmethod
    def from_reply(cls, reply: user_pb2.GetProfileResponse) -> UserProfile:
        base = Profile.from_proto(reply.profile)
        return cls(
            **base.model_dump(),
            relationship=_RELATIONSHIPS.get(reply.relationship, "none"),
            friend_request_id=reply.friend_request_id or None,
        )


class ProfilePage(BaseModel):
    users: list[Profile]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Friend(BaseModel):
    user: Profile
    since: datetime | None

    @classmethod
    def from_proto(cls, friend: user_pb2.Friend) -> Friend:
        return cls(
            user=Profile.from_proto(friend.profile), since=_optional_time(friend.create_time)
        )


class FriendRequest(BaseModel):
    id: str
    direction: Literal["incoming", "outgoing"]
    user: Profile = Field(description="The other user (recipient or requester).")
    created_at: datetime | None

    @classmethod
    def from_proto(cls, request: user_pb2.FriendRequest) -> FriendRequest:
        outgoing = request.direction == user_pb2.FRIEND_REQUEST_DIRECTION_OUTGOING
        return cls(
            id=request.id,
            direction="outgoing" if outgoing else "incoming",
            user=Profile.from_proto(request.profile),
            created_at=_optional_time(request.create_time),
        )


class FriendsOverview(BaseModel):
    friends: list[Friend]
    incoming: list[FriendRequest] = Field(description="Requests to the caller, newest first.")
    outgoing: list[FriendRequest] = Field(description="Requests by the caller, newest first.")


class FriendRequestResult(BaseModel):
    status: Literal["pending", "friends"] = Field(
        description="`friends` when the other user had already asked the caller."
    )
    request: FriendRequest | None
    friend: Friend | None


class BlockedUser(BaseModel):
    user: Profile
    since: datetime | None

    @classmethod
    def from_proto(cls, blocked: user_pb2.BlockedUser) -> BlockedUser:
        return cls(
            user=Profile.from_proto(blocked.profile), since=_optional_time(blocked.create_time)
        )


class BlockedUserList(BaseModel):
    blocked: list[BlockedUser]
