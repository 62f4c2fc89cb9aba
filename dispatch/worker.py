"""The background loops of dispatch: apply stored events, fire due deadlines, send the outbox.

Each loop wakes on a signal (the gateway committed, a deadline may be due) or on a short
poll, does one transaction on the writer thread, and pushes what changed to the live
feed after the commit. Time comes from the injected clock; the deadlines themselves are
rows, so tests call the one-shot methods with a fake clock instead of running the loops.

Only the dispatcher holding the leader lock runs the loops (`dispatch.leader`); what
they write is conditional besides, so a second one that slipped in applies nothing twice.
The inbox cannot be blocked for good by one event: a head that keeps failing outside
the per-event guard is tried alone and then set aside (`services.quarantine_head`), and
neither can the outbox by one message (set aside after a few tries).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core import inbox
from core.clock import Clock
from core.db import Database, Lane
from core.errors import LinkDown
from core.logs import Throttle
from dispatch import orders, services
from dispatch.live import LiveFeed
from dispatch.metrics import (
    ALARMS_RECEIVED,
    CHAIN_STEPS,
    EVENT_FAILURES,
    EVENTS_QUARANTINED,
    INBOX_RACES_LOST,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_SENT,
    OUTBOX_SET_ASIDE,
    REMINDERS,
    TECHNICAL_CLEARED,
    TECHNICAL_OPENED,
)
from dispatch.models import Alarm, Site
from dispatch.services import DispatchRules, Outcome
from dispatch.technical import HealthChange
from dispatch.views import alarm_view

log = structlog.get_logger(__name__)
# Outbox messages read, published and marked sent together.
OUTBOX_ROUND = 100
# Steps falling due within this of each other fire in one sweep. At a sweep per step
# (~200 a second in the timer benchmark's 100,000 open alarms) each cost 4.8 ms of CPU;
# and a step left due (its alarm locked by an operator's change) is not retried in a
# tight loop.
TIMER_GATHER_S = 0.1
# The longest wait between outbox passes that keep failing (doubling from the poll).
OUTBOX_MAX_BACKOFF_S = 30.0
_pause = asyncio.sleep  # the outbox's back-off (a test records it instead of waiting)


class Publish(Protocol):
    """Hands a message to the broker (raises LinkDown while it is not connected)."""

    def __call__(self, topic: str, payload: str, *, retain: bool = False) -> Awaitable[None]:
        ...

# A batch that fails this often in a row is applied one event at a time; an event that
# fails this often in a row on its own, and for at least this long, is set aside. The
# time keeps a passing error (a few tenths of a second of retries) from quarantining a
# press, which would reach the operators without its call-out.
QUARANTINE_AFTER = 3
QUARANTINE_AFTER_S = 30.0
PROVIDER_CHANGE_CHECK = timedelta(minutes=1)


def database_unreachable(exc: BaseException) -> bool:
    """The database itself failed (down, connection lost, locked): nothing to blame on the
    event, and nothing could be written about it anyway."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                            sa_exc.TimeoutError, OSError))


