"""The waits between reconnect attempts of every device link (broker, serial line)."""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(initial_s: float, max_s: float) -> Iterator[float]:
    """Doubling from `initial_s`, jittered, never over `max_s`: devices wait for us, so
    once the other end is back we must be too."""
    delay = initial_s
    while True:
        jittered = delay * (0.5 + random.random())  # noqa: S311 (jitter, not crypto)
        yield min(jittered, max_s)
        delay = min(delay * 2, max_s)
