"""Heartbeat supervision against a real database, on a fake clock.

The gateway's last-seen (`touch_links`) and its "listening since" note are written as
the gateway writes them; `sweep` is what the dispatch leader runs every few seconds.
Default allowance: 60 minutes plus 10 minutes' tolerance.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.clock import FakeClock
from core.db import Database
from core.inbox import Seen, note_gateway, touch_links
from dispatch import health
from dispatch.models import Device, Incident, OutboxMessage, TechnicalAlarm
from dispatch.supervision import SupervisionRule, sweep
from dispatch.technical import HealthChange, MassRule

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
RULE = SupervisionRule(interval=timedelta(minutes=60), tolerance=timedelta(minutes=10),
                       models={"Short model": (timedelta(minutes=5), timedelta(minutes=1))})
MASS = MassRule(units=3, window=timedelta(minutes=2))
BRO = ["100002", "100102", "100004", "100005", "100008"]
UNIT = "100001"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def heard(db: Database, at: datetime, *cids: str) -> None:
    db.transaction(lambda s: touch_links(s, [Seen(cid, at, "heartbeat") for cid in cids]))


def gateway(db: Database, clock: FakeClock, listening_since: datetime | None) -> None:
    """The gateway's note, as it writes it with every last-seen flush."""
    db.transaction(lambda s: note_gateway(s, alive_at=clock.now(),
                                          listening_since=listening_since))


def run_sweep(db: Database, clock: FakeClock, leading_since: datetime = T0 - timedelta(days=1),
              rule: SupervisionRule = RULE) -> HealthChange:
    now = clock.now()
    return db.transaction(lambda s: sweep(s, now, rule=rule, mass=MASS, topic_root="trygg/v1",
                                          leading_since=leading_since))


def faults(db: Database) -> list[dict[str, Any]]:
    return db.transaction(lambda s: [health.technical_view(a, with_log=True) for a in s.execute(
        select(TechnicalAlarm).order_by(TechnicalAlarm.id)).scalars()])


def availability(db: Database) -> list[tuple[str, str, bool]]:
    return db.transaction(lambda s: [
        (m.topic, json.loads(m.payload)["state"], m.retain) for m in s.execute(
            select(OutboxMessage).order_by(OutboxMessage.id)).scalars()])


def test_a_device_quiet_past_interval_and_tolerance_gets_a_link_fault(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, UNIT)
    clock.advance(timedelta(minutes=70))
    gateway(db, clock, T0 - timedelta(hours=5))
    assert run_sweep(db, clock).opened == {}  # exactly at the limit: not yet

    clock.advance(timedelta(seconds=1))
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)

    (fault,) = faults(db)
    assert (fault["cid"], fault["kind"], fault["state"], fault["source"]) == (
        UNIT, "link_fault", "open", "supervision")
    assert fault["quiet_since"] == T0.isoformat()
    assert availability(db) == [("trygg/v1/dev/100001/availability", "offline", True)]


def test_hearing_the_device_again_clears_it_and_it_is_online_again(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, UNIT)
    clock.advance(timedelta(minutes=71))
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)
    clock.advance(timedelta(minutes=3))
    heard(db, clock.now(), UNIT)

    run_sweep(db, clock)

    (fault,) = faults(db)
    assert (fault["state"], fault["cleared_by"]) == ("cleared", "system")
    assert [e["action"] for e in fault["log"]] == ["opened", "cleared"]
    assert [state for _, state, _ in availability(db)] == ["offline", "online"]
    assert run_sweep(db, clock).opened == {}  # heard: nothing new


