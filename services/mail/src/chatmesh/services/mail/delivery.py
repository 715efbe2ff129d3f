"""The worker side: take a job, claim the email in the database, hand it to the
provider, record the outcome.

The claim is one conditional UPDATE (QUEUED → SENDING, or a SENDING claim older
than `claim_idle`), so two workers holding the same job never both send it, a
job for an email already sent is a no-op, and an email whose worker died
mid-send is taken over once its claim is stale. Transient failures go back to
QUEUED with a due time (exponential backoff, full jitter); permanent ones and
exhausted attempts go to DEAD. The sweep publishes due emails, so retries and
jobs a lost Redis forgot are delivered all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Histogram
from sqlalchemy import update
from sqlmodel import col, select

from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.services.mail import models
from chatmesh.services.mail.addresses import normalized, parse_address
from chatmesh.services.mail.jobqueue import JobQueue
from chatmesh.services.mail.message import OutgoingEmail
from chatmesh.services.mail.models import EmailRecord, Suppression, as_utc
from chatmesh.services.mail.providers import Provider, SendError

log = get_logger(__name__)

SENT_TOTAL = Counter(
    "mail_emails_total", "Emails handled by workers, by outcome.", ["provider", "outcome"]
)
QUEUE_LATENCY = Histogram(
    "mail_queue_latency_seconds",
    "From queueing an email to the provider accepting it.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number `attempt` (1-based): base·2^(attempt-1), capped,
    with "equal jitter" (half fixed, half random) so retries spread out but
    still grow."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


class Deliverer:
    def __init__(
        self,
        *,
        db: Database,
        provider: Provider,
        queue: JobQueue,
        sender: str,
        max_attempts: int,
        retry_base: float,
        retry_max: float,
        claim_idle: float,
        requeue_after: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._provider = provider
        self._queue = queue
        self._sender = sender
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._claim_idle = timedelta(seconds=claim_idle)
        self._requeue_after = timedelta(seconds=requeue_after)
        self._clock = clock

    async def handle(self, email_id: str) -> None:
        """One job. Raises only when the database fails (the job then comes back)."""
        email = await self._claim(email_id)
        if email is None:
            return
        if await self._suppressed(email.recipient):
            await self._finish(email, models.SUPPRESSED, error="address undeliverable")
            SENT_TOTAL.labels(self._provider.name, "suppressed").inc()
            return
        outgoing = OutgoingEmail(
            id=email.id,
            sender=self._sender,
            recipient=email.recipient,
            subject=email.subject,
            text=email.text_body,
            html=email.html_body,
            headers=json.loads(email.headers),
        )
        try:
            message_id = await self._provider.send(outgoing)
        except SendError as exc:
            await self._failed(email, exc)
            return
        await self._finish(email, models.SENT, provider_message_id=message_id)
        SENT_TOTAL.labels(self._provider.name, "sent").inc()
        QUEUE_LATENCY.observe((self._clock() - as_utc(email.create_time)).total_seconds())

    async def _claim(self, email_id: str) -> EmailRecord | None:
        now = self._clock()
        async with self._db.transaction() as session:
            result = await session.exec(
                update(EmailRecord)
                .where(col(EmailRecord.id) == email_id)
                .where(
                    (col(EmailRecord.state) == models.QUEUED)
                    | (
                        (col(EmailRecord.state) == models.SENDING)
                        & (col(EmailRecord.claim_time) < now - self._claim_idle)
                    )
                )
                .values(
                    state=models.SENDING,
                    claim_time=now,
                    update_time=now,
                    attempts=col(EmailRecord.attempts) + 1,
                    # If this worker dies, the sweep republishes after the claim is stale.
                    due_time=now + max(self._claim_idle, self._requeue_after),
                )
            )
            if result.rowcount != 1:
                return None
            return (
                await session.exec(select(EmailRecord).where(col(EmailRecord.id) == email_id))
            ).one()

    async def _suppressed(self, recipient: str) -> bool:
        address = normalized(parse_address(recipient))
        async with self._db.read() as session:
            return (await session.get(Suppression, address)) is not None

    async def _failed(self, email: EmailRecord, error: SendError) -> None:
        reason = str(error)[:500]
        if not error.transient or email.attempts >= self._max_attempts:
            await self._finish(email, models.DEAD, error=reason)
            await self._queue.dead_letter(email.id, reason)
            SENT_TOTAL.labels(self._provider.name, "dead").inc()
            log.warning("mail_dead_lettered", email_id=email.id, error=reason)
            return
        delay = backoff_delay(email.attempts, base=self._retry_base, cap=self._retry_max)
        now = self._clock()
        async with self._db.transaction() as session:
            await session.exec(
                update(EmailRecord)
                .where(col(EmailRecord.id) == email.id)
                .where(col(EmailRecord.state) == models.SENDING)
                .values(
                    state=models.QUEUED,
                    last_error=reason,
                    update_time=now,
                    claim_time=None,
                    due_time=now + timedelta(seconds=delay),
                )
            )
        SENT_TOTAL.labels(self._provider.name, "retry").inc()
        log.info("mail_retry_scheduled", email_id=email.id, attempt=email.attempts, delay=delay)

    async def _finish(
        self, email: EmailRecord, state: str, *, error: str = "", provider_message_id: str = ""
    ) -> None:
        now = self._clock()
        values: dict[str, object] = {
            "state": state,
            "update_time": now,
            "claim_time": None,
            "due_time": None,
        }
        if error:
            values["last_error"] = error
        if state == models.SENT:
            values["send_time"] = now
            values["provider_message_id"] = provider_message_id[:200]
        async with self._db.transaction() as session:
            await session.exec(
                update(EmailRecord)
                .where(col(EmailRecord.id) == email.id)
                .where(col(EmailRecord.state) == models.SENDING)
                .values(**values)
            )

    async def sweep(self, *, limit: int = 500) -> int:
        """Publish emails whose due time has come (retries, and jobs nobody took:
        lost with a Redis restart or a crash). Returns how many."""
        now = self._clock()
        query = (
            select(EmailRecord.id)
            .where(col(EmailRecord.state).in_((models.QUEUED, models.SENDING)))
            .where(col(EmailRecord.due_time) <= now)
            .order_by(col(EmailRecord.due_time))
            .limit(limit)
        )
        if not self._db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with self._db.transaction() as session:
            ids = list((await session.exec(query)).all())
            if ids:
                await session.exec(
                    update(EmailRecord)
                    .where(col(EmailRecord.id).in_(ids))
                    .values(due_time=now + self._requeue_after)
                )
        if ids:
            await self._queue.publish(ids)
        return len(ids)

    async def run_sweeper(self, stop: asyncio.Event, *, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                count = await self.sweep()
            except Exception:
                log.warning("mail_sweep_failed", exc_info=True)
                count = 0
            if count:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
