"""What a provider hands on: one rendered email, and its MIME form (for SMTP and
SES raw sends): multipart/alternative with the text part first.

The MIME form is built with the compat32 `email.mime` classes and flattened
once: several times cheaper than `EmailMessage` with a modern policy, which
matters at hundreds of messages per second. Header values were checked for
CR/LF when the email was queued (`addresses.check_header_value`); non-ASCII
values are RFC 2047 encoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from io import BytesIO

from chatmesh.services.mail.addresses import check_header_value, parse_address


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


def _header(value: str) -> str:
    check_header_value(value, field="header")
    return value if value.isascii() else Header(value, "utf-8").encode()


def _mailbox(value: str) -> tuple[str, str]:
    """(bare address for the envelope, header form with an encoded name)."""
    address = parse_address(value)
    name = address.display_name
    header = formataddr((name, address.addr_spec), charset="utf-8") if name else address.addr_spec
    return address.addr_spec, header


def to_mime_bytes(email: OutgoingEmail) -> tuple[str, str, bytes]:
    """(envelope sender, envelope recipient, the message as CRLF bytes)."""
    sender, sender_header = _mailbox(email.sender)
    recipient, recipient_header = _mailbox(email.recipient)
    message = MIMEMultipart("alternative")
    message["From"] = sender_header
    message["To"] = recipient_header
    message["Subject"] = _header(email.subject)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{email.id}@{sender.rpartition('@')[2]}>"
    for name, value in email.headers.items():
        message[_header(name)] = _header(value)
    message.attach(MIMEText(email.text, "plain", "utf-8"))
    message.attach(MIMEText(email.html, "html", "utf-8"))
    out = BytesIO()
    # No folding (values were length-checked when queued), CRLF line endings.
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(message, linesep="\r\n")
    return sender, recipient, out.getvalue()
