"""The transport of send jobs (an email id each) from whoever queues an email to
the workers. The database row is the ledger (state, attempts, due time); the
queue only says "look at this email now", so a job delivered twice, or
published again by the requeue sweep, is harmless.

- `RedisJobQueue`: a Redis Stream with one consumer group for every replica's
  workers; a job is acked after it was handled; jobs a dead worker left pending
  are taken over with XAUTOCLAIM after `claim_idle` seconds; dead letters are
  also appended to the `mail.dead` stream for operators.
- `InProcessJobQueue`: embedded mode; an asyncio queue in front of the same
  database ledger (what it loses with the process, the sweep publishes again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from chatmesh.common.logging import get_logger

JOBS_STREAM = "mail.jobs"
DEAD_STREAM = "mail.dead"
GROUP = "mail-workers"
ID_FIELD = b"email_id"

# Handles a batch of jobs (email ids); raising means none of them is acked.
JobHandler = Callable[[Sequence[str]], Awaitable[None]]
log = get_logger(__name__)


class JobQueue(Protocol):
    async def publish(self, email_ids: Sequence[str]) -> None: ...

    async def run(self, handle: JobHandler, *, stop: asyncio.Event) -> None:
        """Handle jobs until `stop` is set; a job whose handler raised is not
        acked (it comes back: reclaimed, or published again by the sweep)."""
        ...

    async def dead_letter(self, email_id: str, reason: str) -> None: ...


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _handled(handle: JobHandler, email_ids: Sequence[str]) -> bool:
    try:
        await handle(email_ids)
    except Exception as exc:
        log.warning("mail_jobs_failed", count=len(email_ids), error=repr(exc))
        return False
    return True


class InProcessJobQueue:
    """`loops` consumers, each taking up to `batch_size` jobs at a time (few
    loops: on SQLite, concurrent writers only wait for each other's lock)."""

    def __init__(self, *, batch_size: int = 32, loops: int = 1) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._batch_size = batch_size
        self._loops = loops

    async def publish(self, email_ids: Sequence[str]) -> None:
        for email_id in email_ids:
            self._queue.put_nowait(email_id)

    async def run(self, handle: JobHandler, *, stop: asyncio.Event) -> None:
        async def worker() -> None:
            while not stop.is_set():
                try:
                    batch = [await asyncio.wait_for(self._queue.get(), timeout=0.5)]
                except TimeoutError:
                    continue
                while len(batch) < self._batch_size and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await _handled(handle, batch)

        await asyncio.gather(*(worker() for _ in range(self._loops)))

    async def dead_letter(self, email_id: str, reason: str) -> None:
        return None  # the database row (state dead) is the dead-letter queue


def consumer_name() -> str:
    """Unique per process: a restarted worker is a new consumer, so the jobs the
    dead one held are reclaimed rather than silently owned by the newcomer."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RedisJobQueue:
    """The client belongs to the caller. `block_ms` stays below its socket timeout."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        claim_idle: float = 60.0,
        batch_size: int = 32,
        loops: int = 2,
        block_ms: int = 1000,
        maxlen: int = 1_000_000,
        consumer: str | None = None,
    ) -> None:
        self._client = client
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._batch_size = batch_size
        self._loops = loops
        self._block_ms = block_ms
        self._maxlen = maxlen
        self.consumer = consumer or consumer_name()

    async def publish(self, email_ids: Sequence[str]) -> None:
        if not email_ids:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for email_id in email_ids:
                pipe.xadd(
                    JOBS_STREAM,
                    {ID_FIELD: email_id.encode()},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            await pipe.execute()

    async def dead_letter(self, email_id: str, reason: str) -> None:
        await self._client.xadd(
            DEAD_STREAM,
            {ID_FIELD: email_id.encode(), b"reason": reason.encode()[:500]},
            maxlen=100_000,
            approximate=True,
        )

    async def run(self, handle: JobHandler, *, stop: asyncio.Event) -> None:
        # Several readers overlap one batch's database work with another's sends;
        # the first also takes over jobs dead consumers left pending.
        await asyncio.gather(
            *(self._consume(handle, stop, reclaims=index == 0) for index in range(self._loops))
        )

    async def _consume(self, handle: JobHandler, stop: asyncio.Event, *, reclaims: bool) -> None:
        backoff = 0.1
        group_ready = False
        next_claim = 0.0
        while not stop.is_set():
            try:
                if not group_ready:
                    await self._create_group()
                    group_ready = True
                if reclaims and time.monotonic() >= next_claim:
                    await self._reclaim(handle, stop)
                    next_claim = time.monotonic() + self._claim_idle_ms / 4000
                await self._read(handle)
                backoff = 0.1
            except ResponseError as exc:
                # NOGROUP: Redis restarted empty or was flushed; recreate the group.
                group_ready = False
                log.warning("mail_queue_error", error=repr(exc))
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)
            except (RedisError, OSError) as exc:
                log.warning("mail_queue_unavailable", error=repr(exc))
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(JOBS_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, handle: JobHandler) -> None:
        response: Any = await self._client.xreadgroup(
            GROUP, self.consumer, {JOBS_STREAM: ">"}, count=self._batch_size, block=self._block_ms
        )
        for entries in _entry_lists(response):
            await self._handle(entries, handle)

    async def _reclaim(self, handle: JobHandler, stop: asyncio.Event) -> None:
        start: bytes | str = "0-0"
        while not stop.is_set():
            reply: Any = await self._client.xautoclaim(
                JOBS_STREAM,
                GROUP,
                self.consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=start,
                count=self._batch_size,
            )
            start, entries = reply[0], reply[1]
            if entries:
                log.info("mail_jobs_reclaimed", count=len(entries))
                await self._handle(entries, handle)
            if start in (b"0-0", "0-0"):
                return

    async def _handle(
        self, entries: list[tuple[bytes, dict[bytes, bytes] | None]], handle: JobHandler
    ) -> None:
        # Entries without an id: nothing can handle them, ack them away.
        acks = [entry_id for entry_id, fields in entries if not fields or ID_FIELD not in fields]
        jobs = [
            (entry_id, fields[ID_FIELD].decode())
            for entry_id, fields in entries
            if fields and ID_FIELD in fields
        ]
        if jobs and await _handled(handle, [email_id for _, email_id in jobs]):
            acks.extend(entry_id for entry_id, _ in jobs)
        if acks:
            await self._client.xack(JOBS_STREAM, GROUP, *acks)


def _entry_lists(response: Any) -> list[Any]:
    if not response:
        return []
    if isinstance(response, dict):
        return [entries for value in response.values() for entries in value]
    return [entries for _stream, entries in response]
