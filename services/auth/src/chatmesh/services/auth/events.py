"""The protobuf events the auth service puts into its outbox (stream `events.auth`)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.events.v1 import auth_events_pb2 as ev
from chatmesh.services.auth.models import Account, Session

SOURCE = "auth"


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def user_registered(account: Account) -> ev.UserRegistered:
    return ev.UserRegistered(
        user_id=account.id,
        email=account.email,
        username=account.username,
        display_name=account.display_name,
        register_time=timestamp(account.created),
    )


def email_verification_requested(
    account: Account, token: str, expires: datetime
) -> ev.EmailVerificationRequested:
    return ev.EmailVerificationRequested(
        user_id=account.id,
        email=account.email,
        display_name=account.display_name,
        token=token,
        expire_time=timestamp(expires),
    )


def password_reset_requested(
    account: Account, token: str, expires: datetime, ip: str
) -> ev.PasswordResetRequested:
    return ev.PasswordResetRequested(
        user_id=account.id,
        email=account.email,
        display_name=account.display_name,
        token=token,
        expire_time=timestamp(expires),
        ip_address=ip,
    )


def password_changed(account: Account, now: datetime) -> ev.PasswordChanged:
    return ev.PasswordChanged(
        user_id=account.id,
        email=account.email,
        display_name=account.display_name,
        change_time=timestamp(now),
    )


def login_from_new_device(account: Account, session: Session) -> ev.LoginFromNewDevice:
    return ev.LoginFromNewDevice(
        user_id=account.id,
        email=account.email,
        display_name=account.display_name,
        session_id=session.id,
        ip_address=session.ip,
        user_agent=session.user_agent,
        login_time=timestamp(session.created),
    )


def refresh_token_reused(
    account: Account, session: Session, *, ip: str, user_agent: str, now: datetime
) -> ev.RefreshTokenReused:
    return ev.RefreshTokenReused(
        user_id=account.id,
        email=account.email,
        display_name=account.display_name,
        session_family_id=session.id,
        ip_address=ip,
        user_agent=user_agent,
        detect_time=timestamp(now),
    )
