"""Operators and admins, and their bearer tokens (stored only as SHA-256 digests)."""

from __future__ import annotations

import hashlib
import secrets
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


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(session: Session, name: str, role: Role, now: datetime) -> str:
    """Create a user and return its token; the token is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
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
    return session.execute(
        select(User).where(User.token_hash == digest(token))).scalar_one_or_none()
