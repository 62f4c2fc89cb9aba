"""Operators and admins, and their bearer tokens (stored only as SHA-256 digests).

TryggError
 ├── UserExists     a user of that name exists already
 └── InvalidName    a user name that is empty, blank or holds control characters
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch.models import User

Role = Literal["operator", "admin"]
ROLES: tuple[Role, ...] = ("operator", "admin")


class UserExists(TryggError):
    pass


class InvalidName(TryggError):
    """A name nobody could read back or type: empty, blank, or holding control characters."""

    def __init__(self, name: str, why: str) -> None:
        # repr() shows a newline or an escape as such, so the message stays one line.
        super().__init__(f"user name {name!r} {why}; give the name the user is known by")
        self.name = name


def _check_name(name: str) -> None:
    if not name.strip():
        raise InvalidName(name, "is empty" if not name else "is only blanks")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise InvalidName(name, "holds control characters")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(session: Session, name: str, role: Role, now: datetime) -> str:
    """Create a user and return its token; the token is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    _check_name(name)
    if session.execute(select(User).where(User.name == name)).scalar_one_or_none():
        raise UserExists(f"user {name!r} exists already")
    token = secrets.token_urlsafe(32)
    session.add(User(name=name, role=role, token_hash=digest(token), created_at=now))
    return token


def rotate_token(session: Session, name: str, role: Role, now: datetime) -> str:
    """Give `name` a new token (creating the user if needed); the old token stops working."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        return add_user(session, name, role, now)
    token = secrets.token_urlsafe(32)
    user.token_hash = digest(token)
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The one answer to "whom does this token sign in?": the API's sign-in and every open
    live stream ask it, so a user refused here (removed, given a new token) is refused
    everywhere at once."""
    return session.execute(
        select(User).where(User.token_hash == digest(token))).scalar_one_or_none()
