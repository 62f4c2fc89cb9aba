"""Technical alarms and incidents against a real database: opened by their event, cleared
by the restoring one or by hand, gathered per area, never in a help call's way.

Events go in as the gateway stores them and are applied by `process_pending`; the
shipped registry has four units in Kungsängen and five in Bro, so the mass rule here
is three units within two minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from core import inbox
from core.clock import FakeClock
from core.db import Database
from core.inbox import Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import health, services, technical
from dispatch.config import load_config
from dispatch.live import LiveFeed
from dispatch.models import Alarm, Incident, OutboxMessage, TechnicalAlarm
from dispatch.services import DispatchRules, Outcome
from dispatch.technical import MassRule
from dispatch.worker import Dispatcher

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1",
                      mass=MassRule(units=3, window=timedelta(minutes=2)))
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
KUNGSANGEN = ["100001", "100003", "100006", "100007"]
BRO = ["100002", "100102", "100004", "100005", "100008"]
_refs = count(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def ev(kind: EventKind, cid: str, code: str | None = None) -> DeviceEvent:
    return DeviceEvent(kind=kind, protocol="scaip", cid=cid, ref=f"{next(_refs):04d}",
                       status_code=code, priority=5 if kind is EventKind.ALARM else 0)


def deliver(db: Database, clock: FakeClock, *events: DeviceEvent,
            limit: int = services.PROCESS_BATCH) -> Outcome:
    now = clock.now()
    db.transaction(lambda s: append_events(s, [Incoming(e, b"<mrq/>", now) for e in events]))
    return db.transaction(lambda s: services.process_pending(s, now, RULES, limit=limit,
                                                             budget_s=60.0))


def technical_alarms(db: Database) -> list[dict[str, Any]]:
    return db.transaction(lambda s: [
        health.technical_view(a, with_log=True) for a in s.execute(
            select(TechnicalAlarm).order_by(TechnicalAlarm.id)).scalars()])


def incidents(db: Database) -> list[dict[str, Any]]:
    return db.transaction(lambda s: [health.incident_view(i) for i in s.execute(
        select(Incident).order_by(Incident.id)).scalars()])


def test_mains_lost_opens_a_technical_alarm_and_no_help_call(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, ev(EventKind.MAINS_LOST, "100001", "0085"))

    (fault,) = technical_alarms(db)
    assert (fault["cid"], fault["kind"], fault["state"], fault["area"]) == (
        "100001", "mains_lost", "open", "kungsangen")
    assert fault["opened_at"] == T0.isoformat()
    assert [e["action"] for e in fault["log"]] == ["opened"]
    # Not a help call: no alarm, no call-out, no 30-minute reminder.
    assert db.transaction(lambda s: s.execute(select(Alarm)).all()) == []
    assert db.transaction(lambda s: s.execute(select(OutboxMessage)).all()) == []
    assert out.health.opened == {"mains_lost": 1}


def test_the_restoring_event_clears_it_and_the_trail_says_so(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.MAINS_LOST, "100001", "0085"))
    clock.advance(timedelta(minutes=42))

    deliver(db, clock, ev(EventKind.MAINS_RESTORED, "100001", "0086"))

    (fault,) = technical_alarms(db)
    assert (fault["state"], fault["cleared_at"], fault["cleared_by"]) == (
        "cleared", (T0 + timedelta(minutes=42)).isoformat(), "device:100001")
    assert [(e["action"], e["actor"]) for e in fault["log"]] == [
        ("opened", "device:100001"), ("cleared", "device:100001")]


def test_a_repeated_fault_is_one_alarm_with_the_repeat_in_its_trail(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.BATTERY_LOW, "100002"))
    clock.advance(timedelta(hours=6))
    deliver(db, clock, ev(EventKind.BATTERY_LOW, "100002"))

    (fault,) = technical_alarms(db)
    assert [e["action"] for e in fault["log"]] == ["opened", "repeated"]


def test_battery_ok_clears_low_and_failed_battery_but_not_mains(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.BATTERY_LOW, "100002"),
            ev(EventKind.BATTERY_FAULT, "100002"), ev(EventKind.MAINS_LOST, "100002"))

    deliver(db, clock, ev(EventKind.BATTERY_OK, "100002"))

    states = {f["kind"]: f["state"] for f in technical_alarms(db)}
    assert states == {"battery_low": "cleared", "battery_fault": "cleared",
                      "mains_lost": "open"}


def test_a_fault_opened_and_cleared_in_one_batch_ends_cleared(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.MAINS_LOST, "100001"), ev(EventKind.MAINS_RESTORED, "100001"),
            ev(EventKind.MAINS_LOST, "100001"))

    assert [f["state"] for f in technical_alarms(db)] == ["cleared", "open"]


def test_tamper_is_cleared_by_hand_with_a_note(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.TAMPER, "100003"))
    (fault,) = technical_alarms(db)
    clock.advance(timedelta(hours=2))

    db.transaction(lambda s: technical.clear_by_hand(
        s, fault["id"], actor="alarm-manager-1", note="Lid refitted on visit", now=clock.now()))

    (fault,) = technical_alarms(db)
    assert (fault["state"], fault["cleared_by"], fault["clear_note"]) == (
        "cleared", "alarm-manager-1", "Lid refitted on visit")
    assert fault["log"][-1]["action"] == "cleared_by_hand"
    with pytest.raises(technical.AlreadyCleared):
        db.transaction(lambda s: technical.clear_by_hand(
            s, fault["id"], actor="alarm-manager-1", note="again", now=clock.now()))


def test_an_unregistered_units_fault_is_kept_without_an_area(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.MAINS_LOST, "999999"))

    (fault,) = technical_alarms(db)
    assert (fault["cid"], fault["area"], fault["state"]) == ("999999", None, "open")


# -- help calls first --------------------------------------------------------------------


def test_a_help_call_behind_a_power_cut_is_applied_in_the_first_batch(
        db: Database, clock: FakeClock) -> None:
    cut = [ev(EventKind.MAINS_LOST, f"9{n:05d}") for n in range(60)]
    press = ev(EventKind.ALARM, "100001")

    out = deliver(db, clock, *cut, press, limit=10)

    assert len(out.received) == 1 and out.received[0].cid == "100001"
    assert out.processed == 10  # and nine of the technical events with it


def test_technical_events_are_all_applied_in_the_end(db: Database, clock: FakeClock) -> None:
    cut = [ev(EventKind.MAINS_LOST, f"9{n:05d}") for n in range(30)]
    deliver(db, clock, *cut, ev(EventKind.ALARM, "100001"), limit=10)
    now = clock.now()
    for _ in range(5):  # the time budget is tested on its own: here each takes its 10
        db.transaction(lambda s: services.process_pending(s, now, RULES, limit=10,
                                                          budget_s=60.0))

    assert len(technical_alarms(db)) == 30


def test_the_help_calls_are_found_through_their_own_index(db: Database) -> None:
    """However long the technical backlog, finding the next press is a short index scan."""
    def plan(s: Session) -> str:
        query = inbox.pending_query(10, urgent=True).compile(
            s.get_bind(), compile_kwargs={"literal_binds": True})
        return " ".join(str(row[3]) for row in s.execute(text(f"EXPLAIN QUERY PLAN {query}")))

    assert db.transaction(plan) == "SCAN device_events USING INDEX ix_device_events_inbox_urgent"


def test_a_batch_finds_its_devices_faults_by_cid_not_by_reading_every_open_one(
        db: Database) -> None:
    def plan(s: Session) -> str:
        query = technical.faults_of(["100001", "100002"]).compile(
            s.get_bind(), compile_kwargs={"literal_binds": True})
        return " ".join(str(row[3]) for row in s.execute(text(f"EXPLAIN QUERY PLAN {query}")))

    assert db.transaction(plan) == (
        "SEARCH technical_alarms USING INDEX ix_technical_alarms_cid (cid=?)")


# -- incidents ---------------------------------------------------------------------------


def test_units_of_one_area_losing_mains_together_make_one_incident(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.MAINS_LOST, BRO[0]))
    clock.advance(timedelta(seconds=30))
    deliver(db, clock, ev(EventKind.MAINS_LOST, BRO[1]))
    assert incidents(db) == []
    clock.advance(timedelta(seconds=30))

    deliver(db, clock, ev(EventKind.MAINS_LOST, BRO[2]))

    (incident,) = incidents(db)
    assert (incident["kind"], incident["area"], incident["count"], incident["state"]) == (
        "mains_lost", "bro", 3, "open")
    assert {f["incident_id"] for f in technical_alarms(db)} == {incident["id"]}


def test_an_incident_grows_while_units_join_and_closes_when_all_are_back(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, *(ev(EventKind.MAINS_LOST, cid) for cid in BRO[:3]))
    clock.advance(timedelta(minutes=10))  # later joiners join, whatever the window
    deliver(db, clock, *(ev(EventKind.MAINS_LOST, cid) for cid in BRO[3:]))
    assert [(i["count"], i["peak"]) for i in incidents(db)] == [(5, 5)]

    clock.advance(timedelta(minutes=30))
    deliver(db, clock, *(ev(EventKind.MAINS_RESTORED, cid) for cid in BRO[:4]))
    assert [(i["count"], i["state"]) for i in incidents(db)] == [(1, "open")]
    clock.advance(timedelta(minutes=5))
    deliver(db, clock, ev(EventKind.MAINS_RESTORED, BRO[4]))

    (incident,) = incidents(db)
    assert (incident["count"], incident["peak"], incident["state"], incident["closed_at"]) == (
        0, 5, "closed", (T0 + timedelta(minutes=45)).isoformat())


def test_faults_spread_over_more_than_the_window_make_no_incident(
        db: Database, clock: FakeClock) -> None:
    for cid in BRO[:3]:
        deliver(db, clock, ev(EventKind.MAINS_LOST, cid))
        clock.advance(timedelta(minutes=1, seconds=5))

    assert incidents(db) == []


def test_areas_and_kinds_are_never_mixed_in_one_incident(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, ev(EventKind.MAINS_LOST, BRO[0]), ev(EventKind.MAINS_LOST, BRO[1]),
            ev(EventKind.MAINS_LOST, KUNGSANGEN[0]), ev(EventKind.BATTERY_LOW, BRO[2]),
            ev(EventKind.MAINS_LOST, KUNGSANGEN[1]))

    assert incidents(db) == []


def test_a_help_call_from_inside_the_power_cut_is_its_own_alarm(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, *(ev(EventKind.MAINS_LOST, cid) for cid in BRO))

    out = deliver(db, clock, ev(EventKind.ALARM, BRO[0]))

    (alarm,) = db.transaction(lambda s: list(s.execute(select(Alarm)).scalars()))
    assert (alarm.cid, alarm.state, alarm.team_code) == (BRO[0], "called_out", "solrosen-bro")
    assert out.received[0].alarm_id == alarm.id


async def test_an_incident_opening_and_closing_is_logged_with_ids_only(
        db: Database, clock: FakeClock) -> None:
    dispatcher = Dispatcher(db, clock, RULES, LiveFeed())
    with capture_logs() as logs:
        dispatcher.health_changed(deliver(db, clock, *(
            ev(EventKind.MAINS_LOST, cid) for cid in BRO[:3])).health)
        dispatcher.health_changed(deliver(db, clock, *(
            ev(EventKind.MAINS_RESTORED, cid) for cid in BRO[:3])).health)

    lines = [(e["event"], e["kind"], e["area"]) for e in logs if e["event"].startswith("incident")]
    assert lines == [("incident_opened", "mains_lost", "bro"),
                     ("incident_closed", "mains_lost", "bro")]