def test_a_restart_raises_no_storm_of_link_faults(db: Database, clock: FakeClock) -> None:
    # Everyone was last heard two hours ago: Trygg was down for those two hours.
    heard(db, T0 - timedelta(hours=2), *BRO, UNIT)
    restarted = clock.now()
    gateway(db, clock, restarted)

    assert run_sweep(db, clock, leading_since=restarted).opened == {}
    clock.advance(timedelta(minutes=65))
    heard(db, clock.now(), *BRO)  # all but one unit report within their interval
    gateway(db, clock, restarted)
    assert run_sweep(db, clock, leading_since=restarted).opened == {}

    clock.advance(timedelta(minutes=6))  # 71 minutes after the restart
    gateway(db, clock, restarted)
    run_sweep(db, clock, leading_since=restarted)

    assert [f["cid"] for f in faults(db)] == [UNIT]


def test_nobody_is_judged_quiet_while_the_gateway_cannot_hear(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, UNIT)
    clock.advance(timedelta(hours=3))
    gateway(db, clock, None)  # the broker link is down

    assert run_sweep(db, clock).opened == {}
    assert faults(db) == []


def test_a_gateway_that_stopped_saying_it_is_alive_is_deaf(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, UNIT)
    gateway(db, clock, T0 - timedelta(hours=5))
    clock.advance(timedelta(hours=3))  # no note since: the gateway process is gone

    assert run_sweep(db, clock).opened == {}


def test_a_model_and_a_device_can_have_their_own_interval(
        db: Database, clock: FakeClock) -> None:
    db.transaction(lambda s: s.execute(update(Device).where(Device.cid == "100002")
                                       .values(model="Short model")))
    db.transaction(lambda s: s.execute(update(Device).where(Device.cid == "100003")
                                       .values(supervision_interval_s=120,
                                               supervision_tolerance_s=30)))
    heard(db, T0, "100002", "100003", UNIT)
    clock.advance(timedelta(minutes=3))
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)
    assert [f["cid"] for f in faults(db)] == ["100003"]  # 2.5 minutes allowed

    clock.advance(timedelta(minutes=4))  # 7 minutes: past the model's 6
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)

    assert [f["cid"] for f in faults(db)] == ["100003", "100002"]


def test_a_device_never_heard_is_never_heard_not_quiet(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, UNIT)
    clock.advance(timedelta(hours=3))
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)

    rows = {r["cid"]: r for r in db.transaction(
        lambda s: health.device_health(s, clock.now(), RULE))}
    assert rows[UNIT]["status"] == "quiet"
    assert rows[UNIT]["overdue_s"] == (3 * 60 - 70) * 60
    assert rows["100002"]["status"] == "never_heard"
    assert [f["cid"] for f in faults(db)] == [UNIT]


def test_many_units_of_an_area_going_quiet_make_one_incident(
        db: Database, clock: FakeClock) -> None:
    heard(db, T0, *BRO)
    clock.advance(timedelta(minutes=71))
    gateway(db, clock, T0 - timedelta(hours=5))

    run_sweep(db, clock)

    (incident,) = db.transaction(lambda s: list(s.execute(select(Incident)).scalars()))
    assert (incident.kind, incident.area_code, incident.count) == ("link_fault", "bro", 5)
    heard(db, clock.now() + timedelta(seconds=1), *BRO)
    clock.advance(timedelta(seconds=10))
    run_sweep(db, clock)
    (incident,) = db.transaction(lambda s: list(s.execute(select(Incident)).scalars()))
    assert (incident.state, incident.count) == ("closed", 0)


def test_health_lists_every_device_the_worst_first(db: Database, clock: FakeClock) -> None:
    heard(db, T0, *BRO, UNIT)
    clock.advance(timedelta(minutes=80))
    heard(db, clock.now(), *BRO[1:])
    gateway(db, clock, T0 - timedelta(hours=5))
    run_sweep(db, clock)

    rows = db.transaction(lambda s: health.device_health(s, clock.now(), RULE))

    statuses = [(r["cid"], r["status"]) for r in rows]
    assert statuses[:2] == [("100001", "quiet"), ("100002", "quiet")]
    assert {s for _, s in statuses[2:]} == {"ok", "never_heard"}
    assert len(rows) == len(db.transaction(lambda s: s.execute(select(Device)).all()))
