# ruff: noqa: N802 (method names are the RPC names the generated base class declares)
"""The gRPC face of the chat service: protobuf in, domain call, protobuf out.

The caller is always the subject of the verified access token
(`current_claims()`); no request field names the caller. Domain errors
(`ServiceError`) pass through; the server's error interceptor maps them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.chat.v1 import chat_service_pb2_grpc
from chatmesh.common.grpc.context import current_claims
from chatmesh.services.chat.fanout import StreamSession
from chatmesh.services.chat.public_rooms import PublicRoomDirectory
from chatmesh.services.chat.service import ChatService

SERVICE_NAME = api.DESCRIPTOR.services_by_name["ChatService"].full_name

# The stream carries no call-level token: every Subscribe carries the token of
# the user it subscribes for, verified by the stream itself.
PUBLIC_METHODS = frozenset({f"/{SERVICE_NAME}/StreamRoomEvents"})

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Req, Awaitable[Resp]]
    StreamContext = grpc.aio.ServicerContext[
        AsyncIterator[api.StreamRoomEventsRequest], AsyncIterator[api.StreamRoomEventsResponse]
    ]


def _caller() -> str:
    return current_claims().user_id


class ChatServicer(chat_service_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        service: ChatService,
        sessions: Callable[[], StreamSession],
        public_rooms: PublicRoomDirectory,
    ) -> None:
        self._service = service
        self._sessions = sessions
        self._public_rooms = public_rooms

    # --- rooms ------------------------------------------------------------------------

    async def CreateRoom(
        self,
        request: api.CreateRoomRequest,
        context: Context[api.CreateRoomRequest, api.CreateRoomResponse],
    ) -> api.CreateRoomResponse:
        room = await self._service.create_room(
            _caller(), name=request.name, topic=request.topic, visibility=request.visibility
        )
        return api.CreateRoomResponse(room=room)

    async def GetRoom(
        self, request: api.GetRoomRequest, context: Context[api.GetRoomRequest, api.GetRoomResponse]
    ) -> api.GetRoomResponse:
        return api.GetRoomResponse(room=await self._service.get_room(_caller(), request.room_id))

    async def ListRooms(
        self,
        request: api.ListRoomsRequest,
        context: Context[api.ListRoomsRequest, api.ListRoomsResponse],
    ) -> api.ListRoomsResponse:
        rooms, token = await self._service.list_rooms(
            _caller(), page_size=request.page_size, page_token=request.page_token
        )
        return api.ListRoomsResponse(rooms=rooms, next_page_token=token)

    async def UpdateRoom(
        self,
        request: api.UpdateRoomRequest,
        context: Context[api.UpdateRoomRequest, api.UpdateRoomResponse],
    ) -> api.UpdateRoomResponse:
        room = await self._service.update_room(
            _caller(),
            request.room_id,
            name=request.name if request.HasField("name") else None,
            topic=request.topic if request.HasField("topic") else None,
        )
        return api.UpdateRoomResponse(room=room)

    async def JoinRoom(
        self,
        request: api.JoinRoomRequest,
        context: Context[api.JoinRoomRequest, api.JoinRoomResponse],
    ) -> api.JoinRoomResponse:
        return api.JoinRoomResponse(room=await self._service.join_room(_caller(), request.room_id))

    async def LeaveRoom(
        self,
        request: api.LeaveRoomRequest,
        context: Context[api.LeaveRoomRequest, api.LeaveRoomResponse],
    ) -> api.LeaveRoomResponse:
        await self._service.leave_room(_caller(), request.room_id)
        return api.LeaveRoomResponse()

    async def AddMember(
        self,
        request: api.AddMemberRequest,
        context: Context[api.AddMemberRequest, api.AddMemberResponse],
    ) -> api.AddMemberResponse:
        member = await self._service.add_member(_caller(), request.room_id, request.user_id)
        return api.AddMemberResponse(member=member)

    async def RemoveMember(
        self,
        request: api.RemoveMemberRequest,
        context: Context[api.RemoveMemberRequest, api.RemoveMemberResponse],
    ) -> api.RemoveMemberResponse:
        await self._service.remove_member(_caller(), request.room_id, request.user_id)
        return api.RemoveMemberResponse()

    async def UpdateMemberRole(
        self,
        request: api.UpdateMemberRoleRequest,
        context: Context[api.UpdateMemberRoleRequest, api.UpdateMemberRoleResponse],
    ) -> api.UpdateMemberRoleResponse:
        member = await self._service.update_member_role(
            _caller(), request.room_id, request.user_id, request.role
        )
        return api.UpdateMemberRoleResponse(member=member)

    async def ListMembers(
        self,
        request: api.ListMembersRequest,
        context: Context[api.ListMembersRequest, api.ListMembersResponse],
    ) -> api.ListMembersResponse:
        members, token = await self._service.list_members(
            _caller(), request.room_id, page_size=request.page_size, page_token=request.page_token
        )
        return api.ListMembersResponse(members=members, next_page_token=token)

    async def GetOrCreateDirectRoom(
        self,
        request: api.GetOrCreateDirectRoomRequest,
        context: Context[api.GetOrCreateDirectRoomRequest, api.GetOrCreateDirectRoomResponse],
    ) -> api.GetOrCreateDirectRoomResponse:
        room, created = await self._service.get_or_create_direct_room(
            _caller(), list(request.user_ids)
        )
        return api.GetOrCreateDirectRoomResponse(room=room, created=created)

    async def ListPublicRooms(
        self,
        request: api.ListPublicRoomsRequest,
        context: Context[api.ListPublicRoomsRequest, api.ListPublicRoomsResponse],
    ) -> api.ListPublicRoomsResponse:
        rooms, token = await self._public_rooms.list(
            _caller(),
            query=request.query,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return api.ListPublicRoomsResponse(rooms=rooms, next_page_token=token)

    async def ListCoMembers(
        self,
        request: api.ListCoMembersRequest,
        context: Context[api.ListCoMembersRequest, api.ListCoMembersResponse],
    ) -> api.ListCoMembersResponse:
        rooms, truncated = await self._service.list_co_members(
            _caller(), room_ids=list(request.room_ids), max_room_size=request.max_room_size
        )
        return api.ListCoMembersResponse(
            rooms=[api.RoomCoMembers(room_id=r, user_ids=ids) for r, ids in rooms],
            truncated=truncated,
        )

    # --- messages ---------------------------------------------------------------------

    async def SendMessage(
        self,
        request: api.SendMessageRequest,
        context: Context[api.SendMessageRequest, api.SendMessageResponse],
    ) -> api.SendMessageResponse:
        message, created = await self._service.send_message(
            _caller(),
            request.room_id,
            body=request.body,
            client_msg_id=request.client_msg_id,
            reply_to=request.reply_to,
        )
        return api.SendMessageResponse(message=message, created=created)

    async def GetMessage(
        self,
        request: api.GetMessageRequest,
        context: Context[api.GetMessageRequest, api.GetMessageResponse],
    ) -> api.GetMessageResponse:
        message = await self._service.get_message(_caller(), request.message_id)
        return api.GetMessageResponse(message=message)

    async def EditMessage(
        self,
        request: api.EditMessageRequest,
        context: Context[api.EditMessageRequest, api.EditMessageResponse],
    ) -> api.EditMessageResponse:
        message = await self._service.edit_message(_caller(), request.message_id, body=request.body)
        return api.EditMessageResponse(message=message)

    async def DeleteMessage(
        self,
        request: api.DeleteMessageRequest,
        context: Context[api.DeleteMessageRequest, api.DeleteMessageResponse],
    ) -> api.DeleteMessageResponse:
        message = await self._service.delete_message(_caller(), request.message_id)
        return api.DeleteMessageResponse(message=message)

    async def ListMessages(
        self,
        request: api.ListMessagesRequest,
        context: Context[api.ListMessagesRequest, api.ListMessagesResponse],
    ) -> api.ListMessagesResponse:
        messages, page = await self._service.list_messages(
            _caller(),
            request.room_id,
            page_size=request.page_size,
            page_token=request.page_token,
            before_seq=request.before_seq if request.HasField("before_seq") else None,
            after_seq=request.after_seq if request.HasField("after_seq") else None,
        )
        return api.ListMessagesResponse(
            messages=messages, next_page_token=page.next_page_token, latest_seq=page.latest_seq
        )

    async def AddReaction(
        self,
        request: api.AddReactionRequest,
        context: Context[api.AddReactionRequest, api.AddReactionResponse],
    ) -> api.AddReactionResponse:
        message = await self._service.add_reaction(_caller(), request.message_id, request.emoji)
        return api.AddReactionResponse(message=message)

    async def RemoveReaction(
        self,
        request: api.RemoveReactionRequest,
        context: Context[api.RemoveReactionRequest, api.RemoveReactionResponse],
    ) -> api.RemoveReactionResponse:
        message = await self._service.remove_reaction(_caller(), request.message_id, request.emoji)
        return api.RemoveReactionResponse(message=message)

    async def MarkRead(
        self,
        request: api.MarkReadRequest,
        context: Context[api.MarkReadRequest, api.MarkReadResponse],
    ) -> api.MarkReadResponse:
        last_read, unread = await self._service.mark_read(_caller(), request.room_id, request.seq)
        return api.MarkReadResponse(last_read_seq=last_read, unread_count=unread)

    async def SearchMessages(
        self,
        request: api.SearchMessagesRequest,
        context: Context[api.SearchMessagesRequest, api.SearchMessagesResponse],
    ) -> api.SearchMessagesResponse:
        results, token = await self._service.search_messages(
            _caller(),
            query=request.query,
            room_id=request.room_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return api.SearchMessagesResponse(results=results, next_page_token=token)

    async def ListRoomEvents(
        self,
        request: api.ListRoomEventsRequest,
        context: Context[api.ListRoomEventsRequest, api.ListRoomEventsResponse],
    ) -> api.ListRoomEventsResponse:
        events, page = await self._service.list_room_events(
            _caller(),
            request.room_id,
            after_seq=request.after_seq,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return api.ListRoomEventsResponse(
            events=events, next_page_token=page.next_page_token, latest_seq=page.latest_seq
        )

    async def StreamRoomEvents(
        self,
        request_iterator: AsyncIterator[api.StreamRoomEventsRequest],
        context: StreamContext,
    ) -> AsyncIterator[api.StreamRoomEventsResponse]:
        session = self._sessions()
        async for response in session.run(request_iterator):
            yield response
