"""The simulator's responders, against a real Mosquitto and the whole service: they hear
their team's call-outs, answer through the API as responder users, and check in and
out on the simulated unit, or from the phone when the unit is broken; one who never
answers leaves the call chain to move on, and a cancel stops them.

The service runs on a FakeClock without its timer loop: the call chain moves only when
a test advances the clock and fires what is due.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.clock import FakeClock
from core.db import Database
from dispatch import users
from simulator import (
    DeviceLink,
    ResponderAccount,
    ResponderBehaviour,
    ScenarioError,
    SimulatedBaseUnit,
    SimulatedResponders,
    load_scenario,
    run_simulation,
)
from simulator.responders import VISIT_REASONS, Sleep
from simulator.scenario import parse_scenario
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings
from trygg import cli
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt

UNIT = "100001"  # by day: Solrosen Kungsängen, call order Maria Holm, Ahmed Yusuf, Lena Berg
TEAM = "solrosen-kungsangen"
FIRST, SECOND = "Maria Holm", "Ahmed Yusuf"
SPEED = 100.0
# Answers at once and visits briefly, on the unit.
PROMPT = ResponderBehaviour(accept=1.0, decline=0.0, answer_after=(1.0, 2.0),
                            travel=(5.0, 10.0), visit=(5.0, 10.0), long_visit=0.0,
                            broken_unit=0.0)
NEVER = PROMPT.model_copy(update={"accept": 0.0})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_10_LOCAL)


@pytest.fixture
async def service(broker: Broker, sqlite_database_url: str,
                  clock: FakeClock) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=clock, run_timer_loop=False) as running:
        yield running


@pytest.fixture
async def operator(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with api(service, make_token(service)) as client:
        yield client


@pytest.fixture
async def link(service: Service, broker: Broker) -> AsyncIterator[DeviceLink]:
    async with DeviceLink(broker.host, broker.port,
                          root=service.settings.mqtt_topic_root) as device_link:
        yield device_link


def team_accounts(service: Service) -> list[ResponderAccount]:
    """The demo's responder users of the unit's team, as `trygg run --simulate` makes them."""
    now = service.clock.now()
    every = service.db.transaction(lambda s: cli.demo_responders(s, now))
    return [a for a in every if a.team == TEAM]


def crew(service: Service, broker: Broker, accounts: Sequence[ResponderAccount],
         unit: SimulatedBaseUnit, *, behaviour: ResponderBehaviour = PROMPT,
         speed: float = SPEED, sleep: Sleep = asyncio.sleep) -> SimulatedResponders:
    return SimulatedResponders(broker.host, broker.port, service.http_url, accounts, behaviour,
                               units={unit.cid: unit}, root=service.settings.mqtt_topic_root,
                               speed=speed, rng=random.Random(9), sleep=sleep)


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """The first truthy result of `check` (a plain or an async function), polled."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.05)


async def alarm_of(operator: httpx.AsyncClient, cid: str) -> dict[str, Any] | None:
    """The unit's latest alarm with its trail, if it has one."""
    listed = (await operator.get("/api/alarms?scope=all")).json()["alarms"]
    ids = [a["id"] for a in listed if a["cid"] == cid]
    if not ids:
        return None
    view: dict[str, Any] = (await operator.get(f"/api/alarms/{max(ids)}")).json()
    return view


def when(operator: httpx.AsyncClient, test: Callable[[dict[str, Any]], bool]
         ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def check() -> dict[str, Any] | None:
        alarm = await alarm_of(operator, UNIT)
        return alarm if alarm is not None and test(alarm) else None
    return check


def trail(alarm: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["actor"], e["note"]) for e in alarm["log"]]


