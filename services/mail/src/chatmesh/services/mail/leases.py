"""Scheduler leases in the mail schema: one row per job names who runs it until
when, and the last period it finished. Replicas of the service and the CronJob
share the database, so whichever takes the lease first runs the job; the others
skip it. A holder that dies loses the lease when it expires. One conditional
UPDATE decides, which is atomic on PostgreSQL and on SQLite alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from chatmesh.common.clock import Clock, utcnow
from chatmesh.common.db import Database, dialect_insert
from chatmesh.services.mail.models import SchedulerRun

_RUNS = SchedulerRun.__table__  # type: ignore[attr-defined]
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class Leases:
    def __init__(self, db: Database, *, holder: str, clock: Clock = utcnow) -> None:
        self._db = db
        self._holder = holder[:200]
        self._clock = clock

    async def acquire(self, name: str, *, ttl: timedelta, unless_done: str = "") -> bool:
        """Take the lease on `name` for `ttl` (free, expired, or already ours);
        refused when `unless_done` is the period the job last finished."""
        now = self._clock()
        async with self._db.transaction() as session:
            await session.exec(
                dialect_insert(_RUNS, is_sqlite=self._db.is_sqlite)
                .values(name=name, holder="", lease_until=_NEVER, last_done="")
                .on_conflict_do_nothing(index_elements=["name"])
            )
            statement = (
                update(SchedulerRun)
                .where(col(SchedulerRun.name) == name)
                .where(
                    (col(SchedulerRun.lease_until) <= now)
                    | (col(SchedulerRun.holder) == self._holder)
                )
                .values(holder=self._holder, lease_until=now + ttl)
            )
            if unless_done:
                statement = statement.where(col(SchedulerRun.last_done) != unless_done)
            result = await session.exec(statement)
            return bool(result.rowcount)

    async def renew(self, name: str, *, ttl: timedelta) -> bool:
        """Extend our lease (a long job calls this between pages); False if lost."""
        async with self._db.transaction() as session:
            result = await session.exec(
                update(SchedulerRun)
                .where(col(SchedulerRun.name) == name)
                .where(col(SchedulerRun.holder) == self._holder)
                .values(lease_until=self._clock() + ttl)
            )
            return bool(result.rowcount)

    async def release(self, name: str, *, done: str = "") -> None:
        """Give the lease back, recording `done` as the finished period if given."""
        values: dict[str, object] = {"holder": "", "lease_until": _NEVER}
        if done:
            values["last_done"] = done
        async with self._db.transaction() as session:
            await session.exec(
                update(SchedulerRun)
                .where(col(SchedulerRun.name) == name)
                .where(col(SchedulerRun.holder) == self._holder)
                .values(**values)
            )

    async def last_done(self, name: str) -> str:
        async with self._db.read() as session:
            row = await session.get(SchedulerRun, name)
        return row.last_done if row is not None else ""
