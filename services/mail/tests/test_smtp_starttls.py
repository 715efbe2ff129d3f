"""SMTP with STARTTLS and AUTH against aiosmtpd that requires both: the client
verifies the server certificate (a CA file from configuration)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatmesh.common.testing import free_port
from chatmesh.mail.v1 import mail_pb2


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsSink:
    def __init__(self) -> None:
        self.messages: list[tuple[bool, bytes]] = []

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((session.ssl is not None, content))
        return "250 OK"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"mailer"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok)


async def test_starttls_and_auth(tmp_path: Path, kit: Any) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = TlsSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticate,
    )
    controller.start()
    try:
        base = {
            "provider": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": True,
            "smtp_ca_file": str(cert),
            "smtp_username": "mailer",
        }
        db = f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}"
        settings = kit.settings_for(db, **base, smtp_password="s3cret")
        async with kit.start(settings) as mail:
            sent = await mail.send(
                "system_alert",
                "ops@example.com",
                {"title": "tls", "message": "over TLS", "severity": "info"},
            )
            await mail.wait_state(sent.email.id, mail_pb2.EMAIL_STATE_SENT)
        assert len(sink.messages) == 1
        encrypted, content = sink.messages[0]
        assert encrypted
        assert b"Subject: [INFO] tls" in content

    finally:
        controller.stop()
