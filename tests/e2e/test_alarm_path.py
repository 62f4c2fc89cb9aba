"""The alarm path end to end: pendant press over MQTT to check-out, as operators see it.

Runs the real service (gateway, dispatch, API) against a real Mosquitto, on SQLite and,
when one is given, on PostgreSQL. Time-dependent rules run on a FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiomqtt
import httpx
import pytest

from core.clock import FakeClock
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.harness import (
    MONDAY_10_LOCAL,
    MONDAY_23_LOCAL,
    api,
    make_token,
    running_service,
    test_settings,
)

pytestmark = pytest.mark.mqtt


async def wait_for_alarm(client: httpx.AsyncClient, cid: str, *, state: str | None = None,
                         timeout_s: float = 5.0, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        alarms = (await client.get("/api/alarms", params={"scope": "all"})).json()["alarms"]
        for alarm in alarms:
            if alarm["cid"] == cid and (state is None or alarm["state"] == state) and all(
                    alarm[k] == v for k, v in match.items()):
                return alarm
        if time.monotonic() > deadline:
            raise AssertionError(f"no alarm for {cid} in state {state} {match}: {alarms}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def team_inbox(broker: Broker, root: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Everything published to the teams, as (topic, payload) in arrival order."""
    received: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{root}/team/#", qos=1)

        async def collect() -> None:
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                received.append((m.topic.value, json.loads(m.payload)))

        task = asyncio.create_task(collect())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def eventually(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_press_to_check_out_by_day(broker: Broker, database_url: str) -> None:
    clock = FakeClock(MONDAY_10_LOCAL)
    settings = test_settings(broker, database_url)
    root = settings.mqtt_topic_root
    async with running_service(settings, clock=clock) as service, team_inbox(
            broker, root) as team_messages, DeviceLink(
            broker.host, broker.port, root=root) as link:
        client = api(service, make_token(service))
        unit = SimulatedBaseUnit("100001", link, resend_after_s=2.0)

        pressed = time.monotonic()
        answer = await unit.press()
        alarm = await wait_for_alarm(client, "100001", timeout_s=1.0)
        seen_after_s = time.monotonic() - pressed

        assert answer.snu == 0
        assert seen_after_s < 1.0
        assert alarm["state"] == "called_out"
        assert alarm["team"]["code"] == "solrosen-kungsangen"
        assert alarm["shift"] == "day"
        assert alarm["customer"]["name"] == "Astrid Lindqvist"
        assert alarm["call_order"][0]["name"] == "Maria Holm"
        assert alarm["deadline_at"] == (MONDAY_10_LOCAL + timedelta(minutes=30)).isoformat()
        await eventually(lambda: any(t.endswith("/team/solrosen-kungsangen/callout")
                                     for t, _ in team_messages))

        accepted = (await client.post(f"/api/alarms/{alarm['id']}/accept",
                                      json={"responder": "Maria Holm"})).json()
        assert accepted["state"] == "accepted"
        assert accepted["accepted_by"] == "Maria Holm"

        clock.advance(timedelta(minutes=12))
        await unit.check_in()
        on_site = await wait_for_alarm(client, "100001", state="on_site")
        assert on_site["arrival_seconds"] == 12 * 60
        assert on_site["deadline_at"] is None

        clock.advance(timedelta(minutes=25))  # past the 30-minute mark, but staff are there
        await asyncio.sleep(0.3)  # several sweeps of the timer loop
        await unit.check_out()
        completed = await wait_for_alarm(client, "100001", state="completed")
        assert completed["reminder_count"] == 0

        closed = (await client.post(f"/api/alarms/{alarm['id']}/close")).json()
        assert closed["state"] == "closed"
        trail = (await client.get(f"/api/alarms/{alarm['id']}")).json()["log"]
        assert [e["action"] for e in trail] == [
            "receive", "call_out", "accept", "check_in", "check_out", "close"]
        assert [e["to_state"] for e in trail] == [
            "received", "called_out", "accepted", "on_site", "completed", "closed"]
        assert all(e["at"] for e in trail)
        await client.aclose()


async def test_alarm_at_night_goes_to_the_night_patrol_of_the_area(
        broker: Broker, database_url: str) -> None:
    clock = FakeClock(MONDAY_23_LOCAL)
    settings = test_settings(broker, database_url)
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        await SimulatedBaseUnit("100002", link).press()
        alarm = await wait_for_alarm(client, "100002")

        assert alarm["team"]["code"] == "nattpatrull-bro"
        assert alarm["shift"] == "night"
        assert alarm["route_reason"] == "night_patrol"
        await client.aclose()


async def test_phone_kvittering_needs_a_reason_and_closes_the_alarm(
        broker: Broker, sqlite_database_url: str) -> None:
    clock = FakeClock(MONDAY_10_LOCAL)
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service, "op-anna"))
        await SimulatedBaseUnit("100003", link).press()
        alarm = await wait_for_alarm(client, "100003")

        refused = await client.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                    json={"reason": "   "})
        closed = await client.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                   json={"reason": "Pressed by mistake, confirmed by phone"})
        queue = (await client.get("/api/alarms", params={"scope": "open"})).json()["alarms"]

        assert refused.status_code == 422
        assert closed.status_code == 200
        assert closed.json()["state"] == "closed"
        assert closed.json()["closed_by"] == "op-anna"
        assert closed.json()["closed_via"] == "phone"
        assert all(a["id"] != alarm["id"] for a in queue)
        await client.aclose()


