"""Users: who they are, their role, their password and their API tokens; the one place
that creates, changes, disables and revokes them (the CLI and the admin API both call it).

Every change here returns what the audit log needs (before and after, no secrets), and
the caller records it in the same transaction.

TryggError
 ├── UserExists     a user of that name exists already
 ├── UserNotFound   no user of that name
 ├── InvalidName    a user name that is empty, blank or holds control characters
 ├── InvalidUser    a role/team combination that cannot work (a responder without a team)
 └── LastAdmin      the change would leave nobody who can manage users
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch import audit
from dispatch.models import Credential, SignInFailure, Team, User

Role = Literal["operator", "responder", "tfh", "alarm_manager", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
T = TypeVar("T")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes anything; a megabyte "password" is an attack

# argon2id with the library's defaults (RFC 9106 low-memory profile): a guess costs the
# attacker tens of milliseconds and 64 MiB, whoever holds a copy of the database.
_hasher = PasswordHasher()
# Verified when the name is unknown, so "no such user" takes as long as "wrong password".
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserExists(TryggError):
    pass


class UserNotFound(TryggError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no user {name!r}")
        self.name = name


class InvalidName(TryggError):
    """A name nobody could read back or type: empty, blank, or holding control characters."""

    def __init__(self, name: str, why: str) -> None:
        # repr() shows a newline or an escape as such, so the message stays one line.
        super().__init__(f"user name {name!r} {why}; give the name the user is known by")
        self.name = name


class InvalidUser(TryggError):
    pass


class LastAdmin(TryggError):
    def __init__(self) -> None:
        super().__init__("that would leave no enabled admin: nobody could manage users "
                         "any more; make another user admin first")


def _check_name(name: str) -> None:
    if not name.strip():
        raise InvalidName(name, "is empty" if not name else "is only blanks")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        # Cf: invisible format characters (zero-width space, right-to-left override)
        # would let two users look alike.
        raise InvalidName(name, "holds control or invisible characters")
    if name.strip() in (".", ".."):
        raise InvalidName(name, "is a path of its own")
    if "/" in name:  # names are path segments of the admin API
        raise InvalidName(name, "holds a '/'")
    if len(name) > 100:
        raise InvalidName(name[:20] + "...", "is longer than 100 characters")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidUser(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidUser(f"a password may have at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user has a password (or exists at all)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password[:MAX_PASSWORD]) and (
            password_hash is not None)
    except (VerificationError, InvalidHashError):
        return False


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh bearer secret and its digest; only the digest is stored."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


@dataclass(frozen=True)
class UserView:
    """A user as the API, the CLI and the audit log show it: no secret in it."""

    name: str
    role: str
    team: str | None
    enabled: bool
    has_password: bool
    tokens: int
    sessions: int
    created_at: datetime

    def audit(self) -> dict[str, Any]:
        return {"role": self.role, "team": self.team, "enabled": self.enabled,
                "has_password": self.has_password}


def view_of(session: Session, user: User, now: datetime) -> UserView:
    live = [c for c in user.credentials if c.revoked_at is None
            and (c.expires_at is None or c.expires_at > now)]
    return UserView(name=user.name, role=user.role, team=user.team_code,
                    enabled=user.disabled_at is None, has_password=user.password_hash is not None,
                    tokens=sum(c.kind == "token" for c in live),
                    sessions=sum(c.kind == "session" for c in live), created_at=user.created_at)


def get_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise UserNotFound(name)
    return user


def list_users(session: Session, now: datetime) -> list[UserView]:
    return [view_of(session, u, now)
            for u in session.execute(select(User).order_by(User.name)).scalars()]


def _check_role(session: Session, role: str, team: str | None) -> None:
    if role not in ROLES:
        raise InvalidUser(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "responder" and not team:
        raise InvalidUser("a responder needs a team (--team CODE): they see their team's "
                          "alarms only")
    if role != "responder" and team:
        raise InvalidUser(f"only a responder has a team; a {role} sees what the role allows")
    if team and session.execute(select(Team.id).where(Team.code == team)).first() is None:
        raise InvalidUser(f"no team {team!r} in the registry")


def issue_token(session: Session, user: User, now: datetime) -> str:
    token, token_hash = new_secret()
    session.add(Credential(user=user, kind="token", token_hash=token_hash, created_at=now,
                           last_used_at=now))
    return token


def add_user(session: Session, name: str, role: str, now: datetime, *,
             team: str | None = None, password_hash: str | None = None) -> str:
    """Create a user and return its first API token (shown once, stored as a digest).

    The password comes hashed (`hash_password`, off the writer thread: it is slow)."""
    _check_name(name)
    _check_role(session, role, team)
    if session.execute(select(User).where(User.name == name)).scalar_one_or_none():
        raise UserExists(f"user {name!r} exists already")
    user = User(name=name, role=role, team_code=team, created_at=now,
                password_hash=password_hash)
    session.add(user)
    return issue_token(session, user, now)


def _enabled_admins(session: Session) -> int:
    return session.execute(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled_at.is_(None))).scalar_one()


def revoke_all(session: Session, user: User, now: datetime, *, kind: str | None = None) -> int:
    """End every live session and token of the user (or only those of `kind`)."""
    q = update(Credential).where(Credential.user_id == user.id,
                                 Credential.revoked_at.is_(None))
    if kind is not None:
        q = q.where(Credential.kind == kind)
    return int(session.execute(q.values(revoked_at=now)).rowcount)  # type: ignore[attr-defined]


def set_enabled(session: Session, name: str, enabled: bool, now: datetime) -> User:
    """Disabling also ends every session and token at once: a disabled user is out."""
    user = get_user(session, name)
    if not enabled and user.disabled_at is None:
        if user.role == "admin" and _enabled_admins(session) <= 1:
            raise LastAdmin()
        user.disabled_at = now
        revoke_all(session, user, now)
    elif enabled:
        user.disabled_at = None
    return user


def set_role(session: Session, name: str, role: str, now: datetime, *,
             team: str | None = None) -> User:
    """A new role takes effect on the user's next request: sessions are checked each time."""
    user = get_user(session, name)
    _check_role(session, role, team)
    if user.role == "admin" and role != "admin" and user.disabled_at is None \
            and _enabled_admins(session) <= 1:
        raise LastAdmin()
    user.role, user.team_code = role, team
    return user


