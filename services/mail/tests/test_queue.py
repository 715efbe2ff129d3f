"""The queue against a real SMTP server: retries with backoff, dead letters and
replay, idempotency, and the Redis Stream transport."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.struct_pb2 import Struct

from chatmesh.common.errors import from_rpc_error
from chatmesh.mail.v1 import mail_pb2
from chatmesh.services.mail.delivery import backoff_delay
from chatmesh.services.mail.jobqueue import JOBS_STREAM

ALERT = {"title": "disk full", "message": "node-3 at 97%", "severity": "critical"}


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    for attempt in range(1, 8):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert backoff_delay(attempt, base=2, cap=60, rand=lambda: 0.0) == ceiling / 2
        assert backoff_delay(attempt, base=2, cap=60, rand=lambda: 0.999) < ceiling


async def test_transient_smtp_errors_are_retried_with_backoff(
    db_url: str, smtp_sink: Any, kit: Any
) -> None:
    smtp_sink.handler.replies = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    async with kit.start(kit.smtp_settings(db_url, smtp_sink, retry_base_seconds=0.4)) as mail:
        sent = await mail.send("system_alert", "ops@example.com", ALERT)
        done = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
    assert done.attempts == 3
    assert smtp_sink.handler.count() == 1
    first, second, third = smtp_sink.handler.attempts
    # Retry n waits between base·2^(n-1)/2 and base·2^(n-1) (plus sweep latency).
    assert 0.2 <= second - first < 0.4 + 0.5
    assert 0.4 <= third - second < 0.8 + 0.5


async def test_permanent_error_dead_letters_and_replay_sends(
    db_url: str, smtp_sink: Any, kit: Any
) -> None:
    smtp_sink.handler.replies = ["550 5.1.1 mailbox unavailable"]
    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        sent = await mail.send("system_alert", "ops@example.com", ALERT)
        dead = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_DEAD)
        assert dead.attempts == 1
        assert dead.last_error.startswith("smtp 550")
        listed = await mail.stub.ListDeadLetters(mail_pb2.ListDeadLettersRequest(page_size=10))
        assert [e.id for e in listed.emails] == [sent.email.id]
        assert smtp_sink.handler.count() == 0

        replayed = await mail.stub.ReplayDeadLetter(
            mail_pb2.ReplayDeadLetterRequest(id=sent.email.id)
        )
        assert replayed.email.state == mail_pb2.EMAIL_STATE_QUEUED
        await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
        assert smtp_sink.handler.count() == 1
        listed = await mail.stub.ListDeadLetters(mail_pb2.ListDeadLettersRequest())
        assert list(listed.emails) == []
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await mail.stub.ReplayDeadLetter(mail_pb2.ReplayDeadLetterRequest(id=sent.email.id))
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_attempts_exhausted_dead_letters(db_url: str, smtp_sink: Any, kit: Any) -> None:
    smtp_sink.handler.always = "451 4.3.0 still down"
    settings = kit.smtp_settings(db_url, smtp_sink, max_attempts=3, retry_base_seconds=0.05)
    async with kit.start(settings) as mail:
        sent = await mail.send("system_alert", "ops@example.com", ALERT)
        dead = await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_DEAD)
    assert dead.attempts == 3
    assert "451" in dead.last_error
    assert len(smtp_sink.handler.attempts) == 3


async def test_duplicate_idempotency_keys_send_once(db_url: str, smtp_sink: Any, kit: Any) -> None:
    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        results = await asyncio.gather(
            *(mail.send("system_alert", "ops@example.com", ALERT, key="alert-42") for _ in range(8))
        )
        ids = {r.email.id for r in results}
        assert len(ids) == 1
        assert sum(r.created for r in results) == 1
        await mail.wait_state(ids.pop(), mail_pb2.EMAIL_STATE_SENT)
        again = await mail.send("system_alert", "ops@example.com", ALERT, key="alert-42")
        assert not again.created
        assert again.email.state == mail_pb2.EMAIL_STATE_SENT
        await asyncio.sleep(0.5)
    assert smtp_sink.handler.count() == 1


async def test_redis_stream_duplicate_jobs_send_once(
    postgres_url: str, redis_url: str, smtp_sink: Any, kit: Any
) -> None:
    settings = kit.smtp_settings(postgres_url, smtp_sink, redis_url=redis_url)
    async with kit.start(settings) as mail:
        sent = await mail.send("system_alert", "ops@example.com", ALERT)
        client = aioredis.Redis.from_url(redis_url)
        try:
            # The same job published again (a producer retry, a sweep): still one email.
            for _ in range(3):
                await client.xadd(JOBS_STREAM, {b"email_id": sent.email.id.encode()})
        finally:
            await client.aclose()
        await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
        await asyncio.sleep(0.5)
    assert smtp_sink.handler.count() == 1


async def test_rate_limit_per_recipient_and_category(db_url: str, smtp_sink: Any, kit: Any) -> None:
    settings = kit.smtp_settings(db_url, smtp_sink, category_limit=2, recipient_limit=3)
    vars_ = {"display_name": "Flo"}
    async with kit.start(settings) as mail:
        states = [
            (await mail.send("password_changed", "flo@example.com", vars_)).email.state
            for _ in range(3)
        ]
        assert states == [mail_pb2.EMAIL_STATE_QUEUED] * 2 + [mail_pb2.EMAIL_STATE_RATE_LIMITED]
        # Another category still has room, up to the per-recipient limit.
        other = await mail.send("system_alert", "FLO@example.com", ALERT)
        assert other.email.state == mail_pb2.EMAIL_STATE_QUEUED
        over = await mail.send("system_alert", "flo@EXAMPLE.com", ALERT)
        assert over.email.state == mail_pb2.EMAIL_STATE_RATE_LIMITED
        # Someone else is not affected.
        fine = await mail.send("password_changed", "gus@example.com", vars_)
        assert fine.email.state == mail_pb2.EMAIL_STATE_QUEUED
        await smtp_sink.wait_count(4)
        await asyncio.sleep(0.3)
    assert smtp_sink.handler.count() == 4


async def test_batch_send_is_validated_whole_and_deduplicated(
    db_url: str, smtp_sink: Any, kit: Any
) -> None:
    def request(recipient: str, key: str, **extra: str) -> mail_pb2.SendEmailRequest:
        variables = Struct()
        variables.update({**ALERT, **extra})
        return mail_pb2.SendEmailRequest(
            template_id="system_alert",
            recipient=recipient,
            variables=variables,
            idempotency_key=key,
        )

    async with kit.start(kit.smtp_settings(db_url, smtp_sink)) as mail:
        first = await mail.send("system_alert", "a@example.com", ALERT, key="b-1")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await mail.stub.BatchSendEmails(
                mail_pb2.BatchSendEmailsRequest(
                    requests=[request("b@example.com", "b-2"), request("bad address", "b-3")]
                )
            )
        rejected = from_rpc_error(error.value)
        assert rejected.code == "invalid_address"
        assert rejected.details["index"] == 1
        batch = await mail.stub.BatchSendEmails(
            mail_pb2.BatchSendEmailsRequest(
                requests=[
                    request("a@example.com", "b-1"),
                    request("b@example.com", "b-2"),
                    request("b@example.com", "b-2"),
                    request("c@example.com", "b-4"),
                ]
            )
        )
        created = [r.created for r in batch.responses]
        assert created == [False, True, False, True]
        assert batch.responses[0].email.id == first.email.id
        assert batch.responses[1].email.id == batch.responses[2].email.id
        await smtp_sink.wait_count(3)
        await asyncio.sleep(0.3)
    assert sorted(r.envelope_to[0] for r in smtp_sink.handler.received) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
