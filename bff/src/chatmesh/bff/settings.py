"""Configuration of the BFF (`CHATMESH_*` environment variables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from chatmesh.common.settings import ServiceSettings

_KIB = 1024


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lowercased, default ports dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class BffSettings(ServiceSettings):
    service_name: ClassVar[str] = "bff"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    # Other origins (besides public_url) whose pages may call the API with
    # credentials: CHATMESH_CORS_ORIGINS="https://a.example,https://b.example" or a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=64 * _KIB, ge=1)
    # The web UI's static export; a placeholder page is served when it is missing.
    web_dir: Path = Path("clients/web/out")
    # "auto": Secure cookies (and HSTS) when public_url is https.
    cookie_secure: bool | Literal["auto"] = "auto"
    # How many reverse proxies in front of the BFF append to X-Forwarded-For.
    # 0 trusts no header and uses the peer address.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)

    # Requests allowed per `rate_limit_window` seconds; 0 disables a limit.
    rate_limit_window: float = Field(default=60.0, gt=0)
    # Every API call, per client address.
    rate_limit_ip: int = Field(default=600, ge=0)
    # /api/v1/auth/*, per client address (the auth service also throttles logins).
    rate_limit_auth_ip: int = Field(default=30, ge=0)
    # Authenticated calls, per user.
    rate_limit_user: int = Field(default=600, ge=0)

    # Deadline of each call to a backend service, in seconds.
    backend_timeout: float = Field(default=5.0, gt=0, le=120)

    # The user service (profiles, friends, blocks, presence).
    user_address: str = "127.0.0.1:50052"

    # The chat service (rooms, messages, the room event stream).
    chat_address: str = "127.0.0.1:50053"

    # The mail service's REST API (e.g. http://127.0.0.1:8025): the BFF forwards
    # /unsubscribe links there; empty: unsubscribe links answer 404.
    mail_http_url: str = ""
    # Expose the mail service's dev mailbox at GET /api/v1/dev/mail (embedded mode
    # only: it shows every email, tokens included, to anyone).
    dev_mailbox: bool = False

    # WebSocket (/api/v1/ws) limits; see docs/websocket.md.
    # Seconds a connection has to send its `auth` frame (without a session cookie).
    ws_auth_timeout: float = Field(default=5.0, gt=0, le=60)
    # Largest client frame accepted, in bytes (bigger: an error frame).
    ws_max_frame_bytes: int = Field(default=32 * _KIB, ge=1024)
    # Frames queued for one client before it is closed with 4008 ("resume").
    ws_send_queue: int = Field(default=1000, ge=10)
    # Client frames per second (sustained) and burst per connection.
    ws_rate_per_second: float = Field(default=20.0, gt=0)
    ws_rate_burst: int = Field(default=60, ge=1)
    # A `ping` frame is sent every interval; a client silent for the idle
    # timeout is closed with 4000.
    ws_ping_interval: float = Field(default=25.0, gt=0)
    ws_idle_timeout: float = Field(default=70.0, gt=0)
    # Live events held while `resume` replays, and the widest gap a resume replays.
    ws_max_replay: int = Field(default=10_000, ge=100)
    # Seconds the server holds live events after `ready` waiting for `resume`.
    ws_resume_wait: float = Field(default=2.0, ge=0, le=30)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = [item for item in text.split(",") if item.strip()]
        if isinstance(value, list):
            origins = []
            for item in value:
                if not isinstance(item, str):
                    raise ValueError("origins must be strings")
                origin = origin_of(item)
                if not origin.startswith(("http://", "https://")) or origin.endswith("//"):
                    raise ValueError(f"not an http(s) origin: {item!r}")
                origins.append(origin)
            return origins
        return value

    @field_validator("mail_http_url")
    @classmethod
    def _check_mail_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an absolute http(s) URL or empty")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return value

    @property
    def https(self) -> bool:
        """Whether users reach the product over HTTPS."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure == "auto":
            return self.https
        return self.cookie_secure

    @property
    def public_origin(self) -> str:
        return origin_of(self.public_url)
