"""The background loops of dispatch: apply stored events, fire due deadlines, send the outbox.

Each loop wakes on a signal (the gateway committed, a deadline may be due) or on a short
poll, does one transaction on the writer thread, and pushes what changed to the live
feed after the commit. Time comes from the injected clock; the deadlines themselves are
rows, so tests call the one-shot methods with a fake clock instead of running the loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core import inbox
from core.clock import Clock
from core.db import Database, Lane
from dispatch import services
from dispatch.live import LiveFeed
from dispatch.metrics import ALARMS_RECEIVED, EVENT_FAILURES, REMINDERS
from dispatch.models import Alarm
from dispatch.services import DispatchRules, Outcome
from dispatch.views import alarm_view

log = structlog.get_logger(__name__)

Publish = Callable[[str, str], Awaitable[None]]


class Dispatcher:
    def __init__(self, db: Database, clock: Clock, rules: DispatchRules, live: LiveFeed,
                 publish: Publish | None = None) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules
        self.live = live
        self.publish = publish
        self._events_waiting = asyncio.Event()
        self._outbox_waiting = asyncio.Event()

    @property
    def reminder_after(self) -> timedelta:
        return self.rules.timers.reminder_after

    def wake(self) -> None:
        """The gateway committed new events."""
        self._events_waiting.set()

    # -- one-shot steps (also what tests drive) -----------------------------------------

    async def process_events(self) -> Outcome:
        # Polled ten times a second when the gateway is another process: look with a read
        # first, so an idle dispatch never takes the database's write lock.
        if not await self.db.read(inbox.has_pending):
            return Outcome()
        now = self.clock.now()
        out = await self.db.write(lambda s: services.process_pending(s, now, self.rules),
                                  Lane.BACKGROUND)
        EVENT_FAILURES.inc(out.failed_events)
        await self._after(out)
        return out

    async def fire_due(self) -> Outcome:
        now = self.clock.now()
        if not await self.db.read(lambda s: services.has_due(s, now)):
            return Outcome()
        out = await self.db.write(lambda s: services.fire_due(s, now, self.rules),
                                  Lane.BACKGROUND)
        REMINDERS.inc(out.reminders)
        await self._after(out)
        return out

    async def send_outbox(self) -> int:
        if self.publish is None:
            return 0
        pending = await self.db.read(services.pending_outbox)
        sent: list[int] = []
        for msg_id, topic, payload in pending:
            try:
                await self.publish(topic, payload)
            except Exception as exc:  # broker down: keep the rest for the next round
                log.warning("outbox_publish_failed", topic=topic, error=str(exc))
                break
            sent.append(msg_id)
        if sent:
            now = self.clock.now()
            await self.db.write(lambda s: services.mark_sent(s, sent, now), Lane.BACKGROUND)
        return len(sent)

    async def changed(self, alarm_ids: Sequence[int]) -> None:
        """Push the committed state of these alarms to every dashboard."""
        self._outbox_waiting.set()
        if not alarm_ids or not self.live.subscriber_count:
            return  # nobody is looking: no views to build
        views = await self.db.read(lambda s: [
            alarm_view(a, self.reminder_after) for a in s.execute(
                select(Alarm).where(Alarm.id.in_(alarm_ids))
                .options(selectinload(Alarm.site), selectinload(Alarm.customer))).scalars()
        ])
        for view in views:
            self.live.publish({"type": "alarm", "alarm": view})

    async def _after(self, out: Outcome) -> None:
        for route, count in out.new_alarms.items():
            ALARMS_RECEIVED.labels(route).inc(count)
        await self.changed(out.alarm_ids)

    # -- the loops ---------------------------------------------------------------------

    async def run_events(self, poll_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events_waiting.wait(), poll_s)
            self._events_waiting.clear()
            try:
                started = time.monotonic()
                out = await self.process_events()
                if out.more:
                    # More are waiting; first leave the database to the gateway for as
                    # long as this batch held it, so answers never queue behind dispatch.
                    await asyncio.sleep(min(time.monotonic() - started, 0.05))
                    self._events_waiting.set()
            except Exception:
                log.exception("dispatch_events_failed")
                await asyncio.sleep(poll_s)

    async def run_timers(self, sweep_s: float = 1.0) -> None:
        while True:
            try:
                await self.fire_due()
            except Exception:
                log.exception("dispatch_timers_failed")
            await asyncio.sleep(sweep_s)

    async def run_outbox(self, poll_s: float = 1.0) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_waiting.wait(), poll_s)
            self._outbox_waiting.clear()
            try:
                await self.send_outbox()
            except Exception:
                log.exception("dispatch_outbox_failed")
