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
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from prometheus_client import Counter, Histogram
from sqlalchemy import bindparam, update
from sqlmodel import col, select

from chatmesh.common.clock import utcnow
from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.services.mail import models
from chatmesh.services.mail.addresses import normalized, parse_address
from chatmesh.services.mail.jobqueue import JobQueue
from chatmesh.services.mail.message import OutgoingEmail
from chatmesh.services.mail.models import EmailRecord, Suppression, as_utc
from chatmesh.services.mail.providers import Provider, SendError
from chatmesh.services.mail.settings import MailSettings

log = get_logger(__name__)

SENT_TOTAL = Counter(
    "mail_emails_total", "Emails handled by workers, by outcome.", ["provider", "outcome"]
)
QUEUE_LATENCY = Histogram(
    "mail_queue_latency_seconds",
    "From queueing an email to the provider accepting it.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number `attempt` (1-based): base·2^(attempt-1), capped,
    with "equal jitter" (half fixed, half random) so retries spread out but
    still grow."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


class ClaimedElsewhereError(Exception):
    """Some jobs of a batch are held by another live worker."""


class _Claimed(NamedTuple):
    id: str
    recipient: str
    subject: str
    text_body: str
    html_body: str
    headers: str
    attempts: int
    create_time: datetime


def _address_key(recipient: str) -> str:
    return normalized(parse_address(recipient))


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

    @classmethod
    def configured(
        cls,
        settings: MailSettings,
        *,
        db: Database,
        provider: Provider,
        queue: JobQueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> Deliverer:
        """A deliverer with the retry and reclaim policy of `settings`."""
        return cls(
            db=db,
            provider=provider,
            queue=queue,
            sender=settings.mail_from,
            max_attempts=settings.max_attempts,
            retry_base=settings.retry_base_seconds,
            retry_max=settings.retry_max_seconds,
            claim_idle=settings.claim_idle_seconds,
            requeue_after=settings.requeue_after_seconds,
            clock=clock,
        )

    async def handle(self, email_id: str) -> None:
        await self.handle_batch([email_id])

    async def handle_batch(self, email_ids: Sequence[str]) -> None:
        """A batch of jobs: one transaction claims them all, the sends run
        concurrently, one transaction records every outcome. Raises only when the
        database fails (the jobs then come back)."""
        ids = list(dict.fromkeys(email_ids))
        claimed, suppressed = await self._claim(ids)
        if claimed:
            await self._deliver(claimed, suppressed)
        if len(claimed) < len(ids):
            busy = await self._in_flight(set(ids) - {email.id for email in claimed})
            if busy:
                # Another worker holds a fresh claim (a reclaimed job can arrive a
                # moment before the claim counts as stale): leave the jobs unacked
                # so they come back instead of being dropped.
                raise ClaimedElsewhereError(f"{len(busy)} jobs are being sent by another worker")

    async def _in_flight(self, email_ids: set[str]) -> set[str]:
        table = models.EMAILS
        async with self._db.read() as session:
            connection = await session.connection()
            rows = await connection.execute(
                select(table.c.id).where(table.c.id.in_(email_ids), table.c.state == models.SENDING)
            )
            return {row[0] for row in rows.all()}

    async def _deliver(self, claimed: list[_Claimed], suppressed: set[str]) -> None:
        to_send = [email for email in claimed if email.id not in suppressed]
        results = await asyncio.gather(*(self._send(email) for email in to_send))
        outcomes: list[tuple[_Claimed, str | SendError]] = [
            (email, "") for email in claimed if email.id in suppressed
        ]
        outcomes.extend(zip(to_send, results, strict=True))
        dead = await self._record(outcomes)
        for email_id, reason in dead:
            await self._queue.dead_letter(email_id, reason)

    async def _send(self, email: _Claimed) -> str | SendError:
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
            return exc
        return message_id or email.id

    async def _claim(self, email_ids: list[str]) -> tuple[list[_Claimed], set[str]]:
        """Claim what is claimable (QUEUED, or SENDING with a stale claim); also
        which of the claimed go to suppressed addresses."""
        now = self._clock()
        table = models.EMAILS
        async with self._db.transaction() as session:
            # Core statements on the session's connection: multi-row RETURNING
            # and executemany, without the ORM's per-row bookkeeping.
            connection = await session.connection()
            result = await connection.execute(
                update(table)
                .where(table.c.id.in_(email_ids))
                .where(
                    (table.c.state == models.QUEUED)
                    | (
                        (table.c.state == models.SENDING)
                        & (table.c.claim_time < now - self._claim_idle)
                    )
                )
                .values(
                    state=models.SENDING,
                    claim_time=now,
                    update_time=now,
                    attempts=table.c.attempts + 1,
                    # If this worker dies, the sweep republishes after the claim is stale.
                    due_time=now + max(self._claim_idle, self._requeue_after),
                )
                .returning(*(table.c[name] for name in _Claimed._fields))
            )
            claimed = [_Claimed._make(row) for row in result.all()]
            if not claimed:
                return [], set()
            keys = {email.id: _address_key(email.recipient) for email in claimed}
            found = await connection.execute(
                select(Suppression.address).where(col(Suppression.address).in_(set(keys.values())))
            )
            blocked = {row[0] for row in found.all()}
        return claimed, {email_id for email_id, key in keys.items() if key in blocked}

    async def _record(
        self, outcomes: list[tuple[_Claimed, str | SendError]]
    ) -> list[tuple[str, str]]:
        """Store every outcome in one transaction; returns the dead letters."""
        now = self._clock()
        sent: list[dict[str, object]] = []
        final: list[dict[str, object]] = []
        retry: list[dict[str, object]] = []
        dead: list[tuple[str, str]] = []
        for email, result in outcomes:
            if result == "":
                final.append(
                    {
                        "b_id": email.id,
                        "b_state": models.SUPPRESSED,
                        "b_error": "address undeliverable",
                    }
                )
                SENT_TOTAL.labels(self._provider.name, "suppressed").inc()
            elif isinstance(result, str):
                sent.append({"b_id": email.id, "b_mid": result[:200]})
                SENT_TOTAL.labels(self._provider.name, "sent").inc()
                QUEUE_LATENCY.observe((now - as_utc(email.create_time)).total_seconds())
            elif not result.transient or email.attempts >= self._max_attempts:
                reason = str(result)[:500]
                final.append({"b_id": email.id, "b_state": models.DEAD, "b_error": reason})
                dead.append((email.id, reason))
                SENT_TOTAL.labels(self._provider.name, "dead").inc()
                log.warning("mail_dead_lettered", email_id=email.id, error=reason)
            else:
                delay = backoff_delay(email.attempts, base=self._retry_base, cap=self._retry_max)
                retry.append(
                    {
                        "b_id": email.id,
                        "b_error": str(result)[:500],
                        "b_due": now + timedelta(seconds=delay),
                    }
                )
                SENT_TOTAL.labels(self._provider.name, "retry").inc()
                log.info(
                    "mail_retry_scheduled", email_id=email.id, attempt=email.attempts, delay=delay
                )
        table = models.EMAILS
        mine = (table.c.id == bindparam("b_id")) & (table.c.state == models.SENDING)
        done = {"update_time": now, "claim_time": None}
        async with self._db.transaction() as session:
            connection = await session.connection()
            if sent:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(
                        state=models.SENT,
                        send_time=now,
                        due_time=None,
                        provider_message_id=bindparam("b_mid"),
                        **done,
                    ),
                    sent,
                )
            if final:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(
                        state=bindparam("b_state"),
                        last_error=bindparam("b_error"),
                        due_time=None,
                        **done,
                    ),
                    final,
                )
            if retry:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(
                        state=models.QUEUED,
                        last_error=bindparam("b_error"),
                        due_time=bindparam("b_due"),
                        **done,
                    ),
                    retry,
                )
        return dead

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
