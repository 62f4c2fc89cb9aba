"""The live feed: alarm changes pushed to every open dashboard after they are committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

RESYNC: dict[str, Any] = {"type": "resync"}


class LiveFeed:
    """In-process fan-out. A slow subscriber never blocks the others or changes what they get.

    A subscriber whose queue is full is told to start over: its queue is emptied down to
    one "resync" message (the dashboard then reloads the whole list), and nothing more is
    queued for it until it has taken that message, since the reload will show it anyway.
    """

    def __init__(self, max_queue: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._resyncing: set[asyncio.Queue[dict[str, Any]]] = set()
        self._max_queue = max_queue

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._max_queue)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            self._resyncing.discard(queue)

    def publish(self, message: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue in self._resyncing:
                if not queue.empty():
                    continue  # its resync is still waiting: the reload covers this message
                self._resyncing.discard(queue)
            if queue.full():
                _empty(queue)
                queue.put_nowait(RESYNC)
                self._resyncing.add(queue)
                continue
            queue.put_nowait(message)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


def _empty(queue: asyncio.Queue[dict[str, Any]]) -> None:
    while not queue.empty():
        queue.get_nowait()
