"""Signing in: sessions from a name and password, lock-out of guessing, and the one answer
to "whom does this bearer secret sign in, right now?".

A session ends a shift's length after it began (`expires_at`) or after an idle period
without a request. API tokens end only when revoked. Every request and every open live
stream asks `principal_for`, so a disabled user, a revoked token, an expired session or a
new role takes effect on the next request, not at the next sign-in.

The password is checked off the writer thread (argon2 takes tens of milliseconds on
purpose, and the writer also stores alarms): `begin_attempt` counts the attempt as a
failure first, in one write, so parallel guesses cannot slip past the limit; a right
password then takes that failure back in the write that opens the session.

TryggError
 ├── SignInLocked   too many failures for this user or from this address; retry later
 └── SignInChanged  the password was reset or the user disabled during the attempt
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch.models import Credential, SignInFailure, User
from dispatch.users import digest, new_secret

# The first key of the advisory locks that serialise sign-in attempts ("trygg.sign").
SIGN_IN_LOCK_NS = 0x7369676E
# A request moves a session's idle mark at most this often: one write a minute per
# dashboard, not one per request.
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class SessionPolicy:
    max_age: timedelta = timedelta(hours=12)
    idle: timedelta = timedelta(minutes=30)
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Principal:
    """Who is asking, and with which credential (a session or an API token)."""

    user_id: int
    name: str
    role: str
    team: str | None
    credential_id: int
    kind: str
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class SignInChanged(TryggError):
    """The user's password was reset, or the user disabled, while the password given was
    being checked: the check no longer holds."""


class SignInLocked(TryggError):
    def __init__(self, retry_after_s: int, by: str) -> None:
        super().__init__(f"too many failed sign-ins {by}; try again in "
                         f"{math.ceil(retry_after_s / 60)} minutes")
        self.retry_after_s = retry_after_s
        self.by = by


def _valid(cred: Credential, user: User, now: datetime, policy: SessionPolicy) -> bool:
    if cred.revoked_at is not None or user.disabled_at is not None:
        return False
    if cred.expires_at is not None and now >= cred.expires_at:
        return False
    return not (cred.kind == "session" and now >= cred.last_used_at + policy.idle)


def principal_for(session: Session, token: str, now: datetime,
                  policy: SessionPolicy) -> Principal | None:
    row = session.execute(select(Credential, User).join(User).where(
        Credential.token_hash == digest(token))).first()
    if row is None:
        return None
    cred, user = row
    if not _valid(cred, user, now, policy):
        return None
    return Principal(user_id=user.id, name=user.name, role=user.role, team=user.team_code,
                     credential_id=cred.id, kind=cred.kind, expires_at=cred.expires_at,
                     last_used_at=cred.last_used_at)


def needs_touch(principal: Principal, now: datetime) -> bool:
    return principal.last_used_at is None or now - principal.last_used_at >= TOUCH_EVERY


def touch(session: Session, credential_id: int, now: datetime) -> None:
    session.execute(update(Credential).where(Credential.id == credential_id,
                                             Credential.last_used_at < now)
                    .values(last_used_at=now))


def _locked_for(session: Session, column: object, value: str, now: datetime,
                policy: SessionPolicy) -> int | None:
    """Seconds until attempts are allowed again, or None if they are."""
    recent = list(session.execute(
        select(SignInFailure.at).where(column == value,  # type: ignore[arg-type]
                                       SignInFailure.at > now - policy.window)
        .order_by(SignInFailure.at.desc()).limit(policy.max_failures)).scalars())
    if len(recent) < policy.max_failures:
        return None
    # Open again once the oldest of the last `max_failures` leaves the window.
    return max(1, math.ceil((recent[-1] + policy.window - now).total_seconds()))


def begin_attempt(session: Session, name: str, address: str, now: datetime,
                  policy: SessionPolicy) -> int:
    """Refuse a locked attempt (SignInLocked); else count it as a failure until it succeeds.

    Returns the failure row's id, which `open_session` deletes on success."""
    if session.get_bind().dialect.name == "postgresql":
        # Several dispatch processes serve the API: attempts on one name or from one
        # address wait for each other here, so parallel guesses cannot all count the
        # same four failures (SQLite has one writer, which serialises them anyway).
        for key in sorted((f"name:{digest(name)}", f"address:{address}")):
            session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"),
                            {"ns": SIGN_IN_LOCK_NS, "key": key})
    for column, value, by in ((SignInFailure.name_digest, digest(name), "for this user"),
                              (SignInFailure.address, address, "from this address")):
        wait = _locked_for(session, column, value, now, policy)
        if wait is not None:
            raise SignInLocked(wait, by)
    failure = SignInFailure(name_digest=digest(name), address=address, at=now)
    session.add(failure)
    # Failures older than the window count for nothing: kept small as it goes.
    session.execute(delete(SignInFailure).where(SignInFailure.at < now - policy.window * 4))
    session.flush()
    return failure.id


@dataclass(frozen=True)
class Candidate:
    """What the password check needs, read before it: no session is open yet."""

    user_id: int | None
    password_hash: str | None
    enabled: bool


def candidate(session: Session, name: str) -> Candidate:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        return Candidate(None, None, False)
    return Candidate(user.id, user.password_hash, user.disabled_at is None)


def open_session(session: Session, user_id: int, checked_hash: str | None, failure_id: int,
                 now: datetime, policy: SessionPolicy) -> tuple[str, Principal]:
    """The password was right against `checked_hash`: take the attempt's failure back
    (and the user's earlier ones: they are not guessing any more) and open a session."""
    user = session.get(User, user_id)
    if user is None or user.password_hash != checked_hash or user.disabled_at is not None:
        raise SignInChanged(f"user {user_id} changed during sign-in")
    session.execute(delete(SignInFailure).where(
        (SignInFailure.id == failure_id) | (SignInFailure.name_digest == digest(user.name))))
    token, token_hash = new_secret()
    cred = Credential(user=user, kind="session", token_hash=token_hash, created_at=now,
                      last_used_at=now, expires_at=now + policy.max_age)
    session.add(cred)
    session.flush()
    return token, Principal(user_id=user.id, name=user.name, role=user.role,
                            team=user.team_code, credential_id=cred.id, kind="session",
                            expires_at=cred.expires_at, last_used_at=now)


def end_credential(session: Session, credential_id: int, now: datetime) -> None:
    session.execute(update(Credential).where(Credential.id == credential_id,
                                             Credential.revoked_at.is_(None))
                    .values(revoked_at=now))
