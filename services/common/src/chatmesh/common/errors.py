"""Domain errors and their one mapping to gRPC and HTTP.

A service raises a :class:`ServiceError`; the error interceptor turns it into a
gRPC status whose `google.rpc.ErrorInfo.reason` is the stable snake_case
``code``. The BFF turns that status back into a :class:`ServiceError` with
:func:`from_rpc_error` and renders ``{"error": {"code", "message", "details"}}``
with :func:`http_status_for`. Any other exception becomes ``internal`` with a
generic message: exception text never reaches a client.
"""

# The classes are named after the gRPC status they carry, not "...Error".
# ruff: noqa: N818

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status.rpc_status import to_status

ERROR_DOMAIN = "chatmesh"

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}


class ServiceError(Exception):
    """An error a client can act on: a gRPC status plus a stable code."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = details or {}

    @property
    def http_status(self) -> int:
        return http_status_for(self.status)


class InvalidArgument(ServiceError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    default_code = "invalid_argument"


class NotFound(ServiceError):
    status = grpc.StatusCode.NOT_FOUND
    default_code = "not_found"


class AlreadyExists(ServiceError):
    status = grpc.StatusCode.ALREADY_EXISTS
    default_code = "already_exists"


class FailedPrecondition(ServiceError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "failed_precondition"


class Unauthenticated(ServiceError):
    status = grpc.StatusCode.UNAUTHENTICATED
    default_code = "unauthenticated"


class PermissionDenied(ServiceError):
    status = grpc.StatusCode.PERMISSION_DENIED
    default_code = "permission_denied"


class ResourceExhausted(ServiceError):
    """Rate limited; ``retry_after`` seconds go into details and Retry-After."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": max(1, round(retry_after))})


class Unavailable(ServiceError):
    status = grpc.StatusCode.UNAVAILABLE
    default_code = "unavailable"


class Internal(ServiceError):
    status = grpc.StatusCode.INTERNAL
    default_code = "internal"


def http_status_for(status: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(status, 500)


_BY_STATUS: dict[grpc.StatusCode, type[ServiceError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        Internal,
    )
}


def to_rpc_status(error: ServiceError) -> grpc.Status:
    """The status (with an ErrorInfo detail) that carries ``error`` over gRPC."""
    info = error_details_pb2.ErrorInfo(
        reason=error.code,
        domain=ERROR_DOMAIN,
        metadata={"details": json.dumps(error.details, separators=(",", ":"))},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=error.status.value[0], message=error.message, details=[detail])
    return to_status(status)


def _status_details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    """The packed details of the rich status in the trailers, if any."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            return list(status.details)
    return []


def from_rpc_error(error: grpc.aio.AioRpcError) -> ServiceError:
    """Rebuild the ServiceError a service raised from the status a client got."""
    code = error.code()
    message = error.details() or code.name.lower()
    reason = code.name.lower()
    details: dict[str, Any] = {}
    for detail in _status_details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason or reason
            try:
                details = json.loads(info.metadata.get("details", "{}"))
            except ValueError:
                details = {}
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        limited = ResourceExhausted(message, retry_after=float(details.get("retry_after", 1)))
        limited.code = reason
        limited.details = details
        return limited
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and reason in (
        "unavailable",
        "deadline_exceeded",
    ):
        return Unavailable(
            "a backend service is unavailable, try again", code="service_unavailable"
        )
    cls = _BY_STATUS.get(code)
    if cls is None:
        result = ServiceError(message, code=reason, details=details)
        result.status = code
        return result
    return cls(message, code=reason, details=details)
