"""Device health end to end: faults from units over a real Mosquitto to the health API, a
unit gone quiet to a link fault and its retained availability, and back.

The service runs on a fake clock with its timer loops off: the test flushes last-seen
and sweeps supervision itself, as the leader's loops would every few seconds.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiomqtt
import httpx

from core.clock import FakeClock
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings
from trygg.runtime import Service

BRO = ["100002", "100102", "100004", "100005", "100008"]


async def open_faults(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    body = (await client.get("/api/technical-alarms")).json()
    return body["technical_alarms"]  # type: ignore[no-any-return]


async def wait_for_faults(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        found[:] = await open_faults(client)
        return len(found) >= n

    for _ in range(250):
        if await check():
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} open technical alarms expected, got {found}")


async def retained(broker: Broker, topic: str) -> dict[str, Any]:
    """What a client subscribing now is handed: the retained message, if any."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                assert isinstance(message.payload, bytes)
                return json.loads(message.payload)  # type: ignore[no-any-return]
    raise AssertionError("no retained message")


async def test_a_power_cut_shows_as_technical_alarms_and_one_incident(
        broker: Broker, database_url: str) -> None:
    clock = FakeClock(MONDAY_10_LOCAL)
    settings = test_settings(broker, database_url, mass_event_units=3)
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        units = [SimulatedBaseUnit(cid, link) for cid in BRO]

        await asyncio.gather(*(u.mains_lost() for u in units))
        faults = await wait_for_faults(client, len(BRO))

        assert {(f["cid"], f["kind"], f["state"]) for f in faults} == {
            (cid, "mains_lost", "open") for cid in BRO}
        (incident,) = (await client.get("/api/incidents")).json()["incidents"]
        assert (incident["kind"], incident["area"], incident["count"], incident["state"]) == (
            "mains_lost", "bro", 5, "open")
        health = (await client.get("/api/devices/health",
                                   params={"status": "mains_lost"})).json()["devices"]
        assert sorted(d["cid"] for d in health) == sorted(BRO)
        # The incident stands for its units where the operator asks for that.
        battery = SimulatedBaseUnit("100001", link)
        await battery.battery_low()
        await wait_for_faults(client, len(BRO) + 1)
        outside = (await client.get("/api/technical-alarms", params={
            "outside_incidents": "true"})).json()["technical_alarms"]
        assert [(f["cid"], f["kind"]) for f in outside] == [("100001", "battery_low")]
        outside_health = (await client.get("/api/devices/health", params={
            "status": "mains_lost", "outside_incidents": "true"})).json()["devices"]
        assert outside_health == []
        # No help call came of it: the queue is empty.
        assert (await client.get("/api/alarms")).json()["alarms"] == []

        clock.advance(timedelta(minutes=20))
        await asyncio.gather(*(u.mains_restored() for u in units))

        async def incident_closed() -> bool:
            body = (await client.get("/api/incidents")).json()
            return bool(body["incidents"][0]["state"] == "closed")

        for _ in range(250):
            if await incident_closed():
                break
            await asyncio.sleep(0.02)
        (incident,) = (await client.get("/api/incidents")).json()["incidents"]
        assert (incident["state"], incident["count"], incident["peak"]) == ("closed", 0, 5)
        assert incident["closed_at"] == (MONDAY_10_LOCAL + timedelta(minutes=20)).isoformat()
        assert [f["kind"] for f in await open_faults(client)] == ["battery_low"]
        await client.aclose()


async def test_an_operator_clears_a_fault_by_hand_with_a_note(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service, "operator-7"))
        await SimulatedBaseUnit("100003", link).battery_low()
        (fault,) = await wait_for_faults(client, 1)

        no_note = await client.post(f"/api/technical-alarms/{fault['id']}/clear",
                                    json={"note": "  "})
        cleared = await client.post(f"/api/technical-alarms/{fault['id']}/clear",
                                    json={"note": "Battery replaced on visit"})
        again = await client.post(f"/api/technical-alarms/{fault['id']}/clear",
                                  json={"note": "twice"})
        missing = await client.post("/api/technical-alarms/999999/clear", json={"note": "x"})

        assert no_note.status_code == 422
        assert cleared.status_code == 200
        body = cleared.json()
        assert (body["state"], body["cleared_by"], body["clear_note"]) == (
            "cleared", "operator-7", "Battery replaced on visit")
        assert [e["action"] for e in body["log"]] == ["opened", "cleared_by_hand"]
        assert (again.status_code, missing.status_code) == (409, 404)
        assert await open_faults(client) == []
        everything = (await client.get("/api/technical-alarms",
                                       params={"scope": "all"})).json()
        assert [f["id"] for f in everything["technical_alarms"]] == [fault["id"]]
        await client.aclose()


async def sweep(service: Service) -> None:
    await service.last_seen.flush()
    await service.supervisor.sweep_once()
    await service.dispatcher.send_outbox()


async def test_a_quiet_unit_gets_a_link_fault_and_goes_offline_until_heard(
        broker: Broker, database_url: str) -> None:
    clock = FakeClock(MONDAY_10_LOCAL)
    settings = test_settings(broker, database_url)
    root = settings.mqtt_topic_root
    async with running_service(settings, clock=clock, run_timer_loop=False) as service, \
            DeviceLink(broker.host, broker.port, root=root) as link:
        client = api(service, make_token(service))
        unit = SimulatedBaseUnit("100001", link)
        await unit.heartbeat()
        await sweep(service)  # supervision starts: counted from now

        clock.advance(timedelta(minutes=69))
        await sweep(service)
        assert await open_faults(client) == []
        clock.advance(timedelta(minutes=2))  # 71 minutes unheard: past 60 + 10
        await sweep(service)

        (fault,) = await open_faults(client)
        assert (fault["cid"], fault["kind"], fault["source"]) == (
            "100001", "link_fault", "supervision")
        quiet = (await client.get("/api/devices/health",
                                  params={"status": "quiet"})).json()["devices"]
        assert [(d["cid"], d["overdue_s"]) for d in quiet] == [("100001", 60)]
        topic = f"{root}/dev/100001/availability"
        assert (await retained(broker, topic))["state"] == "offline"

        await unit.heartbeat()
        await sweep(service)

        assert await open_faults(client) == []
        assert (await retained(broker, topic))["state"] == "online"
        links = (await client.get("/api/links")).json()["links"]
        assert [(li["name"], li["state"], li["stale"]) for li in links] == [
            ("mqtt", "connected", False)]
        assert set(links[0]) == {"name", "kind", "state", "since", "updated_at", "stale"}
        await client.aclose()


async def test_the_health_api_refuses_what_it_does_not_know(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service:
        client = api(service, make_token(service))
        anonymous = api(service, None)

        bad_status = await client.get("/api/devices/health", params={"status": "sleepy"})
        bad_scope = await client.get("/api/technical-alarms", params={"scope": "some"})
        bad_cursor = await client.get("/api/technical-alarms",
                                      params={"scope": "all", "cursor": "-1"})
        paged_open = await client.get("/api/technical-alarms", params={"cursor": "5"})
        statuses = [(await anonymous.get(path)).status_code for path in (
            "/api/technical-alarms", "/api/incidents", "/api/devices/health", "/api/links")]

        assert [r.status_code for r in (bad_status, bad_scope, bad_cursor, paged_open)] == [
            422, 422, 422, 422]
        assert statuses == [401] * 4
        await client.aclose()
        await anonymous.aclose()
