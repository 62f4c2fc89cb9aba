"""The demo's keyless lock: in the shipped registry at K-1001's door, never played as a
base unit, and `trygg run --simulate` keeps one simulated lock per lock device listening
for the dashboard's unlocks on the demo's broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest
from sqlalchemy import select

from core.db import Database
from core.settings import SHIPPED_CONFIG
from devices import scaip
from dispatch.config import load_config
from dispatch.models import Device, Site
from simulator import SimulatedLock
from tests.brokers import Broker
from tests.harness import test_settings
from trygg import cli

LOCK, REF = "300001", "9f2c4a1b7e3d5f60"


def test_the_shipped_registry_has_a_keyless_lock_at_k1001s_door(db: Database) -> None:
    config = load_config(SHIPPED_CONFIG)

    [site] = [s for c in config.customers if c.code == "K-1001" for s in c.sites]
    stored = db.transaction(lambda s: s.execute(
        select(Device.cid, Device.kind, Device.model, Site.code)
        .join(Site, Site.id == Device.site_id).where(Site.code == "K-1001-1")
        .order_by(Device.cid)).all())
    assert [(d.cid, d.kind) for d in site.devices] == [("100001", "base_unit"), (LOCK, "lock")]
    assert [tuple(row) for row in stored] == [
        ("100001", "base_unit", "Demo base unit", "K-1001-1"),
        (LOCK, "lock", "Demo keyless lock", "K-1001-1")]


def test_the_demo_plays_each_lock_device_as_a_lock_and_never_as_a_base_unit() -> None:
    config = load_config(SHIPPED_CONFIG)

    assert cli.lock_cids(config) == [LOCK]
    assert LOCK not in cli.base_unit_cids(config)
    assert LOCK not in cli.base_unit_areas(config)
    assert "100001" in cli.base_unit_cids(config)


@pytest.mark.mqtt
async def test_the_demo_wiring_starts_one_simulated_lock_per_lock_device_and_it_obeys(
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator

    started: asyncio.Queue[list[SimulatedLock]] = asyncio.Queue()
    real = simulator.simulated_locks

    @contextlib.asynccontextmanager
    async def watched(host: str, port: int, cids: Sequence[str], *,
                      root: str) -> AsyncIterator[list[SimulatedLock]]:
        async with real(host, port, cids, root=root) as locks:
            started.put_nowait(locks)
            yield locks

    monkeypatch.setattr(simulator, "simulated_locks", watched)
    settings = test_settings(broker, "sqlite://")
    stop = asyncio.Event()
    demo = asyncio.create_task(cli._simulate_locks(settings, stop), name="test.demo-locks")
    try:
        locks = await asyncio.wait_for(started.get(), timeout=10)
        assert [lock.cid for lock in locks] == [LOCK]
        command = scaip.encode_command(scaip.ScaipCommand(
            ref=REF, cid=LOCK, act=scaip.UNLOCK,
            exp=datetime.now(UTC) + timedelta(minutes=2)))
        root = settings.mqtt_topic_root
        async with aiomqtt.Client(broker.host, broker.port) as client, asyncio.timeout(5):
            await client.subscribe(f"{root}/dev/{LOCK}/mrq", qos=1)
            await client.publish(f"{root}/dev/{LOCK}/cmd", command, qos=1)
            # The lock's own report of the opening (nobody answers it here: no gateway).
            message = await anext(aiter(client.messages))
        assert isinstance(message.payload, bytes)
        report = scaip.parse_request(message.payload)
        assert (report.cid, report.stc, report.ite) == (LOCK, "0127", f"remote:{REF}")
        assert locks[0].obeyed == [REF]
    finally:
        stop.set()
        await asyncio.wait_for(demo, timeout=10)
