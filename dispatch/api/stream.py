"""Live updates as Server-Sent Events: every committed alarm change, masked per user.

The dashboard reads the stream with fetch() so it can send its bearer token in the
header (EventSource cannot); a comment line after 15 s without a message keeps proxies
from closing it. Every few seconds, however busy the stream is, the token is checked
again: a user removed or given a new token gets "signed_out" and the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dispatch.api.deps import AppState, StateDep, UserDep
from dispatch.users import user_for_token
from dispatch.views import masked

router = APIRouter(prefix="/api", tags=["live"])
KEEPALIVE_S = 15.0
# How often an open stream asks whether its token still signs someone in (monotonic
# seconds, traffic or not): a revoked token stops getting alarms within this long.
RECHECK_S = 2.5


def _frame(message: dict[str, Any], role: str) -> str:
    if message.get("type") == "alarm":
        message = {**message, "alarm": masked(message["alarm"], role)}
    return f"event: {message['type']}\ndata: {json.dumps(message)}\n\n"


async def _still_signed_in(state: AppState, token: str) -> bool:
    """The one check an open stream repeats; it asks what the API's sign-in asks."""
    return await state.db.read(lambda s: user_for_token(s, token)) is not None


@router.get("/stream")
async def stream(request: Request, state: StateDep, user: UserDep) -> StreamingResponse:
    token = request.headers.get("authorization", "").partition(" ")[2]

    async def frames() -> AsyncIterator[str]:
        with state.live.subscribe() as queue:
            yield _frame({"type": "hello", "server_time": state.clock.now().isoformat()},
                         user.role)
            checked = sent = time.monotonic()
            while not await request.is_disconnected():
                now = time.monotonic()
                if now - checked >= RECHECK_S:
                    if not await _still_signed_in(state, token):
                        yield _frame({"type": "signed_out"}, user.role)
                        return
                    checked = now
                if now - sent >= KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    sent = now
                wait_s = min(checked + RECHECK_S, sent + KEEPALIVE_S) - now
                try:
                    message = await asyncio.wait_for(queue.get(), max(wait_s, 0.0))
                except TimeoutError:
                    continue
                yield _frame(message, user.role)
                sent = time.monotonic()

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
