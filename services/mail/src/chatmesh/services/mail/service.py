"""The mail service's rules: queueing an email (validation, rendering,
idempotency, preferences, suppressions, rate limits), its status, the
dead-letter queue, preferences and unsubscribe, and provider feedback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from chatmesh.common.clock import utcnow
from chatmesh.common.db import Database
from chatmesh.common.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError
from chatmesh.common.logging import get_logger
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.services.mail import models
from chatmesh.services.mail.addresses import check_header_value, normalized, parse_address
from chatmesh.services.mail.jobqueue import JobQueue
from chatmesh.services.mail.models import DevMail, EmailRecord, Preferences, Suppression
from chatmesh.services.mail.templates import (
    MAX_VARIABLE_BYTES,
    MISSED_MESSAGES,
    OPTIONAL_CATEGORIES,
    SECURITY,
    WEEKLY_DIGEST,
    TemplateRenderer,
)
from chatmesh.services.mail.unsubscribe import make_token, read_token

log = get_logger(__name__)

MAX_IDEMPOTENCY_KEY = 200
MAX_PAGE_SIZE = 100
MAX_BATCH = 500
SEVERITIES = ("info", "warning", "critical")
PREFERENCE_FIELDS = ("security_alerts", "missed_messages", "weekly_digest", "digest_day")
_CATEGORY_FIELD = {
    SECURITY: "security_alerts",
    MISSED_MESSAGES: "missed_messages",
    WEEKLY_DIGEST: "weekly_digest",
}


@dataclass(frozen=True)
class Limits:
    recipient: int
    category: int
    window: float


@dataclass(frozen=True)
class EmailRequest:
    template_id: str
    recipient: str
    variables: Mapping[str, Any]
    idempotency_key: str = ""
    user_id: str = ""


@dataclass(frozen=True)
class _Prepared:
    record: EmailRecord
    address_key: str


@dataclass(frozen=True)
class PreferenceValues:
    security_alerts: bool = True
    missed_messages: bool = True
    weekly_digest: bool = True
    digest_day: int = 1


class MailService:
    def __init__(
        self,
        *,
        db: Database,
        queue: JobQueue,
        limiter: RateLimiter,
        renderer: TemplateRenderer,
        limits: Limits,
        unsubscribe_secret: str,
        unsubscribe_url: str,
        requeue_after: float,
        operators: Sequence[str] = (),
        db_concurrency: int = 6,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._queue = queue
        self._limiter = limiter
        self._renderer = renderer
        self._limits = limits
        self._secret = unsubscribe_secret
        self._unsubscribe_url = unsubscribe_url
        self._requeue_after = timedelta(seconds=requeue_after)
        self._clock = clock
        # Queueing holds a database connection twice; more of them at once than the
        # pool keeps open (common's Database: 10) makes SQLAlchemy open and close
        # overflow connections per request, which costs more than the wait here.
        self._db_slots = asyncio.Semaphore(db_concurrency)
        self._operators = tuple(operators)

    # --- queueing ------------------------------------------------------------------------

    async def send_email(
        self,
        *,
        template_id: str,
        recipient: str,
        variables: Mapping[str, Any],
        idempotency_key: str = "",
        user_id: str = "",
    ) -> tuple[EmailRecord, bool]:
        """Queue one email; (email, False) when `idempotency_key` was used before."""
        request = EmailRequest(template_id, recipient, variables, idempotency_key, user_id)
        [result] = await self.send_emails([request])
        return result

    async def send_emails(self, requests: Sequence[EmailRequest]) -> list[tuple[EmailRecord, bool]]:
        """Queue several emails at once (all validated first: one bad request
        rejects the batch, naming its index); one read, one write, one publish."""
        if len(requests) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} emails per batch", code="batch_too_large")
        # Rendered inside the slot: a burst of batches then holds rendered bodies
        # and rows for the few being stored, not for every waiting request (tens
        # of MB of a worker's RSS under 64 concurrent batches of 100).
        async with self._db_slots:
            prepared = []
            for index, request in enumerate(requests):
                try:
                    prepared.append(self._prepare(request))
                except ServiceError as error:
                    if len(requests) > 1:
                        error.details = {**error.details, "index": index}
                    raise
            return await self._store(prepared)

    async def alert_operators(
        self, *, title: str, message: str, severity: str, idempotency_key: str = ""
    ) -> list[tuple[EmailRecord, bool]]:
        """A system alert to every configured operator address."""
        if not self._operators:
            raise FailedPrecondition("no operator addresses are configured", code="no_operators")
        if severity not in SEVERITIES:
            raise InvalidArgument(
                "severity must be one of " + ", ".join(SEVERITIES), code="invalid_severity"
            )
        key = idempotency_key or f"alert:{uuid.uuid4()}"
        variables = {"title": title, "message": message, "severity": severity}
        return await self.send_emails(
            [
                EmailRequest("system_alert", operator, variables, f"{key}:{operator}"[:200])
                for operator in self._operators
            ]
        )

    def _prepare(self, request: EmailRequest) -> _Prepared:
        """Validate and render one request (no I/O)."""
        if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument("idempotency_key is too long", code="invalid_idempotency_key")
        check_header_value(request.idempotency_key, field="idempotency_key")
        check_header_value(request.user_id, field="user_id")
        if len(request.user_id) > 64:
            raise InvalidArgument("user_id is too long", code="invalid_user_id")
        address = parse_address(request.recipient)
        size = len(json.dumps(request.variables, default=str).encode())
        if size > MAX_VARIABLE_BYTES:
            raise InvalidArgument(
                f"variables exceed {MAX_VARIABLE_BYTES} bytes", code="variables_too_large"
            )
        category = self._renderer.category_of(request.template_id)
        unsubscribe = ""
        if request.user_id and category in OPTIONAL_CATEGORIES:
            token = make_token(self._secret, request.user_id, category)
            unsubscribe = f"{self._unsubscribe_url}?token={token}"
        rendered = self._renderer.render(
            request.template_id, dict(request.variables), unsubscribe_url=unsubscribe
        )
        headers: dict[str, str] = {"X-ChatMesh-Category": rendered.category}
        if unsubscribe:
            # RFC 2369 + RFC 8058 one-click: mail clients POST to the URL.
            headers["List-Unsubscribe"] = f"<{unsubscribe}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        now = self._clock()
        record = EmailRecord(
            id=str(uuid.uuid4()),
            idempotency_key=request.idempotency_key or f"auto:{uuid.uuid4()}",
            template_id=request.template_id,
            category=rendered.category,
            recipient=str(address),
            user_id=request.user_id,
            subject=rendered.subject,
            text_body=rendered.text,
            html_body=rendered.html,
            headers=json.dumps(headers),
            state=models.QUEUED,
            create_time=now,
            update_time=now,
        )
        return _Prepared(record, normalized(address))

    async def _store(self, prepared: list[_Prepared]) -> list[tuple[EmailRecord, bool]]:
        keys = [p.record.idempotency_key for p in prepared]
        addresses = {p.address_key for p in prepared}
        users = {p.record.user_id for p in prepared if p.record.user_id}
        # One read for everything the database decides: repeated keys,
        # undeliverable addresses, opted-out users.
        async with self._db.read() as session:
            existing = {
                e.idempotency_key: e
                for e in (
                    await session.exec(
                        select(EmailRecord).where(col(EmailRecord.idempotency_key).in_(keys))
                    )
                ).all()
            }
            blocked = set(
                (
                    await session.exec(
                        select(Suppression.address).where(col(Suppression.address).in_(addresses))
                    )
                ).all()
            )
            prefs = (
                {
                    p.user_id: p
                    for p in (
                        await session.exec(
                            select(Preferences).where(col(Preferences.user_id).in_(users))
                        )
                    ).all()
                }
                if users
                else {}
            )
        results: list[tuple[EmailRecord, bool]] = []
        new: dict[str, _Prepared] = {}
        for item in prepared:
            key = item.record.idempotency_key
            if key in existing:
                results.append((existing[key], False))
            elif key in new:  # the same key twice in one batch
                results.append((new[key].record, False))
            else:
                new[key] = item
                results.append((item.record, True))

        async def gate(item: _Prepared) -> None:
            record = item.record
            pref = prefs.get(record.user_id)
            field = _CATEGORY_FIELD.get(record.category)
            record.state, record.last_error = await self._gate(
                address_key=item.address_key,
                category=record.category,
                suppressed=item.address_key in blocked,
                opted_out=pref is not None and field is not None and not getattr(pref, field),
            )
            if record.state == models.QUEUED:
                record.due_time = record.create_time + self._requeue_after

        # The rate limiter is a network round trip per hit (Redis): in parallel.
        await asyncio.gather(*(gate(item) for item in new.values()))
        if new:
            try:
                async with self._db.transaction() as session:
                    session.add_all(item.record for item in new.values())
            except IntegrityError:
                # A key raced in from another request: store one by one, the
                # earlier request wins each conflict.
                return [await self._store_one(record, created) for record, created in results]
            queued = [i.record.id for i in new.values() if i.record.state == models.QUEUED]
            await self._publish(queued)
        return results

    async def _store_one(self, record: EmailRecord, created: bool) -> tuple[EmailRecord, bool]:
        if not created:
            return record, False
        try:
            async with self._db.transaction() as session:
                session.add(EmailRecord.model_validate(record.model_dump()))
        except IntegrityError:
            winner = await self._by_key(record.idempotency_key)
            if winner is None:
                raise
            return winner, False
        if record.state == models.QUEUED:
            await self._publish([record.id])
        return record, True

    async def _publish(self, email_ids: list[str]) -> None:
        if not email_ids:
            return
        try:
            await self._queue.publish(email_ids)
        except Exception:
            # Stored with a due time: the sweep publishes them when the queue is back.
            log.warning("mail_publish_failed", count=len(email_ids), exc_info=True)

    async def _gate(
        self, *, address_key: str, category: str, suppressed: bool, opted_out: bool
    ) -> tuple[str, str]:
        """(state, reason): QUEUED, or why the email is recorded but not sent."""
        if opted_out:
            return models.SUPPRESSED, "opted out"
        if suppressed:
            return models.SUPPRESSED, "address undeliverable"
        limits = self._limits
        per_category = await self._limiter.hit(
            f"mail:{category}:{address_key}", limit=limits.category, window=limits.window
        )
        if not per_category.allowed:
            return models.RATE_LIMITED, f"too many {category} emails to this address"
        per_recipient = await self._limiter.hit(
            f"mail:all:{address_key}", limit=limits.recipient, window=limits.window
        )
        if not per_recipient.allowed:
            return models.RATE_LIMITED, "too many emails to this address"
        return models.QUEUED, ""

    async def _by_key(self, key: str) -> EmailRecord | None:
        async with self._db.read() as session:
            query = select(EmailRecord).where(col(EmailRecord.idempotency_key) == key)
            return (await session.exec(query)).first()

    # --- status and dead letters ---------------------------------------------------------

    async def get_email(self, email_id: str) -> EmailRecord:
        async with self._db.read() as session:
            email = await session.get(EmailRecord, email_id) if _is_uuid(email_id) else None
        if email is None:
            raise NotFound("no such email", code="email_not_found")
        return email

    async def list_dead_letters(
        self, *, page_size: int, page_token: str
    ) -> tuple[list[EmailRecord], str]:
        size = min(max(page_size or 50, 1), MAX_PAGE_SIZE)
        offset = 0
        if page_token:
            try:
                offset = int(page_token)
            except ValueError:
                raise InvalidArgument("invalid page_token", code="invalid_page_token") from None
            if offset < 0:
                raise InvalidArgument("invalid page_token", code="invalid_page_token")
        async with self._db.read() as session:
            query = (
                select(EmailRecord)
                .where(col(EmailRecord.state) == models.DEAD)
                .order_by(col(EmailRecord.update_time).desc(), col(EmailRecord.id))
                .offset(offset)
                .limit(size + 1)
            )
            rows = list((await session.exec(query)).all())
        next_token = str(offset + size) if len(rows) > size else ""
        return rows[:size], next_token

    async def replay_dead_letter(self, email_id: str) -> EmailRecord:
        now = self._clock()
        await self.get_email(email_id)
        async with self._db.transaction() as session:
            result = await session.exec(
                update(EmailRecord)
                .where(col(EmailRecord.id) == email_id)
                .where(col(EmailRecord.state) == models.DEAD)
                .values(
                    state=models.QUEUED,
                    attempts=0,
                    update_time=now,
                    due_time=now + self._requeue_after,
                    claim_time=None,
                )
            )
            if result.rowcount != 1:
                raise FailedPrecondition(
                    "the email is not in the dead-letter queue", code="not_dead_lettered"
                )
        # The email as replayed (a worker may take it the moment it is published).
        replayed = await self.get_email(email_id)
        await self._publish([email_id])
        return replayed

    # --- preferences and unsubscribe -----------------------------------------------------

    async def preferences(self, user_id: str) -> PreferenceValues:
        async with self._db.read() as session:
            row = await session.get(Preferences, user_id)
        if row is None:
            return PreferenceValues()
        return PreferenceValues(
            row.security_alerts, row.missed_messages, row.weekly_digest, row.digest_day
        )

    async def update_preferences(
        self, user_id: str, values: PreferenceValues, fields: list[str]
    ) -> PreferenceValues:
        unknown = [name for name in fields if name not in PREFERENCE_FIELDS]
        if unknown:
            raise InvalidArgument(
                "unknown preference fields: " + ", ".join(unknown),
                code="invalid_update_mask",
                details={"unknown": unknown},
            )
        fields = fields or list(PREFERENCE_FIELDS)
        if "digest_day" in fields and not 1 <= values.digest_day <= 7:
            raise InvalidArgument(
                "digest_day must be 1 (Monday) to 7 (Sunday)", code="invalid_digest_day"
            )
        async with self._db.transaction() as session:
            row = await session.get(Preferences, user_id)
            if row is None:
                row = Preferences(user_id=user_id, update_time=self._clock())
            for name in fields:
                setattr(row, name, getattr(values, name))
            row.update_time = self._clock()
            session.add(row)
        return await self.preferences(user_id)

    async def unsubscribe(self, token: str) -> tuple[str, str]:
        """Turn off the category a signed link names; (user_id, category)."""
        found = read_token(self._secret, token)
        if found is None or found[1] not in _CATEGORY_FIELD:
            raise InvalidArgument("the unsubscribe link is invalid", code="invalid_token")
        user_id, category = found
        field = _CATEGORY_FIELD[category]
        values = replace(PreferenceValues(), **{field: False})
        await self.update_preferences(user_id, values, [field])
        return user_id, category

    # --- provider feedback ---------------------------------------------------------------

    async def mark_undeliverable(
        self, address: str, reason: str, *, email_id: str = "", provider_message_id: str = ""
    ) -> None:
        """A bounce or spam report: never mail this address again (until removed)."""
        try:
            key = normalized(parse_address(address))
        except InvalidArgument:
            log.warning("mail_feedback_bad_address", reason=reason)
            return
        now = self._clock()
        async with self._db.transaction() as session:
            if await session.get(Suppression, key) is None:
                session.add(Suppression(address=key, reason=reason[:32], create_time=now))
        await self._set_state(models.BOUNCED, email_id, provider_message_id)
        log.info("mail_address_suppressed", reason=reason)

    async def mark_delivered(self, *, email_id: str = "", provider_message_id: str = "") -> None:
        await self._set_state(models.DELIVERED, email_id, provider_message_id, only_from_sent=True)

    async def _set_state(
        self, state: str, email_id: str, provider_message_id: str, *, only_from_sent: bool = False
    ) -> None:
        if email_id and _is_uuid(email_id):
            where = col(EmailRecord.id) == email_id
        elif provider_message_id:
            where = col(EmailRecord.provider_message_id) == provider_message_id[:200]
        else:
            return
        statement = update(EmailRecord).where(where).values(state=state, update_time=self._clock())
        if only_from_sent:
            statement = statement.where(col(EmailRecord.state) == models.SENT)
        async with self._db.transaction() as session:
            await session.exec(statement)

    # --- dev mailbox ---------------------------------------------------------------------

    async def dev_mailbox(self, *, limit: int = 50) -> list[DevMail]:
        async with self._db.read() as session:
            query = select(DevMail).order_by(col(DevMail.create_time).desc()).limit(limit)
            return list((await session.exec(query)).all())


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
