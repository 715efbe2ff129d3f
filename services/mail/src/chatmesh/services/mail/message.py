"""What a provider hands on: one rendered email, and its MIME form (for SMTP and
SES raw sends): multipart/alternative with the text part first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

from chatmesh.services.mail.addresses import parse_address


@dataclass(frozen=True)
class OutgoingEmail:
    id: str
    sender: str
    recipient: str
    subject: str
    text: str
    html: str
    # Extra headers (List-Unsubscribe, …); values are already checked.
    headers: Mapping[str, str]

    @property
    def message_id(self) -> str:
        domain = parse_address(self.sender, field="sender").domain
        return f"<{self.id}@{domain}>"


def to_mime(email: OutgoingEmail) -> EmailMessage:
    # policy.SMTP: CRLF line endings; header values with CR/LF raise instead of folding in.
    message = EmailMessage(policy=SMTP)
    message["From"] = parse_address(email.sender, field="sender")
    message["To"] = parse_address(email.recipient)
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message
