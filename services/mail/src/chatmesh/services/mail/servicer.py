# ruff: noqa: N802 (method names are the RPC names the generated base class declares)
"""The gRPC face of the mail service: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.common.grpc.context import current_claims
from chatmesh.mail.v1 import mail_pb2, mail_pb2_grpc
from chatmesh.services.mail.models import EmailRecord, as_utc
from chatmesh.services.mail.service import EmailRequest, MailService, PreferenceValues

SERVICE_NAME = mail_pb2.DESCRIPTOR.services_by_name["MailService"].full_name

# Mesh-internal RPCs (other services, operators): no end-user token. The
# preference RPCs act for the caller of the access token.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in (
        "SendEmail",
        "BatchSendEmails",
        "GetEmail",
        "ListDeadLetters",
        "ReplayDeadLetter",
    )
)

_STATES = {
    "queued": mail_pb2.EMAIL_STATE_QUEUED,
    "sending": mail_pb2.EMAIL_STATE_SENDING,
    "sent": mail_pb2.EMAIL_STATE_SENT,
    "delivered": mail_pb2.EMAIL_STATE_DELIVERED,
    "dead": mail_pb2.EMAIL_STATE_DEAD,
    "suppressed": mail_pb2.EMAIL_STATE_SUPPRESSED,
    "rate_limited": mail_pb2.EMAIL_STATE_RATE_LIMITED,
    "bounced": mail_pb2.EMAIL_STATE_BOUNCED,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Req, Awaitable[Resp]]


def _time(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(value))
    return stamp


def email_message(email: EmailRecord) -> mail_pb2.Email:
    return mail_pb2.Email(
        id=email.id,
        template_id=email.template_id,
        recipient=email.recipient,
        category=email.category,
        state=_STATES.get(email.state, mail_pb2.EMAIL_STATE_UNSPECIFIED),
        attempts=email.attempts,
        last_error=email.last_error,
        idempotency_key=email.idempotency_key,
        create_time=_time(email.create_time),
        update_time=_time(email.update_time),
        send_time=_time(email.send_time),
    )


def _preferences(values: PreferenceValues) -> mail_pb2.NotificationPreferences:
    return mail_pb2.NotificationPreferences(
        security_alerts=values.security_alerts,
        missed_messages=values.missed_messages,
        weekly_digest=values.weekly_digest,
        digest_day=values.digest_day,
    )


class MailServicer(mail_pb2_grpc.MailServiceServicer):
    def __init__(self, service: MailService) -> None:
        self._service = service

    async def SendEmail(
        self,
        request: mail_pb2.SendEmailRequest,
        context: Context[mail_pb2.SendEmailRequest, mail_pb2.SendEmailResponse],
    ) -> mail_pb2.SendEmailResponse:
        email, created = await self._service.send_email(
            template_id=request.template_id,
            recipient=request.recipient,
            variables=MessageToDict(request.variables),
            idempotency_key=request.idempotency_key,
            user_id=request.user_id,
        )
        return mail_pb2.SendEmailResponse(email=email_message(email), created=created)

    async def BatchSendEmails(
        self,
        request: mail_pb2.BatchSendEmailsRequest,
        context: Context[mail_pb2.BatchSendEmailsRequest, mail_pb2.BatchSendEmailsResponse],
    ) -> mail_pb2.BatchSendEmailsResponse:
        results = await self._service.send_emails(
            [
                EmailRequest(
                    template_id=item.template_id,
                    recipient=item.recipient,
                    variables=MessageToDict(item.variables),
                    idempotency_key=item.idempotency_key,
                    user_id=item.user_id,
                )
                for item in request.requests
            ]
        )
        return mail_pb2.BatchSendEmailsResponse(
            responses=[
                mail_pb2.SendEmailResponse(email=email_message(email), created=created)
                for email, created in results
            ]
        )

    async def GetEmail(
        self,
        request: mail_pb2.GetEmailRequest,
        context: Context[mail_pb2.GetEmailRequest, mail_pb2.GetEmailResponse],
    ) -> mail_pb2.GetEmailResponse:
        return mail_pb2.GetEmailResponse(
            email=email_message(await self._service.get_email(request.id))
        )

    async def ListDeadLetters(
        self,
        request: mail_pb2.ListDeadLettersRequest,
        context: Context[mail_pb2.ListDeadLettersRequest, mail_pb2.ListDeadLettersResponse],
    ) -> mail_pb2.ListDeadLettersResponse:
        emails, token = await self._service.list_dead_letters(
            page_size=request.page_size, page_token=request.page_token
        )
        return mail_pb2.ListDeadLettersResponse(
            emails=[email_message(e) for e in emails], next_page_token=token
        )

    async def ReplayDeadLetter(
        self,
        request: mail_pb2.ReplayDeadLetterRequest,
        context: Context[mail_pb2.ReplayDeadLetterRequest, mail_pb2.ReplayDeadLetterResponse],
    ) -> mail_pb2.ReplayDeadLetterResponse:
        email = await self._service.replay_dead_letter(request.id)
        return mail_pb2.ReplayDeadLetterResponse(email=email_message(email))

    async def GetNotificationPreferences(
        self,
        request: mail_pb2.GetNotificationPreferencesRequest,
        context: Context[
            mail_pb2.GetNotificationPreferencesRequest,
            mail_pb2.GetNotificationPreferencesResponse,
        ],
    ) -> mail_pb2.GetNotificationPreferencesResponse:
        values = await self._service.preferences(current_claims().user_id)
        return mail_pb2.GetNotificationPreferencesResponse(preferences=_preferences(values))

    async def UpdateNotificationPreferences(
        self,
        request: mail_pb2.UpdateNotificationPreferencesRequest,
        context: Context[
            mail_pb2.UpdateNotificationPreferencesRequest,
            mail_pb2.UpdateNotificationPreferencesResponse,
        ],
    ) -> mail_pb2.UpdateNotificationPreferencesResponse:
        p = request.preferences
        values = await self._service.update_preferences(
            current_claims().user_id,
            PreferenceValues(p.security_alerts, p.missed_messages, p.weekly_digest, p.digest_day),
            list(request.update_mask),
        )
        return mail_pb2.UpdateNotificationPreferencesResponse(preferences=_preferences(values))
