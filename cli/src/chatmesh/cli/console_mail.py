"""Embedded stand-in for the mail service: prints the links a user needs to
finish sign-up and password reset, so the flows work with nothing installed."""

from __future__ import annotations

from urllib.parse import urlencode

from chatmesh.common.bus import unpack
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2


class ConsoleMailer:
    def __init__(self, public_url: str) -> None:
        self._public_url = public_url.rstrip("/")

    def link(self, path: str, token: str) -> str:
        return f"{self._public_url}{path}?{urlencode({'token': token})}"

    async def handle(self, event: envelope_pb2.Event) -> None:
        if verification := unpack(event, auth_events_pb2.EmailVerificationRequested):
            self._print(
                verification.email,
                "verify your email",
                self.link("/verify-email", verification.token),
            )
        elif reset := unpack(event, auth_events_pb2.PasswordResetRequested):
            self._print(
                reset.email, "reset your password", self.link("/reset-password", reset.token)
            )
        elif login := unpack(event, auth_events_pb2.LoginFromNewDevice):
            self._print(login.email, "new sign-in", f"from {login.ip_address} ({login.user_agent})")
        elif reused := unpack(event, auth_events_pb2.RefreshTokenReused):
            self._print(reused.email, "security alert", "a stolen session was revoked")

    @staticmethod
    def _print(email: str, subject: str, body: str) -> None:
        print(f"[dev mail] to {email}: {subject}: {body}", flush=True)
