"""Retention: processed events go after 90 days, raw frames are blanked after 7, alarms stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.config import load_config
from dispatch.models import Alarm, Deadline, OutboxMessage, PresenceRecord
from dispatch.registry import import_config
from dispatch.retention import Retention
from dispatch.services import DispatchRules
from dispatch.views import alarm_view
from trygg.migrations import upgrade

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
FRAME = b"<mrq><ref>1</ref><cid>100001</cid><dty>3</dty><stt>Anna fell in the kitchen</stt></mrq>"


def _store(db: Database, at: datetime, kind: EventKind, ref: str) -> None:
    event = DeviceEvent(kind=kind, protocol="scaip", cid="100001", ref=ref)
    db.transaction(lambda s: append_events(s, [Incoming(event, FRAME, at)]))


def _apply(db: Database, at: datetime) -> None:
    db.transaction(lambda s: services.process_pending(s, at, RULES, budget_s=60))


def _events(db: Database) -> list[tuple[str, str]]:
    return db.transaction(lambda s: [
        (row.ref, row.payload) for row in s.execute(
            select(DeviceEventRow).order_by(DeviceEventRow.id)).scalars()])


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_old_processed_events_are_deleted_and_recent_frames_blanked(
        db: Database) -> None:
    for days, ref in ((100, "old"), (10, "mid"), (1, "new")):
        at = NOW - timedelta(days=days)
        _store(db, at, EventKind.ALARM if ref == "old" else EventKind.TEST, ref)
        _apply(db, at)
    retention = Retention(db, FakeClock(NOW), batch=1)

    result = await retention.run_once()

    assert (result.deleted, result.blanked) == (1, 1)
    assert _events(db) == [("mid", ""), ("new", FRAME.decode())]
    assert result.rows == 2
    assert _gauge("trygg_event_log_rows") == 2
    assert _gauge("trygg_event_log_oldest_age_seconds") == timedelta(days=10).total_seconds()


async def test_an_unprocessed_event_is_kept_whatever_its_age(db: Database) -> None:
    _store(db, NOW - timedelta(days=200), EventKind.ALARM, "stuck")

    result = await Retention(db, FakeClock(NOW)).run_once()

    assert result.deleted == 0
    assert [ref for ref, _ in _events(db)] == ["stuck"]


async def test_alarms_their_trail_and_presence_records_outlive_their_events(
        db: Database) -> None:
    at = NOW - timedelta(days=120)
    _store(db, at, EventKind.ALARM, "a1")
    _store(db, at + timedelta(minutes=10), EventKind.CHECK_IN, "c1")
    _apply(db, at + timedelta(minutes=10))

    await Retention(db, FakeClock(NOW)).run_once()

    def survivors(s: Any) -> tuple[dict[str, Any], int]:
        alarm = s.execute(select(Alarm)).scalar_one()
        presence = s.execute(select(PresenceRecord)).scalars().all()
        return alarm_view(alarm, timedelta(minutes=30), with_log=True), len(presence)

    view, presence = db.transaction(survivors)
    assert _events(db) == [("c1", "")]  # the newest event of all stays (ids never reused)
    assert view["state"] == "on_site"
    assert [e["action"] for e in view["log"]][:1] == ["receive"]
    assert presence == 1


async def test_a_long_backlog_is_worked_off_in_small_batches(db: Database) -> None:
    at = NOW - timedelta(days=95)
    for n in range(25):
        _store(db, at + timedelta(seconds=n), EventKind.TEST, f"t{n}")
    db.transaction(lambda s: s.execute(update(DeviceEventRow).values(processed_at=at)))
    retention = Retention(db, FakeClock(NOW), batch=10, pause_s=0)

    result = await retention.run_once()

    assert result.deleted == 24
    assert [ref for ref, _ in _events(db)] == ["t24"]


async def test_ids_are_never_handed_out_again_after_retention(db: Database) -> None:
    """SQLite gives a new row max(id) + 1: deleting the newest row would reuse its id."""
    at = NOW - timedelta(days=95)
    for n in range(3):
        _store(db, at + timedelta(seconds=n), EventKind.TEST, f"t{n}")
    db.transaction(lambda s: s.execute(update(DeviceEventRow).values(processed_at=at)))
    newest_before = max(db.transaction(lambda s: s.execute(
        select(DeviceEventRow.id)).scalars().all()))

    await Retention(db, FakeClock(NOW)).run_once()
    _store(db, NOW, EventKind.TEST, "after")
    ids = db.transaction(lambda s: s.execute(
        select(DeviceEventRow.id, DeviceEventRow.ref)).all())

    assert max(i for i, ref in ids if ref == "after") > newest_before


# -- timer steps and team messages -------------------------------------------------------


def _steps(db: Database) -> dict[int, list[tuple[str, bool]]]:
    """Each alarm's timer steps: kind, and whether it is still pending."""
    out: dict[int, list[tuple[str, bool]]] = {}
    for d in db.transaction(lambda s: s.execute(select(Deadline).order_by(Deadline.id))
                            .scalars().all()):
        out.setdefault(d.alarm_id, []).append(
            (d.kind, d.fired_at is None and d.cancelled_at is None))
    return out