async def test_the_called_responder_accepts_checks_in_and_out_on_the_unit(
        service: Service, broker: Broker, operator: httpx.AsyncClient) -> None:
    scenario = parse_scenario(
        """
        speed: 100
        duration: 1h
        unit: {resend_after: 1s}
        steps: [{at: 0s, unit: 0, action: press}]
        responders: {accept: 1, decline: 0, answer_after: [1s, 2s], travel: [5s, 10s],
                     visit: [5s, 10s], long_visit: 0, broken_unit: 0}
        """, source="inline", default_name="one-visit")
    stop = asyncio.Event()
    played = asyncio.create_task(run_simulation(
        broker.host, broker.port, [UNIT], scenario, root=service.settings.mqtt_topic_root,
        stop=stop, seed=3, api_url=service.http_url, responders=team_accounts(service)))
    try:
        alarm = await eventually(when(operator, lambda a: a["state"] == "completed"))
    finally:
        stop.set()
        report = await played

    assert alarm["accepted_by"] == FIRST
    assert alarm["on_way_at"] is not None
    assert alarm["kvittering"] == "unit" and alarm["closed_via"] == "unit"
    steps = trail(alarm)
    assert ("accept", FIRST, f"answered by {FIRST}") in steps
    assert ("on_my_way", FIRST, None) in steps
    assert ("check_in", f"device:{UNIT}", None) in steps
    assert ("check_out", f"device:{UNIT}", None) in steps
    assert [e["to_state"] for e in alarm["log"] if e["action"] in ("check_in", "check_out")] \
        == ["on_site", "completed"]
    assert report.sent == {"press": 1, "check_in": 1, "check_out": 1}
    assert report.responders == {"callouts": 1, "accepted": 1, "on_my_way": 1,
                                 "unit_check_ins": 1, "unit_check_outs": 1}


async def test_a_responder_who_never_answers_leaves_the_call_chain_to_move_on(
        service: Service, broker: Broker, operator: httpx.AsyncClient, link: DeviceLink,
        clock: FakeClock) -> None:
    accounts = [dataclasses.replace(a, behaviour=NEVER) if a.name == FIRST else a
                for a in team_accounts(service)]
    unit = SimulatedBaseUnit(UNIT, link)

    async with crew(service, broker, accounts, unit) as responders:
        await unit.press()
        await eventually(lambda: responders.tally["never_answered"] == 1)
        waiting = await alarm_of(operator, UNIT)
        clock.advance(timedelta(minutes=2, seconds=1))  # the call step is due
        await service.dispatcher.fire_due()
        alarm = await eventually(when(operator, lambda a: a["state"] == "completed"))

    assert waiting is not None and waiting["state"] == "called_out"
    assert waiting["calling"]["name"] == FIRST
    calls = [note for action, _, note in trail(alarm) if action.startswith("call_out")]
    assert calls == [f"{TEAM}: call 1/6, {FIRST}", f"{TEAM}: call 2/6, {SECOND}"]
    assert alarm["accepted_by"] == SECOND
    assert alarm["kvittering"] == "unit"
    assert responders.tally["callouts"] == 2 and responders.tally["accepted"] == 1


async def test_a_responder_at_a_broken_unit_checks_in_and_out_by_phone(
        service: Service, broker: Broker, operator: httpx.AsyncClient,
        link: DeviceLink) -> None:
    broken = PROMPT.model_copy(update={"broken_unit": 1.0})
    unit = SimulatedBaseUnit(UNIT, link)

    async with crew(service, broker, team_accounts(service), unit, behaviour=broken):
        await unit.press()
        alarm = await eventually(when(operator, lambda a: a["state"] == "completed"))

    assert alarm["accepted_by"] == FIRST
    assert alarm["kvittering"] == "responder" and alarm["closed_via"] == "responder"
    steps = trail(alarm)
    assert ("check_in", FIRST, "by the responder's phone") in steps
    assert ("check_out", FIRST, "by the responder's phone") in steps
    assert unit.tally.sent == {"press": 1}  # the unit itself said nothing more


