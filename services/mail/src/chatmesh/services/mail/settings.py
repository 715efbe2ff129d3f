"""Configuration of the mail service (`CHATMESH_*` environment variables).

The provider's own settings are checked here, so a misconfigured provider stops
start-up with one line naming the variable (exit code 2), not at the first send.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from chatmesh.common.errors import InvalidArgument
from chatmesh.common.settings import ServiceSettings
from chatmesh.services.mail.addresses import parse_address

# The Postgres schema that holds the mail tables (ignored on SQLite).
DB_SCHEMA = "mail"

Provider = Literal["dev", "smtp", "sendgrid", "ses"]


class MailSettings(ServiceSettings):
    service_name: ClassVar[str] = "mail"

    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)
    # The REST API (POST /v1/emails, provider webhooks, /dev/mail); 0 disables it.
    rest_host: str = "127.0.0.1"
    rest_port: int = Field(default=8025, ge=0, le=65535)
    # Apply the migrations when the service starts; false where a separate job
    # (`python -m chatmesh.services.mail migrate`, the Kubernetes Job) does, which
    # keeps Alembic out of every replica's memory.
    migrate_on_start: bool = True

    provider: Provider = "dev"
    mail_from: str = "ChatMesh <no-reply@chatmesh.local>"
    # Print each dev-mailbox message to the console (embedded mode).
    dev_mail_console: bool = True

    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    # PEM CA bundle to verify the SMTP server's certificate (empty: system CAs).
    smtp_ca_file: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    sendgrid_api_key: str = ""
    sendgrid_base_url: str = "https://api.sendgrid.com"
    # Base64 DER (SubjectPublicKeyInfo) ECDSA key from the Event Webhook settings.
    sendgrid_webhook_public_key: str = ""

    ses_region: str = ""
    # Empty means the AWS endpoint of the region.
    ses_endpoint_url: str = ""
    ses_access_key_id: str = ""
    ses_secret_access_key: str = ""
    # SNS subscription URLs carry this token (?token=…); empty disables the hook.
    ses_webhook_token: str = ""

    # Callers of POST /v1/emails send one of these (comma separated) as a Bearer token.
    api_keys: str = ""
    # Signs one-click unsubscribe links.
    unsubscribe_secret: str = "dev-unsubscribe-secret-change-me"  # noqa: S105
    # Where unsubscribe links point (the BFF forwards them); empty: {public_url}/unsubscribe.
    unsubscribe_url: str = ""
    # Comma-separated operator addresses for system alerts.
    operator_emails: str = ""

    # Queue: delivery attempts, backoff between them, and reclaiming.
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # A job a worker holds this long without finishing is taken over by another.
    claim_idle_seconds: float = Field(default=60.0, gt=0)
    # A queued job nobody finished is published again after this long (survives a
    # Redis that lost its data, or a crash in embedded mode). Longer than a normal
    # backlog takes to drain, or the sweep duplicates jobs that are merely waiting.
    requeue_after_seconds: float = Field(default=300.0, gt=0)
    # How often the database is checked for due retries and forgotten jobs.
    sweep_interval_seconds: float = Field(default=0.5, gt=0)
    # Jobs a worker takes at once (claimed and recorded in one transaction each,
    # sent concurrently), and how many such batches are in flight (Redis mode).
    worker_batch_size: int = Field(default=100, ge=1, le=1000)
    worker_loops: int = Field(default=2, ge=1, le=64)
    # Deliver queued emails (and run the requeue sweep) in this process. False on
    # API replicas when `python -m chatmesh.services.mail worker` processes deliver.
    queue_workers: bool = True
    # Kept-open SMTP connections (messages sent concurrently).
    smtp_pool_size: int = Field(default=16, ge=1, le=100)

    # Rate limits: per recipient (all mail) and per recipient and category.
    recipient_limit: int = Field(default=30, ge=1)
    category_limit: int = Field(default=10, ge=1)
    rate_window_seconds: float = Field(default=3600.0, gt=0)

    # Digests. The user service tells who is offline (missed messages).
    user_address: str = "127.0.0.1:50052"
    # Run the digest scheduler in this process (off when a CronJob sends the
    # weekly digests; the lease keeps replicas and the CronJob from doubling up).
    digest_scheduler: bool = True
    digest_interval_seconds: float = Field(default=60.0, gt=0)
    # A DM or mention is mailed once the user has been offline this long and it is this old.
    missed_messages_delay_seconds: float = Field(default=900.0, ge=0)
    # Weekly digests go out on each user's digest day after this hour (UTC).
    weekly_digest_hour: int = Field(default=9, ge=0, le=23)
    # Chat messages kept for the digests (the weekly digest looks back 7 days).
    digest_retention_days: int = Field(default=14, ge=8, le=365)
    # A replica that dies mid-run gives up its lease after this long.
    digest_lease_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _provider_configured(self) -> Self:
        missing: list[str] = []
        if self.provider == "smtp" and not self.smtp_host:
            missing.append("CHATMESH_SMTP_HOST")
        if self.provider == "smtp" and bool(self.smtp_username) != bool(self.smtp_password):
            missing.append("CHATMESH_SMTP_USERNAME and CHATMESH_SMTP_PASSWORD (both or neither)")
        if self.provider == "sendgrid" and not self.sendgrid_api_key:
            missing.append("CHATMESH_SENDGRID_API_KEY")
        if self.provider == "ses":
            if not self.ses_region:
                missing.append("CHATMESH_SES_REGION")
            if bool(self.ses_access_key_id) != bool(self.ses_secret_access_key):
                missing.append(
                    "CHATMESH_SES_ACCESS_KEY_ID and CHATMESH_SES_SECRET_ACCESS_KEY"
                    " (both or neither)"
                )
        if self.provider == "smtp" and self.smtp_ca_file and not Path(self.smtp_ca_file).is_file():
            missing.append("CHATMESH_SMTP_CA_FILE (a readable PEM file)")
        if self.sendgrid_webhook_public_key:
            # Imported here: `cryptography` is ~8 MB of RSS a worker never needs.
            from chatmesh.services.mail.webhooks import load_sendgrid_key  # noqa: PLC0415

            try:
                load_sendgrid_key(self.sendgrid_webhook_public_key)
            except ValueError as exc:
                raise ValueError(f"CHATMESH_SENDGRID_WEBHOOK_PUBLIC_KEY: {exc}") from None
        if not self.queue_workers and not self.redis_url:
            # Without Redis the queue is in-process: only this process can drain it.
            raise ValueError("CHATMESH_QUEUE_WORKERS=false needs CHATMESH_REDIS_URL")
        if missing:
            raise ValueError(f"provider {self.provider!r} needs " + ", ".join(missing))
        return self

    @field_validator("operator_emails")
    @classmethod
    def _operators_valid(cls, value: str) -> str:
        for address in (a.strip() for a in value.split(",")):
            if address:
                try:
                    parse_address(address)
                except InvalidArgument:
                    raise ValueError(f"not a valid email address: {address[:80]!r}") from None
        return value

    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    def operator_list(self) -> list[str]:
        return [addr.strip() for addr in self.operator_emails.split(",") if addr.strip()]

    def resolved_unsubscribe_url(self) -> str:
        return self.unsubscribe_url or self.public_url.rstrip("/") + "/unsubscribe"