def _messages(db: Database) -> list[tuple[str, bool]]:
    return db.transaction(lambda s: [(m.message_id or "", m.sent_at is not None) for m in
                                     s.execute(select(OutboxMessage).order_by(
                                         OutboxMessage.id)).scalars()])


@pytest.fixture
def both_db(database_url: str) -> Iterator[Database]:
    """A migrated database with the shipped registry, on SQLite and on PostgreSQL."""
    database = Database(database_url)
    upgrade(database.engine)
    database.transaction(lambda s: import_config(s, _CONFIG))
    yield database
    database.close()


async def test_finished_alarms_timer_steps_and_sent_messages_go_after_90_days(
        both_db: Database) -> None:
    db = both_db
    old = NOW - timedelta(days=100)
    _store(db, old, EventKind.ALARM, "old")
    _apply(db, old)
    old_id = db.transaction(lambda s: s.execute(select(Alarm.id)).scalar_one())
    db.transaction(lambda s: services.close_by_phone(s, old_id, "all well", "operator",
                                                     old + timedelta(minutes=5)))
    # What was still pending fires (as stale) at its time, a day at most.
    db.transaction(lambda s: services.fire_due(s, old + timedelta(days=1), RULES))
    old_messages = _messages(db)
    db.transaction(lambda s: services.mark_sent(
        s, [m.id for m in s.execute(select(OutboxMessage)).scalars()], old + timedelta(days=1)))
    # A recent alarm, its chain running, and its call-out not sent yet.
    recent = NOW - timedelta(minutes=10)
    _store(db, recent, EventKind.ALARM, "new")
    _apply(db, recent)
    db.transaction(lambda s: services.fire_due(s, NOW, RULES))
    new_id = max(db.transaction(lambda s: s.execute(select(Alarm.id)).scalars().all()))
    before = _steps(db)
    unsent = [m for m in _messages(db) if not m[1]]

    result = await Retention(db, FakeClock(NOW), batch=4, pause_s=0).run_once()

    after = _steps(db)
    assert before[old_id] and old_id not in after  # every one of the old alarm's steps
    assert after[new_id] == before[new_id]  # the running chain keeps all of its own
    assert any(pending for _, pending in after[new_id])
    assert result.steps_deleted == len(before[old_id])
    assert old_messages and _messages(db) == unsent  # the old ones went, sent a day later
    assert result.messages_deleted == len(old_messages)
    assert db.transaction(lambda s: s.get(Alarm, old_id).state) == "closed"  # type: ignore[union-attr]


async def test_a_message_still_to_send_stays_whatever_its_age(db: Database) -> None:
    old = NOW - timedelta(days=200)
    _store(db, old, EventKind.ALARM, "old")
    _apply(db, old)  # its call-out waits in the outbox (the broker was never reached)
    waiting = _messages(db)

    result = await Retention(db, FakeClock(NOW)).run_once()

    assert waiting and _messages(db) == waiting
    assert result.messages_deleted == 0
