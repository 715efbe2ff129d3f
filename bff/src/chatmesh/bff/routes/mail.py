"""The mail service's browser-facing pieces, forwarded to its REST API:
`GET /api/v1/dev/mail` (the embedded mode's dev mailbox) and the one-click
unsubscribe links (`GET` / `POST /unsubscribe?token=…`) that emails carry.

The mail service speaks HTTP for these (its REST API, not gRPC), so this module
is a small reverse proxy: one short-lived httpx client per call (these routes are
rare), the backend deadline, and the one error shape when mail is unreachable.
"""

from __future__ import annotations

import ssl
from datetime import datetime
from functools import cached_property

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from chatmesh.bff.errors import ApiError
from chatmesh.bff.middleware.observe import request_id_of
from chatmesh.bff.openapi import ApiRoute, Operation
from chatmesh.bff.responses import model_response
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.mail")

TAG = "mail"
# What the mail service may answer with, passed through as it is.
_FORWARDED_TYPES = ("application/json", "text/html")


class DevMail(BaseModel):
    """One message of the dev mailbox (text and HTML parts as stored)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    email_id: str
    from_: str = Field(alias="from")
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = Field(default_factory=dict)
    create_time: datetime | None = None


class DevMailbox(BaseModel):
    """The newest dev-mailbox messages, newest first."""

    messages: list[DevMail]


class Unsubscribed(BaseModel):
    """The category the signed link turned off."""

    unsubscribed: str


def _unavailable() -> ApiError:
    return ApiError(503, "service_unavailable", "the mail service is unavailable, try again")


class MailRoutes:
    def __init__(self, *, mail_http_url: str, dev_mailbox: bool, timeout: float) -> None:
        self.mail_http_url = mail_http_url.rstrip("/")
        self.dev_mailbox_enabled = dev_mailbox and bool(self.mail_http_url)
        self.timeout = timeout

    @cached_property
    def _tls(self) -> ssl.SSLContext:
        # Built once: a fresh default context per client would load the CA bundle each time.
        return ssl.create_default_context()

    async def _call(
        self, request: Request, method: str, path: str, *, body: bytes = b""
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if content_type := request.headers.get("content-type"):
            headers["Content-Type"] = content_type
        if request_id := request_id_of(request.scope):
            headers["X-Request-ID"] = request_id
        try:
            async with httpx.AsyncClient(
                base_url=self.mail_http_url, timeout=self.timeout, verify=self._tls
            ) as client:
                return await client.request(
                    method, path, params=request.url.query, content=body or None
                )
        except httpx.HTTPError as exc:
            log.warning("mail call failed", path=path, error=type(exc).__name__)
            raise _unavailable() from None

    async def dev_mail(self, request: Request) -> Response:
        if not self.dev_mailbox_enabled:
            raise ApiError(404, "not_found", "no dev mailbox here (embedded mode only)")
        reply = await self._call(request, "GET", "/dev/mail")
        if reply.status_code == 404:
            raise ApiError(404, "not_found", "the mail service has no dev mailbox")
        if reply.status_code != 200:
            log.warning("dev mailbox failed", status=reply.status_code)
            raise _unavailable()
        try:
            mailbox = DevMailbox.model_validate_json(reply.content)
        except ValidationError:
            log.warning("dev mailbox answered an unexpected body")
            raise _unavailable() from None
        return model_response(mailbox)

    async def _forward_unsubscribe(self, request: Request) -> Response:
        if not self.mail_http_url:
            raise ApiError(404, "not_found", "unsubscribe links are not handled here")
        body = await request.body() if request.method == "POST" else b""
        reply = await self._call(request, request.method, "/v1/unsubscribe", body=body)
        media_type = reply.headers.get("content-type", "").split(";")[0].strip()
        if reply.status_code >= 500 or media_type not in _FORWARDED_TYPES:
            log.warning("unsubscribe failed", status=reply.status_code, media_type=media_type)
            raise _unavailable()
        # Mail's errors already have the one error shape; its page and JSON pass through.
        return Response(reply.content, status_code=reply.status_code, media_type=media_type)

    async def unsubscribe_page(self, request: Request) -> Response:
        return await self._forward_unsubscribe(request)

    async def unsubscribe(self, request: Request) -> Response:
        return await self._forward_unsubscribe(request)

    def routes(self) -> list[ApiRoute]:
        link_note = "The signed `token` query parameter comes from the email's link."
        return [
            ApiRoute(
                "/api/v1/dev/mail",
                self.dev_mail,
                method="GET",
                operation=Operation(
                    summary="The dev mailbox: the newest emails the mail service stored",
                    tag=TAG,
                    response=DevMailbox,
                    errors=(404, 503),
                    description=(
                        "Embedded mode only (`chatmesh dev`, `CHATMESH_DEV_MAILBOX`); "
                        "404 `not_found` elsewhere."
                    ),
                ),
            ),
            ApiRoute(
                "/unsubscribe",
                self.unsubscribe_page,
                method="GET",
                operation=Operation(
                    summary="Unsubscribe page (a button that POSTs; link scanners only GET)",
                    tag=TAG,
                    media_type="text/html",
                    errors=(404, 503),
                    description=link_note,
                ),
            ),
            ApiRoute(
                "/unsubscribe",
                self.unsubscribe,
                method="POST",
                operation=Operation(
                    summary="One-click unsubscribe (RFC 8058)",
                    tag=TAG,
                    response=Unsubscribed,
                    errors=(404, 422, 503),
                    description=link_note
                    + " Body: `List-Unsubscribe=One-Click` (form-encoded) or empty.",
                ),
            ),
        ]
