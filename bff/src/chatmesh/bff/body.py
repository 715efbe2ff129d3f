"""Reading a JSON request body into a request model, with the API's errors:
400 `invalid_json` for anything that is not a JSON object, 415 for another media
type, 422 `validation_failed` listing each field at fault."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from chatmesh.bff.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """One entry per field at fault: dotted path, pydantic's error type, message."""
    fields = []
    for item in error.errors(include_url=False, include_input=False):
        fields.append(
            {
                "field": ".".join(str(part) for part in item["loc"]),
                "type": item["type"],
                "message": item["msg"],
            }
        )
    return fields


async def read_json(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The body as `model`. With `optional`, an empty body means `{}`."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return model.model_validate({})
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as application/json",
            details={"content_type": content_type},
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; deep nesting recurses.
    except (ValueError, RecursionError) as error:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from error
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(
            422,
            "validation_failed",
            "some fields are missing or invalid",
            details={"fields": field_errors(error)},
        ) from None
