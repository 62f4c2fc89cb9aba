"""The inbox when applying fails: one bad event never blocks the rest, and nothing rolled back
is counted or logged as received.

Failures are made by breaking one step of `dispatch.services` for one unit; the Dispatcher
is driven one step at a time, as its loop would (which logs an error and tries again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.config import load_config
from dispatch.live import LiveFeed
from dispatch.models import Alarm
from dispatch.services import DispatchRules, Outcome
from dispatch.worker import Dispatcher

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
GOOD, BAD, LATER = "100001", "100002", "100003"
_refs = count(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def store(db: Database, clock: FakeClock, *cids: str) -> None:
    now = clock.now()
    events = [DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid=cid,
                          ref=f"{next(_refs):04d}", priority=5) for cid in cids]
    db.transaction(lambda s: append_events(s, [Incoming(e, b"<mrq/>", now) for e in events]))


def alarms(db: Database) -> dict[str, Alarm]:
    return db.transaction(lambda s: {
        a.cid: a for a in s.execute(select(Alarm).order_by(Alarm.id)).scalars()})


def events(db: Database) -> dict[str, DeviceEventRow]:
    return db.transaction(lambda s: {
        e.cid: e for e in s.execute(select(DeviceEventRow)).scalars()})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def drive(worker: Dispatcher, steps: int) -> list[Outcome]:
    """Up to `steps` steps of the events loop; an error is logged and tried again there."""
    outcomes: list[Outcome] = []
    for _ in range(steps):
        if not await worker.db.read(lambda s: bool(s.execute(select(DeviceEventRow.id).where(
                DeviceEventRow.processed_at.is_(None))).first())):
            break
        try:
            outcomes.append(await worker.process_events())
        except Exception:  # the loop logs it and tries again
            continue
    return outcomes


# -- a head that fails outside the per-event guard -----------------------------------------


@pytest.fixture
def lookups_fail_for_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the batch's lookups whenever the bad unit's event is in the batch: outside
    the per-event guard, so the whole transaction rolls back, batch and one-by-one alike."""
    original = services._Batch.__init__

    def failing(self: Any, session: Any, rows: Any) -> None:
        if any(row.cid == BAD for row in rows):
            raise RuntimeError("a bug in the lookups")
        original(self, session, rows)

    monkeypatch.setattr(services._Batch, "__init__", failing)


@pytest.mark.usefixtures("lookups_fail_for_bad")
async def test_a_head_that_keeps_failing_is_set_aside_and_the_events_behind_it_applied(
        db: Database, clock: FakeClock) -> None:
    store(db, clock, GOOD, BAD, LATER)
    worker = Dispatcher(db, clock, RULES, LiveFeed())
    worker.quarantine_after_s = 0  # the failing head has failed long enough
    quarantined = sample("trygg_events_quarantined_total")

    await drive(worker, 20)
    found, stored = alarms(db), events(db)

    assert found[GOOD].state == "called_out"
    assert found[LATER].state == "called_out"
    assert found[BAD].route_reason == "processing_error"  # still on the operators' screen
    assert found[BAD].state == "received"
    assert all(e.processed_at == T0 for e in stored.values())
    assert (stored[BAD].process_error or "").startswith("quarantined: RuntimeError")
    assert stored[GOOD].process_error is None
    assert stored[LATER].process_error is None
    assert sample("trygg_events_quarantined_total") == quarantined + 1


@pytest.mark.usefixtures("lookups_fail_for_bad")
async def test_a_failing_head_is_retried_a_few_times_before_it_is_set_aside(
        db: Database, clock: FakeClock) -> None:
    store(db, clock, BAD)
    worker = Dispatcher(db, clock, RULES, LiveFeed())
    worker.quarantine_after_s = 0

    await drive(worker, 2)
    early = events(db)[BAD]
    await drive(worker, 10)

    assert early.processed_at is None
    assert events(db)[BAD].processed_at == T0


@pytest.mark.usefixtures("lookups_fail_for_bad")
async def test_a_head_failing_only_briefly_is_not_set_aside(
        db: Database, clock: FakeClock) -> None:
    """Many quick failures are not enough: a press set aside reaches the operators
    without its call-out, so the head must have failed for a while first."""
    store(db, clock, BAD)
    worker = Dispatcher(db, clock, RULES, LiveFeed())
    worker.quarantine_after_s = 3600

    await drive(worker, 20)

    assert events(db)[BAD].processed_at is None


async def test_nothing_is_set_aside_while_the_database_itself_fails(
        db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    store(db, clock, GOOD)

    def unreachable(*args: object, **kwargs: object) -> Outcome:
        raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(services, "process_pending", unreachable)
    worker = Dispatcher(db, clock, RULES, LiveFeed())

    await drive(worker, 12)
    monkeypatch.undo()
    stored = events(db)[GOOD]
    await drive(worker, 3)

    assert stored.processed_at is None
    assert stored.process_error is None
    assert alarms(db)[GOOD].route_reason == "day_provider"
    assert events(db)[GOOD].process_error is None


# -- new alarms are counted and logged once committed -----------------------------------------


async def test_an_alarm_rolled_back_is_neither_counted_nor_logged_as_received(
        db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bad unit's call-out fails after its alarm was made: the batch is redone one event
    at a time, and the bad press ends as a fallback alarm. Each alarm kept is counted and
    logged once, and the one rolled back not at all."""
    original = services._call_out

    def failing(session: Any, alarm: Alarm, *args: Any) -> None:
        if alarm.cid == BAD:
            raise RuntimeError("call-out failed")
        original(session, alarm, *args)

    monkeypatch.setattr(services, "_call_out", failing)
    store(db, clock, GOOD, BAD)
    before = {r: sample("trygg_alarms_received_total", route=r)
              for r in ("day_provider", "processing_error")}

    with structlog.testing.capture_logs() as logs:
        outcomes = await drive(Dispatcher(db, clock, RULES, LiveFeed()), 5)
    found = alarms(db)
    received = sorted(e["alarm_id"] for e in logs if e["event"] == "alarm_received")
    counted: dict[str, int] = {}
    for out in outcomes:
        for route, n in out.new_alarms.items():
            counted[route] = counted.get(route, 0) + n

    assert counted == {"day_provider": 1, "processing_error": 1}
    assert received == sorted([found[GOOD].id, found[BAD].id])
    assert found[BAD].route_reason == "processing_error"
    assert len(found) == 2
    assert sample("trygg_alarms_received_total", route="day_provider") == (
        before["day_provider"] + 1)
    assert sample("trygg_alarms_received_total", route="processing_error") == (
        before["processing_error"] + 1)
