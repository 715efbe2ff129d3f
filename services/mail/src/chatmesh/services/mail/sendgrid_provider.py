"""SendGrid v3 `POST /v3/mail/send` through the official library."""

from __future__ import annotations

import asyncio
from typing import Any

import sendgrid  # type: ignore[import-untyped]
from python_http_client.exceptions import HTTPError  # type: ignore[import-untyped]

from chatmesh.services.mail.addresses import parse_address
from chatmesh.services.mail.message import OutgoingEmail
from chatmesh.services.mail.providers import PermanentSendError, TransientSendError
from chatmesh.services.mail.settings import MailSettings


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
