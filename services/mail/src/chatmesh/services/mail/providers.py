"""Email providers behind one interface. Each classifies failures as transient
(retry with backoff) or permanent (dead letter) the same way."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiosmtplib
import boto3
import sendgrid  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from python_http_client.exceptions import HTTPError  # type: ignore[import-untyped]
from sqlalchemy.exc import IntegrityError

from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.services.mail.addresses import parse_address
from chatmesh.services.mail.message import OutgoingEmail, to_mime
from chatmesh.services.mail.models import DevMail
from chatmesh.services.mail.settings import MailSettings

if TYPE_CHECKING:
    from types_boto3_sesv2 import SESV2Client

log = get_logger(__name__)


class SendError(Exception):
    """A provider refused or failed; `transient` says whether a retry may work."""

    transient: bool = True


class TransientSendError(SendError):
    transient = True


class PermanentSendError(SendError):
    transient = False


class Provider(Protocol):
    name: str

    async def send(self, email: OutgoingEmail) -> str:
        """Hand `email` over; returns the provider's message id. Raises SendError."""
        ...

    async def close(self) -> None: ...


# --- dev mailbox -------------------------------------------------------------------------


class DevMailbox:
    """Stores each message in the service's database (GET /dev/mail shows them)
    and prints it to the console. The mailbox row is unique per email, so a job
    handled twice is stored once."""

    name = "dev"

    def __init__(self, db: Database, *, console: bool) -> None:
        self._db = db
        self._console = console

    async def send(self, email: OutgoingEmail) -> str:
        mail = DevMail(
            id=str(uuid.uuid4()),
            email_id=email.id,
            sender=email.sender,
            recipient=email.recipient,
            subject=email.subject,
            text_body=email.text,
            html_body=email.html,
            headers=json.dumps(dict(email.headers)),
            create_time=datetime.now(UTC),
        )
        try:
            async with self._db.transaction() as session:
                session.add(mail)
        except IntegrityError:
            log.info("dev_mail_already_stored", email_id=email.id)
            return email.id
        if self._console:
            log.info(
                "dev_mail",
                to=email.recipient,
                subject=email.subject,
                text=email.text,
            )
        return mail.id

    async def close(self) -> None:
        return None


# --- SMTP --------------------------------------------------------------------------------


class SmtpProvider:
    """aiosmtplib over a small pool of kept-open connections (STARTTLS optional)."""

    name = "smtp"

    def __init__(self, settings: MailSettings, *, pool_size: int = 8) -> None:
        self._settings = settings
        self._pool: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for _ in range(pool_size):
            self._pool.put_nowait(self._client())

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            timeout=s.smtp_timeout_seconds,
        )

    async def send(self, email: OutgoingEmail) -> str:
        client = await self._pool.get()
        try:
            return await self._send(client, email)
        finally:
            self._pool.put_nowait(client)

    async def _send(self, client: aiosmtplib.SMTP, email: OutgoingEmail) -> str:
        message = to_mime(email)
        try:
            if not client.is_connected:
                await client.connect()
            await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            raise _smtp_error(min(codes), "recipient refused") from None
        except aiosmtplib.SMTPResponseException as exc:
            await _quietly_close(client)
            raise _smtp_error(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _quietly_close(client)
            raise TransientSendError(f"smtp: {type(exc).__name__}") from None
        return email.message_id

    async def close(self) -> None:
        while not self._pool.empty():
            await _quietly_close(self._pool.get_nowait())


def _smtp_error(code: int, text: str) -> SendError:
    # 4xx: try again later; 5xx: the server will never take it.
    cls = PermanentSendError if 500 <= code < 600 else TransientSendError
    return cls(f"smtp {code}: {text[:200]}")


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


# --- SendGrid ----------------------------------------------------------------------------


class SendGridProvider:
    """SendGrid v3 `POST /v3/mail/send` through the official library (in a thread:
    the library is synchronous)."""

    name = "sendgrid"

    def __init__(self, settings: MailSettings) -> None:
        self._client = sendgrid.SendGridAPIClient(
            api_key=settings.sendgrid_api_key, host=settings.sendgrid_base_url.rstrip("/")
        )

    @staticmethod
    def request_body(email: OutgoingEmail) -> dict[str, Any]:
        sender = parse_address(email.sender, field="sender")
        to = parse_address(email.recipient)
        recipient: dict[str, str] = {"email": to.addr_spec}
        if to.display_name:
            recipient["name"] = to.display_name
        source: dict[str, str] = {"email": sender.addr_spec}
        if sender.display_name:
            source["name"] = sender.display_name
        return {
            "personalizations": [{"to": [recipient]}],
            "from": source,
            "subject": email.subject,
            "content": [
                {"type": "text/plain", "value": email.text},
                {"type": "text/html", "value": email.html},
            ],
            "headers": dict(email.headers),
            # Comes back in every event webhook entry for this message.
            "custom_args": {"email_id": email.id},
        }

    async def send(self, email: OutgoingEmail) -> str:
        body = self.request_body(email)
        try:
            response = await asyncio.to_thread(
                self._client.client.mail.send.post, request_body=body
            )
        except HTTPError as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            detail = f"sendgrid {status}: {str(getattr(exc, 'body', b''))[:200]}"
            if status == 429 or status >= 500:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except OSError as exc:
            raise TransientSendError(f"sendgrid: {type(exc).__name__}") from None
        message_id = response.headers.get("X-Message-Id") if response.headers else None
        return str(message_id or email.message_id)

    async def close(self) -> None:
        return None


# --- Amazon SES v2 -----------------------------------------------------------------------

# SES error codes worth retrying; everything else in a 4xx is permanent.
_SES_TRANSIENT = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "ThrottlingException"}
)


class SesProvider:
    """SES v2 `SendEmail` with the raw MIME message (so our headers go out as is),
    through boto3 in a thread. Retries are ours (the queue's), not botocore's."""

    name = "ses"

    def __init__(self, settings: MailSettings) -> None:
        kwargs: dict[str, Any] = {
            "region_name": settings.ses_region,
            "config": BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=15,
            ),
        }
        if settings.ses_endpoint_url:
            kwargs["endpoint_url"] = settings.ses_endpoint_url
        if settings.ses_access_key_id:
            kwargs["aws_access_key_id"] = settings.ses_access_key_id
            kwargs["aws_secret_access_key"] = settings.ses_secret_access_key
        self._client: SESV2Client = boto3.session.Session().client("sesv2", **kwargs)

    async def send(self, email: OutgoingEmail) -> str:
        raw = to_mime(email).as_bytes()
        to = parse_address(email.recipient)
        try:
            response = await asyncio.to_thread(
                self._client.send_email,
                FromEmailAddress=parse_address(email.sender, field="sender").addr_spec,
                Destination={"ToAddresses": [to.addr_spec]},
                Content={"Raw": {"Data": raw}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            detail = f"ses {status} {code}"
            if code in _SES_TRANSIENT or status >= 500:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except (BotoCoreError, OSError) as exc:
            raise TransientSendError(f"ses: {type(exc).__name__}") from None
        return response["MessageId"]

    async def close(self) -> None:
        self._client.close()


def create_provider(settings: MailSettings, db: Database) -> Provider:
    if settings.provider == "smtp":
        return SmtpProvider(settings)
    if settings.provider == "sendgrid":
        return SendGridProvider(settings)
    if settings.provider == "ses":
        return SesProvider(settings)
    return DevMailbox(db, console=settings.dev_mail_console)
