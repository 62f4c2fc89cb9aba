"""Typed dependencies of the routes: the app's resources from lifespan, and the signed-in user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.clock import Clock
from core.db import Database
from core.settings import Settings
from dispatch.live import LiveFeed
from dispatch.services import DispatchRules
from dispatch.supervision import SupervisionRule
from dispatch.users import user_for_token
from dispatch.worker import Dispatcher


@dataclass(kw_only=True)
class OpsState:
    """What the operations routes need; all a gateway-only process serves."""

    db: Database
    settings: Settings = field(default_factory=Settings)
    # name -> "is it ready?", e.g. the MQTT link; /readyz reports each one
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)


@dataclass(kw_only=True)
class AppState(OpsState):
    clock: Clock
    rules: DispatchRules
    live: LiveFeed
    dispatcher: Dispatcher
    supervision: SupervisionRule = field(default_factory=SupervisionRule)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.trygg
    return state


def get_ops_state(request: Request) -> OpsState:
    state: OpsState = request.app.state.trygg
    return state


StateDep = Annotated[AppState, Depends(get_state)]
OpsStateDep = Annotated[OpsState, Depends(get_ops_state)]
_bearer = HTTPBearer(auto_error=False)


async def current_user(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    token = credentials.credentials
    user = await state.db.read(lambda s: user_for_token(s, token))
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token",
                            headers={"WWW-Authenticate": "Bearer"})
    return Principal(user.name, user.role)


UserDep = Annotated[Principal, Depends(current_user)]


async def admin_user(user: UserDep) -> Principal:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return user


AdminDep = Annotated[Principal, Depends(admin_user)]
