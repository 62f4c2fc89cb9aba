"""The gateway against a real Mosquitto and a real database: commit first, then answer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from core.inbox import DeviceEventRow
from devices import scaip
from dispatch.models import Alarm
from tests.brokers import Broker
from tests.harness import RawDevice, running_service, test_settings
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt

ALARM = b"<mrq><ref>A1</ref><cid>100001</cid><dty>0003</dty></mrq>"


def stored_events(service: Service, cid: str) -> int:
    return service.db.transaction(lambda s: s.execute(
        select(func.count()).select_from(DeviceEventRow).where(DeviceEventRow.cid == cid)
    ).scalar_one())


def rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("trygg_frame_rejections_total", {"reason": reason}) or 0.0


async def test_alarm_is_answered_ok_and_stored(broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        await device.send(ALARM)
        answer = scaip.decode_response(await device.answer())

        assert (answer.ref, answer.snu) == ("A1", 0)
        assert stored_events(service, "100001") == 1


async def test_no_answer_until_the_event_is_committed(broker: Broker, tmp_path: Path) -> None:
    db_file = tmp_path / "t.db"
    settings = test_settings(broker, f"sqlite:///{db_file}")
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        blocker = sqlite3.connect(db_file, timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")  # the database cannot take a write now
        await device.send(ALARM)
        with pytest.raises(TimeoutError):
            await device.answer(timeout_s=1.0)
        blocker.rollback()
        blocker.close()
        answer = scaip.decode_response(await device.answer(timeout_s=15.0))

        assert answer.snu == 0
        assert stored_events(service, "100001") == 1


async def test_resend_with_same_ref_is_answered_again_and_stored_once(
        broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        for _ in range(3):
            await device.send(ALARM)
            assert scaip.decode_response(await device.answer()).ref == "A1"
        await service.dispatcher.process_events()
        alarms = service.db.transaction(lambda s: s.execute(select(Alarm)).scalars().all())

        assert stored_events(service, "100001") == 1
        assert len(alarms) == 1
        assert alarms[0].repeat_count == 0


async def test_alarm_from_unregistered_device_is_kept_and_shown_as_unknown(
        broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "999000111") as device:
        await device.send(b"<mrq><ref>U1</ref><cid>999000111</cid><dty>0003</dty></mrq>")
        answer = scaip.decode_response(await device.answer())
        await service.dispatcher.process_events()
        alarm = service.db.transaction(lambda s: s.execute(select(Alarm)).scalar_one())

        assert answer.snu == 0
        assert alarm.unknown_device is True
        assert alarm.route_reason == "unknown_device"
        assert alarm.state == "received"
        assert alarm.team_code is None


@pytest.mark.parametrize(("frame", "snu", "reason"), [
    (b"this is not xml", 2, "not_xml"),
    (b"<mrq><ref>R7</ref><dty>0003</dty></mrq>", 7, "missing_cid"),
    (b"<mrq><cid>100001</cid><dty>0003</dty></mrq>", 10, "missing_ref"),
    (b"<mrq><ref>R8</ref><cid>100001</cid><pri>high</pri></mrq>", 3, "invalid_field"),
    (b"<mrq><ref>R9</ref><cid>100002</cid></mrq>", 3, "cid_mismatch"),
    (b"<mrq><ref>RA</ref><cid>100001</cid><stt>" + b"x" * 5000 + b"</stt></mrq>", 1, "too_long"),
])
async def test_invalid_frame_gets_scaip_error_status_and_a_counted_rejection(
        broker: Broker, tmp_path: Path, frame: bytes, snu: int, reason: str) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    before = rejections(reason)
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        await device.send(frame)
        answer = scaip.decode_response(await device.answer())

        assert answer.snu == snu
        assert rejections(reason) == before + 1
        assert stored_events(service, "100001") == 0


async def test_bad_frame_does_not_disturb_events_already_stored(
        broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        await device.send(ALARM)
        await device.answer()
        await device.send(b"<mrq><ref>A1</ref><cid>100001</cid><!-- cut off")
        bad = scaip.decode_response(await device.answer())
        await device.send(ALARM)
        again = scaip.decode_response(await device.answer())

        assert bad.snu == 2
        assert again.snu == 0
        assert stored_events(service, "100001") == 1


async def test_heartbeat_asking_for_an_interval_gets_one(broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings), RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        await device.send(b"<mrq><ref>H1</ref><mty>PI</mty><cid>100001</cid><dty>2</dty>"
                          b"<hbo>001</hbo></mrq>")
        answer = scaip.decode_response(await device.answer())

        assert answer.snu == 0
        assert answer.hbi == 60


async def test_gateway_reconnects_after_the_broker_restarts(tmp_path: Path) -> None:
    from tests.brokers import free_port, mosquitto

    port = free_port()
    with mosquitto(port) as first:
        settings = test_settings(first, f"sqlite:///{tmp_path / 't.db'}")
        service_cm = running_service(settings)
        service = await service_cm.__aenter__()
    try:
        # The broker is gone: the link says so, and so does /readyz.
        for _ in range(100):
            if not service.link.connected:
                break
            await asyncio.sleep(0.05)
        assert service.link.state == "disconnected"
        with mosquitto(port) as second:
            await service.link.wait_connected(timeout_s=20)
            async with RawDevice(second, settings.mqtt_topic_root, "100001") as device:
                await device.send(ALARM)
                answer = scaip.decode_response(await device.answer(timeout_s=10))

            assert answer.snu == 0
            assert stored_events(service, "100001") == 1
    finally:
        await service_cm.__aexit__(None, None, None)


async def test_long_free_fields_are_stored_clipped_not_refused(
        broker: Broker, database_url: str) -> None:
    settings = test_settings(broker, database_url)
    async with running_service(settings) as service, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as device:
        await device.send(b"<mrq><ref>L1</ref><cid>100001</cid><dty>0003</dty>"
                          b"<lco>123456789012</lco><did>" + b"p" * 80 + b"</did></mrq>")
        answer = scaip.decode_response(await device.answer())
        row = service.db.transaction(lambda s: s.execute(select(DeviceEventRow)).scalar_one())

        assert answer.snu == 0
        assert (row.location_code, row.device_id) == ("12345678", "p" * 64)


async def test_a_frame_that_cannot_be_stored_does_not_hold_up_other_units(
        broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.ingest
    from core.inbox import append_events

    def refuse_one_unit(session: object, items: list[Any], **kwargs: Any) -> Any:
        if any(item.event.cid == "100002" for item in items):
            raise RuntimeError("cannot store this one")
        return append_events(session, items, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gateway.ingest, "append_events", refuse_one_unit)
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    async with running_service(settings), RawDevice(
            broker, settings.mqtt_topic_root, "100001") as good, RawDevice(
            broker, settings.mqtt_topic_root, "100002") as bad:
        await bad.send(b"<mrq><ref>B1</ref><cid>100002</cid><dty>0003</dty></mrq>")
        await good.send(ALARM)
        answer = scaip.decode_response(await good.answer())

        assert answer.snu == 0
        with pytest.raises(TimeoutError):
            await bad.answer(timeout_s=1.0)  # unanswered: the unit resends
