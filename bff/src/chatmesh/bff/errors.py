"""The one error shape of the public API.

Every failure, whatever raised it, leaves the BFF as
``{"error": {"code": "<snake_case>", "message": "…", "details": {…}}}`` with the
matching HTTP status. Handlers raise :class:`ApiError` (or let a backend's
:class:`~chatmesh.common.errors.ServiceError` / gRPC error through); the exception
handlers registered by :func:`exception_handlers` render them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatmesh.common.errors import ServiceError, from_rpc_error
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.bff.errors")

INTERNAL_MESSAGE = "something went wrong on our side; try again later"

_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request is malformed"),
    401: ("unauthenticated", "authentication is required"),
    403: ("forbidden", "this request is not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed on this resource"),
    413: ("payload_too_large", "the request body is too large"),
    429: ("rate_limited", "too many requests; slow down"),
    500: ("internal", INTERNAL_MESSAGE),
    503: ("service_unavailable", "a backend service is unavailable, try again"),
}


class ApiError(Exception):
    """A failure to report to the client as it is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def api_error_from_service(error: ServiceError) -> ApiError:
    """The client-facing form of a backend's domain error."""
    status = error.http_status
    headers: dict[str, str] = {}
    if status == 429:
        headers = retry_after_header(float(error.details.get("retry_after", 1)))
    if status == 503:
        return ApiError(503, "service_unavailable", _HTTP_CODES[503][1], headers=headers)
    if status >= 500:
        # A backend's internal failure means nothing to the client; never echo it.
        return ApiError(status, "internal", INTERNAL_MESSAGE)
    return ApiError(status, error.code, error.message, details=error.details, headers=headers)


def render(error: ApiError) -> JSONResponse:
    return error_response(
        error.status, error.code, error.message, details=error.details, headers=error.headers
    )


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render(exc)


async def _service_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return render(api_error_from_service(exc))


async def _rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    error = from_rpc_error(exc)
    if error.http_status >= 500:
        log.warning(
            "backend call failed",
            path=request.url.path,
            grpc_code=exc.code().name,
            code=error.code,
        )
    return render(api_error_from_service(error))


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message = _HTTP_CODES.get(exc.status_code, ("http_error", "the request failed"))
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Last resort: log the exception, tell the client nothing about it."""
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    code, message = _HTTP_CODES[500]
    return error_response(500, code, message)


def exception_handlers() -> dict[Any, Any]:
    """Starlette `exception_handlers` rendering every failure in the one shape."""
    return {
        ApiError: _api_error,
        ServiceError: _service_error,
        grpc.aio.AioRpcError: _rpc_error,
        HTTPException: _http_exception,
        Exception: internal_error,
    }
