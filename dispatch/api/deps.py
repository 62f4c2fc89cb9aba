"""Typed dependencies of the routes: the app's resources, and the signed-in user (by a bearer
token or the dashboard's session cookie, checked on every request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.clock import Clock
from core.db import Database
from core.settings import Settings
from dispatch.api.roles import RoleGate
from dispatch.live import LiveFeed
from dispatch.services import DispatchRules
from dispatch.signin import Principal, SessionPolicy, needs_touch, principal_for, touch
from dispatch.supervision import SupervisionRule
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


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.trygg
    return state


def get_ops_state(request: Request) -> OpsState:
    state: OpsState = request.app.state.trygg
    return state


StateDep = Annotated[AppState, Depends(get_state)]
OpsStateDep = Annotated[OpsState, Depends(get_ops_state)]
bearer_scheme = HTTPBearer(auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
SESSION_COOKIE = "trygg_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(max_age=timedelta(seconds=settings.session_max_s),
                         idle=timedelta(seconds=settings.session_idle_s),
                         max_failures=settings.sign_in_max_failures,
                         window=timedelta(seconds=settings.sign_in_window_s))


def client_address(request: Request) -> str:
    # An address is at most 45 characters (IPv6); the cut keeps a forwarded value from a
    # misconfigured proxy from failing the request.
    return request.client.host[:64] if request.client else "unknown"


def bearer_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The secret a request signs in with: its Authorization header (scripts), else the
    session cookie (the dashboard)."""
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    if request.method not in SAFE_METHODS and not _same_origin(request):
        # The cookie is SameSite=Strict already; a cross-site form or script that still
        # gets it sent (an old browser, a subdomain) is refused here.
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "a request from another site may not use the session cookie")
    return cookie


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.headers.get("host")


async def principal_of(state: AppState, token: str) -> Principal | None:
    """The one check of a bearer secret, for requests and open streams alike; it also
    moves the session's idle mark (at most every TOUCH_EVERY)."""
    now = state.clock.now()
    policy = session_policy(state.settings)
    principal = await state.db.read(lambda s: principal_for(s, token, now, policy))
    if principal is not None and needs_touch(principal, now):
        await state.db.write(lambda s: touch(s, principal.credential_id, now))
    return principal


async def current_user(
    request: Request, state: StateDep, credentials: BearerDep) -> Principal:
    token = bearer_of(request, credentials)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "sign in first (POST /api/session), or send a bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    user = await principal_of(state, token)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "this session or token has ended (expired, signed out, revoked, "
                            "or the user is disabled): sign in again",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[Principal, Depends(current_user)]


def gate(role_gate: RoleGate) -> Callable[..., Awaitable[Principal]]:
    """The dependency of `allow(...)`: the signed-in user, if the role may."""

    async def check(user: UserDep) -> Principal:
        if user.role not in role_gate.roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the role {user.role} may not do this; it needs "
                                f"{' or '.join(sorted(role_gate.roles))}")
        return user

    check.role_gate = role_gate  # type: ignore[attr-defined]
    return check


# The largest id any of our tables can hold (PostgreSQL's integer): a larger one in a path
# names nothing, so it is a 404 like any other unknown id, not a database error.
MAX_ROW_ID = 2**31 - 1


def known_id(value: int, what: str) -> int:
    if not 1 <= value <= MAX_ROW_ID:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {value}")
    return value
