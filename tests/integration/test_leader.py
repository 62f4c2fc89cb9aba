"""One dispatcher at a time: the leader lock on PostgreSQL and SQLite, and what happens
when two dispatchers apply the same inbox anyway.

Concurrency is tested on PostgreSQL: SQLite's single writer would hide the races. Taking
over is polled for (bounded); no rule waits on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select, text

from core import inbox
from core.clock import FakeClock
from core.db import Database
from core.inbox import Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch.config import load_config
from dispatch.leader import PG_LOCK_NAMESPACE, LeaderLock
from dispatch.live import LiveFeed
from dispatch.models import Alarm, OutboxMessage
from dispatch.registry import import_config
from dispatch.services import DispatchRules
from dispatch.worker import Dispatcher
from tests.brokers import Broker, free_port
from tests.conftest import needs_postgres
from tests.harness import test_settings
from trygg.migrations import upgrade
from trygg.runtime import Role, Service

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
ROOT = Path(__file__).resolve().parents[2]
_refs = count(1)


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def press(db: Database, at: datetime, cid: str = "100001") -> None:
    """What the gateway does: the press is stored in the inbox."""
    event = DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid=cid,
                        ref=f"{next(_refs):04d}", priority=5)
    db.transaction(lambda s: append_events(s, [Incoming(event, b"<mrq/>", at)]))


def count_rows(db: Database, model: Any, *where: Any) -> int:
    return db.transaction(lambda s: s.execute(
        select(func.count()).select_from(model).where(*where)).scalar_one())


@pytest.fixture
def pg_url(postgres_database_url: str) -> str:
    """A PostgreSQL schema of its own, migrated and holding the shipped registry."""
    db = Database(postgres_database_url)
    upgrade(db.engine)
    db.transaction(lambda s: import_config(s, _CONFIG))
    db.close()
    return postgres_database_url


@pytest.fixture
def two_pools(pg_url: str) -> Iterator[tuple[Database, Database]]:
    """Two dispatch processes' worth of connections to the same schema."""
    first, second = Database(pg_url), Database(pg_url)
    yield first, second
    first.close()
    second.close()


# -- two dispatchers at once, the lock bypassed ----------------------------------------------


