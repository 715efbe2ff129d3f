"""Email providers behind one interface. Each classifies failures as transient
(retry with backoff) or permanent (dead letter) the same way."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Protocol

import aiosmtplib
from sqlalchemy.exc import IntegrityError

from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.services.mail.message import OutgoingEmail, to_mime_bytes
from chatmesh.services.mail.models import DevMail
from chatmesh.services.mail.settings import MailSettings

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


_LINK = re.compile(r"https?://\S+")


def console_lines(email: OutgoingEmail) -> list[str]:
    """What the dev mailbox prints: one `[dev mail] to <to>: <subject>: <link>` line
    per link of the text part (the subject alone when it has none), so a developer
    can open a verification or reset link straight from the terminal."""
    head = f"[dev mail] to {email.recipient}: {email.subject}"
    links = _LINK.findall(email.text)
    return [f"{head}: {link}" for link in links] if links else [head]


class DevMailbox:
    """Stores each message in the service's database (GET /dev/mail shows them)
    and prints its subject and links to the console. The mailbox row is unique
    per email, so a job handled twice is stored (and printed) once."""

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
            # Plain stdout, not the log: this is for a person at the terminal.
            print("\n".join(console_lines(email)), flush=True)
        return mail.id

    async def close(self) -> None:
        return None


# --- SMTP --------------------------------------------------------------------------------


class SmtpProvider:
    """aiosmtplib over a small pool of kept-open connections (STARTTLS optional)."""

    name = "smtp"

    def __init__(self, settings: MailSettings) -> None:
        self._settings = settings
        self._pool: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for _ in range(settings.smtp_pool_size):
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
            cert_bundle=s.smtp_ca_file or None,
        )

    async def send(self, email: OutgoingEmail) -> str:
        client = await self._pool.get()
        try:
            return await self._send(client, email)
        finally:
            self._pool.put_nowait(client)

    async def _send(self, client: aiosmtplib.SMTP, email: OutgoingEmail) -> str:
        sender, recipient, raw = to_mime_bytes(email)
        try:
            if not client.is_connected:
                await client.connect()
            await client.sendmail(sender, [recipient], raw)
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


def create_provider(settings: MailSettings, db: Database) -> Provider:
    # The HTTP providers' libraries (boto3, sendgrid) are imported only when
    # configured: they cost ~16 MB of RSS per worker otherwise.
    if settings.provider == "smtp":
        return SmtpProvider(settings)
    if settings.provider == "sendgrid":
        from chatmesh.services.mail.sendgrid_provider import SendGridProvider  # noqa: PLC0415

        return SendGridProvider(settings)
    if settings.provider == "ses":
        from chatmesh.services.mail.ses_provider import SesProvider  # noqa: PLC0415

        return SesProvider(settings)
    return DevMailbox(db, console=settings.dev_mail_console)
