"""Gateway and dispatch as separate processes: devices are answered whatever dispatch does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.db import Database
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker, free_port
from tests.harness import MONDAY_10_LOCAL, ShiftedClock, api, make_token, test_settings
from trygg.migrations import upgrade
from trygg.runtime import Role, Service

pytestmark = pytest.mark.mqtt


async def test_gateway_answers_without_dispatch_and_dispatch_catches_up_later(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    clock = ShiftedClock(MONDAY_10_LOCAL)  # one time for both roles, whatever the hour
    db = Database(sqlite_database_url)
    upgrade(db.engine)  # the gateway never migrates: dispatch (or `trygg migrate`) does
    db.close()
    async with Service(settings, roles={Role.GATEWAY}, clock=clock) as gateway, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        answer = await asyncio.wait_for(SimulatedBaseUnit("100001", link).press(), 30)
        ops = api(gateway, None)
        ready = (await ops.get("/readyz")).json()
        no_api = await ops.get("/api/alarms")
        await ops.aclose()
    async with Service(settings, roles={Role.DISPATCH}, clock=clock) as dispatch:
        client = api(dispatch, make_token(dispatch))
        deadline = time.monotonic() + 5
        while not (alarms := (await client.get("/api/alarms")).json()["alarms"]):
            assert time.monotonic() < deadline, "dispatch did not pick up the stored alarm"
            await asyncio.sleep(0.05)
        await client.aclose()

    assert answer.snu == 0
    assert ready == {"ready": True, "checks": {"database": True, "mqtt": True}}
    assert no_api.status_code == 404
    assert [(a["cid"], a["state"]) for a in alarms] == [("100001", "called_out")]


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def wait_ready(url: str, timeout_s: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    body: dict[str, object] = response.json()
                    return body
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{url} not ready"
            await asyncio.sleep(0.1)


async def test_trygg_run_restarts_a_gateway_that_dies(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    root = f"test/{os.getpid()}-{port}"
    env = {**os.environ, "TRYGG_MQTT_URL": broker.url, "TRYGG_MQTT_TOPIC_ROOT": root,
           "TRYGG_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "TRYGG_HTTP_PORT": str(port), "TRYGG_GATEWAY_HTTP_PORT": str(free_port())}
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trygg.cli", "run", env=env, stderr=asyncio.subprocess.DEVNULL)
    try:
        ready = await wait_ready(f"http://127.0.0.1:{port}/readyz")
        gateway_ready = await wait_ready(
            f"http://127.0.0.1:{env['TRYGG_GATEWAY_HTTP_PORT']}/readyz")
        (first_gateway,) = children_of(service.pid)
        os.kill(first_gateway, signal.SIGKILL)
        async with DeviceLink(broker.host, broker.port, root=root) as link:
            # Sent while the gateway is down: resent until the restarted one answers.
            answer = await asyncio.wait_for(
                SimulatedBaseUnit("100001", link, resend_after_s=0.5).press(), 30)
        (second_gateway,) = children_of(service.pid)
    finally:
        service.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(service.wait(), 20)

    assert ready["ready"] is True
    assert gateway_ready["ready"] is True
    assert answer.snu == 0
    assert second_gateway != first_gateway
    assert code == 0
    assert not process_exists(second_gateway)  # stopped with its parent
