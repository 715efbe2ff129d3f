"""Turns auth's events into emails. The idempotency key is the event id, so an
event delivered twice (at-least-once bus) queues one email."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.common.bus import unpack
from chatmesh.common.errors import InvalidArgument, NotFound
from chatmesh.common.logging import get_logger
from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.events.v1 import envelope_pb2
from chatmesh.services.mail.projection import Projection
from chatmesh.services.mail.service import MailService

log = get_logger(__name__)

AUTH_STREAM = "events.auth"
CONSUMER_GROUP = "mail"


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds:
        return ""
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")


# event type → (template, variables from the event)
_Mapping = tuple[str, Callable[[Any], dict[str, str]]]
_TEMPLATES: list[tuple[type[Message], _Mapping]] = [
    (
        ev.EmailVerificationRequested,
        ("verify_email", lambda e: {"display_name": e.display_name, "token": e.token}),
    ),
    (
        ev.PasswordResetRequested,
        (
            "password_reset",
            lambda e: {
                "display_name": e.display_name,
                "token": e.token,
                "ip_address": e.ip_address,
            },
        ),
    ),
    (
        ev.PasswordChanged,
        (
            "password_changed",
            lambda e: {"display_name": e.display_name, "change_time": _when(e.change_time)},
        ),
    ),
    (
        ev.LoginFromNewDevice,
        (
            "new_device_login",
            lambda e: {
                "display_name": e.display_name,
                "ip_address": e.ip_address,
                "user_agent": e.user_agent,
                "login_time": _when(e.login_time),
            },
        ),
    ),
    (
        ev.RefreshTokenReused,
        (
            "refresh_token_reused",
            lambda e: {
                "display_name": e.display_name,
                "ip_address": e.ip_address,
                "user_agent": e.user_agent,
            },
        ),
    ),
]


# Events that carry the account's current address (an email change's
# verification request goes to an address that is not the account's yet).
_CURRENT_ADDRESS: tuple[type[Message], ...] = (
    ev.PasswordResetRequested,
    ev.PasswordChanged,
    ev.LoginFromNewDevice,
    ev.RefreshTokenReused,
)


class AuthEventHandler:
    """`events.auth` → emails, and who people are (address, name) for the digests."""

    def __init__(self, service: MailService, projection: Projection | None = None) -> None:
        self._service = service
        self._projection = projection

    async def _remember(self, event: envelope_pb2.Event) -> None:
        if self._projection is None:
            return
        registered = unpack(event, ev.UserRegistered)
        if registered is not None:
            await self._projection.record_person(
                registered.user_id,
                email=registered.email,
                display_name=registered.display_name,
                username=registered.username,
            )
            return
        for message_type in _CURRENT_ADDRESS:
            payload: Any = unpack(event, message_type)
            if payload is not None:
                await self._projection.record_person(
                    payload.user_id, email=payload.email, display_name=payload.display_name
                )
                return

    async def __call__(self, event: envelope_pb2.Event) -> None:
        await self._remember(event)
        for message_type, (template_id, variables) in _TEMPLATES:
            payload: Any = unpack(event, message_type)
            if payload is None:
                continue
            try:
                await self._service.send_email(
                    template_id=template_id,
                    recipient=payload.email,
                    variables=variables(payload),
                    idempotency_key=f"event:{event.id}",
                    user_id=payload.user_id,
                )
            except (InvalidArgument, NotFound) as exc:
                # Retrying cannot fix a bad address: log it and let the event go.
                log.warning("mail_event_rejected", event_id=event.id, code=exc.code)
            return
        # UserRegistered and anything newer: nothing to mail.
