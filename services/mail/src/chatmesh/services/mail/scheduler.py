"""When digests go out. Every `interval`, under a lease (leases.py) so that of
several replicas one does the work:

- missed messages: users with unread DMs or mentions older than `missed_delay`
  who have been offline at least that long get one email covering all of them;
  the seqs it covered are remembered so no message is mailed twice, and what
  they read in the meantime (read markers) is left out, or the email skipped.
- weekly digest: once a day after `weekly_hour` (UTC), users whose digest day is
  today get the past seven days of their rooms; the day is
  recorded as done, so replicas and the CronJob never send it twice.

The clock is injected: tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from chatmesh.common.clock import Clock, utcnow
from chatmesh.common.errors import InvalidArgument, NotFound, Unavailable
from chatmesh.common.logging import get_logger
from chatmesh.services.mail.digests import DigestQueries, MissedMessages, WeeklyActivity
from chatmesh.services.mail.leases import Leases
from chatmesh.services.mail.presence import PresenceSource
from chatmesh.services.mail.projection import Projection
from chatmesh.services.mail.service import MailService

log = get_logger(__name__)

MISSED_JOB = "missed_messages"
WEEKLY_JOB = "weekly_digest"
PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class DigestPolicy:
    missed_delay: timedelta = timedelta(minutes=15)
    weekly_hour: int = 9
    retention: timedelta = timedelta(days=14)
    lease: timedelta = timedelta(minutes=5)
    page_size: int = 200
    max_listed: int = 20


class DigestScheduler:
    def __init__(
        self,
        *,
        queries: DigestQueries,
        projection: Projection,
        service: MailService,
        presence: PresenceSource,
        leases: Leases,
        policy: DigestPolicy,
        clock: Clock = utcnow,
    ) -> None:
        self._queries = queries
        self._projection = projection
        self._service = service
        self._presence = presence
        self._leases = leases
        self._policy = policy
        self._clock = clock
        self._next_prune: datetime | None = None

    # --- missed messages ---------------------------------------------------------------

    async def send_missed_messages(self) -> int:
        """One pass; the number of emails queued (0 when another replica holds the job)."""
        policy = self._policy
        if not await self._leases.acquire(MISSED_JOB, ttl=policy.lease):
            return 0
        sent = 0
        try:
            now = self._clock()
            away_since = now - policy.missed_delay
            after = ""
            while True:
                candidates = await self._queries.missed_candidates(
                    older_than=away_since, after_user_id=after, limit=policy.page_size
                )
                if not candidates:
                    break
                after = candidates[-1]
                presence = await self._presence.presence(candidates)
                offline = [u for u in candidates if presence[u].offline_since(away_since)]
                for digest in await self._queries.missed_messages(
                    offline, max_listed=policy.max_listed
                ):
                    sent += await self._send_missed(digest)
                await self._leases.renew(MISSED_JOB, ttl=policy.lease)
        except Unavailable:
            # Without presence we cannot tell who is away: try again next time.
            log.warning("missed_messages_presence_unavailable")
        finally:
            await self._leases.release(MISSED_JOB)
        if sent:
            log.info("missed_messages_sent", emails=sent)
        return sent

    async def _send_missed(self, digest: MissedMessages) -> int:
        covered = ",".join(f"{room}:{seq}" for room, seq in sorted(digest.through_seq.items()))
        key = hashlib.sha256(covered.encode()).hexdigest()[:32]
        rooms: dict[str, dict[str, object]] = {}
        for message in digest.messages:
            room = rooms.setdefault(
                message.room_id,
                {"room_id": message.room_id, "name": message.room_name, "messages": []},
            )
            listed = room["messages"]
            assert isinstance(listed, list)
            listed.append(
                {
                    "sender": message.sender_name,
                    "excerpt": message.excerpt,
                    "time": message.create_time.strftime("%Y-%m-%d %H:%M UTC"),
                    "reason": message.reason,
                }
            )
        created = await self._queue(
            "missed_messages",
            digest.user_id,
            digest.email,
            {
                "display_name": digest.display_name,
                "count": digest.total,
                "rooms": list(rooms.values()),
                "more": max(digest.total - len(digest.messages), 0),
            },
            key=f"missed:{digest.user_id}:{key}",
        )
        # Remembered also after a refused address: retrying cannot fix it.
        await self._queries.mark_notified(digest.user_id, digest.through_seq)
        return created

    # --- weekly digest -----------------------------------------------------------------

    async def send_weekly_digests(self, *, now: datetime | None = None) -> int:
        """Today's weekly digests (the CronJob calls this), unless already sent;
        the number of emails queued."""
        now = now or self._clock()
        day = now.date()
        policy = self._policy
        if not await self._leases.acquire(
            WEEKLY_JOB, ttl=policy.lease, unless_done=day.isoformat()
        ):
            return 0
        period_end = now
        period_start = period_end - timedelta(days=7)
        sent = 0
        finished = False
        try:
            after = ""
            while True:
                recipients = await self._queries.weekly_recipients(
                    digest_day=day.isoweekday(), after_user_id=after, limit=policy.page_size
                )
                if not recipients:
                    break
                after = recipients[-1].user_id
                for activity in await self._queries.weekly_activity(
                    recipients, period_start=period_start, period_end=period_end
                ):
                    sent += await self._send_weekly(activity, day.isoformat())
                await self._leases.renew(WEEKLY_JOB, ttl=policy.lease)
            finished = True
        finally:
            await self._leases.release(WEEKLY_JOB, done=day.isoformat() if finished else "")
        log.info("weekly_digests_sent", day=day.isoformat(), emails=sent)
        return sent

    async def _send_weekly(self, activity: WeeklyActivity, day: str) -> int:
        period = f"{activity.period_start:%b %d} to {activity.period_end:%b %d}"
        return await self._queue(
            "weekly_digest",
            activity.user_id,
            activity.email,
            {
                "display_name": activity.display_name,
                "period": period,
                "total_messages": activity.total_messages,
                "total_unread": activity.total_unread,
                "rooms": [
                    {
                        "room_id": room.room_id,
                        "name": room.room_name,
                        "message_count": room.message_count,
                        "unread_count": room.unread_count,
                        "top_senders": list(room.top_senders),
                    }
                    for room in activity.rooms
                ],
            },
            # The same day's digest is queued once, whoever computes it.
            key=f"weekly:{activity.user_id}:{day}",
        )

    async def _queue(
        self, template_id: str, user_id: str, email: str, variables: dict[str, object], *, key: str
    ) -> int:
        try:
            _, created = await self._service.send_email(
                template_id=template_id,
                recipient=email,
                variables=variables,
                idempotency_key=key,
                user_id=user_id,
            )
        except (InvalidArgument, NotFound) as error:
            log.warning("digest_rejected", template_id=template_id, code=error.code)
            return 0
        return int(created)

    # --- the loop ----------------------------------------------------------------------

    def weekly_due(self, now: datetime) -> bool:
        return now.hour >= self._policy.weekly_hour

    async def tick(self) -> None:
        """What the loop does each interval (missed messages, the weekly run when
        due, pruning old messages hourly)."""
        now = self._clock()
        await self.send_missed_messages()
        if self.weekly_due(now):
            await self.send_weekly_digests(now=now)
        if self._next_prune is None or now >= self._next_prune:
            await self._projection.prune(now - self._policy.retention)
            self._next_prune = now + PRUNE_EVERY

    async def run(self, stop: asyncio.Event, *, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("digest_scheduler_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