async def test_check_in_without_an_open_alarm_is_recorded_not_refused(
        broker: Broker, sqlite_database_url: str) -> None:
    from sqlalchemy import select

    from dispatch.models import PresenceRecord

    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service, \
            DeviceLink(broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        answer = await SimulatedBaseUnit("100004", link).check_in()
        await service.dispatcher.process_events()
        records = service.db.transaction(
            lambda s: s.execute(select(PresenceRecord)).scalars().all())

        assert answer.snu == 0
        assert [(r.cid, r.kind, r.alarm_id) for r in records] == [("100004", "check_in", None)]


async def test_reminder_fires_once_after_a_restart_and_future_ones_on_time(
        broker: Broker, database_url: str) -> None:
    t0 = MONDAY_10_LOCAL
    clock = FakeClock(t0)
    settings = test_settings(broker, database_url)
    root = settings.mqtt_topic_root
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=root) as link:
        client = api(service, make_token(service))
        await SimulatedBaseUnit("100001", link).press()
        early = await wait_for_alarm(client, "100001")
        clock.advance(timedelta(minutes=20))
        await SimulatedBaseUnit("100005", link).press()
        late = await wait_for_alarm(client, "100005")
        token = make_token(service, "operator-2")
        await client.aclose()
    # The service is down for 11 minutes: the first alarm's reminder fell due meanwhile.
    clock.advance(timedelta(minutes=11))
    async with team_inbox(broker, root) as team_messages, running_service(
            settings, clock=clock) as service:
        client = api(service, token)
        reminded = await wait_for_alarm(client, "100001", reminder_count=1)
        await asyncio.sleep(0.5)  # ten more sweeps: it must not fire again
        first = (await client.get(f"/api/alarms/{early['id']}")).json()
        second = (await client.get(f"/api/alarms/{late['id']}")).json()

        assert reminded["reminded_at"] == (t0 + timedelta(minutes=31)).isoformat()
        assert first["reminder_count"] == 1
        assert [e["action"] for e in first["log"]].count("remind") == 1
        assert second["reminder_count"] == 0
        def reminders() -> list[int]:
            # A call-out still in the outbox at the stop is delivered now too: only reminders.
            return [p["alarm_id"] for t, p in team_messages if t.endswith("/reminder")]

        await eventually(lambda: len(reminders()) >= 1)
        assert reminders() == [early["id"]]

        clock.set(t0 + timedelta(minutes=50))  # the second alarm's 30 minutes are up
        again = await wait_for_alarm(client, "100005", reminder_count=1)
        assert again["reminded_at"] == (t0 + timedelta(minutes=50)).isoformat()
        first = (await client.get(f"/api/alarms/{early['id']}")).json()
        assert first["reminder_count"] == 1  # its next one is due at 31 + 30 minutes
        await client.aclose()
