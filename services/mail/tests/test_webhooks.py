"""Provider feedback: SendGrid's signed Event Webhook and SES/SNS bounces and
complaints make addresses undeliverable; forged deliveries change nothing."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatmesh.mail.v1 import mail_pb2

VARS = {"display_name": "Hal"}


def _keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(public).decode()


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def test_sendgrid_webhook_verifies_signature(db_url: str, kit: Any) -> None:
    key, public = _keypair()
    other, _ = _keypair()
    settings = kit.settings_for(db_url, sendgrid_webhook_public_key=public)
    async with kit.start(settings) as mail:
        first = await mail.send("password_changed", "hal@example.com", VARS)
        await mail.wait_state(first.email.id, mail_pb2.EMAIL_STATE_SENT)
        delivered = json.dumps(
            [{"email": "hal@example.com", "event": "delivered", "email_id": first.email.id}]
        ).encode()
        bounce = json.dumps(
            [{"email": "Hal@Example.com", "event": "bounce", "email_id": first.email.id}]
        ).encode()
        now = str(int(time.time()))
        url = "/v1/webhooks/sendgrid"

        forged = [
            _signed(other, bounce, now),  # another key
            {**_signed(key, delivered, now)},  # signature of another body
            _signed(key, bounce, str(int(time.time()) - 3600)),  # replayed an hour later
            {"X-Twilio-Email-Event-Webhook-Timestamp": now},  # unsigned
            {**_signed(key, bounce, now), "X-Twilio-Email-Event-Webhook-Signature": "%%%"},
        ]
        for headers in forged:
            response = await mail.http.post(url, content=bounce, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "invalid_signature"
        # Nothing changed: the address still gets mail.
        probe = await mail.send("password_changed", "hal@example.com", VARS)
        assert probe.email.state == mail_pb2.EMAIL_STATE_QUEUED

        response = await mail.http.post(
            url, content=delivered, headers=_signed(key, delivered, now)
        )
        assert response.status_code == 200
        assert response.json() == {"handled": 1}
        await mail.wait_state(first.email.id, mail_pb2.EMAIL_STATE_DELIVERED)
        response = await mail.http.post(url, content=bounce, headers=_signed(key, bounce, now))
        assert response.status_code == 200
        await mail.wait_state(first.email.id, mail_pb2.EMAIL_STATE_BOUNCED)
        after = await mail.send("password_changed", "hal@example.com", VARS)
        assert after.email.state == mail_pb2.EMAIL_STATE_SUPPRESSED


async def test_ses_sns_bounces_and_complaints(db_url: str, kit: Any) -> None:
    settings = kit.settings_for(db_url, ses_webhook_token="sns-secret-token")
    async with kit.start(settings) as mail:

        def sns(notification: dict[str, Any]) -> dict[str, Any]:
            return {"Type": "Notification", "MessageId": "m", "Message": json.dumps(notification)}

        transient = sns(
            {
                "notificationType": "Bounce",
                "bounce": {
                    "bounceType": "Transient",
                    "bouncedRecipients": [{"emailAddress": "ivy@example.com"}],
                },
                "mail": {"messageId": "x"},
            }
        )
        permanent = sns(
            {
                "notificationType": "Bounce",
                "bounce": {
                    "bounceType": "Permanent",
                    "bouncedRecipients": [{"emailAddress": "ivy@example.com"}],
                },
                "mail": {"messageId": "x"},
            }
        )
        complaint = sns(
            {
                "notificationType": "Complaint",
                "complaint": {"complainedRecipients": [{"emailAddress": "jo@example.com"}]},
                "mail": {"messageId": "y"},
            }
        )
        for token in ("", "wrong"):
            response = await mail.http.post(f"/v1/webhooks/ses?token={token}", json=permanent)
            assert response.status_code == 401
        good = "/v1/webhooks/ses?token=sns-secret-token"
        assert (await mail.http.post(good, json=transient)).json() == {"handled": 0}
        still = await mail.send("password_changed", "ivy@example.com", VARS)
        assert still.email.state == mail_pb2.EMAIL_STATE_QUEUED
        assert (await mail.http.post(good, json=permanent)).json() == {"handled": 1}
        assert (await mail.http.post(good, json=complaint)).json() == {"handled": 1}
        for address in ("ivy@example.com", "Jo <JO@example.com>"):
            blocked = await mail.send("password_changed", address, VARS)
            assert blocked.email.state == mail_pb2.EMAIL_STATE_SUPPRESSED
        response = await mail.http.post(good, content=b"[1,2")
        assert response.status_code == 422
