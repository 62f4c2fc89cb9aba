"""Live updates as Server-Sent Events: every committed change a user may see, masked.

The dashboard reads the stream with its session cookie (a script with its bearer token);
a comment line after 15 s without a message keeps proxies from closing it. Every few
seconds, however busy the stream is, the session is checked again (`principal_of`, as
every request is): a user disabled, a session ended or a token revoked gets
"signed_out" and the stream ends. Each user gets only what their role may read: alarms
(a responder, their team's only), device health, or neither.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dispatch.api.deps import BearerDep, StateDep, bearer_of, principal_of
from dispatch.api.roles import allow
from dispatch.live import RESYNC
from dispatch.signin import Principal
from dispatch.users import ROLES
from dispatch.views import masked

router = APIRouter(prefix="/api", tags=["live"])
KEEPALIVE_S = 15.0
# How often an open stream asks whether its token still signs someone in (monotonic
# seconds, traffic or not): a revoked token stops getting alarms within this long.
RECHECK_S = 2.5


ALARM_READERS = frozenset({"operator", "responder", "alarm_manager"})
HEALTH_READERS = frozenset({"operator", "tfh", "alarm_manager"})


def _frame(message: dict[str, Any]) -> str:
    return f"event: {message['type']}\ndata: {json.dumps(message)}\n\n"


def _for(message: dict[str, Any], user: Principal) -> dict[str, Any] | None:
    """The message as this user may see it, or None if it is not theirs to see."""
    kind = message.get("type")
    if kind == "alarm":
        alarm = message["alarm"]
        if user.role not in ALARM_READERS or (
                user.role == "responder" and (alarm.get("team") or {}).get("code") != user.team):
            return None
        return {**message, "alarm": masked(alarm)}
    if kind == "health" and user.role not in HEALTH_READERS:
        return None
    return message


@router.get("/stream")
async def stream(request: Request, state: StateDep, user: Annotated[Principal, allow(*ROLES)],
                 credentials: BearerDep) -> StreamingResponse:
    token = bearer_of(request, credentials)
    assert token is not None  # the user was signed in by it a moment ago

    async def frames() -> AsyncIterator[str]:
        viewer = user
        with state.live.subscribe() as queue:
            yield _frame({"type": "hello", "server_time": state.clock.now().isoformat(),
                          "role": user.role})
            checked = sent = time.monotonic()
            while not await request.is_disconnected():
                now = time.monotonic()
                if now - checked >= RECHECK_S:
                    current = await principal_of(state, token)
                    if current is None:
                        yield _frame({"type": "signed_out"})
                        return
                    if (current.role, current.team) != (viewer.role, viewer.team):
                        # A new role or team filters from now on; the dashboard reloads
                        # what it shows, as the new role may see it.
                        viewer = current
                        yield _frame(RESYNC)
                    checked = now
                if now - sent >= KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    sent = now
                wait_s = min(checked + RECHECK_S, sent + KEEPALIVE_S) - now
                try:
                    message = await asyncio.wait_for(queue.get(), max(wait_s, 0.0))
                except TimeoutError:
                    continue
                visible = _for(message, viewer)
                if visible is not None:
                    yield _frame(visible)
                    sent = time.monotonic()

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
