"""What a client sends that the database cannot store is the client's mistake (422), on
SQLite and PostgreSQL alike; and a client cannot choose the address it is known by."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

from core.clock import FakeClock
from dispatch import audit
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings

pytestmark = pytest.mark.mqtt


async def test_values_the_database_cannot_store_are_refused_with_422_not_500(
        broker: Broker, database_url: str) -> None:
    settings = test_settings(broker, database_url)
    db_is_sqlite = database_url.startswith("sqlite")
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service:
        manager = api(service, make_token(service, "mona", "alarm_manager"))
        answers = {
            "NUL in a sign-in name": await manager.post(
                "/api/session", json={"name": "a\u0000b", "password": "whatever it is"}),
            "NUL in a path": await manager.get("/api/customers/K-1%00"),
            "NUL in a query": await manager.get("/api/audit", params={"actor": "a\u0000"}),
            "a phone too long": await manager.put(
                "/api/teams/solrosen-kungsangen/call-order",
                json={"call_order": [{"name": "Maria", "phone": "0" * 100}]}),
        }
        order = (await manager.get("/api/teams")).json()
        await manager.aclose()

    statuses = {what: r.status_code for what, r in answers.items()}
    # Refused, or answered as nothing found (SQLite stores a NUL): never a 500.
    assert statuses == {"NUL in a sign-in name": 401 if db_is_sqlite else 422,
                        "NUL in a path": 404 if db_is_sqlite else 422,
                        "NUL in a query": 200 if db_is_sqlite else 422,
                        "a phone too long": 422}
    kungsangen = next(t for t in order if t["code"] == "solrosen-kungsangen")
    assert all(len(m["phone"] or "") < 100 for m in kungsangen["call_order"])  # unchanged


async def test_a_forwarded_address_is_not_believed_without_a_trusted_proxy(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service:
        async with api(service, None) as client:
            answers = [(await client.post(
                "/api/session", json={"name": f"guess-{i}", "password": "not the password"},
                headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code for i in range(6)]
        recorded = await service.db.read(lambda s: {e.address for e in audit.search(
            s, audit.AuditQuery(action="session.sign_in_failed", limit=None))})

    assert answers == [401] * 5 + [429]  # one address, whatever the header says
    assert recorded == {"127.0.0.1"}


async def test_a_refused_value_is_logged_without_the_name_in_its_path(
        broker: Broker, sqlite_database_url: str) -> None:
    structlog.reset_defaults()
    settings = test_settings(broker, sqlite_database_url)
    with capture_logs() as logs:
        async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service:
            admin = api(service, make_token(service, "ada", "admin"))
            await admin.post("/api/users/Anna Andersson/reset-password",
                             content=b"x" * (settings.max_request_bytes + 1))
            await admin.aclose()

    refused = [e for e in logs if e["event"] == "request_body_too_large"]
    assert [e["path"] for e in refused] == ["/api/users"]
    assert "Anna" not in repr(logs)
