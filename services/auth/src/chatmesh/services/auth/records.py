"""Row-level steps the domain operations are made of. Each takes the open
transaction's session; none commits."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists
from sqlalchemy import select as sa_select
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.clock import as_utc
from chatmesh.common.errors import InvalidArgument, Unauthenticated
from chatmesh.common.tokens import ACCESS_TOKEN_TTL_SECONDS, AccessClaims
from chatmesh.services.auth.issuing import hash_secret, new_secret, sign_access_token
from chatmesh.services.auth.keys import ActiveKey
from chatmesh.services.auth.models import Account, OneTimeToken, RefreshToken, Session
from chatmesh.services.auth.validation import looks_like_email
from chatmesh.services.auth.views import AccountView, ClientInfo, SignedIn, TokenPair

IP_MAX_LENGTH = 64
USER_AGENT_MAX_LENGTH = 512


async def find_account_by_login(session: AsyncSession, login: str) -> Account | None:
    """An email address or a username, matched the way they are stored."""
    login = login.strip()
    if looks_like_email(login):
        where = col(Account.email) == login.lower()
    else:
        where = col(Account.username) == unicodedata.normalize("NFKC", login).lower()
    return (await session.exec(select(Account).where(where))).first()


async def taken_fields(session: AsyncSession, *, email: str, username: str) -> list[str]:
    """Which of email / username an existing account already uses."""
    taken = []
    if (await session.exec(select(Account.id).where(col(Account.email) == email))).first():
        taken.append("email")
    if (await session.exec(select(Account.id).where(col(Account.username) == username))).first():
        taken.append("username")
    return taken


def issue_tokens(
    session: AsyncSession,
    *,
    user_id: str,
    session_id: str,
    key: ActiveKey,
    refresh_ttl: timedelta,
    now: datetime,
) -> TokenPair:
    """A fresh access token and a new refresh token of the family `session_id`."""
    refresh = new_secret()
    expires = now + refresh_ttl
    session.add(
        RefreshToken(hash=hash_secret(refresh), session_id=session_id, created=now, expires=expires)
    )
    access = sign_access_token(key, user_id=user_id, session_id=session_id, now=now)
    return TokenPair(
        access_token=access,
        expires_in=ACCESS_TOKEN_TTL_SECONDS,
        refresh_token=refresh,
        refresh_expires=expires,
    )


async def start_session(
    session: AsyncSession,
    account: Account,
    client: ClientInfo,
    *,
    key: ActiveKey,
    refresh_ttl: timedelta,
    now: datetime,
) -> tuple[Session, SignedIn]:
    device = Session(
        id=str(uuid.uuid4()),
        user_id=account.id,
        ip=client.ip[:IP_MAX_LENGTH],
        user_agent=client.user_agent[:USER_AGENT_MAX_LENGTH],
        created=now,
        last_used=now,
    )
    session.add(device)
    # Explicit flush: the refresh token's foreign key needs the session row first.
    await session.flush()
    tokens = issue_tokens(
        session, user_id=account.id, session_id=device.id, key=key, refresh_ttl=refresh_ttl, now=now
    )
    return device, SignedIn(account=AccountView.of(account), tokens=tokens, session_id=device.id)


async def seen_device(session: AsyncSession, user_id: str, client: ClientInfo) -> bool:
    """Whether this user ever had a session from the same address and user agent."""
    query = select(Session.id).where(
        col(Session.user_id) == user_id,
        col(Session.ip) == client.ip[:IP_MAX_LENGTH],
        col(Session.user_agent) == client.user_agent[:USER_AGENT_MAX_LENGTH],
    )
    return (await session.exec(query.limit(1))).first() is not None


async def active_session(session: AsyncSession, claims: AccessClaims) -> Session:
    """The caller's session; a revoked one fails at once, before its token expires."""
    device = await session.get(Session, claims.session_id)
    if device is None or device.user_id != claims.user_id or device.revoked_at is not None:
        raise Unauthenticated("this session has ended, sign in again", code="session_revoked")
    return device


