"""The queue never hides an open alarm, and closed history pages with a stable cursor.

Alarms are written straight into the service's database (as dispatch writes them, through
`lifecycle`), because 1,500 presses over MQTT would test the gateway, not the queue. The
service runs on a fake clock, so every alarm's age is exact.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event, select
from sqlalchemy.orm import Session, selectinload

from core.clock import Clock, FakeClock
from core.db import Database
from dispatch import lifecycle
from dispatch.models import AWAITING_CHECK_IN, Alarm, Site, Team
from dispatch.views import urgency_key
from tests.brokers import Broker
from tests.harness import api, make_token, running_service, test_settings
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # 13:00 in Stockholm: day shift
STEP = timedelta(seconds=7)  # between two seeded alarms
_cids = count(1)


def seed(db: Database, clock: Clock, n: int, *, state: str = "called_out",
         every_nth_without_team: int = 0) -> list[int]:
    """Write `n` alarms, oldest first (lowest id), the newest received now; their ids.

    Alarms cycle over the registry's sites, so loading them touches many sites and
    customers. `state`: called_out, on_site, completed or closed.
    """
    start = clock.now() - STEP * n

    def write(s: Session) -> list[int]:
        team = s.execute(select(Team).options(selectinload(Team.members))
                         .where(Team.code == "solrosen-kungsangen")).scalar_one()
        sites = list(s.execute(select(Site).order_by(Site.code)).scalars())
        alarms = []
        for i in range(n):
            at = start + STEP * i
            teamless = every_nth_without_team and i % every_nth_without_team == 0
            site = None if teamless else sites[i % len(sites)]
            alarm = Alarm(
                cid=f"Q{next(_cids):05d}", priority=5, unknown_device=site is None,
                site_id=site.id if site else None,
                customer_id=site.customer_id if site else None,
                route_reason="unknown_device" if teamless else "day_provider",
                call_order=[] if teamless else [
                    {"name": m.name, "phone": m.phone} for m in team.members])
            if not teamless:
                alarm.team_id, alarm.team_code = team.id, team.code
                alarm.team_name, alarm.team_phone, alarm.shift = team.name, team.phone, "day"
            s.add(alarm)
            lifecycle.receive(alarm, at, f"device:{alarm.cid}")
            if teamless:
                alarms.append(alarm)
                continue
            lifecycle.call_out(alarm, at, "system")
            if state in ("on_site", "completed"):
                lifecycle.check_in(alarm, at + timedelta(minutes=5), alarm.cid)
            if state == "completed":
                lifecycle.check_out(alarm, at + timedelta(minutes=20), alarm.cid)
            if state == "closed":
                lifecycle.close_by_phone(alarm, "handled by phone", at, "operator-1")
            alarms.append(alarm)
        s.flush()
        return [a.id for a in alarms]

    ids: list[int] = db.transaction(write)
    return ids


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest_asyncio.fixture
async def service(broker: Broker, database_url: str, clock: FakeClock,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, database_url)
    async with running_service(settings, clock=clock, run_timer_loop=False) as svc:
        yield svc


@pytest.fixture
def statements(service: Service) -> Iterator[list[str]]:
    """Every SQL statement the API's reads send, to catch a query per alarm."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        sent.append(sql)

    event.listen(service.db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(service.db.engine, "before_cursor_execute", record)


async def get(service: Service, **params: Any) -> Any:
    async with api(service, make_token(service, f"op-{next(_cids)}")) as client:
        return await client.get("/api/alarms", params=params)


async def pages(service: Service, scope: str, limit: int) -> list[list[int]]:
    """Every page of a history scope, following next_cursor to the end."""
    out: list[list[int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"scope": scope, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = (await get(service, **params)).json()
        out.append([a["id"] for a in body["alarms"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


# -- the queue ------------------------------------------------------------------------------


async def test_all_1500_open_alarms_are_listed_most_urgent_first(
        service: Service, clock: FakeClock, statements: list[str]) -> None:
    closed = seed(service.db, clock, 30, state="closed")
    on_site = seed(service.db, clock, 100, state="on_site")
    # The oldest waiting alarms get the lowest ids: the ones a "newest N" list drops.
    waiting = seed(service.db, clock, 1400, every_nth_without_team=50)
    statements.clear()

    started = time.perf_counter()
    response = await get(service, scope="open")
    took = time.perf_counter() - started
    listed = response.json()["alarms"]
    print(f"GET /api/alarms?scope=open with 1,500 open alarms: {took * 1000:.0f} ms, "
          f"{len(statements)} SQL statements")

    assert response.status_code == 200
    assert len(listed) == 1500
    assert {a["id"] for a in listed} == set(waiting) | set(on_site)
    assert not set(closed) & {a["id"] for a in listed}
    assert [a["id"] for a in listed] == [a["id"] for a in sorted(listed, key=urgency_key)]
    # Nobody to call comes first, oldest first; then the oldest waiting alarm with a team.
    assert listed[0]["id"] == waiting[0] and listed[0]["team"] is None
    first_with_team = next(a for a in listed if a["team"] is not None)
    assert first_with_team["id"] == waiting[1]
    teamed = [a for a in listed if a["team"] and a["state"] in AWAITING_CHECK_IN]
    assert [a["received_at"] for a in teamed] == sorted(a["received_at"] for a in teamed)
    assert {a["id"] for a in listed[-100:]} == set(on_site)
    # One query for the alarms, a few for their sites and customers; never one per alarm.
    assert len(statements) < 15, statements


async def test_the_active_queue_has_every_open_and_completed_alarm_whatever_the_limit(
        service: Service, clock: FakeClock) -> None:
    completed = seed(service.db, clock, 20, state="completed")
    waiting = seed(service.db, clock, 600)
    seed(service.db, clock, 10, state="closed")

    body = (await get(service, scope="active", limit=10)).json()

    ids = [a["id"] for a in body["alarms"]]
    assert len(ids) == 620
    assert ids[:600] == waiting  # oldest first: each called out when received
    assert set(ids[600:]) == set(completed)
    assert body["next_cursor"] is None
    assert set(body) >= {"server_time", "reminder_after_s", "alarms"}


# -- closed history ---------------------------------------------------------------------------


async def test_closed_history_pages_cover_everything_once_while_alarms_close_between_pages(
        service: Service, clock: FakeClock) -> None:
    closed = seed(service.db, clock, 120, state="closed")
    still_open = seed(service.db, clock, 5)
    token = make_token(service, "pager")

    async with api(service, token) as client:
        first = (await client.get("/api/alarms", params={"scope": "closed", "limit": 50})).json()
        # Meanwhile an operator closes an alarm: it is newer than every page to come.
        late = (await client.post(f"/api/alarms/{still_open[0]}/phone-kvittering",
                                  json={"reason": "all well"})).json()
        seen = [a["id"] for a in first["alarms"]]
        cursor = first["next_cursor"]
        while cursor is not None:
            page = (await client.get("/api/alarms", params={
                "scope": "closed", "limit": 50, "cursor": cursor})).json()
            seen += [a["id"] for a in page["alarms"]]
            cursor = page["next_cursor"]
        fresh = (await client.get("/api/alarms", params={"scope": "closed", "limit": 50})).json()

    assert late["state"] == "closed"
    assert len(first["alarms"]) == 50
    assert seen == sorted(closed, reverse=True)  # newest first, none twice, none missing
    assert late["id"] not in seen
    assert fresh["alarms"][0]["id"] == late["id"]
    assert {a["state"] for a in first["alarms"]} == {"closed"}


async def test_all_scope_is_history_paged_newest_first(
        service: Service, clock: FakeClock) -> None:
    ids = seed(service.db, clock, 40, state="closed") + seed(service.db, clock, 35)

    got = await pages(service, "all", 25)

    assert [len(p) for p in got] == [25, 25, 25]
    assert [i for p in got for i in p] == sorted(ids, reverse=True)


async def test_a_bad_cursor_or_limit_is_refused_with_422_saying_which(
        service: Service) -> None:
    refused = {
        "cursor": [{"scope": "closed", "cursor": "abc"}, {"scope": "closed", "cursor": "0"},
                   {"scope": "closed", "cursor": "-5"}, {"scope": "all", "cursor": "12.5"},
                   {"scope": "active", "cursor": "10"}],
        "limit": [{"scope": "closed", "limit": 0}, {"scope": "closed", "limit": 501}],
    }

    for field, cases in refused.items():
        for params in cases:
            response = await get(service, **params)
            assert response.status_code == 422, params
            assert field in response.text, (params, response.text)
