"""The auth domain: accounts, sessions, tokens. Plain async methods, no gRPC.

Every operation runs in one transaction, with its outbox events in the same
transaction, so a rejected request leaves nothing behind and an accepted one
never loses its events. Slow or separately-writing steps (argon2, key rotation)
run before the transaction opens, to keep it short (SQLite has one writer).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from datetime import timedelta

from argon2 import PasswordHasher
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from chatmesh.common.clock import Clock, as_utc, utcnow
from chatmesh.common.db import Database
from chatmesh.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from chatmesh.common.outbox import add_event
from chatmesh.common.ratelimit import RateLimiter
from chatmesh.common.tokens import AccessClaims
from chatmesh.services.auth import events, records
from chatmesh.services.auth.issuing import hash_secret
from chatmesh.services.auth.keys import KeyStore
from chatmesh.services.auth.models import (
    PURPOSE_PASSWORD_RESET,
    PURPOSE_VERIFY_EMAIL,
    Account,
    RefreshToken,
    Session,
)
from chatmesh.services.auth.passwords import PasswordHashing, check_password
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.auth.validation import (
    normalize_display_name,
    normalize_email,
    normalize_username,
)
from chatmesh.services.auth.views import AccountView, ClientInfo, SessionView, SignedIn

INVALID_CREDENTIALS = "invalid login or password"


def _invalid_refresh_token() -> Unauthenticated:
    return Unauthenticated(
        "the refresh token is invalid or has expired, sign in again", code="invalid_refresh_token"
    )


def _taken_error(taken: list[str]) -> AlreadyExists:
    if "email" in taken:
        return AlreadyExists(
            "an account with this email address already exists",
            code="email_taken",
            details={"field": "email"},
        )
    return AlreadyExists(
        "this username is already taken", code="username_taken", details={"field": "username"}
    )


class AuthService:
    def __init__(
        self,
        *,
        db: Database,
        keys: KeyStore,
        limiter: RateLimiter,
        settings: AuthSettings,
        passwords: PasswordHashing | None = None,
        clock: Clock = utcnow,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._keys = keys
        self._limiter = limiter
        self._settings = settings
        self._passwords = passwords or PasswordHashing(
            PasswordHasher(
                time_cost=settings.argon2_time_cost,
                memory_cost=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
        )
        self._clock = clock
        # Called after a commit that staged events, so the relay sends them at once.
        self._on_commit = on_commit
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)

    # --- accounts -------------------------------------------------------------------

    async def register(
        self, *, email: str, username: str, password: str, display_name: str, client: ClientInfo
    ) -> SignedIn:
        email = normalize_email(email)
        username = normalize_username(username)
        display_name = normalize_display_name(display_name)
        password = check_password(password, username=username, email=email)
        async with self._db.transaction() as session:
            taken = await records.taken_fields(session, email=email, username=username)
        if taken:
            raise _taken_error(taken)
        password_hash = await self._passwords.hash(password)
        key = await self._keys.signing_key()
        now = self._clock()
        try:
            async with self._db.transaction() as session:
                account = Account(
                    id=str(uuid.uuid4()),
                    email=email,
                    username=username,
                    display_name=display_name,
                    password_hash=password_hash,
                    created=now,
                )
                session.add(account)
                await session.flush()
                _, signed_in = await records.start_session(
                    session, account, client, key=key, refresh_ttl=self._refresh_ttl, now=now
                )
                token, expires = records.add_one_time_token(
                    session,
                    user_id=account.id,
                    purpose=PURPOSE_VERIFY_EMAIL,
                    ttl=timedelta(seconds=self._settings.email_verification_ttl_seconds),
                    now=now,
                )
                add_event(session, events.SOURCE, events.user_registered(account))
                add_event(
                    session,
                    events.SOURCE,
                    events.email_verification_requested(account, token, expires),
                )
        except IntegrityError:
            # A concurrent registration took the email or username after our check.
            async with self._db.transaction() as session:
                taken = await records.taken_fields(session, email=email, username=username)
            if taken:
                raise _taken_error(taken) from None
            raise
        self._on_commit()
        return signed_in

    async def get_account(self, claims: AccessClaims) -> AccountView:
        async with self._db.read() as session:
            return await records.account_of_active_session(session, claims)

    async def verify_email(self, token: str) -> AccountView:
        now = self._clock()
        async with self._db.transaction() as session:
            used = await records.use_one_time_token(
                session, token, purpose=PURPOSE_VERIFY_EMAIL, now=now
            )
            account = await session.get(Account, used.user_id)
            if account is None:
                raise InvalidArgument("this link is invalid or has expired", code="invalid_token")
            account.email_verified = True
            session.add(account)
            return AccountView.of(account)

    async def resend_verification_email(self, claims: AccessClaims) -> None:
        async with self._db.transaction() as session:
            await records.active_session(session, claims)
            account = await session.get(Account, claims.user_id)
            if account is None:
                raise Unauthenticated("this account no longer exists", code="session_revoked")
            if account.email_verified:
                raise FailedPrecondition(
                    "the email address is already verified", code="email_already_verified"
                )
        decision = await self._limiter.hit(
            f"auth:verify-mail:{claims.user_id}",
            limit=self._settings.verification_resend_limit,
            window=self._settings.mail_window_seconds,
        )
        if not decision.allowed:
            raise ResourceExhausted(
                "too many verification emails, try again later",
                retry_after=decision.retry_after,
                code="too_many_requests",
            )
        now = self._clock()
        async with self._db.transaction() as session:
            account = await session.get(Account, claims.user_id)
            if account is None:
                raise Unauthenticated("this account no longer exists", code="session_revoked")
            token, expires = records.add_one_time_token(
                session,
                user_id=account.id,
                purpose=PURPOSE_VERIFY_EMAIL,
                ttl=timedelta(seconds=self._settings.email_verification_ttl_seconds),
                now=now,
            )
            add_event(
                session, events.SOURCE, events.email_verification_requested(account, token, expires)
            )
        self._on_commit()

    async def request_password_reset(self, email: str, client: ClientInfo) -> None:
        """Never fails and never tells whether the address has an account."""
        try:
            email = normalize_email(email)
        except InvalidArgument:
            return
        decision = await self._limiter.hit(
            f"auth:reset-mail:{email}",
            limit=self._settings.password_reset_limit,
            window=self._settings.mail_window_seconds,
        )
        if not decision.allowed:
            # Silent: an error would let anyone probe which addresses were asked for.
            return
        now = self._clock()
        async with self._db.transaction() as session:
            account = (
                await session.exec(select(Account).where(col(Account.email) == email))
            ).first()
            if account is None:
                return
            token, expires = records.add_one_time_token(
                session,
                user_id=account.id,
                purpose=PURPOSE_PASSWORD_RESET,
                ttl=timedelta(seconds=self._settings.password_reset_ttl_seconds),
                now=now,
            )
            add_event(
                session,
                events.SOURCE,
                events.password_reset_requested(account, token, expires, client.ip),
            )
        self._on_commit()

    async def confirm_password_reset(self, token: str, new_password: str) -> None:
        now = self._clock()
        async with self._db.transaction() as session:
            peeked = await records.peek_one_time_token(
                session, token, purpose=PURPOSE_PASSWORD_RESET, now=now
            )
            account = await session.get(Account, peeked.user_id)
            if account is None:
                raise InvalidArgument("this link is invalid or has expired", code="invalid_token")
            password = check_password(new_password, username=account.username, email=account.email)
        password_hash = await self._passwords.hash(password)
        now = self._clock()
        async with self._db.transaction() as session:
            used = await records.use_one_time_token(
                session, token, purpose=PURPOSE_PASSWORD_RESET, now=now
            )
            account = await session.get(Account, used.user_id)
            if account is None:
                raise InvalidArgument("this link is invalid or has expired", code="invalid_token")
            account.password_hash = password_hash
            # The reset link reached the mailbox, which proves the address.
            account.email_verified = True
            session.add(account)
            await records.use_up_one_time_tokens(
                session, user_id=account.id, purpose=PURPOSE_PASSWORD_RESET, now=now
            )
            # Whoever knew the old password must not stay signed in.
            await records.revoke_sessions(
                session, user_id=account.id, reason="password_reset", now=now
            )
            add_event(session, events.SOURCE, events.password_changed(account, now))
        self._on_commit()

    # --- sessions -------------------------------------------------------------------

    async def login(self, *, login: str, password: str, client: ClientInfo) -> SignedIn:
        await self._throttle(f"auth:login-ip:{client.ip}", self._settings.login_ip_limit)
        async with self._db.transaction() as session:
            found = await records.find_account_by_login(session, login)
            account_id = found.id if found else None
            stored_hash = found.password_hash if found else None
        # Keyed by account, so switching between email and username gains nothing;
        # unknown logins are throttled alike so throttling reveals nothing.
        unknown = unicodedata.normalize("NFKC", login.strip()).lower()[:320]
        account_key = f"auth:login-account:{account_id or 'unknown:' + unknown}"
        await self._throttle(account_key, self._settings.login_account_limit)
        # Unknown users are checked against a dummy hash: same time, same answer.
        matches = await self._passwords.verify(stored_hash, password)
        if not matches or account_id is None or stored_hash is None:
            raise Unauthenticated(INVALID_CREDENTIALS, code="invalid_credentials")
        new_hash = (
            await self._passwords.hash(password)
            if self._passwords.needs_rehash(stored_hash)
            else None
        )
        key = await self._keys.signing_key()
        now = self._clock()
        async with self._db.transaction() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise Unauthenticated(INVALID_CREDENTIALS, code="invalid_credentials")
            if new_hash is not None:
                account.password_hash = new_hash
                session.add(account)
            known_device = await records.seen_device(session, account.id, client)
            device, signed_in = await records.start_session(
                session, account, client, key=key, refresh_ttl=self._refresh_ttl, now=now
            )
            if not known_device:
                add_event(session, events.SOURCE, events.login_from_new_device(account, device))
        if not known_device:
            self._on_commit()
        await self._limiter.reset(account_key)
        return signed_in

    async def refresh(self, refresh_token: str, client: ClientInfo) -> SignedIn:
        """Rotate: the presented token dies, a new one of the same family is issued.

        A token that was already rotated means two parties hold the family (one
        of them stole it): the whole session is revoked and RefreshTokenReused
        emitted. That write must commit even though the call fails.
        """
        key = await self._keys.signing_key()
        now = self._clock()
        signed_in: SignedIn | None = None
        async with self._db.transaction() as session:
            row = await session.get(RefreshToken, hash_secret(refresh_token))
            device = await session.get(Session, row.session_id) if row else None
            if row is None or device is None or device.revoked_at is not None:
                raise _invalid_refresh_token()
            account = await session.get(Account, device.user_id)
            if account is None:
                raise _invalid_refresh_token()
            if row.rotated_at is None and as_utc(row.expires) <= now:
                raise _invalid_refresh_token()
            # Claim the token atomically: of two concurrent uses, one sees a reuse.
            claimed = await session.exec(
                update(RefreshToken)
                .where(col(RefreshToken.hash) == row.hash, col(RefreshToken.rotated_at).is_(None))
                .values(rotated_at=now)
            )
            if claimed.rowcount != 1:
                await records.revoke_sessions(
                    session,
                    user_id=account.id,
                    session_id=device.id,
                    reason="refresh_token_reused",
                    now=now,
                )
                add_event(
                    session,
                    events.SOURCE,
                    events.refresh_token_reused(
                        account, device, ip=client.ip, user_agent=client.user_agent, now=now
                    ),
                )
            else:
                device.last_used = now
                if client.ip:
                    device.ip = client.ip[: records.IP_MAX_LENGTH]
                session.add(device)
                tokens = records.issue_tokens(
                    session,
                    user_id=account.id,
                    session_id=device.id,
                    key=key,
                    refresh_ttl=self._refresh_ttl,
                    now=now,
                )
                signed_in = SignedIn(
                    account=AccountView.of(account), tokens=tokens, session_id=device.id
                )
        if signed_in is None:
            self._on_commit()
            raise Unauthenticated(
                "this refresh token was already used; the session was ended for safety",
                code="refresh_token_reused",
            )
        return signed_in

    async def logout_by_refresh_token(self, refresh_token: str) -> None:
        """End the token's session. Unknown or dead tokens are fine: logout is idempotent."""
        now = self._clock()
        async with self._db.transaction() as session:
            row = await session.get(RefreshToken, hash_secret(refresh_token))
            device = await session.get(Session, row.session_id) if row else None
            if device is not None:
                await records.revoke_sessions(
                    session, user_id=device.user_id, session_id=device.id, reason="logout", now=now
                )

    async def logout_session(self, claims: AccessClaims) -> None:
        now = self._clock()
        async with self._db.transaction() as session:
            await records.revoke_sessions(
                session,
                user_id=claims.user_id,
                session_id=claims.session_id,
                reason="logout",
                now=now,
            )

    async def list_sessions(self, claims: AccessClaims) -> list[SessionView]:
        now = self._clock()
        async with self._db.transaction() as session:
            await records.active_session(session, claims)
            rows = await session.exec(
                select(Session)
                .where(
                    col(Session.user_id) == claims.user_id,
                    col(Session.revoked_at).is_(None),
                    records.live_session_filter(now),
                )
                .order_by(col(Session.last_used).desc())
            )
            return [SessionView.of(row, current_id=claims.session_id) for row in rows]

    async def revoke_session(self, claims: AccessClaims, session_id: str) -> None:
        now = self._clock()
        async with self._db.transaction() as session:
            await records.active_session(session, claims)
            revoked = await records.revoke_sessions(
                session,
                user_id=claims.user_id,
                session_id=session_id,
                reason="revoked_by_user",
                now=now,
            )
            # Someone else's session looks exactly like a missing one.
            if revoked == 0:
                raise NotFound("no such session", code="session_not_found")

    async def jwks(self) -> list[dict[str, str]]:
        return await self._keys.public_jwks()

    async def _throttle(self, key: str, limit: int) -> None:
        decision = await self._limiter.hit(
            key, limit=limit, window=self._settings.login_window_seconds
        )
        if not decision.allowed:
            raise ResourceExhausted(
                "too many sign-in attempts, try again later",
                retry_after=decision.retry_after,
                code="too_many_attempts",
            )
