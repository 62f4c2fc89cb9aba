"""Retention: processed events go after 90 days, raw frames are blanked after 7, alarms stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import select, update

from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.config import load_config
from dispatch.models import Alarm, PresenceRecord
from dispatch.retention import Retention
from dispatch.services import DispatchRules
from dispatch.views import alarm_view

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