async def test_a_visit_over_15_minutes_is_given_a_reason(
        service: Service, broker: Broker, operator: httpx.AsyncClient, link: DeviceLink,
        clock: FakeClock) -> None:
    speed = 10_000.0
    long = PROMPT.model_copy(update={"long_visit": 1.0, "long_visit_length": (1200.0, 1200.0)})

    async def sleep(real_s: float) -> None:
        # The service's clock moves with the responders' scenario time.
        clock.advance(timedelta(seconds=real_s * speed))
        await asyncio.sleep(real_s)

    unit = SimulatedBaseUnit(UNIT, link)
    async with crew(service, broker, team_accounts(service), unit, behaviour=long,
                    speed=speed, sleep=sleep) as responders:
        await unit.press()
        alarm = await eventually(when(operator, lambda a: a["visit_reason"] is not None))

    assert alarm["kvittering"] == "unit"
    assert alarm["visit_seconds"] == pytest.approx(1200, abs=1)
    assert alarm["visit_reason"] in VISIT_REASONS
    assert alarm["needs_visit_reason"] is False
    assert ("visit_reason", FIRST, alarm["visit_reason"]) in trail(alarm)
    assert responders.tally["visit_reasons"] == 1


async def test_a_false_alarm_stops_the_responder_on_the_way(
        service: Service, broker: Broker, operator: httpx.AsyncClient,
        link: DeviceLink) -> None:
    far = PROMPT.model_copy(update={"travel": (3600.0, 3600.0)})  # 3.6 s at this speed
    unit = SimulatedBaseUnit(UNIT, link)

    async with crew(service, broker, team_accounts(service), unit, behaviour=far,
                    speed=1000.0) as responders:
        await unit.press()
        on_way = await eventually(when(operator, lambda a: a["on_way_at"] is not None))
        assert responders.busy_cids == {UNIT}
        cancelled = await operator.post(f"/api/alarms/{on_way['id']}/false-alarm",
                                        json={"reason": "pressed by mistake"})
        await eventually(lambda: responders.tally["stood_down"] == 1)

    assert cancelled.status_code == 200
    assert responders.busy_cids == set()
    assert unit.tally.sent == {"press": 1}  # never checked in on the cancelled alarm
    assert "unit_check_ins" not in responders.tally and "refused" not in responders.tally


def test_the_demo_makes_a_responder_user_of_each_call_order_name(db: Database) -> None:
    now = MONDAY_10_LOCAL
    db.transaction(lambda s: users.add_user(s, "Jonas Ek", "operator", now))

    first = db.transaction(lambda s: cli.demo_responders(s, now))
    again = db.transaction(lambda s: cli.demo_responders(s, now))
    listed = {u.name: u for u in db.transaction(lambda s: users.list_users(s, now))}

    names = [(a.team, a.position, a.name) for a in again]
    assert (TEAM, 1, FIRST) in names and (TEAM, 2, SECOND) in names
    assert "Jonas Ek" not in [a.name for a in first + again]  # an operator's name: left alone
    assert listed["Jonas Ek"].role == "operator" and listed["Jonas Ek"].team is None
    assert (listed[FIRST].role, listed[FIRST].team) == ("responder", TEAM)
    assert listed[FIRST].tokens == 1  # a new start's token ended the one before
    assert all(a.token not in repr(a) for a in again)


def test_the_demo_scenario_plays_lively_responders() -> None:
    demo = load_scenario("demo").responders

    assert demo is not None
    assert (demo.accept, demo.decline, demo.never_answer) == pytest.approx((0.8, 0.1, 0.1))
    assert demo.answer_after == (10.0, 60.0)


def test_responders_who_accept_and_decline_more_than_every_call_are_refused() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario("heartbeat_every: 1m\nresponders: {accept: 0.9, decline: 0.2}",
                       source="inline", default_name="bad")

    assert caught.value.problems == [
        "responders: `accept` and `decline` are shares of the call-outs and together at "
        "most 1 (the rest are never answered)"]
