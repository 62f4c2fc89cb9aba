"""Editing the route tree file of a running service: the next alarms follow it, running
alarms keep their team, and a bad edit is refused while the rules in force stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core.clock import FakeClock
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.e2e.test_alarm_path import eventually, wait_for_alarm
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings

pytestmark = pytest.mark.mqtt

DAY_AND_NIGHT = """
time_intervals:
  day: [{times: ["07:00-22:00"]}]
routes:
  - {name: day, when: [day], to: day_provider}
  - {name: night, to: night_patrol}
"""
NIGHT_PATROL_ALWAYS = """
routes:
  - {name: the night patrol round the clock, to: night_patrol}
"""
BROKEN = """
routes:
  - {name: nowhere, to: the_moon}
"""


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("trygg_route_reloads_total", {"outcome": outcome}) or 0.0


async def test_a_changed_route_file_routes_the_next_alarms_and_a_bad_one_changes_nothing(
        broker: Broker, database_url: str, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(DAY_AND_NIGHT, encoding="utf-8")
    settings = test_settings(broker, database_url, routing_file=routes,
                             routing_reload_s=0.05)
    clock = FakeClock(MONDAY_10_LOCAL)  # 10:00: by the first file, the day provider
    async with running_service(settings, clock=clock) as service, DeviceLink(
            broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service))
        await SimulatedBaseUnit("100001", link).press()
        first = await wait_for_alarm(client, "100001")

        applied = reloads("applied")
        routes.write_text(NIGHT_PATROL_ALWAYS, encoding="utf-8")
        await eventually(lambda: reloads("applied") > applied)
        await SimulatedBaseUnit("100002", link).press()
        second = await wait_for_alarm(client, "100002")

        refused = reloads("refused")
        routes.write_text(BROKEN, encoding="utf-8")
        await eventually(lambda: reloads("refused") > refused)
        await SimulatedBaseUnit("100003", link).press()
        third = await wait_for_alarm(client, "100003")
        running = (await client.get(f"/api/alarms/{first['id']}")).json()

        assert first["team"]["code"] == "solrosen-kungsangen"
        assert second["team"]["code"] == "nattpatrull-bro"
        assert third["team"]["code"] == "nattpatrull-kungsangen"  # the rules in force stay
        assert running["team"]["code"] == "solrosen-kungsangen"  # its decision is frozen
        await client.aclose()