async def account_of_active_session(session: AsyncSession, claims: AccessClaims) -> AccountView:
    """The caller's account, in one round trip (this is GET /me's hot path): a
    revoked session or a deleted account fails at once, before the token expires."""
    statement = (
        sa_select(
            col(Account.id),
            col(Account.email),
            col(Account.username),
            col(Account.display_name),
            col(Account.email_verified),
            col(Account.created),
        )
        .join(Session, col(Session.user_id) == col(Account.id))
        .where(
            col(Session.id) == claims.session_id,
            col(Session.user_id) == claims.user_id,
            col(Session.revoked_at).is_(None),
        )
    )
    # Core on the session's connection: six columns are more than sqlmodel's
    # typed select() takes, and no ORM objects are needed.
    connection = await session.connection()
    row = (await connection.execute(statement)).first()
    if row is None:
        raise Unauthenticated("this session has ended, sign in again", code="session_revoked")
    return AccountView(
        id=row[0],
        email=row[1],
        username=row[2],
        display_name=row[3],
        email_verified=row[4],
        created=as_utc(row[5]),
    )


async def revoke_sessions(
    session: AsyncSession,
    *,
    user_id: str,
    reason: str,
    now: datetime,
    session_id: str | None = None,
) -> int:
    """Revoke one session of `user_id` (or all of them); returns how many were live."""
    statement = update(Session).where(
        col(Session.user_id) == user_id, col(Session.revoked_at).is_(None)
    )
    if session_id is not None:
        statement = statement.where(col(Session.id) == session_id)
    result = await session.exec(statement.values(revoked_at=now, revoke_reason=reason))
    return result.rowcount


def live_session_filter(now: datetime) -> ColumnElement[bool]:
    """Sessions that still hold an unexpired, unrotated refresh token."""
    return exists().where(
        col(RefreshToken.session_id) == col(Session.id),
        col(RefreshToken.rotated_at).is_(None),
        col(RefreshToken.expires) > now,
    )


def add_one_time_token(
    session: AsyncSession, *, user_id: str, purpose: str, ttl: timedelta, now: datetime
) -> tuple[str, datetime]:
    secret = new_secret()
    expires = now + ttl
    session.add(
        OneTimeToken(
            hash=hash_secret(secret), user_id=user_id, purpose=purpose, created=now, expires=expires
        )
    )
    return secret, expires


def _invalid_token() -> InvalidArgument:
    return InvalidArgument(
        "this link is invalid or has expired", code="invalid_token", details={"field": "token"}
    )


async def peek_one_time_token(
    session: AsyncSession, secret: str, *, purpose: str, now: datetime
) -> OneTimeToken:
    """The unused, unexpired token for `purpose`, or InvalidArgument(invalid_token)."""
    token = await session.get(OneTimeToken, hash_secret(secret)) if secret else None
    if (
        token is None
        or token.purpose != purpose
        or token.used_at is not None
        or as_utc(token.expires) <= now
    ):
        raise _invalid_token()
    return token


async def use_one_time_token(
    session: AsyncSession, secret: str, *, purpose: str, now: datetime
) -> OneTimeToken:
    """Like `peek_one_time_token`, and marks it used; a concurrent use loses."""
    token = await peek_one_time_token(session, secret, purpose=purpose, now=now)
    result = await session.exec(
        update(OneTimeToken)
        .where(col(OneTimeToken.hash) == token.hash, col(OneTimeToken.used_at).is_(None))
        .values(used_at=now)
    )
    if result.rowcount != 1:
        raise _invalid_token()
    return token


async def use_up_one_time_tokens(
    session: AsyncSession, *, user_id: str, purpose: str, now: datetime
) -> None:
    """Invalidate every outstanding token of `purpose` (e.g. after a reset)."""
    await session.exec(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.user_id) == user_id,
            col(OneTimeToken.purpose) == purpose,
            col(OneTimeToken.used_at).is_(None),
        )
        .values(used_at=now)
    )