@needs_postgres
async def test_two_dispatchers_on_the_same_events_apply_each_once(
        two_pools: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_pools
    clock = FakeClock(T0)
    sent: list[str] = []

    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        sent.append(topic)

    dispatchers = [Dispatcher(db, clock, RULES, LiveFeed(), publish=publish)
                   for db in (first, second)]
    press(first, clock.now())
    # Both apply the press before either marks it: the race the lock normally prevents.
    # (Or the second waits for the first's hold on the unit, and applies it after the
    # first has committed: the press is one alarm's either way, and one mark loses.)
    arrived: list[int] = []
    mark = inbox.mark_processed

    def other_waits_for_a_lock() -> bool:
        return bool(first.transaction(lambda s: s.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar()))

    def mark_after_both(*args: Any, **kwargs: Any) -> None:
        arrived.append(1)
        deadline = time.monotonic() + 10
        while len(arrived) < 2 and not other_waits_for_a_lock() \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        mark(*args, **kwargs)

    monkeypatch.setattr(inbox, "mark_processed", mark_after_both)
    races = REGISTRY.get_sample_value("trygg_inbox_races_lost_total") or 0.0

    outcomes = await asyncio.gather(*(d.process_events() for d in dispatchers))
    monkeypatch.undo()
    called_out = count_rows(first, OutboxMessage, OutboxMessage.topic.like("%/callout"))
    clock.advance(RULES.timers.reminder_after)
    reminders = await asyncio.gather(*(d.fire_due() for d in dispatchers))

    assert sorted(o.processed for o in outcomes) == [0, 1]
    assert (REGISTRY.get_sample_value("trygg_inbox_races_lost_total") or 0.0) == races + 1
    assert count_rows(first, Alarm) == 1
    assert called_out == 1
    assert sorted(o.reminders for o in reminders) == [0, 1]
    assert count_rows(first, OutboxMessage, OutboxMessage.topic.like("%/reminder")) == 1
    assert first.transaction(lambda s: s.execute(select(Alarm.reminder_count)).scalar()) == 1


@needs_postgres
async def test_two_dispatchers_sweeping_the_same_chains_carry_out_each_step_once(
        two_pools: tuple[Database, Database]) -> None:
    first, second = two_pools
    clock = FakeClock(T0)

    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        return None

    dispatchers = [Dispatcher(db, clock, RULES, LiveFeed(), publish=publish)
                   for db in (first, second)]
    for cid in ("100001", "100002", "100003"):
        press(first, clock.now(), cid)
    while (await dispatchers[0].process_events()).more:
        pass
    fired = []
    # Both sweep every 30 s for 50 minutes: the call steps (every 2 minutes, six each),
    # the reminder at 30 and the coordinator at 45, each carried out by one of them.
    for _ in range(100):
        clock.advance(timedelta(seconds=30))
        fired += [o.fired for o in await asyncio.gather(*(d.fire_due() for d in dispatchers))]

    def callouts(cid: str) -> int:
        return count_rows(first, OutboxMessage, OutboxMessage.topic.like("%/callout"),
                          OutboxMessage.payload.like(f'%"cid": "{cid}"%'))

    assert {cid: callouts(cid) for cid in ("100001", "100002", "100003")} == {
        "100001": 6, "100002": 4, "100003": 4}  # three, two and two in the call order, twice
    assert sum(f.reminders for f in fired) == 3
    assert sum(f.coordinator for f in fired) == 3
    assert sum(f.no_answer for f in fired) == 3
    assert count_rows(first, Alarm, Alarm.reminder_count == 1) == 3


# -- the lock on PostgreSQL -------------------------------------------------------------------


def terminate_lock_holder(url: str) -> int:
    """Kill the server session holding this schema's dispatch lock (a dead leader's end)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        pids = conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = :ns AND objsubid = 2"
            " AND objid = (hashtext(current_schema())::bigint & 4294967295)::oid"),
            {"ns": PG_LOCK_NAMESPACE}).scalars().all()
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()
    return len(pids)


async def both_tried(*locks: LeaderLock) -> None:
    for lock in locks:
        await lock.wait_tried(timeout_s=10)


@needs_postgres
async def test_of_two_dispatchers_on_postgresql_one_leads(postgres_database_url: str) -> None:
    async with LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1) as first:
        await first.wait_tried(timeout_s=10)
        async with LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1) as second:
            await both_tried(second)
            await asyncio.sleep(0.3)  # a few of the standby's tries

            assert first.is_leader
            assert not second.is_leader
            assert REGISTRY.get_sample_value("trygg_dispatch_leader") in (0.0, 1.0)


@needs_postgres
async def test_a_leader_whose_session_dies_stops_leading_and_one_leads_again(
        postgres_database_url: str) -> None:
    async with LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1) as first, \
            LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1) as second:
        await both_tried(first, second)
        leader = first if first.is_leader else second
        lost = asyncio.ensure_future(leader.wait_lost())

        killed = terminate_lock_holder(postgres_database_url)
        await asyncio.wait_for(lost, 5)  # noticed at the next check
        await eventually(lambda: first.is_leader or second.is_leader, 5, "nobody leads")
        leaders = [lock.is_leader for lock in (first, second)]

    assert killed == 1
    assert sorted(leaders) == [False, True]


@needs_postgres
async def test_a_dispatcher_that_stops_lets_the_standby_lead(postgres_database_url: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1))
        await first.wait_tried(timeout_s=10)
        async with LeaderLock(postgres_database_url, retry_s=0.1, check_s=0.1) as second:
            await second.wait_tried(timeout_s=10)
            standby_at_first = not second.is_leader

            await stack.aclose()  # the first dispatcher stops
            await eventually(lambda: second.is_leader, 5, "the standby did not take over")

    assert standby_at_first


@needs_postgres
async def test_locks_of_different_schemas_do_not_meet(postgres_database_url: str) -> None:
    other = postgres_database_url.replace("search_path%3D", "search_path%3Dpublic,")
    async with LeaderLock(postgres_database_url, retry_s=0.1) as first, \
            LeaderLock(other, retry_s=0.1) as second:
        await both_tried(first, second)

        assert first.is_leader
        assert second.is_leader


# -- the lock on SQLite -------------------------------------------------------------------------


async def test_of_two_dispatchers_on_sqlite_one_leads_and_the_other_takes_over(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trygg.db'}"
    async with LeaderLock(url, retry_s=0.1, check_s=0.1) as second:
        async with LeaderLock(url, retry_s=0.1, check_s=0.1) as first:
            await both_tried(first, second)
            leaders = [lock.is_leader for lock in (first, second)]
        await eventually(lambda: second.is_leader, 5, "the standby did not take over")

    assert sorted(leaders) == [False, True]
    assert (tmp_path / "trygg.db.dispatch.lock").exists()


async def test_on_sqlite_the_standby_takes_over_from_a_leader_killed_hard(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trygg.db'}"
    holder = subprocess.Popen(  # noqa: ASYNC220  (another dispatch process with the lock)
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"f = open({str(tmp_path / 'trygg.db.dispatch.lock')!r}, 'a')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        async with LeaderLock(url, retry_s=0.1, check_s=0.1) as lock:
            await lock.wait_tried(timeout_s=5)
            was_leader = lock.is_leader

            holder.send_signal(signal.SIGKILL)
            await eventually(lambda: lock.is_leader, 5, "the standby did not take over")
    finally:
        holder.kill()
        holder.wait()

    assert not was_leader


async def test_on_sqlite_a_leader_whose_lock_file_is_deleted_stops_leading(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trygg.db'}"
    async with LeaderLock(url, retry_s=0.1, check_s=0.1) as lock:
        await lock.wait_tried(timeout_s=5)
        assert lock.is_leader
        lost = asyncio.ensure_future(lock.wait_lost())

        (tmp_path / "trygg.db.dispatch.lock").unlink()
        await asyncio.wait_for(lost, 5)  # then it takes the new file's lock again
        await eventually(lambda: lock.is_leader, 5, "it did not lead again")


# -- two services -----------------------------------------------------------------------------


async def get_ready(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        return response.status_code, response.json()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if await check():
                return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@needs_postgres
@pytest.mark.mqtt
async def test_a_standby_service_says_so_and_takes_over_when_the_leader_is_killed(
        broker: Broker, pg_url: str, tmp_path: Path) -> None:
    check = Database(pg_url)
    port = free_port()
    env = {**os.environ, "TRYGG_DATABASE_URL": pg_url, "TRYGG_MQTT_URL": broker.url,
           "TRYGG_MQTT_TOPIC_ROOT": f"test/leader-{port}", "TRYGG_HTTP_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "leader.log"
    log_file = log_path.open("wb")
    leader = subprocess.Popen(  # noqa: ASYNC220  (killed below, waited for in finally)
        [sys.executable, "-m", "trygg.cli", "run", "--role", "dispatch"], env=env, cwd=ROOT,
        stdout=log_file, stderr=subprocess.STDOUT)
    try:
        leader_ready = f"http://127.0.0.1:{port}/readyz"
        await wait_until(lambda: _is_ready(leader_ready), 60,
                         f"the first dispatcher is not ready: {log_path.read_text()[-3000:]}")
        settings = test_settings(broker, pg_url)
        async with Service(settings, roles={Role.DISPATCH}) as standby:
            status, body = await get_ready(f"{standby.http_url}/readyz")
            at = datetime.now(UTC)
            press(check, at, "100001")
            await wait_until(lambda: _alarms(check, 1), 10, "the press was not applied")
            await asyncio.sleep(0.3)  # a standby that wrongly applied it would have by now
            applied_once = count_rows(check, Alarm)
            callouts = count_rows(check, OutboxMessage, OutboxMessage.topic.like("%/callout"))

            leader.send_signal(signal.SIGKILL)  # no goodbye: the PG session just ends
            await eventually(lambda: standby.leader.is_leader, 10,
                             "the standby did not take over")
            status_after, body_after = await get_ready(f"{standby.http_url}/readyz")
            press(check, datetime.now(UTC), "100002")
            await wait_until(lambda: _alarms(check, 2), 10, "the new leader applies nothing")
    finally:
        leader.kill()
        leader.wait()
        log_file.close()
        check.close()

    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["dispatch_leader"] is False
    assert body["checks"]["database"] is True
    assert applied_once == 1
    assert callouts == 1
    assert status_after == 200
    assert body_after["checks"]["dispatch_leader"] is True


async def _is_ready(url: str) -> bool:
    status, _ = await get_ready(url)
    return status == 200


async def _alarms(db: Database, n: int) -> bool:
    return await db.read(lambda s: s.execute(select(func.count()).select_from(Alarm))
                         .scalar_one()) >= n
