"""Last-seen of every device, kept in memory and written in batches: heartbeats cost no row.

Sweden's ~250,000 units at a 60-second interval send ~4,200 heartbeats a second. Each is
answered at once and only moves its unit's last-seen here, as every committed event
does too; every few seconds the book writes one `device_links` row per unit heard since
the last write (the newest time wins, in the database too), and once more when the
gateway stops. A kill -9 loses at most one interval of last-seen, never an alarm:
everything but a heartbeat still goes through the committed inbox before it is answered.

With each write the gateway also notes that it is alive and since when its link to the
devices has been up (`core.inbox.note_gateway`): supervision judges nobody quiet for a
time in which the gateway could not hear them. It writes the state of each of its links
too (broker, serial lines, DC-09 listener), which the dashboard shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from functools import partial

import structlog
from sqlalchemy.orm import Session

from core.clock import Clock
from core.db import Database, Lane
from core.inbox import LinkState, Seen, note_gateway, note_links, touch_links
from core.logs import Throttle
from gateway.metrics import LAST_SEEN_PENDING, LAST_SEEN_ROWS

log = structlog.get_logger(__name__)


class LastSeenBook:
    def __init__(self, db: Database, *, flush_s: float = 5.0, clock: Clock | None = None,
                 listening_since: Callable[[], datetime | None] | None = None,
                 links: Callable[[], list[LinkState]] | None = None) -> None:
        self.db = db
        self.flush_s = flush_s
        # With both, every flush also notes the gateway alive and listening (or not).
        self.clock = clock
        self.listening_since = listening_since
        self.links = links  # the state of every link to devices, for the dashboard
        self._pending: dict[str, Seen] = {}
        self._failures = Throttle()

    def saw(self, cid: str, at: datetime, kind: str) -> None:
        """A device was heard (on the event loop; never blocks)."""
        self._pending[cid] = Seen(cid, at, kind)  # the gauge is set when it is written

    async def flush(self) -> int:
        """Write what was heard since the last flush; on failure keep it for the next."""
        notes = self.clock is not None and self.listening_since is not None
        LAST_SEEN_PENDING.set(len(self._pending))
        if not self._pending and not notes:
            return 0
        taken, self._pending = self._pending, {}
        try:
            rows = await self.db.write(partial(self._write, seen=list(taken.values())),
                                       Lane.BACKGROUND)
        except Exception as exc:
            for cid, seen in taken.items():  # newer news heard meanwhile wins
                self._pending.setdefault(cid, seen)
            if (count := self._failures.hit()) is not None:
                log.error("last_seen_write_failed", units=len(taken), failures=count,
                          error=type(exc).__name__)
            return 0
        finally:
            LAST_SEEN_PENDING.set(len(self._pending))
        LAST_SEEN_ROWS.inc(rows)
        return rows

    def _write(self, session: Session, seen: list[Seen]) -> int:
        rows = touch_links(session, seen)
        if self.clock is not None and self.listening_since is not None:
            note_gateway(session, alive_at=self.clock.now(),
                         listening_since=self.listening_since())
        if self.clock is not None and self.links is not None:
            note_links(session, self.links(), self.clock.now())
        return rows

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()
