"""Heartbeats cost no row: answered at once, last-seen kept in memory and written in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.clock import FakeClock
from core.inbox import DeviceEventRow, DeviceLink
from devices import scaip
from tests.brokers import Broker
from tests.harness import RawDevice, running_service, test_settings
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
UNIT = "100001"


def heartbeat(n: int, extra: str = "") -> bytes:
    return f"<mrq><ref>H{n}</ref><mty>PI</mty><cid>{UNIT}</cid><dty>2</dty>{extra}</mrq>".encode()


def event_rows(service: Service) -> int:
    return service.db.transaction(lambda s: s.execute(
        select(func.count()).select_from(DeviceEventRow)).scalar_one())


def links(service: Service) -> dict[str, datetime]:
    return service.db.transaction(lambda s: dict(
        s.execute(select(DeviceLink.cid, DeviceLink.last_seen_at)).all()))


async def test_heartbeats_are_answered_and_write_no_inbox_row(
        broker: Broker, database_url: str) -> None:
    clock = FakeClock(T0)
    settings = test_settings(broker, database_url, last_seen_flush_s=3600)
    async with running_service(settings, clock=clock) as service, \
            RawDevice(broker, settings.mqtt_topic_root, UNIT) as unit:
        for n in range(40):
            # "whatever else it carries": a status code does not make it an event
            await unit.send(heartbeat(n, "<stc>0102</stc>" if n % 2 else ""))
        answers = [scaip.decode_response(await unit.answer()) for _ in range(40)]
        rows = event_rows(service)

        assert sorted(a.ref for a in answers) == sorted(f"H{n}" for n in range(40))
        assert {a.snu for a in answers} == {0}
        assert rows == 0


async def test_last_seen_is_written_in_batches_one_row_per_unit(
        broker: Broker, database_url: str) -> None:
    clock = FakeClock(T0)
    settings = test_settings(broker, database_url, last_seen_flush_s=3600)
    async with running_service(settings, clock=clock) as service, \
            RawDevice(broker, settings.mqtt_topic_root, UNIT) as unit:
        for n in range(5):
            await unit.send(heartbeat(n))
            await unit.answer()
            clock.advance(timedelta(seconds=60))
        before = links(service)
        written = await service.last_seen.flush()
        after = links(service)

        assert before == {}
        assert written == 1
        assert after == {UNIT: T0 + timedelta(seconds=240)}


async def test_last_seen_survives_a_restart(broker: Broker, database_url: str) -> None:
    clock = FakeClock(T0)
    settings = test_settings(broker, database_url, last_seen_flush_s=3600)
    async with running_service(settings, clock=clock), \
            RawDevice(broker, settings.mqtt_topic_root, UNIT) as unit:
        await unit.send(heartbeat(1))
        await unit.answer()
    # stopped gracefully before any timed flush: the stop wrote it
    async with running_service(settings, clock=clock) as again:
        seen = links(again)

    assert seen == {UNIT: T0}


async def test_an_alarm_still_goes_through_the_inbox_before_its_answer(
        broker: Broker, database_url: str) -> None:
    settings = test_settings(broker, database_url)
    async with running_service(settings) as service, \
            RawDevice(broker, settings.mqtt_topic_root, UNIT) as unit:
        await unit.send(f"<mrq><ref>A1</ref><cid>{UNIT}</cid><dty>3</dty></mrq>".encode())
        answer = scaip.decode_response(await unit.answer())

        assert answer.snu == 0
        assert event_rows(service) == 1
