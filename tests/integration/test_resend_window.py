"""A resend is a resend only inside the window: a counter that came round is a new message.

Units number their messages with counters that restart after a power cut or wrap, so
the same `ref` (and the same content) comes back as a new help call. Stored once while
the device is resending; stored again, and a new alarm, once the window has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import inbox
from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, Stored, append_events
from devices import scaip
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.models import Alarm
from tests.brokers import Broker
from tests.harness import RawDevice, running_service, test_settings

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm
WINDOW = timedelta(minutes=60)
PRESS = DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid="100001", ref="0001")


def store(db: Database, at: datetime, event: DeviceEvent = PRESS) -> Stored:
    return db.transaction(lambda s: append_events(
        s, [Incoming(event, b"<mrq/>", at)], resend_window=WINDOW))[0]


def rows(db: Database) -> int:
    return db.transaction(lambda s: s.execute(
        select(func.count()).select_from(DeviceEventRow)).scalar_one())


def test_same_key_within_the_window_is_a_resend(db: Database) -> None:
    first = store(db, T0)
    again = store(db, T0 + timedelta(minutes=59))

    assert again == Stored(first.event_id, duplicate=True)
    assert rows(db) == 1


def test_same_key_after_the_window_is_a_new_message(db: Database) -> None:
    first = store(db, T0)
    later = store(db, T0 + timedelta(minutes=61))

    assert later.duplicate is False
    assert later.event_id != first.event_id
    assert rows(db) == 2


def test_each_resend_extends_the_window(db: Database) -> None:
    """A unit on HOLD resends for up to 30 minutes; a slow one must stay one message."""
    first = store(db, T0)
    for minutes in (40, 80, 120):
        assert store(db, T0 + timedelta(minutes=minutes)).event_id == first.event_id

    assert store(db, T0 + timedelta(minutes=181)).duplicate is False
    assert rows(db) == 2


def test_a_reset_with_the_same_ref_is_not_taken_for_a_resend(db: Database) -> None:
    store(db, T0)
    reset = store(db, T0 + timedelta(seconds=5),
                  DeviceEvent(kind=EventKind.RESET, protocol="scaip", cid="100001", ref="0001"))

    assert reset.duplicate is False


def test_a_resend_in_the_same_batch_as_its_first_copy_is_stored_once(db: Database) -> None:
    results = db.transaction(lambda s: append_events(
        s, [Incoming(PRESS, b"<mrq/>", T0), Incoming(PRESS, b"<mrq/>", T0)],
        resend_window=WINDOW))

    assert [r.duplicate for r in results] == [False, True]
    assert results[0].event_id == results[1].event_id


def test_the_look_up_is_an_index_range_scan(db: Database) -> None:
    """The query the gateway runs for every batch, as SQLite plans it."""
    def plan(s: Session) -> str:
        query = inbox._RECENT.params(keys=[PRESS.idempotency_key], since=T0).compile(
            s.get_bind(), compile_kwargs={"literal_binds": True})
        return " ".join(str(row[3]) for row in s.execute(text(f"EXPLAIN QUERY PLAN {query}")))

    detail = db.transaction(plan)

    assert detail.startswith("SEARCH device_events USING")
    assert "INDEX ix_device_events_key_seen (idempotency_key=? AND last_seen_at>?)" in detail


@pytest.mark.mqtt
async def test_a_restarted_units_press_raises_a_new_alarm(broker: Broker,
                                                          database_url: str) -> None:
    """The unit's counter restarted after a power cut: the same ref, the same bytes,
    70 minutes later. It must be a new alarm, not an OK for a press nobody sees."""
    clock = FakeClock(T0)
    settings = test_settings(broker, database_url)
    press = b"<mrq><ref>1</ref><cid>100001</cid><dty>0003</dty></mrq>"
    async with running_service(settings, clock=clock, run_timer_loop=False) as service, \
            RawDevice(broker, settings.mqtt_topic_root, "100001") as unit:
        await unit.send(press)
        assert scaip.decode_response(await unit.answer()).snu == 0
        await service.dispatcher.process_events()
        first = service.db.transaction(lambda s: s.execute(select(Alarm)).scalar_one())
        service.db.transaction(lambda s: services.close_by_phone(
            s, first.id, "handled by phone", "operator-1", clock.now()))
        clock.advance(timedelta(minutes=70))

        await unit.send(press)
        answer = scaip.decode_response(await unit.answer())
        await service.dispatcher.process_events()
        alarms = service.db.transaction(
            lambda s: s.execute(select(Alarm).order_by(Alarm.id)).scalars().all())

        assert answer.snu == 0
        assert [a.state for a in alarms] == ["closed", "called_out"]
        assert alarms[1].received_at == T0 + timedelta(minutes=70)
