"""Observable during faults: /metrics answers while the database is down."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import OperationalError

from core.db import Database
from dispatch.metrics import AlarmStateCollector
from tests.brokers import Broker, free_port
from tests.harness import running_service, test_settings


def test_the_collector_says_the_database_is_down_instead_of_failing_the_scrape() -> None:
    down = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    registry = CollectorRegistry()
    registry.register(AlarmStateCollector(down))

    body = generate_latest(registry).decode()
    down.close()

    assert "trygg_metrics_database_up 0.0" in body
    assert "trygg_alarms{" not in body


@pytest.mark.mqtt
async def test_metrics_answer_while_the_database_is_down(
        broker: Broker, sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings) as service, httpx.AsyncClient(
            base_url=service.http_url) as client:
        healthy = await client.get("/metrics")

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("SELECT 1", {}, Exception("database is down"))

        monkeypatch.setattr(service.db, "sessions", refuse)
        outage = await client.get("/metrics")

    assert "trygg_metrics_database_up 1.0" in healthy.text
    assert outage.status_code == 200
    assert "trygg_metrics_database_up 0.0" in outage.text
    assert "trygg_mqtt_connected" in outage.text  # the rest is still there
