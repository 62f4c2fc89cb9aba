"""The broker link: ready only when subscribed, back within seconds, a stop that answers first."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import structlog
from sqlalchemy import func, select

from core.db import Database, Lane
from core.inbox import DeviceEventRow
from core.settings import Settings
from devices import scaip
from gateway.mqtt import MqttLink
from tests.brokers import Broker, free_port
from tests.harness import RawDevice, test_settings
from trygg.migrations import upgrade
from trygg.runtime import Service
from trygg.supervise import GatewayProcess

pytestmark = pytest.mark.mqtt


def test_reconnect_backoff_is_capped_at_a_few_seconds() -> None:
    link = MqttLink("devices", "127.0.0.1", 1)
    waits = link.backoff()

    delays = [next(waits) for _ in range(30)]

    assert max(delays) <= 3.0
    assert delays[0] <= 0.75  # the first retry comes quickly


async def _eventually(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


async def test_trygg_run_is_not_ready_while_the_gateway_child_cannot_subscribe(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    upgrade(Database(url).engine)
    closed_port = free_port()  # nothing listens: the child never gets its subscription
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{closed_port}", database_url=url,
                        http_port=free_port(), gateway_http_port=free_port())
    async with GatewayProcess(settings) as child:
        assert await _eventually(child.alive, 10)
        await asyncio.sleep(2.0)  # long enough for the child's HTTP server and a probe

        assert child.alive()
        assert not child.ready()


async def test_a_stop_ends_even_when_the_readiness_probe_misses_its_cancel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio.wait_for loses a cancel that meets the end of what it waits
    for; the supervisor's stop then waited for ever on its readiness loop (CI hung 240 s).
    The probe here loses every cancel, as wait_for does at that moment."""
    import trygg.supervise

    probing: list[bool] = []
    lost: list[bool] = []

    async def probe_losing_the_cancel(host: str, port: int, timeout_s: float = 1.0) -> bool:
        probing.append(True)
        try:
            await asyncio.sleep(5)  # long, so the stop's cancel lands here
        except asyncio.CancelledError:
            lost.append(True)
        return False

    monkeypatch.setattr(trygg.supervise, "child_ready", probe_losing_the_cancel)
    url = f"sqlite:///{tmp_path / 't.db'}"
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}", database_url=url,
                        http_port=free_port(), gateway_http_port=free_port())
    child = GatewayProcess(settings)
    await child.__aenter__()
    try:
        assert await _eventually(lambda: child.alive() and probing, 10)
        started = time.monotonic()
        # Not under a timeout: the stop's own `suppress(CancelledError)` would eat its cancel.
        stopping = asyncio.ensure_future(child.__aexit__(None, None, None))
        await asyncio.wait([stopping], timeout=20)
        stopped_in = time.monotonic() - started
    finally:
        if child.alive():
            child._proc.kill()  # type: ignore[union-attr]

    assert lost  # the cancel was lost...
    assert stopping.done() and stopped_in < 15  # ...and the stop ended all the same
    assert not child.alive()


async def test_a_stop_ends_the_child_even_when_a_watcher_died_of_a_bug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trygg.supervise

    async def probe_that_breaks(host: str, port: int, timeout_s: float = 1.0) -> bool:
        raise OverflowError("getsockaddrarg: port must be 0-65535.")  # a port past 65535

    monkeypatch.setattr(trygg.supervise, "child_ready", probe_that_breaks)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                        database_url=f"sqlite:///{tmp_path / 't.db'}",
                        http_port=free_port(), gateway_http_port=free_port())
    child = GatewayProcess(settings)
    await child.__aenter__()
    try:
        assert await _eventually(lambda: child.alive() and child._probe.done(), 10)  # type: ignore[union-attr]
        with pytest.raises(OverflowError):  # the bug is not hidden...
            await child.__aexit__(None, None, None)
    finally:
        orphan = child.alive()
        if orphan:
            child._proc.kill()  # type: ignore[union-attr]

    assert not orphan  # ...and the child is stopped all the same


async def test_trygg_run_is_ready_once_the_gateway_child_is_subscribed(
        broker: Broker, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    upgrade(Database(url).engine)
    settings = test_settings(broker, url, gateway_http_port=free_port())
    async with GatewayProcess(settings) as child, RawDevice(
            broker, settings.mqtt_topic_root, "100001") as unit:
        assert await _eventually(child.ready, 20)
        # The moment it says ready, a press is answered: nothing is lost to a cold start.
        await unit.send(b"<mrq><ref>C1</ref><cid>100001</cid><dty>3</dty></mrq>")
        answer = scaip.decode_response(await unit.answer(timeout_s=5))

        assert answer.snu == 0


async def test_a_graceful_stop_commits_and_answers_what_it_already_took(
        broker: Broker, tmp_path: Path) -> None:
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    service = Service(settings)
    await service.__aenter__()
    gate = threading.Event()
    try:
        async with RawDevice(broker, settings.mqtt_topic_root, "100001") as unit:
            # Hold the writer so the presses wait in the gateway's hands.
            held = asyncio.ensure_future(service.db.write(lambda s: gate.wait(10),
                                                          Lane.DEVICE))
            for n in range(10):
                await unit.send(f"<mrq><ref>G{n}</ref><cid>100001</cid><dty>3</dty>"
                                "</mrq>".encode())
            assert await _eventually(lambda: service.ingest.in_hand == 10, 5)
            stopping = asyncio.ensure_future(service.__aexit__(None, None, None))
            await asyncio.sleep(0.3)  # the stop has begun and is waiting for the writer
            gate.set()
            await held
            await stopping
            answers = [scaip.decode_response(await unit.answer()) for _ in range(10)]
    finally:
        gate.set()
    check = Database(settings.database_url)
    stored = check.transaction(lambda s: s.execute(
        select(func.count()).select_from(DeviceEventRow)).scalar_one())
    check.close()

    assert sorted(a.ref for a in answers) == sorted(f"G{n}" for n in range(10))
    assert {a.snu for a in answers} == {0}
    assert stored == 10


async def test_a_failing_store_logs_a_line_per_interval_not_per_frame(
        broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.ingest

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(gateway.ingest, "append_events", refuse)
    settings = test_settings(broker, f"sqlite:///{tmp_path / 't.db'}")
    with structlog.testing.capture_logs() as logs:
        async with Service(settings) as service, RawDevice(
                broker, settings.mqtt_topic_root, "100001") as unit:
            for n in range(200):
                await unit.send(f"<mrq><ref>F{n}</ref><cid>100001</cid><dty>3</dty>"
                                "</mrq>".encode())
            assert await _eventually(lambda: service.ingest.in_hand == 0, 20)
    failures = [e for e in logs if e["event"] == "event_store_failed"]

    assert 1 <= len(failures) <= 3
