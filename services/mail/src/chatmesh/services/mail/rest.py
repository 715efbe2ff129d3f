"""The REST API (Starlette) for callers outside the mesh: POST /v1/emails with an
API key, provider webhooks, one-click unsubscribe, and GET /dev/mail (the dev
mailbox, when the dev provider is configured)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chatmesh.common.errors import InvalidArgument, ServiceError, Unauthenticated
from chatmesh.common.logging import get_logger
from chatmesh.services.mail.models import DevMail, EmailRecord, as_utc
from chatmesh.services.mail.service import MailService
from chatmesh.services.mail.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    apply_sendgrid_events,
    apply_ses_notification,
    check_ses_token,
    verify_sendgrid,
)

log = get_logger(__name__)

MAX_BODY_BYTES = 256 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


def _error(error: ServiceError) -> JSONResponse:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    headers = {}
    if "retry_after" in error.details:
        headers["Retry-After"] = str(error.details["retry_after"])
    return JSONResponse(body, status_code=error.http_status, headers=headers)


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceError as error:
            return _error(error)

    return wrapper


async def _body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY_BYTES (without reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


class BodyTooLarge(ServiceError):  # noqa: N818 (named like common's errors)
    status = grpc.StatusCode.OUT_OF_RANGE
    default_code = "body_too_large"

    @property
    def http_status(self) -> int:
        return 413


def _too_large() -> ServiceError:
    return BodyTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")


async def _json(request: Request) -> Any:
    try:
        return json.loads(await _body(request))
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the body is not valid JSON", code="invalid_json") from None


def _time(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def email_json(email: EmailRecord) -> dict[str, Any]:
    return {
        "id": email.id,
        "template_id": email.template_id,
        "recipient": email.recipient,
        "category": email.category,
        "state": email.state,
        "attempts": email.attempts,
        "last_error": email.last_error,
        "idempotency_key": email.idempotency_key,
        "create_time": _time(email.create_time),
        "update_time": _time(email.update_time),
        "send_time": _time(email.send_time),
    }


def dev_mail_json(mail: DevMail) -> dict[str, Any]:
    return {
        "id": mail.id,
        "email_id": mail.email_id,
        "from": mail.sender,
        "to": mail.recipient,
        "subject": mail.subject,
        "text": mail.text_body,
        "html": mail.html_body,
        "headers": json.loads(mail.headers),
        "create_time": _time(mail.create_time),
    }


def _not_found(message: str) -> JSONResponse:
    body = {"error": {"code": "not_found", "message": message, "details": {}}}
    return JSONResponse(body, status_code=404)


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidArgument(
            f"{name} must be a {'non-empty ' if required else ''}string",
            code="invalid_field",
            details={"field": name},
        )
    return value


def _api_key_checker(api_keys: list[str]) -> Callable[[Request], None]:
    keys = [key.encode() for key in api_keys]

    def check_api_key(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else ""
        given = given or request.headers.get("x-api-key", "")
        # Compare against every key so timing does not reveal which one matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(key, given.encode())
        if not given or not matched:
            raise Unauthenticated("a valid API key is required", code="invalid_api_key")

    return check_api_key


def create_rest_app(
    service: MailService,
    *,
    api_keys: list[str],
    sendgrid_key: ec.EllipticCurvePublicKey | None,
    ses_token: str,
    dev_mailbox: bool,
) -> Starlette:
    check_api_key = _api_key_checker(api_keys)

    async def send_email(request: Request) -> Response:
        check_api_key(request)
        body = await _json(request)
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object", code="invalid_json")
        variables = body.get("variables", {})
        if not isinstance(variables, dict):
            raise InvalidArgument(
                "variables must be an object", code="invalid_field", details={"field": "variables"}
            )
        email, created = await service.send_email(
            template_id=_string(body, "template_id", required=True),
            recipient=_string(body, "to", required=True),
            variables=variables,
            idempotency_key=_string(body, "idempotency_key"),
            user_id=_string(body, "user_id"),
        )
        return JSONResponse({"email": email_json(email)}, status_code=202 if created else 200)

    async def alert(request: Request) -> Response:
        check_api_key(request)
        body = await _json(request)
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object", code="invalid_json")
        results = await service.alert_operators(
            title=_string(body, "title", required=True),
            message=_string(body, "message", required=True),
            severity=_string(body, "severity") or "warning",
            idempotency_key=_string(body, "idempotency_key"),
        )
        return JSONResponse(
            {"emails": [email_json(email) for email, _ in results]}, status_code=202
        )

    async def get_email(request: Request) -> Response:
        check_api_key(request)
        email = await service.get_email(request.path_params["email_id"])
        return JSONResponse({"email": email_json(email)})

    async def sendgrid_webhook(request: Request) -> Response:
        if sendgrid_key is None:
            return _not_found("the SendGrid webhook is not configured")
        body = await _body(request)
        verify_sendgrid(
            sendgrid_key,
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER, ""),
            timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
        )
        try:
            events = json.loads(body)
        except ValueError:
            raise InvalidArgument("the body is not valid JSON", code="invalid_json") from None
        handled = await apply_sendgrid_events(service, events)
        return JSONResponse({"handled": handled})

    async def ses_webhook(request: Request) -> Response:
        check_ses_token(ses_token, request.query_params.get("token", ""))
        envelope = await _json(request)
        if isinstance(envelope, dict) and envelope.get("Type") == "SubscriptionConfirmation":
            log.warning("ses_sns_subscription", subscribe_url=str(envelope.get("SubscribeURL")))
        handled = await apply_ses_notification(service, envelope)
        return JSONResponse({"handled": handled})

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if request.method == "GET":
            # A page with a button: link scanners that GET every URL must not unsubscribe.
            page = (
                "<!doctype html><title>Unsubscribe</title>"
                '<form method="post"><input type="hidden" name="List-Unsubscribe"'
                ' value="One-Click"><button>Unsubscribe</button></form>'
            )
            return HTMLResponse(page)
        await _body(request)
        _user, category = await service.unsubscribe(token)
        return JSONResponse({"unsubscribed": category})

    async def dev_mail(request: Request) -> Response:
        if not dev_mailbox:
            return _not_found("no dev mailbox")
        messages = await service.dev_mailbox()
        return JSONResponse({"messages": [dev_mail_json(m) for m in messages]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/emails", _guarded(send_email), methods=["POST"]),
            Route("/v1/emails/{email_id}", _guarded(get_email), methods=["GET"]),
            Route("/v1/alerts", _guarded(alert), methods=["POST"]),
            Route("/v1/webhooks/sendgrid", _guarded(sendgrid_webhook), methods=["POST"]),
            Route("/v1/webhooks/ses", _guarded(ses_webhook), methods=["POST"]),
            Route("/v1/unsubscribe", _guarded(unsubscribe), methods=["GET", "POST"]),
            Route("/dev/mail", _guarded(dev_mail), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
