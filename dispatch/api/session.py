"""Signing in and out: `POST /api/session` with a name and password opens a session (a
cookie for the dashboard, and the same secret as a bearer token for scripts);
`DELETE /api/session` ends the one in use; `GET /api/session` (and `/api/me`) says who."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.api.audit import note
from dispatch.api.deps import SESSION_COOKIE, StateDep, client_address, session_policy
from dispatch.api.hashing import hashing
from dispatch.api.roles import allow, public
from dispatch.metrics import SIGN_INS
from dispatch.models import AuditEntry
from dispatch.signin import (
    Principal,
    SessionPolicy,
    SignInChanged,
    SignInLocked,
    begin_attempt,
    candidate,
    end_credential,
    open_session,
)
from dispatch.users import ROLES, password_matches

router = APIRouter(prefix="/api", tags=["session"])
log = structlog.get_logger(__name__)
Anyone = Annotated[Principal, allow(*ROLES)]
WRONG = "the name or the password is wrong"


class SignIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


def _me(user: Principal) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "team": user.team, "kind": user.kind,
            "expires_at": user.expires_at.isoformat() if user.expires_at else None}


@router.post("/session", dependencies=[public()])
async def sign_in(body: SignIn, request: Request, response: Response,
                  state: StateDep) -> dict[str, Any]:
    """Sign in with a name and password; answers the session and sets its cookie.

    After `TRYGG_SIGN_IN_MAX_FAILURES` failures for one user, or from one address, within
    `TRYGG_SIGN_IN_WINDOW_S`, attempts are refused with 429 (the right password too)
    until the window has passed."""
    now, policy, address = state.clock.now(), session_policy(state.settings), client_address(
        request)
    try:
        failure_id = await state.db.write(
            lambda s: begin_attempt(s, body.name, address, now, policy))
    except SignInLocked as exc:
        SIGN_INS.labels("locked").inc()
        by = exc.by
        log.warning("sign_in_locked", address=address, by=by)
        await state.db.write(lambda s: _note_lock(s, address, by, now, policy))
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc),
                            headers={"Retry-After": str(exc.retry_after_s)}) from exc
    who = await state.db.read(lambda s: candidate(s, body.name))
    right = await hashing(password_matches, who.password_hash, body.password)
    if not right or who.user_id is None or not who.enabled:
        outcome = "disabled" if right else "unknown_user" if who.user_id is None else "wrong"
        SIGN_INS.labels(outcome).inc()
        # Never the password, nor the name typed (it may be a password typed in the
        # wrong field): the user's id when there is one.
        log.warning("sign_in_failed", user_id=who.user_id, address=address, outcome=outcome)
        await note(state, audit.System("anonymous", user_id=who.user_id),
                   "session.sign_in_failed", address=address, detail={"outcome": outcome})
        if outcome == "disabled":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this user is disabled")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, WRONG)
    user_id, checked = who.user_id, who.password_hash
    try:
        token, user = await state.db.write(
            lambda s: _open_and_note(s, user_id, checked, failure_id, now, policy, address))
    except SignInChanged as exc:  # reset or disabled while the password was checked
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, WRONG) from exc
    SIGN_INS.labels("ok").inc()
    log.info("signed_in", user_id=user.user_id, role=user.role)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(policy.max_age.total_seconds()),
                        httponly=True, samesite="strict", path="/",
                        secure=state.settings.cookie_secure or request.url.scheme == "https")
    return {**_me(user), "token": token, "idle_timeout_s": policy.idle.total_seconds()}


def _note_lock(s: Session, address: str, by: str, now: datetime,
               policy: SessionPolicy) -> None:
    """One audit entry per address per lock-out window: refused attempts are counted in
    trygg_sign_ins_total, not written one by one into a log nobody may trim."""
    noted = s.execute(select(AuditEntry.id).where(
        AuditEntry.action == "session.sign_in_locked", AuditEntry.address == address,
        AuditEntry.at > now - policy.window).limit(1)).first()
    if noted is None:
        audit.record(s, audit.System("anonymous"), "session.sign_in_locked", now,
                     address=address, detail={"by": by})


def _open_and_note(s: Session, user_id: int, checked: str | None, failure_id: int,
                   now: datetime, policy: SessionPolicy, address: str) -> tuple[str, Principal]:
    token, user = open_session(s, user_id, checked, failure_id, now, policy)
    audit.record(s, user, "session.sign_in", now, subject=("user", user.user_id),
                 address=address)
    return token, user


@router.delete("/session")
async def sign_out(request: Request, response: Response, state: StateDep,
                   user: Anyone) -> dict[str, bool]:
    """End the session (or revoke the token) this request was made with."""
    now = state.clock.now()

    def end(s: Any) -> None:
        end_credential(s, user.credential_id, now)
        audit.record(s, user, "session.sign_out", now, subject=("user", user.user_id),
                     address=client_address(request), detail={"kind": user.kind})

    await state.db.write(end)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"signed_out": True}


@router.get("/session")
async def current_session(user: Anyone) -> dict[str, Any]:
    return _me(user)


@router.get("/me")
async def me(user: Anyone) -> dict[str, Any]:
    return _me(user)
