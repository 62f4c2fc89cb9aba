"""Password hashing (argon2, tens of milliseconds by design) on threads of its own.

Not on the event loop, and not on the thread pool the database reads share: a trickle of
sign-ins from changing addresses (each under the lock-out) would otherwise queue every
request's session check behind them. A bounded queue answers 503 when full, so a flood
of sign-ins costs the flood, not the alarm centre.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException, status

T = TypeVar("T")
WORKERS = 2
MAX_WAITING = 16

_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="trygg-argon2")
_waiting = 0


async def hashing(fn: Callable[..., T], *args: object) -> T:
    global _waiting
    if _waiting >= MAX_WAITING:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "too many sign-ins at once; try again in a moment",
                            headers={"Retry-After": "1"})
    _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
    finally:
        _waiting -= 1
