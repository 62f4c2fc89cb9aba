"""A digital lock end to end: a press at a site with a lock, the lock opened remotely
through the API, the simulated lock obeying its command over MQTT, and the alarm's trail
and the audit log showing both; refused when the alarm is closed or not the caller's.

Runs the real service against a real Mosquitto, on a FakeClock; the shipped registry
gets the lock at K-1001's door through the registry API.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from core.clock import FakeClock
from dispatch.models import OutboxMessage
from dispatch.users import add_user
from simulator import DeviceLink, SimulatedBaseUnit, SimulatedLock
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt

UNIT, LOCK = "100001", "300001"  # K-1001-1, routed by day to solrosen-kungsangen
LOCK_AT_K1001 = {"customers": [{
    "code": "K-1001", "name": "Astrid Lindqvist", "day_provider": "solrosen",
    "sites": [{"code": "K-1001-1", "address": "Tibblevägen 12", "area": "kungsangen",
               "devices": [{"cid": LOCK, "kind": "lock", "model": "Demo lock"}]}]}]}


@dataclass
class World:
    service: Service
    clock: FakeClock
    unit: SimulatedBaseUnit
    lock: SimulatedLock
    operator: httpx.AsyncClient
    admin: httpx.AsyncClient

    def client(self, name: str, role: str, team: str | None = None) -> httpx.AsyncClient:
        now = self.clock.now()
        token = self.service.db.transaction(lambda s: add_user(s, name, role, now, team=team))
        return api(self.service, token)

    def commands_in_outbox(self) -> list[str]:
        return self.service.db.transaction(lambda s: list(s.execute(
            select(OutboxMessage.topic).where(OutboxMessage.topic.like("%/cmd"))).scalars()))


@pytest_asyncio.fixture
async def world(broker: Broker, database_url: str) -> AsyncIterator[World]:
    clock = FakeClock(MONDAY_10_LOCAL)
    settings = test_settings(broker, database_url)
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        admin = api(service, make_token(service, "admin-1", "admin"))
        registered = await admin.post("/api/registry", json=LOCK_AT_K1001)
        assert registered.status_code == 200, registered.text
        async with SimulatedLock(LOCK, link, clock=clock.now, relock_after_s=0.05,
                                 resend_after_s=1.0) as lock:
            operator = api(service, make_token(service, "op-anna"))
            yield World(service, clock, SimulatedBaseUnit(UNIT, link, resend_after_s=1.0),
                        lock, operator, admin)
            await operator.aclose()
        await admin.aclose()


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """The first truthy result of `check` (a plain or an async function), polled."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def pressed(world: World) -> dict[str, Any]:
    await world.unit.press()

    async def alarm() -> dict[str, Any] | None:
        alarms = (await world.operator.get("/api/alarms")).json()["alarms"]
        return next((a for a in alarms if a["cid"] == UNIT), None)

    found: dict[str, Any] = await eventually(alarm)
    return found


async def trail(world: World, alarm_id: int) -> list[tuple[str, str, str | None]]:
    log = (await world.operator.get(f"/api/alarms/{alarm_id}")).json()["log"]
    return [(e["action"], e["actor"], e["note"]) for e in log]


async def test_an_operator_opens_the_lock_remotely_and_the_trail_shows_request_and_opening(
        world: World) -> None:
    alarm = await pressed(world)

    answer = await world.operator.post(f"/api/alarms/{alarm['id']}/open-lock")
    ref = answer.json()["ref"]

    async def lock_closed_on_trail() -> list[tuple[str, str, str | None]] | None:
        entries = await trail(world, alarm["id"])
        return entries if any(a == "lock_closed" for a, _, _ in entries) else None

    entries = await eventually(lock_closed_on_trail)
    after = (await world.operator.get(f"/api/alarms/{alarm['id']}")).json()
    audited = (await world.admin.get("/api/audit", params={"action": "lock.open"})).json()
    assert answer.status_code == 202
    assert answer.json()["lock"] == LOCK
    assert after["locks"] == [LOCK]  # what the details offer to open
    assert world.lock.obeyed == [ref]
    assert entries[2:] == [
        ("lock_open_requested", "op-anna", f"lock {LOCK}, request {ref}"),
        ("lock_opened", f"device:{LOCK}", f"remote request {ref}"),
        ("lock_closed", f"device:{LOCK}", "no staff id"),  # it locked itself
    ]
    assert after["state"] == "called_out"  # evidence only: the unit's check-in counts
    assert [(e["actor"], e["role"], e["subject_id"], e["detail"])
            for e in audited["entries"]] == [
        ("op-anna", "operator", str(alarm["id"]), {"lock": LOCK, "ref": ref})]


async def test_a_staff_member_opening_the_door_is_evidence_with_their_id(world: World) -> None:
    alarm = await pressed(world)

    await world.lock.open("4711")

    async def opened() -> list[tuple[str, str, str | None]] | None:
        entries = await trail(world, alarm["id"])
        return entries if any(a == "lock_opened" for a, _, _ in entries) else None

    entries = await eventually(opened)
    assert ("lock_opened", f"device:{LOCK}", "staff 4711") in entries
    assert world.lock.obeyed == []


async def test_no_remote_opening_once_the_alarm_is_closed_and_nothing_is_published(
        world: World) -> None:
    alarm = await pressed(world)
    closed = await world.operator.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                       json={"reason": "handled on the phone"})
    assert closed.status_code == 200

    refused = await world.operator.post(f"/api/alarms/{alarm['id']}/open-lock")
    await world.service.dispatcher.send_outbox()

    assert refused.status_code == 409
    assert "only while its alarm is open" in refused.json()["detail"]
    assert world.commands_in_outbox() == []
    assert world.lock.obeyed == [] and world.lock.refused == []
    assert "lock_open_requested" not in [a for a, _, _ in await trail(world, alarm["id"])]


async def test_a_responder_opens_for_their_own_teams_alarm_and_not_for_another_teams(
        world: World) -> None:
    alarm = await pressed(world)
    own = world.client("resp-maria", "responder", "solrosen-kungsangen")
    other = world.client("resp-bro", "responder", "nattpatrull-bro")

    hidden = await other.post(f"/api/alarms/{alarm['id']}/open-lock")
    allowed = await own.post(f"/api/alarms/{alarm['id']}/open-lock")
    await eventually(lambda: world.lock.obeyed)

    assert hidden.status_code == 404
    assert allowed.status_code == 202
    assert world.lock.obeyed == [allowed.json()["ref"]]
    root = world.service.settings.mqtt_topic_root
    assert world.commands_in_outbox() == [f"{root}/dev/{LOCK}/cmd"]
    await own.aclose()
    await other.aclose()


async def test_other_roles_may_not_open_a_lock(world: World) -> None:
    alarm = await pressed(world)
    manager = world.client("am-1", "alarm_manager")

    refused = await manager.post(f"/api/alarms/{alarm['id']}/open-lock")

    assert refused.status_code == 403
    assert world.commands_in_outbox() == []
    await manager.aclose()