async def _woken_or_timed_out(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for `event` at most `timeout_s`; stop here if the loop was asked to stop.

    On Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives as what it
    waits for completes: here (an event set as the service stops), and inside aiomqtt's
    publish (a PUBACK arriving as the service stops). The loop then went on for ever and
    the stop hung. A task asked to stop still says so (`cancelling()`): honour it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


class Dispatcher:
    def __init__(self, db: Database, clock: Clock, rules: DispatchRules, live: LiveFeed,
                 publish: Publish | None = None,
                 max_publish_attempts: int = services.MAX_PUBLISH_ATTEMPTS) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules
        self.live = live
        self.publish = publish
        self.max_publish_attempts = max_publish_attempts
        self._events_waiting = asyncio.Event()
        self._outbox_waiting = asyncio.Event()
        # SQLite has one write lock for the whole file: dispatch keeps its transactions
        # short and leaves the lock to the gateway for as long as it held it, so a
        # device's answer never queues long behind dispatch. PostgreSQL locks rows, and
        # the gateway's inserts never wait for dispatch: there it takes bigger batches
        # (fewer commits for the same alarms) and gives way only to the event loop.
        self.shares_write_lock = db.is_sqlite
        self.batch, self.budget_s = ((services.PROCESS_BATCH, services.PROCESS_BUDGET_S)
                                     if self.shares_write_lock else (200, 0.1))
        self._head_failures = 0  # the inbox's head failed this many times in a row
        self._failing_since: float | None = None  # since when (monotonic), if it does
        self.quarantine_after_s = QUARANTINE_AFTER_S
        self._event_failures = Throttle()
        self._one_by_one = 0  # events still to apply alone, to find the one to blame
        self._provider_changes_checked: datetime | None = None

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
            self._one_by_one = 0  # whatever failed is behind us
            return Outcome()
        now = self.clock.now()
        alone = self._one_by_one > 0
        limit = 1 if alone else self.batch
        try:
            out = await self.db.write(
                lambda s: services.process_pending(s, now, self.rules, limit=limit,
                                                   budget_s=self.budget_s),
                Lane.BACKGROUND)
        except inbox.InboxRaceLost as exc:
            # Another dispatcher applied these first; this transaction rolled back whole.
            INBOX_RACES_LOST.inc()
            log.warning("inbox_race_lost", wanted=exc.wanted, marked=exc.marked)
            return Outcome(more=True)
        except Exception as exc:
            if database_unreachable(exc):
                raise  # not the event's fault: retried as it is, with the loop's backoff
            return await self._head_failed(exc, alone, now)
        self._head_failures = 0
        self._failing_since = None
        if alone:
            self._one_by_one -= 1
        EVENT_FAILURES.inc(out.failed_events)
        await self._after(out)
        return out

    async def _head_failed(self, exc: Exception, alone: bool, now: datetime) -> Outcome:
        """The transaction failed outside the per-event guard, and nothing was applied.

        Retried as it is at first (the loop backs off); a batch that keeps failing is then
        applied one event at a time, and an event that keeps failing on its own is set
        aside, so one bad event cannot hold up every alarm behind it for good.
        """
        self._head_failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        failing_for = time.monotonic() - self._failing_since
        if self._head_failures < QUARANTINE_AFTER or (
                alone and failing_for < self.quarantine_after_s):
            raise exc
        self._head_failures = 0
        if not alone:
            self._one_by_one = self.batch
            log.warning("event_batch_keeps_failing_applying_one_by_one",
                        error=type(exc).__name__)
            return Outcome(more=True)
        error = f"{type(exc).__name__}: {exc}"
        out = await self.db.write(
            lambda s: services.quarantine_head(s, now, error, self.rules), Lane.BACKGROUND)
        self._one_by_one -= 1
        self._failing_since = None  # the next event gets its own time
        EVENTS_QUARANTINED.inc(out.processed)
        EVENT_FAILURES.inc(out.failed_events)
        out.more = True
        await self._after(out)
        return out

    async def fire_due(self) -> Outcome:
        now = self.clock.now()
        await self.apply_provider_changes(now)
        if not await self.db.read(lambda s: services.has_due(s, now)):
            return Outcome()
        out = await self.db.write(lambda s: services.fire_due(s, now, self.rules),
                                  Lane.BACKGROUND)
        REMINDERS.inc(out.reminders)
        fired = out.fired
        for step, n in (("call", fired.calls), ("no_answer", fired.no_answer),
                        ("coordinator", fired.coordinator), ("red_flag", fired.red_flags),
                        ("handover", fired.handovers), ("stale", fired.stale),
                        ("failed", fired.failed)):
            if n:
                CHAIN_STEPS.labels(step).inc(n)
        await self._after(out)
        return out

    async def apply_provider_changes(self, now: datetime) -> int:
        """Provider changes that started become the customer's day provider; checked at
        most once a minute (routing asks the orders itself, to the second)."""
        if self._provider_changes_checked and now - self._provider_changes_checked < \
                PROVIDER_CHANGE_CHECK:
            return 0
        self._provider_changes_checked = now
        return await self.db.write(lambda s: orders.apply_started_provider_changes(s, now),
                                   Lane.BACKGROUND)

    async def send_outbox(self) -> int:
        """One pass over what waits in the outbox, publishing it in order; returns how
        many were sent.

        The pass goes round by round, `OUTBOX_ROUND` messages at a time. A round's
        messages are marked sent in one write when it ends, also when it ends early (the
        broker went away, the process is stopping): one write per message queued behind
        the timer sweep's on SQLite's single writer, and in the timer benchmark a chain's
        call-outs went out minutes late. So a crash re-sends at most a round; each
        message's `message_id` lets the team app drop a repeat.

        A message that fails is tried again next pass, and after a few tries set aside;
        the messages behind it in its round go on, except those to the same team (the
        same topic but its last level), which keep their order behind it. A round with a
        failure ends the pass, so the failed message is tried again, first of its team,
        before the rest of a backlog goes out. While the broker is down the pass stops.
        """
        if self.publish is None:
            return 0
        sent = 0
        after = 0
        while True:
            pending = await self.db.read(
                partial(services.pending_outbox, limit=OUTBOX_ROUND, after=after))
            went, ended = await self._outbox_round(pending)
            sent += went
            if ended or len(pending) < OUTBOX_ROUND:
                return sent
            after = pending[-1][0]

    async def _outbox_round(self, pending: list[tuple[int, str, str, bool]],
                            ) -> tuple[int, bool]:
        """Publish a round and mark what went sent: how many, and whether the pass ends
        here (the broker was away, or a message failed)."""
        assert self.publish is not None
        sent: list[int] = []
        held: set[str] = set()  # a message to this team failed: keep the order
        task = asyncio.current_task()
        try:
            for outbox_id, topic, payload, retain in pending:
                # A stop's cancel can be lost inside a publish (on 3.11 the wait for the
                # broker's acknowledgement is a wait_for): honour it here, or the pass
                # would go on over the whole queue while a new leader sends it too.
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
                team = topic.rpartition("/")[0]
                if team in held:
                    continue
                try:
                    await self.publish(topic, payload, retain=retain)
                except LinkDown:
                    log.warning("outbox_waits_for_broker",
                                unsent_in_round=len(pending) - len(sent))
                    return len(sent), True  # no try counted: nothing is wrong with them
                except Exception as exc:
                    held.add(team)
                    await self._publish_failed(outbox_id, exc)
                    continue
                sent.append(outbox_id)
        finally:
            # Even on the way out of a stop: what the broker took is not sent again.
            if sent:
                await self.db.write(partial(services.mark_sent, ids=sent,
                                            now=self.clock.now()), Lane.BACKGROUND)
                OUTBOX_SENT.inc(len(sent))
        return len(sent), bool(held)

    async def _publish_failed(self, outbox_id: int, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        failure = await self.db.write(
            lambda s: services.note_publish_failed(s, outbox_id, error, now,
                                                   self.max_publish_attempts),
            Lane.BACKGROUND)
        OUTBOX_PUBLISH_FAILURES.inc()
        if failure is None:
            return
        # Ids and the error's type only: the message itself stays in the database.
        if failure.set_aside:
            OUTBOX_SET_ASIDE.inc()
            log.error("outbox_message_set_aside", outbox_id=outbox_id,
                      message_id=failure.message_id, attempts=failure.attempts,
                      error=type(exc).__name__)
        else:
            log.warning("outbox_publish_failed", outbox_id=outbox_id,
                        attempts=failure.attempts, error=type(exc).__name__)

    async def changed(self, alarm_ids: Sequence[int]) -> None:
        """Push the committed state of these alarms to every dashboard."""
        self._outbox_waiting.set()
        if not alarm_ids or not self.live.subscriber_count:
            return  # nobody is looking: no views to build
        views = await self.db.read(lambda s: [
            alarm_view(a, self.reminder_after) for a in s.execute(
                select(Alarm).where(Alarm.id.in_(alarm_ids))
                .options(selectinload(Alarm.site).selectinload(Site.customer),
                         selectinload(Alarm.customer))).scalars()
        ])
        for view in views:
            self.live.publish({"type": "alarm", "alarm": view})

    def health_changed(self, change: HealthChange) -> None:
        """Technical alarms or incidents changed (committed): count them, tell the
        dashboards to look again, and send the availability messages queued."""
        for kind, n in change.opened.items():
            TECHNICAL_OPENED.labels(kind).inc(n)
        for kind, n in change.cleared.items():
            TECHNICAL_CLEARED.labels(kind).inc(n)
        for action, incident_id, kind, area in change.incidents_changed:
            log.warning(f"incident_{action}", incident_id=incident_id, kind=kind, area=area)
        if change.availability:
            self._outbox_waiting.set()
        if change:
            # A count and a few incident ids, not the alarms: a power cut changes
            # thousands at once, and the dashboard reloads its health lists (debounced)
            # on this message rather than patching them.
            self.live.publish({"type": "health",
                               "technical": change.touched,
                               "incident_ids": change.incident_ids[:50]})

    async def _after(self, out: Outcome) -> None:
        """After the commit: log and count what it did, and push it to the dashboards."""
        self.health_changed(out.health)
        for alarm in out.received:
            log.info("alarm_received", alarm_id=alarm.alarm_id, cid=alarm.cid,
                     route=alarm.route, team=alarm.team)
        for route, count in out.new_alarms.items():
            ALARMS_RECEIVED.labels(route).inc(count)
        await self.changed(out.alarm_ids)

    # -- the loops ---------------------------------------------------------------------

    async def run_events(self, poll_s: float = 1.0) -> None:
        while True:
            await _woken_or_timed_out(self._events_waiting, poll_s)
            self._events_waiting.clear()
            try:
                started = time.monotonic()
                out = await self.process_events()
                if out.more:
                    # More are waiting; on SQLite first leave the database to the gateway
                    # for as long as this batch held it.
                    held = time.monotonic() - started
                    await asyncio.sleep(min(held, 0.05) if self.shares_write_lock else 0)
                    self._events_waiting.set()
            except Exception as exc:
                # Retried every poll while it lasts: one line per interval, with a count.
                if (count := self._event_failures.hit()) is not None:
                    log.error("dispatch_events_failed", failures=count,
                              error=type(exc).__name__)
                await asyncio.sleep(poll_s)

    async def run_timers(self, sweep_s: float = 1.0) -> None:
        while True:
            pause = sweep_s
            try:
                if (await self.fire_due()).more:
                    # A full batch: more are due (a mass alarm's chains), fired now, not a
                    # second later each; on SQLite after leaving the write lock to the
                    # gateway a moment.
                    pause = 0.01 if self.shares_write_lock else 0.0
                else:
                    pause = await self._until_next_due(sweep_s)
            except Exception:
                log.exception("dispatch_timers_failed")
            await asyncio.sleep(pause)

    async def _until_next_due(self, sweep_s: float) -> float:
        """How long to sleep: until the earliest pending step, at most `sweep_s`, so a
        step fires at its time rather than up to a whole interval late."""
        due = await self.db.read(services.next_due)
        if due is None:
            return sweep_s
        wait = (due - self.clock.now()).total_seconds()
        return min(sweep_s, max(TIMER_GATHER_S, wait))

    async def run_outbox(self, poll_s: float = 1.0,
                         max_backoff_s: float = OUTBOX_MAX_BACKOFF_S) -> None:
        backoff = 0.0
        while True:
            if backoff:
                # After a failed pass, not at the next wake: a database that reads but
                # cannot write (a full disk, a read-only standby after a failover) has
                # each pass publish its round again without marking it sent.
                await _pause(backoff)
            await _woken_or_timed_out(self._outbox_waiting, poll_s)
            self._outbox_waiting.clear()
            try:
                await self.send_outbox()
                backoff = 0.0
            except Exception:
                log.exception("dispatch_outbox_failed")
                backoff = min(max(2 * backoff, poll_s), max_backoff_s)
