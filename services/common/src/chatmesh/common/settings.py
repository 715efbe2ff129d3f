"""Typed configuration from `CHATMESH_*` environment variables.

Each service subclasses :class:`ServiceSettings` and loads it with
:func:`load_settings`, which turns a validation failure into one clear line on
stderr and exit code 2 (so orchestrators show the reason, not a traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_ERROR_EXIT_CODE = 2
DATA_DIR = Path(".chatmesh")


class ServiceSettings(BaseSettings):
    """Settings every service shares. Subclasses set `service_name` and ports."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_", extra="ignore", frozen=True)

    service_name: ClassVar[str] = "service"

    # Empty means the embedded default: SQLite under ./.chatmesh/<service>.db.
    database_url: str = ""
    # Empty means in-process bus / rate limiter / presence (embedded mode).
    redis_url: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50050, ge=0, le=65535)
    # 0 disables the Prometheus endpoint.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Seconds between NOT_SERVING and stop on SIGTERM, then the grace for in-flight RPCs.
    drain_seconds: float = Field(default=5.0, ge=0, le=300)
    grace_seconds: float = Field(default=10.0, ge=0, le=300)
    # Where the auth service listens; every service fetches the JWKS from it.
    auth_address: str = "127.0.0.1:50051"
    # The URL users reach the product at; links in emails are built from it.
    public_url: str = "http://127.0.0.1:8000"
    # Tracing is off unless this is set (standard OTel variable, no prefix).
    otel_exporter_otlp_endpoint: str = Field(
        default="", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        # LOG_LEVEL=INFO is what people type; accept it.
        return value.lower() if isinstance(value, str) else value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file for this service."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{DATA_DIR / (self.service_name + '.db')}"


S = TypeVar("S", bound=BaseSettings)


def format_validation_error(cls: type[BaseSettings], error: ValidationError) -> str:
    """One line naming the environment variable(s) at fault."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    parts = []
    for item in error.errors():
        head, *rest = [str(p) for p in item["loc"]] or ["?"]
        # A field read through an alias (OTEL_…) is reported under the alias, unprefixed.
        var = (prefix + head if head in cls.model_fields else head).upper()
        where = ".".join([var, *rest])
        parts.append(f"{where}: {item['msg']}")
    return "configuration error: " + "; ".join(parts)


def load_settings(cls: type[S]) -> S:
    """Instantiate settings from the environment or exit(2) with one clear line."""
    try:
        return cls()
    except ValidationError as error:
        print(format_validation_error(cls, error), file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_EXIT_CODE) from None
