"""structlog configured for JSON lines (or console in dev) with the request id and
trace id of the current request bound from context variables."""

from __future__ import annotations

from typing import Any

import structlog


def configure_logging(service: str, *, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and stdlib logging once per process."""
    raise NotImplementedError


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
