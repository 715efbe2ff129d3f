"""Plain results of the domain layer (built inside the transaction, safe to use after)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chatmesh.common.clock import as_utc
from chatmesh.services.auth.models import Account, Session


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request came from, as the edge saw it."""

    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    email: str
    username: str
    display_name: str
    email_verified: bool
    created: datetime

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.id,
            email=account.email,
            username=account.username,
            display_name=account.display_name,
            email_verified=account.email_verified,
            created=as_utc(account.created),
        )


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    account: AccountView
    tokens: TokenPair
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    ip: str
    user_agent: str
    created: datetime
    last_used: datetime
    current: bool

    @classmethod
    def of(cls, session: Session, *, current_id: str) -> SessionView:
        return cls(
            id=session.id,
            ip=session.ip,
            user_agent=session.user_agent,
            created=as_utc(session.created),
            last_used=as_utc(session.last_used),
            current=session.id == current_id,
        )
