"""Request and response bodies of the public API (their JSON schemas are the
OpenAPI components).

Request models check shape only: types, required fields, sane lengths, text that
can travel as UTF-8. The rules of the domain (what a valid username or a strong
enough password is) belong to the service that owns them, which answers with
precise reasons.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chatmesh.auth.v1 import auth_pb2


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


Utf8 = AfterValidator(_encodable)
EmailText = Annotated[str, Field(min_length=1, max_length=320), Utf8]
NameText = Annotated[str, Field(min_length=1, max_length=256), Utf8]
SecretText = Annotated[str, Field(min_length=1, max_length=1024), Utf8]
TokenText = Annotated[str, Field(min_length=1, max_length=512), Utf8]


class RequestBody(BaseModel):
    """Strict JSON: no coercion between types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RegisterRequest(RequestBody):
    email: EmailText
    username: NameText
    password: SecretText
    display_name: NameText


class LoginRequest(RequestBody):
    login: EmailText = Field(description="An email address or a username.")
    password: SecretText


class RefreshRequest(RequestBody):
    refresh_token: TokenText | None = Field(
        default=None, description="Omit to use the refresh cookie."
    )


class LogoutRequest(RequestBody):
    refresh_token: TokenText | None = Field(
        default=None,
        description="The session to end; omit to use the refresh cookie or the access token.",
    )


class VerifyEmailRequest(RequestBody):
    token: TokenText


class PasswordResetRequest(RequestBody):
    email: EmailText


class PasswordResetConfirmRequest(RequestBody):
    token: TokenText
    password: SecretText


# --- responses ---------------------------------------------------------------


def _time(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


class User(BaseModel):
    id: str
    username: str
    email: str
    display_name: str
    email_verified: bool
    created_at: datetime

    @classmethod
    def from_proto(cls, account: auth_pb2.Account) -> User:
        return cls(
            id=account.id,
            username=account.username,
            email=account.email,
            display_name=account.display_name,
            email_verified=account.email_verified,
            created_at=_time(account.create_time),
        )


class SessionTokens(BaseModel):
    access_token: str = Field(description="A JWT for `Authorization: Bearer`.")
    refresh_token: str = Field(description="Opaque; single use (rotated by /auth/refresh).")
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: User


class Session(BaseModel):
    id: str
    ip_address: str
    user_agent: str
    created_at: datetime
    last_used_at: datetime
    current: bool = Field(description="The session of the token that made this request.")

    @classmethod
    def from_proto(cls, session: auth_pb2.Session) -> Session:
        return cls(
            id=session.id,
            ip_address=session.ip_address,
            user_agent=session.user_agent,
            created_at=_time(session.create_time),
            last_used_at=_time(session.last_use_time),
            current=session.current,
        )


class SessionList(BaseModel):
    sessions: list[Session]


class Accepted(BaseModel):
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable snake_case reason, e.g. `email_taken`.")
    message: str = Field(description="Human-readable; may change.")
    details: dict[str, Any]


class ErrorBody(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok", "ready"]
    checks: dict[str, str] = Field(default_factory=dict)


class Jwks(BaseModel):
    keys: list[dict[str, str]]
