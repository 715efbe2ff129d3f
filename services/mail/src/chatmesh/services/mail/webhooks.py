"""Provider feedback: SendGrid's signed Event Webhook and SES notifications
delivered by SNS. Bounces and spam reports make an address undeliverable."""

from __future__ import annotations

import base64
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from chatmesh.common.errors import InvalidArgument, Unauthenticated

if TYPE_CHECKING:
    from chatmesh.services.mail.service import MailService

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Older deliveries are refused, so a captured request cannot be replayed later.
MAX_SKEW_SECONDS = 600

_UNDELIVERABLE = {"bounce": "bounce", "dropped": "dropped", "spamreport": "spam_report"}


def load_sendgrid_key(value: str) -> ec.EllipticCurvePublicKey:
    """The 'Verification Key' from SendGrid's settings: base64 DER of an EC key."""
    key = load_der_public_key(base64.b64decode(value))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the SendGrid webhook key is not an ECDSA public key")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey, *, body: bytes, signature: str, timestamp: str
) -> None:
    """ECDSA-SHA256 over timestamp + body, as SendGrid documents."""
    forged = Unauthenticated("invalid webhook signature", code="invalid_signature")
    try:
        sent_at = int(timestamp)
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        raise forged from None
    if abs(time.time() - sent_at) > MAX_SKEW_SECONDS:
        raise forged
    try:
        key.verify(raw_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise forged from None


async def apply_sendgrid_events(service: MailService, events: Any) -> int:
    if not isinstance(events, list):
        raise InvalidArgument("expected a JSON array of events", code="invalid_payload")
    handled = 0
    for item in events:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("event", ""))
        email_id = str(item.get("email_id", ""))
        message_id = str(item.get("sg_message_id", "")).split(".")[0]
        if kind in _UNDELIVERABLE:
            await service.mark_undeliverable(
                str(item.get("email", "")),
                _UNDELIVERABLE[kind],
                email_id=email_id,
                provider_message_id=message_id,
            )
            handled += 1
        elif kind == "delivered":
            await service.mark_delivered(email_id=email_id, provider_message_id=message_id)
            handled += 1
    return handled


def check_ses_token(expected: str, given: str) -> None:
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthenticated("invalid webhook token", code="invalid_signature")


async def apply_ses_notification(service: MailService, envelope: Any) -> int:
    """An SNS message (`Type: Notification`) whose `Message` is SES's JSON, or
    SES's JSON itself (raw message delivery)."""
    if not isinstance(envelope, dict):
        raise InvalidArgument("expected a JSON object", code="invalid_payload")
    if envelope.get("Type") == "SubscriptionConfirmation":
        return 0  # confirmed by an operator with the SubscribeURL (logged by the caller)
    notification: Any = envelope
    if envelope.get("Type") == "Notification":
        try:
            notification = json.loads(str(envelope.get("Message", "")))
        except ValueError:
            raise InvalidArgument("Message is not JSON", code="invalid_payload") from None
    if not isinstance(notification, dict):
        raise InvalidArgument("expected a JSON object", code="invalid_payload")
    kind = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    message_id = str(mail.get("messageId", "")) if isinstance(mail, dict) else ""
    handled = 0
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        # Transient bounces (mailbox full, …) may succeed later: keep the address.
        if bounce.get("bounceType") == "Permanent":
            for recipient in bounce.get("bouncedRecipients") or []:
                await service.mark_undeliverable(
                    str(recipient.get("emailAddress", "")),
                    "bounce",
                    provider_message_id=message_id,
                )
                handled += 1
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        for recipient in complaint.get("complainedRecipients") or []:
            await service.mark_undeliverable(
                str(recipient.get("emailAddress", "")),
                "spam_report",
                provider_message_id=message_id,
            )
            handled += 1
    elif kind == "Delivery":
        await service.mark_delivered(provider_message_id=message_id)
        handled += 1
    return handled
