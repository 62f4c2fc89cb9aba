"""The API as its users meet it: tokens and roles, the trygg command, edits, the live stream."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.clock import FakeClock
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings

pytestmark = pytest.mark.mqtt


def trygg(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRYGG_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "trygg.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_user_add_prints_a_token_as_its_last_line_and_import_is_idempotent(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    first = trygg("import", "config/municipality.yaml", database_url=url)
    second = trygg("import", "config/municipality.yaml", database_url=url)
    added = trygg("user", "add", "anna", "--role", "admin", database_url=url)
    twice = trygg("user", "add", "anna", "--role", "admin", database_url=url)

    assert first.returncode == 0, first.stderr
    assert "40 created" in first.stdout
    assert "0 created, 0 updated, 40 unchanged" in second.stdout
    assert added.returncode == 0
    assert len(added.stdout.strip().splitlines()[-1]) >= 40
    assert twice.returncode == 2
    assert "exists already" in twice.stderr


async def test_every_api_route_needs_a_valid_token_but_health_and_metrics_do_not(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service:
        anonymous, wrong = api(service, None), api(service, "not-a-token")
        for route in ("/api/alarms", "/api/customers", "/api/teams", "/api/me", "/api/stream"):
            assert (await anonymous.get(route)).status_code == 401, route
            assert (await wrong.get(route)).status_code == 401, route
        health = await anonymous.get("/healthz")
        ready = await anonymous.get("/readyz")
        metrics = await anonymous.get("/metrics")
        spec = (await anonymous.get("/openapi.json")).json()

        assert health.status_code == 200
        assert ready.json() == {"ready": True, "checks": {
            "database": True, "mqtt": True, "dispatch_leader": True}}
        assert "trygg_alarms{state=\"received\"}" in metrics.text
        assert "trygg_inbox_backlog 0.0" in metrics.text
        assert "trygg_inbox_oldest_age_seconds 0.0" in metrics.text
        assert "/api/alarms/{alarm_id}/accept" in spec["paths"]
        await anonymous.aclose()
        await wrong.aclose()


async def test_operators_read_the_registry_and_only_admins_change_it(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    # A weekday morning: the new customer's alarm goes to the day provider's team.
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        operator = api(service, make_token(service, "olle", "operator"))
        admin = api(service, make_token(service, "ada", "admin"))
        new_unit = {"customers": [{
            "code": "K-1001", "name": "Astrid Lindqvist", "day_provider": "solrosen",
            "sites": [{"code": "K-1001-1", "address": "Tibblevägen 12", "area": "kungsangen",
                       "devices": [{"cid": "100001"}, {"cid": "200001"}]}]}]}

        refused = await operator.post("/api/registry", json=new_unit)
        applied = await admin.post("/api/registry", json=new_unit)
        bad = await admin.post("/api/registry", json={"customers": [{
            "code": "K-9", "name": "X", "day_provider": "no-such-provider"}]})
        await SimulatedBaseUnit("200001", link).press()
        await service.dispatcher.process_events()
        alarms = (await operator.get("/api/alarms")).json()["alarms"]
        customers = (await operator.get("/api/customers")).json()

        assert refused.status_code == 403
        assert applied.status_code == 200
        assert bad.status_code == 422
        assert [(a["cid"], a["unknown_device"], a["team"]["code"]) for a in alarms] == [
            ("200001", False, "solrosen-kungsangen")]
        protected = next(c for c in customers if c["code"] == "K-1006")
        assert protected["name"] == "Skyddad identitet"
        await operator.aclose()
        await admin.aclose()


async def test_invalid_actions_are_refused_with_a_reason(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        await SimulatedBaseUnit("100007", link).press()
        await service.dispatcher.process_events()
        alarm = (await client.get("/api/alarms")).json()["alarms"][0]
        blank_reason = await client.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                         json={"reason": "  "})

        await SimulatedBaseUnit("31337", link).press()  # nobody registered this unit
        await service.dispatcher.process_events()
        unknown = next(a for a in (await client.get("/api/alarms")).json()["alarms"]
                       if a["unknown_device"])
        missing = await client.post("/api/alarms/99999/close")
        too_early = await client.post(f"/api/alarms/{alarm['id']}/close")
        nameless = await client.post(f"/api/alarms/{alarm['id']}/accept",
                                     json={"responder": ""})
        nobody_to_call = await client.post(f"/api/alarms/{unknown['id']}/call-out")

        assert missing.status_code == 404
        assert too_early.status_code == 409
        assert "cannot close while called_out" in too_early.json()["detail"]
        assert nameless.status_code == 422
        assert blank_reason.status_code == 422
        assert blank_reason.json()["detail"][0]["loc"] == ["body", "reason"]
        assert nobody_to_call.status_code == 409
        assert "without a responsible team" in nobody_to_call.json()["detail"]
        await client.aclose()


async def test_live_stream_pushes_a_new_alarm(broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        events: list[dict[str, object]] = []
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with client.stream("GET", "/api/stream") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        subscribed.set()
                        if events[-1]["type"] == "alarm":
                            return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(subscribed.wait(), 5)
        await SimulatedBaseUnit("100008", link).press()
        await asyncio.wait_for(listener, 5)
        alarm = events[-1]["alarm"]

        assert events[0]["type"] == "hello"
        assert isinstance(alarm, dict)
        assert alarm["cid"] == "100008"
        assert alarm["state"] == "called_out"
        await client.aclose()


async def test_every_change_to_an_alarm_raises_its_version(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        unit = SimulatedBaseUnit("100002", link)
        await unit.press()
        await service.dispatcher.process_events()
        first = (await client.get("/api/alarms")).json()["alarms"][0]
        await unit.press()  # a repeat changes no state, but the alarm did change
        await service.dispatcher.process_events()
        repeated = (await client.get(f"/api/alarms/{first['id']}")).json()
        accepted = (await client.post(f"/api/alarms/{first['id']}/accept",
                                      json={"responder": "Jonas Ek"})).json()

        assert first["version"] < repeated["version"] < accepted["version"]
        assert accepted["version"] == len(accepted["log"])
        await client.aclose()
