"""Users over the API, for admins: the same operations as `trygg user ...`, each in the
audit log with what it changed (never a password or a token)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch import users
from dispatch.api.deps import AppState, StateDep, client_address
from dispatch.api.hashing import hashing
from dispatch.api.roles import allow
from dispatch.signin import Principal
from dispatch.users import Role

router = APIRouter(prefix="/api/users", tags=["users"])
Admin = Annotated[Principal, allow("admin")]


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    team: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=1024)


class RoleIn(BaseModel):
    role: Role
    team: str | None = Field(default=None, max_length=64)


class PasswordIn(BaseModel):
    password: str = Field(max_length=1024)


def _view(v: users.UserView) -> dict[str, Any]:
    return {**asdict(v), "created_at": v.created_at.isoformat()}


_STATUS = {users.UserNotFound: status.HTTP_404_NOT_FOUND,
           users.UserExists: status.HTTP_409_CONFLICT,
           users.LastAdmin: status.HTTP_409_CONFLICT}


async def _change(state: AppState, admin: Principal, request: Request, name: str, action: str,
                  fn: Callable[[Session], Any], answer: str | None = None) -> dict[str, Any]:
    """Run one change to user `name`, recording before and after in the same transaction;
    the answer has the user, and what `fn` returned under the key `answer`."""
    now = state.clock.now()

    def run(s: Session) -> tuple[Any, users.UserView]:
        return users.audited_change(s, name, action, admin, now, lambda: fn(s),
                                    address=client_address(request))

    try:
        result, after = await state.db.write(run)
    except TryggError as exc:
        code = next((c for t, c in _STATUS.items() if isinstance(exc, t)),
                    status.HTTP_422_UNPROCESSABLE_CONTENT)
        raise HTTPException(code, str(exc)) from exc
    return {"user": _view(after), **({answer: result} if answer else {})}


async def _hashed(password: str) -> str:
    try:
        return await hashing(users.hash_password, password)
    except users.InvalidUser as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("")
async def list_users(state: StateDep, admin: Admin) -> list[dict[str, Any]]:
    now = state.clock.now()
    return [_view(v) for v in await state.db.read(lambda s: users.list_users(s, now))]


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_user(body: NewUser, request: Request, state: StateDep,
                   admin: Admin) -> dict[str, Any]:
    """Create a user; answers its first API token (shown this once)."""
    now = state.clock.now()
    hashed = None if body.password is None else await _hashed(body.password)
    return await _change(state, admin, request, body.name, "user.create", lambda s: users.add_user(
        s, body.name, body.role, now, team=body.team, password_hash=hashed), answer="token")


@router.post("/{name}/disable")
async def disable(name: str, request: Request, state: StateDep, admin: Admin) -> dict[str, Any]:
    """Disable a user: their sessions and tokens stop at once (live streams within 5 s)."""
    now = state.clock.now()
    return await _change(state, admin, request, name, "user.disable",
                         lambda s: users.set_enabled(s, name, False, now))


@router.post("/{name}/enable")
async def enable(name: str, request: Request, state: StateDep, admin: Admin) -> dict[str, Any]:
    now = state.clock.now()
    return await _change(state, admin, request, name, "user.enable",
                         lambda s: users.set_enabled(s, name, True, now))


@router.put("/{name}/role")
async def set_role(name: str, body: RoleIn, request: Request, state: StateDep,
                   admin: Admin) -> dict[str, Any]:
    now = state.clock.now()
    return await _change(state, admin, request, name, "user.set_role",
                         lambda s: users.set_role(s, name, body.role, now, team=body.team))


@router.post("/{name}/reset-password")
async def reset_password(name: str, body: PasswordIn, request: Request, state: StateDep,
                         admin: Admin) -> dict[str, Any]:
    """Set a new password; the user's sessions end (their scripts' tokens do not)."""
    now = state.clock.now()
    hashed = await _hashed(body.password)
    return await _change(state, admin, request, name, "user.reset_password",
                         lambda s: users.reset_password(s, name, hashed, now))


@router.post("/{name}/revoke-tokens")
async def revoke_tokens(name: str, request: Request, state: StateDep,
                        admin: Admin) -> dict[str, Any]:
    """End every session and API token of the user."""
    now = state.clock.now()
    return await _change(state, admin, request, name, "user.revoke_tokens",
                         lambda s: users.revoke_tokens(s, name, now), answer="revoked")


@router.post("/{name}/tokens", status_code=status.HTTP_201_CREATED)
async def new_token(name: str, request: Request, state: StateDep, admin: Admin) -> dict[str, Any]:
    """Another API token for the user (a script's); answered this once."""
    now = state.clock.now()
    return await _change(state, admin, request, name, "user.new_token",
                         lambda s: users.new_token(s, name, now), answer="token")


@router.post("/{name}/unlock")
async def unlock(name: str, request: Request, state: StateDep, admin: Admin) -> dict[str, Any]:
    """End the user's sign-in lock-out: their failed attempts are forgotten."""
    return await _change(state, admin, request, name, "user.unlock",
                         lambda s: users.unlock(s, name=name), answer="unlocked")
