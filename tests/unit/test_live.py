"""The live feed's fan-out: a dashboard that falls behind never changes what the others get."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from dispatch.live import LiveFeed


def alarm(n: int) -> dict[str, Any]:
    return {"type": "alarm", "alarm": {"id": n}}


def taken(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


def test_a_full_subscriber_does_not_change_what_the_others_receive() -> None:
    feed = LiveFeed(max_queue=2)
    with contextlib.ExitStack() as stack:
        stack.enter_context(feed.subscribe())  # a dashboard that never reads
        # Many readers, so some come after the slow one whatever order the feed keeps.
        readers = [stack.enter_context(feed.subscribe()) for _ in range(30)]
        received: list[list[dict[str, Any]]] = [[] for _ in readers]
        for n in range(5):
            feed.publish(alarm(n))
            for queue, got in zip(readers, received, strict=True):
                got.extend(taken(queue))

        assert all(got == [alarm(n) for n in range(5)] for got in received)


def test_a_subscriber_that_falls_behind_gets_one_resync_and_nothing_else() -> None:
    feed = LiveFeed(max_queue=2)
    with feed.subscribe() as slow:
        for n in range(6):
            feed.publish(alarm(n))

        assert taken(slow) == [{"type": "resync"}]


def test_after_taking_its_resync_a_subscriber_gets_messages_again() -> None:
    feed = LiveFeed(max_queue=2)
    with feed.subscribe() as slow:
        for n in range(3):
            feed.publish(alarm(n))
        resync = taken(slow)
        feed.publish(alarm(3))

        assert resync == [{"type": "resync"}]
        assert taken(slow) == [alarm(3)]


def test_a_subscriber_that_keeps_up_never_gets_a_resync() -> None:
    feed = LiveFeed(max_queue=2)
    with feed.subscribe() as reader:
        got = []
        for n in range(10):
            feed.publish(alarm(n))
            got += taken(reader)

        assert got == [alarm(n) for n in range(10)]
