"""The consumer of auth's events (`events.auth`): a `UserRegistered` creates the
new account's profile. Delivery is at-least-once; the profile service makes
a repeated event (same event id, or another event for the same user) a no-op."""

from __future__ import annotations

import asyncio

from chatmesh.common.bus import EventBus, stream_name, unpack
from chatmesh.common.logging import get_logger
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2
from chatmesh.services.user.profiles import ProfileService

log = get_logger(__name__)

AUTH_SOURCE = "auth"


class RegistrationConsumer:
    """One consumer (`consumer`) of group `group` on `events.auth`."""

    def __init__(
        self, profiles: ProfileService, *, bus: EventBus, group: str, consumer: str
    ) -> None:
        self._profiles = profiles
        self._bus = bus
        self._group = group
        self._consumer = consumer

    async def handle(self, event: envelope_pb2.Event) -> None:
        registered = unpack(event, auth_events_pb2.UserRegistered)
        if registered is None:
            return  # another kind of auth event: not ours to act on
        created = await self._profiles.create_from_registration(
            event_id=event.id,
            user_id=registered.user_id,
            username=registered.username,
            display_name=registered.display_name,
        )
        log.info(
            "profile_created" if created else "registration_already_handled",
            user_id=registered.user_id,
            event_id=event.id,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume `events.auth` until `stop` is set."""
        await self._bus.consume(
            stream_name(AUTH_SOURCE), self._group, self._consumer, self.handle, stop=stop
        )
