"""Live updates as Server-Sent Events: every committed alarm change, masked per user.

The dashboard reads the stream with fetch() so it can send its bearer token in the
header (EventSource cannot); a comment line every 15 s keeps proxies from closing it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dispatch.api.deps import StateDep, UserDep
from dispatch.users import user_for_token
from dispatch.views import masked

router = APIRouter(prefix="/api", tags=["live"])
KEEPALIVE_S = 15.0


def _frame(message: dict[str, Any], role: str) -> str:
    if message.get("type") == "alarm":
        message = {**message, "alarm": masked(message["alarm"], role)}
    return f"event: {message['type']}\ndata: {json.dumps(message)}\n\n"


@router.get("/stream")
async def stream(request: Request, state: StateDep, user: UserDep) -> StreamingResponse:
    token = request.headers.get("authorization", "").partition(" ")[2]

    async def still_signed_in() -> bool:
        return await state.db.read(lambda s: user_for_token(s, token)) is not None

    async def frames() -> AsyncIterator[str]:
        with state.live.subscribe() as queue:
            yield _frame({"type": "hello", "server_time": state.clock.now().isoformat()},
                         user.role)
            while not await request.is_disconnected():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    # A user removed or given a new token stops getting alarms here too.
                    if not await still_signed_in():
                        yield _frame({"type": "signed_out"}, user.role)
                        return
                    yield ": keepalive\n\n"
                    continue
                yield _frame(message, user.role)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
