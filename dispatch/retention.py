"""Retention of the operational logs: old processed events deleted, raw frames blanked
sooner, and finished timer steps and sent team messages deleted.

The inbox keeps every device message dispatch has applied, for the follow-up of an
alarm. After `TRYGG_EVENT_RETENTION_DAYS` (90) a processed event is deleted; after
`TRYGG_RAW_FRAME_RETENTION_DAYS` (7) its raw frame is blanked, since free-text fields
may carry personal data. Alarms, their audit trail and presence records are kept: they
hold the event's id, not a reference the database enforces.

After the same 90 days the timer steps (`deadlines`) that fired or were cancelled, of
alarms no longer open, are deleted, and so are the outbox's messages sent or set aside:
each alarm leaves a dozen of those, and what they did is on the alarm's trail. Both are
worked off from their oldest rows, a window of `batch` at a time, so a pass reads what
it deletes and not the months kept behind it.

Off the hot path: small batches on the writer's background lane, a pause between
batches so device answers never queue behind a long delete, run by the dispatch leader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core import inbox
from core.clock import Clock
from core.db import Database, Lane
from dispatch.models import OPEN_STATES, Alarm, Deadline, OutboxMessage

log = structlog.get_logger(__name__)

DELETED = Counter("trygg_event_log_deleted_total",
                  "Processed device events deleted after the retention period")
BLANKED = Counter("trygg_event_log_frames_blanked_total",
                  "Raw device frames blanked after the raw-frame retention period")
STEPS_DELETED = Counter("trygg_timer_steps_deleted_total",
                        "Fired or cancelled timer steps of finished alarms deleted after "
                        "the retention period")
MESSAGES_DELETED = Counter("trygg_outbox_deleted_total",
                           "Team messages sent or set aside, deleted after the retention "
                           "period")
LOG_ROWS = Gauge("trygg_event_log_rows", "Rows in the device event log")
LOG_OLDEST_AGE = Gauge("trygg_event_log_oldest_age_seconds",
                       "Age of the oldest row in the device event log")

# Batches a pass may take before it yields until the next pass: a backlog of months
# (the first run on an old database) is worked off over several passes.
MAX_BATCHES_PER_PASS = 50


@dataclass(frozen=True)
class Pass:
    deleted: int
    blanked: int
    rows: int
    oldest: datetime | None
    steps_deleted: int = 0
    messages_deleted: int = 0


def delete_finished_steps(session: Session, cutoff: datetime, limit: int) -> int:
    """Of the `limit` oldest timer steps, delete those that fired or were cancelled
    before `cutoff` and whose alarm is no longer open (a running chain keeps its own)."""
    oldest = select(Deadline.id).order_by(Deadline.id).limit(limit).subquery()
    ids = session.execute(
        select(Deadline.id).join(oldest, oldest.c.id == Deadline.id)
        .join(Alarm, Alarm.id == Deadline.alarm_id)
        .where(func.coalesce(Deadline.fired_at, Deadline.cancelled_at) < cutoff,
               Alarm.state.not_in(OPEN_STATES))).scalars().all()
    if ids:
        session.execute(delete(Deadline).where(Deadline.id.in_(ids)))
    return len(ids)


def delete_old_messages(session: Session, cutoff: datetime, limit: int) -> int:
    """Of the `limit` oldest outbox messages, delete those sent or set aside before
    `cutoff`; one still to send stays whatever its age."""
    oldest = select(OutboxMessage.id).order_by(OutboxMessage.id).limit(limit).subquery()
    ids = session.execute(
        select(OutboxMessage.id).join(oldest, oldest.c.id == OutboxMessage.id)
        .where(func.coalesce(OutboxMessage.sent_at, OutboxMessage.failed_at) < cutoff)
    ).scalars().all()
    if ids:
        session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return len(ids)


class Retention:
    def __init__(self, db: Database, clock: Clock, *, event_days: float = 90.0,
                 raw_frame_days: float = 7.0, interval_s: float = 60.0,
                 batch: int = inbox.RETENTION_BATCH, pause_s: float = 0.05,
                 measure_s: float = 600.0) -> None:
        self.db = db
        self.clock = clock
        self.keep_events = timedelta(days=event_days)
        self.keep_frames = timedelta(days=raw_frame_days)
        self.interval_s = interval_s
        self.batch = batch
        self.pause_s = pause_s
        # Counting a log of millions of rows costs a second of reading: every ten minutes
        # is often enough for a gauge that moves by the day.
        self.measure_s = measure_s
        self._measured: tuple[float, int, datetime | None] | None = None

    async def run_once(self) -> Pass:
        """One pass: delete and blank what is due (up to a cap), then measure the log."""
        now = self.clock.now()
        cutoff = now - self.keep_events
        delete = partial(inbox.delete_expired, cutoff=cutoff, limit=self.batch)
        blank = partial(inbox.blank_raw_frames, cutoff=now - self.keep_frames, limit=self.batch)
        steps = partial(delete_finished_steps, cutoff=cutoff, limit=self.batch)
        messages = partial(delete_old_messages, cutoff=cutoff, limit=self.batch)
        # Deleting always starts from the oldest row: what it deleted is its progress.
        deleted = sum(await self._repeat(lambda s: (n := delete(s), n)))
        blanked = sum(await self._repeat(blank))
        steps_deleted = sum(await self._repeat(lambda s: (n := steps(s), n)))
        messages_deleted = sum(await self._repeat(lambda s: (n := messages(s), n)))
        rows, oldest = await self._log_size()
        LOG_ROWS.set(rows)
        LOG_OLDEST_AGE.set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        DELETED.inc(deleted)
        BLANKED.inc(blanked)
        STEPS_DELETED.inc(steps_deleted)
        MESSAGES_DELETED.inc(messages_deleted)
        if deleted or blanked or steps_deleted or messages_deleted:
            log.info("event_log_retention", deleted=deleted, blanked=blanked, rows=rows,
                     timer_steps_deleted=steps_deleted, messages_deleted=messages_deleted)
        return Pass(deleted, blanked, rows, oldest, steps_deleted, messages_deleted)

    async def _log_size(self) -> tuple[int, datetime | None]:
        """The log's rows and oldest arrival, counted again when `measure_s` has passed."""
        measured = self._measured
        if measured is None or time.monotonic() - measured[0] >= self.measure_s:
            rows, oldest = await self.db.read(inbox.log_size)
            if oldest is not None and oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)  # min() skips the column type on SQLite
            measured = self._measured = (time.monotonic(), rows, oldest)
        return measured[1], measured[2]

    async def _repeat(self, job: Callable[[Session], tuple[int, int]]) -> list[int]:
        """Run a (done, progress) batch job until it makes no progress, or up to the cap."""
        done: list[int] = []
        for _ in range(MAX_BATCHES_PER_PASS):
            n, progress = await self.db.write(job, Lane.BACKGROUND)
            done.append(n)
            if progress == 0:
                break
            await asyncio.sleep(self.pause_s)  # leave the writer to devices in between
        return done

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the log grows meanwhile; nothing is lost
                log.error("event_log_retention_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)
