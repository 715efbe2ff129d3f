"""Rooms, DMs, messages, reactions, read markers and search (/api/v1), in front
of chat.v1.ChatService. The caller's access token is forwarded: the chat service
authorizes every call (a private room a caller is not in is a 404 there)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chatmesh.bff.auth import Authenticator
from chatmesh.bff.body import read_json
from chatmesh.bff.chat_models import (
    MEMBER_ROLE_VALUES,
    VISIBILITY_VALUES,
    AddMemberRequest,
    ChatMessage,
    CreateRoomRequest,
    DirectRoom,
    DirectRoomRequest,
    EditMessageRequest,
    HighlightSpan,
    MarkReadRequest,
    Member,
    MemberList,
    MemberRoleRequest,
    MessagePage,
    PublicRoom,
    PublicRoomList,
    ReactionRequest,
    ReadMarker,
    Room,
    RoomList,
    SearchHit,
    SearchResults,
    SendMessageRequest,
)
from chatmesh.bff.errors import ApiError
from chatmesh.bff.openapi import ApiRoute, Operation
from chatmesh.bff.responses import model_response, outgoing_metadata
from chatmesh.bff.state import backends
from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc

TAG = "chat"
ERRORS = (401, 500, 503)
MAX_CURSOR_LENGTH = 1024
MAX_QUERY_LENGTH = 500
# The longest room name: a longer prefix cannot match anything.
MAX_ROOM_PREFIX_LENGTH = 80


def _int_param(request: Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not text.lstrip("-").isdigit() or len(text) > 19:
        raise _invalid_param(name, "must be an integer")
    value = int(text)
    if not low <= value <= high:
        raise _invalid_param(name, f"must be between {low} and {high}")
    return value


def _text_param(request: Request, name: str, *, max_length: int) -> str:
    value = request.query_params.get(name, "")
    if len(value) > max_length:
        raise _invalid_param(name, f"must be at most {max_length} characters")
    return value


def _invalid_param(name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_failed",
        "some query parameters are invalid",
        details={"fields": [{"field": name, "type": "query", "message": message}]},
    )


class ChatRoutes:
    def __init__(self, *, authenticator: Authenticator, timeout: float) -> None:
        self.authenticator = authenticator
        self.timeout = timeout

    async def _caller(
        self, request: Request
    ) -> tuple[chat_service_pb2_grpc.ChatServiceStub, tuple[tuple[str, str], ...]]:
        claims = await self.authenticator.require(request)
        return backends(request.scope).chat, outgoing_metadata(request, access_token=claims.token)

    # --- rooms -----------------------------------------------------------------

    async def list_rooms(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        limit = _int_param(request, "limit", low=1, high=200) or 50
        cursor = _text_param(request, "cursor", max_length=MAX_CURSOR_LENGTH)
        reply = await chat.ListRooms(
            api.ListRoomsRequest(page_size=limit, page_token=cursor),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            RoomList(
                rooms=[Room.from_proto(r) for r in reply.rooms],
                next_cursor=reply.next_page_token or None,
            )
        )

    async def create_room(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, CreateRoomRequest)
        reply = await chat.CreateRoom(
            api.CreateRoomRequest(
                name=body.name, topic=body.topic, visibility=VISIBILITY_VALUES[body.visibility]
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(Room.from_proto(reply.room), 201)

    async def get_room(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        reply = await chat.GetRoom(
            api.GetRoomRequest(room_id=request.path_params["room_id"]),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(Room.from_proto(reply.room))

    async def join_room(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        reply = await chat.JoinRoom(
            api.JoinRoomRequest(room_id=request.path_params["room_id"]),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(Room.from_proto(reply.room))

    async def leave_room(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        await chat.LeaveRoom(
            api.LeaveRoomRequest(room_id=request.path_params["room_id"]),
            timeout=self.timeout,
            metadata=metadata,
        )
        return Response(status_code=204)

    async def add_member(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, AddMemberRequest)
        reply = await chat.AddMember(
            api.AddMemberRequest(room_id=request.path_params["room_id"], user_id=body.user_id),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(Member.from_proto(reply.member))

    async def remove_member(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        await chat.RemoveMember(
            api.RemoveMemberRequest(
                room_id=request.path_params["room_id"], user_id=request.path_params["user_id"]
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return Response(status_code=204)

    async def list_public_rooms(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        query = _text_param(request, "q", max_length=MAX_ROOM_PREFIX_LENGTH)
        limit = _int_param(request, "limit", low=1, high=100) or 20
        cursor = _text_param(request, "cursor", max_length=MAX_CURSOR_LENGTH)
        reply = await chat.ListPublicRooms(
            api.ListPublicRoomsRequest(query=query, page_size=limit, page_token=cursor),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            PublicRoomList(
                rooms=[
                    PublicRoom(room=Room.from_proto(entry.room), is_member=entry.is_member)
                    for entry in reply.rooms
                ],
                next_cursor=reply.next_page_token or None,
            )
        )

    async def list_members(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        limit = _int_param(request, "limit", low=1, high=500) or 100
        cursor = _text_param(request, "cursor", max_length=MAX_CURSOR_LENGTH)
        reply = await chat.ListMembers(
            api.ListMembersRequest(
                room_id=request.path_params["room_id"], page_size=limit, page_token=cursor
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            MemberList(
                members=[Member.from_proto(m) for m in reply.members],
                next_cursor=reply.next_page_token or None,
            )
        )

    async def update_member_role(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, MemberRoleRequest)
        reply = await chat.UpdateMemberRole(
            api.UpdateMemberRoleRequest(
                room_id=request.path_params["room_id"],
                user_id=request.path_params["user_id"],
                role=MEMBER_ROLE_VALUES[body.role],
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(Member.from_proto(reply.member))

    async def direct_room(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, DirectRoomRequest)
        reply = await chat.GetOrCreateDirectRoom(
            api.GetOrCreateDirectRoomRequest(user_ids=body.user_ids),
            timeout=self.timeout,
            metadata=metadata,
        )
        result = DirectRoom(room=Room.from_proto(reply.room), created=reply.created)
        return model_response(result, 201 if reply.created else 200)

    # --- messages --------------------------------------------------------------

    async def list_messages(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        limit = _int_param(request, "limit", low=1, high=100) or 50
        before = _int_param(request, "before_seq", low=0, high=2**62)
        after = _int_param(request, "after_seq", low=0, high=2**62)
        message = api.ListMessagesRequest(room_id=request.path_params["room_id"], page_size=limit)
        if before is not None:
            message.before_seq = before
        if after is not None:
            message.after_seq = after
        reply = await chat.ListMessages(message, timeout=self.timeout, metadata=metadata)
        return model_response(
            MessagePage(
                messages=[ChatMessage.from_proto(m) for m in reply.messages],
                latest_seq=reply.latest_seq,
                has_more=bool(reply.next_page_token),
            )
        )

    async def send_message(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, SendMessageRequest)
        reply = await chat.SendMessage(
            api.SendMessageRequest(
                room_id=request.path_params["room_id"],
                body=body.body,
                client_msg_id=body.client_msg_id,
                reply_to=body.reply_to or "",
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(ChatMessage.from_proto(reply.message), 201 if reply.created else 200)

    async def edit_message(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, EditMessageRequest)
        reply = await chat.EditMessage(
            api.EditMessageRequest(message_id=request.path_params["message_id"], body=body.body),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(ChatMessage.from_proto(reply.message))

    async def delete_message(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        reply = await chat.DeleteMessage(
            api.DeleteMessageRequest(message_id=request.path_params["message_id"]),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(ChatMessage.from_proto(reply.message))

    async def add_reaction(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, ReactionRequest)
        reply = await chat.AddReaction(
            api.AddReactionRequest(message_id=request.path_params["message_id"], emoji=body.emoji),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(ChatMessage.from_proto(reply.message))

    async def remove_reaction(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, ReactionRequest)
        reply = await chat.RemoveReaction(
            api.RemoveReactionRequest(
                message_id=request.path_params["message_id"], emoji=body.emoji
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(ChatMessage.from_proto(reply.message))

    async def mark_read(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        body = await read_json(request, MarkReadRequest)
        reply = await chat.MarkRead(
            api.MarkReadRequest(room_id=request.path_params["room_id"], seq=body.seq),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            ReadMarker(last_read_seq=reply.last_read_seq, unread_count=reply.unread_count)
        )

    async def search(self, request: Request) -> Response:
        chat, metadata = await self._caller(request)
        query = _text_param(request, "q", max_length=MAX_QUERY_LENGTH)
        if not query.strip():
            raise _invalid_param("q", "must not be empty")
        limit = _int_param(request, "limit", low=1, high=50) or 20
        reply = await chat.SearchMessages(
            api.SearchMessagesRequest(
                query=query,
                room_id=_text_param(request, "room_id", max_length=100),
                page_size=limit,
                page_token=_text_param(request, "cursor", max_length=MAX_CURSOR_LENGTH),
            ),
            timeout=self.timeout,
            metadata=metadata,
        )
        return model_response(
            SearchResults(
                results=[
                    SearchHit(
                        message=ChatMessage.from_proto(hit.message),
                        highlight=[
                            HighlightSpan(text=span.text, match=span.match)
                            for span in hit.highlight
                        ],
                        score=hit.score,
                    )
                    for hit in reply.results
                ],
                next_cursor=reply.next_page_token or None,
            )
        )

    def routes(self) -> list[ApiRoute]:
        room = "/api/v1/rooms/{room_id}"
        message = "/api/v1/messages/{message_id}"

        def op(summary: str, *, errors: tuple[int, ...] = ERRORS, **kwargs: Any) -> Operation:
            return Operation(summary=summary, tag=TAG, security="user", errors=errors, **kwargs)

        with_404 = (*ERRORS, 403, 404)
        return [
            ApiRoute(
                "/api/v1/rooms",
                self.list_rooms,
                method="GET",
                operation=op(
                    "Your rooms, most recently active first (unread counts, last message)",
                    response=RoomList,
                    errors=(*ERRORS, 422),
                    description="Query: `limit` (1-200, default 50), `cursor` (next_cursor).",
                ),
            ),
            ApiRoute(
                "/api/v1/rooms",
                self.create_room,
                method="POST",
                operation=op(
                    "Create a group room (you become its owner)",
                    success=201,
                    request=CreateRoomRequest,
                    response=Room,
                ),
            ),
            # Before `room`: a route matches in order, and `public` is not a room id.
            ApiRoute(
                "/api/v1/rooms/public",
                self.list_public_rooms,
                method="GET",
                operation=op(
                    "The public room directory: public rooms by name, to browse and join",
                    response=PublicRoomList,
                    errors=(*ERRORS, 422),
                    description=(
                        "Query: `q` (a name prefix, ignoring case; at most 80 characters), "
                        "`limit` (1-100, default 20), `cursor` (next_cursor, with the same "
                        "`q`). Each room says whether you are a member (`is_member`)."
                    ),
                ),
            ),
            ApiRoute(
                room,
                self.get_room,
                method="GET",
                operation=op("A room", response=Room, errors=with_404),
            ),
            ApiRoute(
                room + "/join",
                self.join_room,
                method="POST",
                operation=op("Join a public room (idempotent)", response=Room, errors=with_404),
            ),
            ApiRoute(
                room + "/leave",
                self.leave_room,
                method="POST",
                operation=op("Leave a room", success=204, errors=(*with_404, 409)),
            ),
            ApiRoute(
                room + "/members",
                self.add_member,
                method="POST",
                operation=op(
                    "Add a member (private rooms: owner or admin)",
                    request=AddMemberRequest,
                    response=Member,
                    errors=(*with_404, 409),
                ),
            ),
            ApiRoute(
                room + "/members",
                self.list_members,
                method="GET",
                operation=op(
                    "The members (members only): roles and read markers, in join order",
                    response=MemberList,
                    errors=(*with_404, 422),
                    description="Query: `limit` (1-500, default 100), `cursor` (next_cursor).",
                ),
            ),
            ApiRoute(
                room + "/members/{user_id}",
                self.update_member_role,
                method="PATCH",
                operation=op(
                    "Make a member an admin or a plain member (owner only)",
                    request=MemberRoleRequest,
                    response=Member,
                    errors=(*with_404, 409, 422),
                ),
            ),
            ApiRoute(
                room + "/members/{user_id}",
                self.remove_member,
                method="DELETE",
                operation=op(
                    "Remove a member (owner or admin); their live connections stop at once",
                    success=204,
                    errors=(*with_404, 409),
                ),
            ),
            ApiRoute(
                "/api/v1/dms",
                self.direct_room,
                method="POST",
                operation=op(
                    "Get or create the DM / group DM with these users",
                    request=DirectRoomRequest,
                    response=DirectRoom,
                    errors=with_404,
                    description="201 when created, 200 when it existed.",
                ),
            ),
            ApiRoute(
                room + "/messages",
                self.list_messages,
                method="GET",
                operation=op(
                    "History in cursor pages by seq",
                    response=MessagePage,
                    errors=(*with_404, 422),
                    description=(
                        "Query: `before_seq` (the newest messages below it), `after_seq` (the "
                        "oldest above it), both (between), neither (the newest); `limit` 1-100 "
                        "(default 50). A seq outside the room's range is 422 `seq_out_of_range`."
                    ),
                ),
            ),
            ApiRoute(
                room + "/messages",
                self.send_message,
                method="POST",
                operation=op(
                    "Send a message (idempotent on client_msg_id)",
                    success=201,
                    request=SendMessageRequest,
                    response=ChatMessage,
                    errors=with_404,
                    description="201 when created; 200 with the original message on a retry.",
                ),
            ),
            ApiRoute(
                message,
                self.edit_message,
                method="PATCH",
                operation=op(
                    "Edit your message",
                    request=EditMessageRequest,
                    response=ChatMessage,
                    errors=with_404,
                ),
            ),
            ApiRoute(
                message,
                self.delete_message,
                method="DELETE",
                operation=op(
                    "Delete a message (yours, or any as a room admin): it becomes a tombstone",
                    response=ChatMessage,
                    errors=with_404,
                ),
            ),
            ApiRoute(
                message + "/reactions",
                self.add_reaction,
                method="POST",
                operation=op(
                    "React with an emoji (idempotent)",
                    request=ReactionRequest,
                    response=ChatMessage,
                    errors=with_404,
                ),
            ),
            ApiRoute(
                message + "/reactions",
                self.remove_reaction,
                method="DELETE",
                operation=op(
                    "Remove your reaction (idempotent)",
                    request=ReactionRequest,
                    response=ChatMessage,
                    errors=with_404,
                ),
            ),
            ApiRoute(
                room + "/read",
                self.mark_read,
                method="POST",
                operation=op(
                    "Move your read marker forward",
                    request=MarkReadRequest,
                    response=ReadMarker,
                    errors=with_404,
                ),
            ),
            ApiRoute(
                "/api/v1/search",
                self.search,
                method="GET",
                operation=op(
                    "Full-text search in the rooms you can read",
                    response=SearchResults,
                    errors=(*with_404, 422),
                    description="Query: `q` (required), `room_id`, `limit` (1-50), `cursor`.",
                ),
            ),
        ]
