"""The OpenAPI 3.1 document, built from the routes themselves.

Each API endpoint is an :class:`ApiRoute` that carries its :class:`Operation`
(summary, request and response models, error statuses, security). The document
is generated from those and from the pydantic models' JSON schemas (OpenAPI 3.1
uses JSON Schema 2020-12, which is what pydantic emits), so it cannot drift from
what the routes do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from chatmesh.bff.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from chatmesh.bff.models import ErrorBody

Endpoint = Callable[[Request], Any]
Security = Literal["none", "user", "refresh"]

_ERROR_DESCRIPTIONS = {
    400: "Malformed request (`invalid_json`, …)",
    401: "Not signed in, or the token is expired or invalid",
    403: "Forbidden (`origin_not_allowed`, …)",
    404: "Not found",
    409: "Conflicts with existing state (`email_taken`, `username_taken`, …)",
    413: "Body larger than the limit (`payload_too_large`)",
    415: "Body is not application/json",
    422: "Validation failed; `details` lists the fields or reasons",
    429: "Rate limited (`rate_limited`); see Retry-After",
    500: "Internal error",
    503: "A backend service is unavailable (`service_unavailable`)",
}


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    success: int = 200
    success_description: str = "OK"
    request: type[BaseModel] | None = None
    # The body may be omitted altogether (e.g. when a cookie carries the value).
    request_optional: bool = False
    response: type[BaseModel] | None = None
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    security: Security = "none"
    description: str = ""


class ApiRoute(Route):
    """A Route with one method and its OpenAPI operation."""

    def __init__(self, path: str, endpoint: Endpoint, *, method: str, operation: Operation) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.operation = operation


def _path_template(path: str) -> str:
    """Starlette's `{id:int}` → OpenAPI's `{id}`."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _security(kind: Security) -> list[dict[str, list[str]]]:
    if kind == "user":
        return [{"bearerAuth": []}, {"accessCookie": []}]
    if kind == "refresh":
        # The refresh token comes in the body or in the cookie.
        return [{"refreshCookie": []}, {}]
    return []


def _schemas(routes: list[ApiRoute]) -> dict[str, Any]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorBody, "serialization"): None
    }
    for route in routes:
        if route.operation.request is not None:
            wanted[(route.operation.request, "validation")] = None
        if route.operation.response is not None:
            wanted[(route.operation.response, "serialization")] = None
    _, top = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def _operation(route: ApiRoute) -> dict[str, Any]:
    op = route.operation
    operation_id = getattr(route.endpoint, "__name__", route.name)
    doc: dict[str, Any] = {
        "operationId": f"{op.tag}_{operation_id}".replace("-", "_"),
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(op.security),
    }
    if op.description:
        doc["description"] = op.description
    params = re.findall(r"\{([^}:]+)", route.path)
    if params:
        doc["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in params
        ]
    if op.request is not None:
        doc["requestBody"] = {
            "required": not op.request_optional,
            "content": {"application/json": {"schema": _ref(op.request.__name__)}},
        }
    success: dict[str, Any] = {"description": op.success_description}
    if op.response is not None:
        success["content"] = {op.media_type: {"schema": _ref(op.response.__name__)}}
    elif op.media_type != "application/json":
        success["content"] = {op.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.success): success}
    errors = set(op.errors)
    if route.path.startswith("/api/"):
        errors.add(429)
    if op.request is not None:
        errors.update((400, 413, 415, 422))
    for status in sorted(errors):
        error: dict[str, Any] = {
            "description": _ERROR_DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": _ref("ErrorBody")}},
        }
        if status == 429:
            error["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        responses[str(status)] = error
    doc["responses"] = responses
    return doc


def build_openapi(routes: Iterable[BaseRoute], *, server_url: str) -> dict[str, Any]:
    api_routes = [route for route in routes if isinstance(route, ApiRoute)]
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes:
        paths.setdefault(_path_template(route.path), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ChatMesh API",
            "version": "1.0.0",
            "description": (
                "Errors always have the shape "
                '`{"error": {"code": "<snake_case>", "message": "…", "details": {…}}}`. '
                "Browsers authenticate with the httpOnly session cookies set by "
                "register / login / refresh; API clients send `Authorization: Bearer`. "
                "State-changing requests with cookies must come from an allowed Origin."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": _schemas(api_routes),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "accessCookie": {"type": "apiKey", "in": "cookie", "name": ACCESS_COOKIE},
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": REFRESH_COOKIE},
            },
        },
    }


def openapi_endpoint(*, server_url: str) -> Endpoint:
    """GET /api/openapi.json: built from the app's routes on first use, then cached."""
    cached: bytes | None = None

    async def openapi(request: Request) -> Response:
        nonlocal cached
        if cached is None:
            document = build_openapi(request.app.routes, server_url=server_url)
            cached = json.dumps(document, separators=(",", ":")).encode()
        return Response(cached, media_type="application/json")

    return openapi