def reset_password(session: Session, name: str, password_hash: str, now: datetime) -> User:
    """A new password (hashed) ends the user's sessions (not their scripts' tokens)."""
    user = get_user(session, name)
    user.password_hash = password_hash
    revoke_all(session, user, now, kind="session")
    return user


def new_token(session: Session, name: str, now: datetime) -> str:
    """Another API token for a user (a script's, after `revoke-tokens`); shown once."""
    user = get_user(session, name)
    if user.disabled_at is not None:
        raise InvalidUser(f"user {name!r} is disabled: enable them first")
    return issue_token(session, user, now)


def unlock(session: Session, *, name: str | None = None, address: str | None = None) -> int:
    """Forget the failed sign-ins of a user or an address, ending a lock-out at once
    (a colleague's typos behind the alarm centre's one address, say)."""
    q = delete(SignInFailure)
    if name is not None:
        q = q.where(SignInFailure.name_digest == digest(name))
    if address is not None:
        q = q.where(SignInFailure.address == address)
    if name is None and address is None:
        raise InvalidUser("unlock needs a user or an address")
    return int(session.execute(q).rowcount)  # type: ignore[attr-defined]


def revoke_tokens(session: Session, name: str, now: datetime) -> int:
    return revoke_all(session, get_user(session, name), now)


def rotate_token(session: Session, name: str, role: str, now: datetime) -> str:
    """Give `name` a new token (creating the user if needed); its other credentials end."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        return add_user(session, name, role, now)
    revoke_all(session, user, now)
    return issue_token(session, user, now)


def audited_change(session: Session, name: str, action: str, actor: audit.Actor,
                   now: datetime, change: Callable[[], T], *,
                   address: str | None = None) -> tuple[T, UserView]:
    """Run one change to user `name` and record it in the audit log in the same
    transaction: the user's role, team and state before and after, and how many things
    it touched (sessions revoked, failures forgotten); never a password or a token.
    The CLI and the admin API both change users through here."""
    before = None if action == "user.create" else view_of(
        session, get_user(session, name), now).audit()
    result = change()
    session.flush()
    user = get_user(session, name)
    session.refresh(user)
    after = view_of(session, user, now)
    detail: dict[str, Any] = {"changes": audit.changes(before, after.audit())}
    if isinstance(result, int) and not isinstance(result, bool):
        detail["count"] = result
    audit.record(session, actor, action, now, subject=("user", user.id), address=address,
                 detail=detail)
    return result, after
