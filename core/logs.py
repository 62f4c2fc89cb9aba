"""Logging as JSON lines on stderr, for our own logs and the libraries' alike.

Log ids (alarm id, cid, ref, team code), never names, personal numbers or addresses.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "info") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    # uvicorn, alembic and amqtt log through the standard library: same JSON for them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in ("amqtt", "transitions", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


class Throttle:
    """Say a recurring failure once per interval, with how often it happened meanwhile.

    During an outage every frame fails the same way; a line per frame (thousands in
    seconds) buries the first line that says what went wrong. `hit()` counts, and
    returns the count to log when the interval has passed, else None. The interval is
    measured on a monotonic clock (it paces log lines; it is no domain time rule).
    """

    def __init__(self, interval_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._count = 0
        self._last: float | None = None

    def hit(self, n: int = 1) -> int | None:
        self._count += n
        now = self._monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        count, self._count = self._count, 0
        return count
