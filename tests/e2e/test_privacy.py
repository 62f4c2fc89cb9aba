"""Logs never carry names, personal numbers or addresses, whatever happens to an alarm."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from core.clock import FakeClock
from dispatch.config import load_config
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


def personal_strings() -> set[str]:
    config = load_config(Path("config/municipality.yaml"))
    found: set[str] = set()
    for customer in config.customers:
        found.add(customer.name)
        if customer.personal_number:
            found.add(customer.personal_number)
        for site in customer.sites:
            found.update(filter(None, (site.address, site.door_name)))
    for provider in config.providers:
        for team in provider.teams:
            found.update(member.name for member in team.call_order)
    return found


@pytest.mark.parametrize("at", [MONDAY_10_LOCAL, MONDAY_23_LOCAL], ids=["day", "night"])
async def test_a_whole_alarm_leaves_no_personal_data_in_the_logs(
        broker: Broker, sqlite_database_url: str, at: datetime) -> None:
    structlog.reset_defaults()
    settings = test_settings(broker, sqlite_database_url)
    with capture_logs() as logs:
        async with running_service(settings, clock=FakeClock(at)) as service, \
                DeviceLink(broker.host, broker.port, root=settings.mqtt_topic_root) as link:
            client = api(service, make_token(service))
            unit = SimulatedBaseUnit("100001", link)
            await unit.press()
            await service.dispatcher.process_events()
            alarm = (await client.get("/api/alarms")).json()["alarms"][0]
            await client.post(f"/api/alarms/{alarm['id']}/accept",
                              json={"responder": "Maria Holm"})
            await unit.check_in()
            await unit.check_out()
            await SimulatedBaseUnit("999", link).press()  # unknown device
            await service.dispatcher.process_events()
            await client.aclose()
    text = json.dumps(logs, default=str)

    assert any(entry["event"] == "alarm_received" for entry in logs)
    assert any(entry.get("words") == "check in" for entry in logs)
    leaked = sorted(s for s in personal_strings() if s in text)
    assert leaked == []
