"""Dispatch against a real SQLite file: device events in, alarms routed, reminders swept.

Events go in as the gateway stores them (`append_events`) and are applied by
`process_pending`, each in its own transaction, with a fake clock moving the time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, Stored, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.config import load_config
from dispatch.lifecycle import InvalidTransition
from dispatch.models import Alarm, Customer, Deadline, PresenceRecord, Provider, Team
from dispatch.services import AlarmNotFound, DispatchRules, Outcome
from dispatch.views import alarm_view

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
NIGHT = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)  # 23:30 in Stockholm
UNIT = "100001"  # K-1001 in Kungsängen, day provider Solrosen
_refs = count(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def minutes(m: float, s: float = 0) -> timedelta:
    return timedelta(minutes=m, seconds=s)


def event(kind: EventKind, cid: str = UNIT, ref: str | None = None) -> DeviceEvent:
    return DeviceEvent(kind=kind, protocol="scaip", cid=cid, ref=ref or f"{next(_refs):04d}",
                       priority=5 if kind is EventKind.ALARM else 0)


def store(db: Database, clock: FakeClock, *events: DeviceEvent) -> list[Stored]:
    """What the gateway does: commit the events before answering the device."""
    now = clock.now()
    return db.transaction(
        lambda s: append_events(s, [Incoming(e, b"<mrq/>", now) for e in events]))


def process(db: Database, clock: FakeClock, budget_s: float = 60.0) -> Outcome:
    # The time budget is tested on its own; here one call applies everything stored.
    now = clock.now()
    return db.transaction(lambda s: services.process_pending(s, now, RULES, budget_s=budget_s))


def deliver(db: Database, clock: FakeClock, *events: DeviceEvent) -> Outcome:
    store(db, clock, *events)
    return process(db, clock)


def sweep(db: Database, clock: FakeClock) -> Outcome:
    now = clock.now()
    return db.transaction(lambda s: services.fire_due(s, now, RULES))


def alarms(db: Database) -> list[dict[str, Any]]:
    """Every alarm as the dashboard sees it (unmasked), with its audit trail."""
    return db.transaction(lambda s: [
        alarm_view(a, RULES.timers.reminder_after, with_log=True)
        for a in s.execute(select(Alarm).order_by(Alarm.id)).scalars()])


def only_alarm(db: Database) -> dict[str, Any]:
    (found,) = alarms(db)
    return found


def actions(alarm: dict[str, Any]) -> list[str]:
    return [e["action"] for e in alarm["log"]]


def outbox_topics(db: Database) -> list[str]:
    return [topic for _, topic, _, _ in db.transaction(lambda s: services.pending_outbox(s))]


def reminder_topics(db: Database) -> list[str]:
    """The reminders in the outbox (the call chain calls the next responder every two
    minutes meanwhile)."""
    return [t for t in outbox_topics(db) if t.endswith("/reminder")]


def alarm_now(db: Database, clock: FakeClock, cid: str = UNIT) -> dict[str, Any]:
    deliver(db, clock, event(EventKind.ALARM, cid))
    return alarms(db)[-1]


# -- a pendant alarm -------------------------------------------------------------------


def test_pendant_alarm_is_routed_to_the_day_provider_and_called_out(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, event(EventKind.ALARM))

    alarm = only_alarm(db)
    assert alarm["state"] == "called_out"
    assert alarm["team"]["code"] == "solrosen-kungsangen"
    assert alarm["route_reason"] == "day_provider"
    assert alarm["shift"] == "day"
    assert alarm["called_out_at"] == T0.isoformat()
    assert alarm["customer"]["code"] == "K-1001"
    assert out.new_alarms == {"day_provider": 1}


def test_call_order_of_the_team_is_copied_onto_the_alarm(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)

    assert alarm["call_order"] == [
        {"name": "Maria Holm", "phone": "+46 70 555 11 01"},
        {"name": "Ahmed Yusuf", "phone": "+46 70 555 11 02"},
        {"name": "Lena Berg", "phone": "+46 70 555 11 03"},
    ]
    assert alarm["team"]["phone"] == "+46 8 555 101 10"


def test_call_out_is_written_to_the_outbox_for_the_team(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)

    ((_, topic, payload, _),) = db.transaction(lambda s: services.pending_outbox(s))
    assert topic == "trygg/v1/team/solrosen-kungsangen/callout"
    assert json.loads(payload)["alarm_id"] == alarm["id"]
    assert json.loads(payload)["kind"] == "callout"


def test_team_message_carries_ids_and_no_personal_data(db: Database, clock: FakeClock) -> None:
    alarm_now(db, clock)

    ((_, _, payload, _),) = db.transaction(lambda s: services.pending_outbox(s))
    assert "Lindqvist" not in payload
    assert "Tibblevägen" not in payload
    assert json.loads(payload)["cid"] == UNIT


def test_night_alarm_goes_to_the_night_patrol_of_the_sites_area(
        db: Database, clock: FakeClock) -> None:
    clock.set(NIGHT)

    alarm = alarm_now(db, clock, "100002")  # K-1002 in Bro

    assert alarm["team"]["code"] == "nattpatrull-bro"
    assert alarm["route_reason"] == "night_patrol"
    assert alarm["call_order"] == [{"name": "Nattpatrull Bro bil 1", "phone": "+46 70 555 19 11"}]


def test_alarm_at_0700_local_on_the_spring_forward_morning_goes_to_the_day_provider(
        db: Database, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 29, 5, 0, tzinfo=UTC))  # 07:00 CEST; 06:00 by winter time

    alarm = alarm_now(db, clock)

    assert alarm["team"]["code"] == "solrosen-kungsangen"


def test_alarm_at_0659_local_on_the_fall_back_morning_goes_to_the_night_patrol(
        db: Database, clock: FakeClock) -> None:
    clock.set(datetime(2026, 10, 25, 5, 59, tzinfo=UTC))  # 06:59 CET; 07:59 by summer time

    alarm = alarm_now(db, clock)

    assert alarm["team"]["code"] == "nattpatrull-kungsangen"


def test_summer_house_alarm_by_day_goes_to_the_customers_day_provider(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock, "100102")  # K-1002's extra site

    assert alarm["site"]["kind"] == "extra"
    assert alarm["customer"]["code"] == "K-1002"
    assert alarm["team"]["code"] == "solrosen-bro"


def test_summer_house_alarm_by_night_goes_to_the_night_patrol_of_its_area(
        db: Database, clock: FakeClock) -> None:
    clock.set(NIGHT)

    alarm = alarm_now(db, clock, "100102")

    assert alarm["team"]["code"] == "nattpatrull-bro"


def test_summer_house_alarm_does_not_touch_the_open_alarm_of_the_main_home(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM, "100002"))

    deliver(db, clock, event(EventKind.ALARM, "100102"))

    main, extra = alarms(db)
    assert main["repeat_count"] == 0
    assert extra["site"]["kind"] == "extra"


def test_resend_of_the_same_message_is_stored_once_and_makes_one_alarm(
        db: Database, clock: FakeClock) -> None:
    alarm = event(EventKind.ALARM, ref="0042")
    first = store(db, clock, alarm)
    process(db, clock)

    again = store(db, clock, alarm)
    process(db, clock)

    assert again == [Stored(first[0].event_id, duplicate=True)]
    assert only_alarm(db)["repeat_count"] == 0


def test_alarm_from_an_unregistered_unit_is_kept_as_unknown_device(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, event(EventKind.ALARM, "999999"))

    alarm = only_alarm(db)
    assert alarm["state"] == "received"
    assert alarm["unknown_device"] is True
    assert alarm["route_reason"] == "unknown_device"
    assert alarm["team"] is None
    assert alarm["cid"] == "999999"
    assert out.new_alarms == {"unknown_device": 1}
    assert outbox_topics(db) == []


def test_customer_without_day_provider_gets_an_alarm_with_no_team(
        db: Database, clock: FakeClock) -> None:
    db.transaction(lambda s: s.execute(
        update(Customer).where(Customer.code == "K-1001").values(day_provider_id=None)))

    alarm = alarm_now(db, clock)

    assert alarm["state"] == "received"
    assert alarm["route_reason"] == "no_team"
    assert alarm["team"] is None
    assert alarm["unknown_device"] is False


def test_second_alarm_while_open_is_a_repeat_on_the_same_alarm(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(2))

    deliver(db, clock, event(EventKind.ALARM))

    alarm = only_alarm(db)
    assert alarm["repeat_count"] == 1
    assert actions(alarm) == ["receive", "call_out", "repeat_alarm"]
    assert outbox_topics(db) == ["trygg/v1/team/solrosen-kungsangen/callout"]


def test_two_alarms_from_one_unit_in_the_same_batch_make_one_alarm(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, event(EventKind.ALARM), event(EventKind.ALARM))

    assert only_alarm(db)["repeat_count"] == 1
    assert out.failed_events == 0


def test_repeat_with_a_higher_priority_raises_the_alarms_priority(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    urgent = DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid=UNIT, ref="0999",
                         priority=9)

    deliver(db, clock, urgent)

    assert only_alarm(db)["priority"] == 9


def test_alarm_after_the_previous_one_closed_is_a_new_alarm(
        db: Database, clock: FakeClock) -> None:
    first = alarm_now(db, clock)
    db.transaction(lambda s: services.close_by_phone(s, first["id"], "no visit needed",
                                                     "operator-1", clock.now()))

    second = alarm_now(db, clock)

    assert second["id"] != first["id"]
    assert second["state"] == "called_out"


def test_cancel_from_the_unit_is_noted_and_the_alarm_stays_open(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))

    deliver(db, clock, event(EventKind.CANCELLED))

    alarm = only_alarm(db)
    assert alarm["state"] == "called_out"
    assert actions(alarm)[-1] == "device_cancelled"


def add_broken_event(db: Database, clock: FakeClock) -> None:
    def add(s: Session) -> None:
        s.add(DeviceEventRow(idempotency_key="broken", protocol="scaip", cid=UNIT, ref="0001",
                             kind="no-such-kind", payload="", received_at=clock.now(),
                             last_seen_at=clock.now()))
    db.transaction(add)


def process_error_of_broken_event(db: Database) -> str | None:
    return db.transaction(lambda s: s.execute(
        select(DeviceEventRow.process_error).where(DeviceEventRow.idempotency_key == "broken")
    ).scalar_one())


def test_event_that_cannot_be_applied_does_not_stop_the_events_behind_it(
        db: Database, clock: FakeClock) -> None:
    add_broken_event(db, clock)

    out = deliver(db, clock, event(EventKind.ALARM))

    assert out.failed_events == 1
    assert only_alarm(db)["state"] == "called_out"


def test_event_that_cannot_be_applied_is_marked_with_its_error(
        db: Database, clock: FakeClock) -> None:
    add_broken_event(db, clock)

    process(db, clock)

    assert "no-such-kind" in (process_error_of_broken_event(db) or "")


def test_a_spent_time_budget_leaves_the_rest_for_the_next_transaction(
        db: Database, clock: FakeClock) -> None:
    store(db, clock, event(EventKind.ALARM, cid="100001"), event(EventKind.ALARM, cid="100002"))

    first = process(db, clock, budget_s=0.0)
    second = process(db, clock, budget_s=0.0)
    third = process(db, clock, budget_s=0.0)

    assert (first.processed, first.more) == (1, True)
    assert (second.processed, second.more) == (1, False)
    assert third.processed == 0
    assert len(alarms(db)) == 2


def test_press_and_check_in_in_one_batch_put_the_alarm_on_site_without_a_call_out(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, event(EventKind.ALARM), event(EventKind.CHECK_IN))

    alarm = only_alarm(db)
    assert out.failed_events == 0
    assert alarm["state"] == "on_site"
    assert "call_out" not in actions(alarm)
    assert outbox_topics(db) == []


def test_processed_events_are_not_applied_twice(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))

    out = process(db, clock)

    assert out.processed == 0
    assert only_alarm(db)["repeat_count"] == 0


# -- presence: check-in and check-out --------------------------------------------------


def test_check_in_puts_the_alarm_on_site(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(12))

    deliver(db, clock, event(EventKind.CHECK_IN))

    alarm = only_alarm(db)
    assert alarm["state"] == "on_site"
    assert alarm["on_site_at"] == (T0 + minutes(12)).isoformat()
    assert alarm["arrival_seconds"] == 12 * 60
    assert alarm["deadline_at"] is None


def test_check_in_cancels_the_reminder(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(12))
    deliver(db, clock, event(EventKind.CHECK_IN))
    clock.advance(minutes(60))

    out = sweep(db, clock)

    assert out.reminders == 0
    assert only_alarm(db)["reminder_count"] == 0


def pending_deadlines(db: Database) -> list[datetime]:
    return db.transaction(lambda s: [d.due_at for d in s.execute(
        select(Deadline).where(Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))
    ).scalars()])


def test_check_in_leaves_no_pending_timer(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(12))

    deliver(db, clock, event(EventKind.CHECK_IN))

    assert pending_deadlines(db) == []


def test_check_out_after_check_in_completes_the_alarm(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(12))
    deliver(db, clock, event(EventKind.CHECK_IN))
    clock.advance(minutes(15))

    deliver(db, clock, event(EventKind.CHECK_OUT))

    alarm = only_alarm(db)
    assert alarm["state"] == "completed"
    assert alarm["completed_at"] == (T0 + minutes(27)).isoformat()
    assert alarm["closed_via"] == "unit"


def test_check_out_without_check_in_completes_and_stops_the_reminder(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(10))
    deliver(db, clock, event(EventKind.CHECK_OUT))
    clock.advance(minutes(30))

    out = sweep(db, clock)

    alarm = only_alarm(db)
    assert alarm["state"] == "completed"
    assert alarm["log"][-1]["note"] == "check-out without check-in"
    assert out.reminders == 0


def test_check_out_without_check_in_leaves_no_pending_timer(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(10))

    deliver(db, clock, event(EventKind.CHECK_OUT))

    assert pending_deadlines(db) == []


def presence(db: Database) -> list[tuple[str, str, int | None]]:
    return db.transaction(lambda s: [
        (p.cid, p.kind, p.alarm_id)
        for p in s.execute(select(PresenceRecord).order_by(PresenceRecord.id)).scalars()])


def test_alarm_and_its_check_in_in_one_batch_end_on_site_with_no_timer(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM), event(EventKind.CHECK_IN))

    assert only_alarm(db)["state"] == "on_site"
    assert pending_deadlines(db) == []


def test_check_in_with_no_open_alarm_is_kept_as_a_presence_record(
        db: Database, clock: FakeClock) -> None:
    out = deliver(db, clock, event(EventKind.CHECK_IN))

    assert presence(db) == [(UNIT, "check_in", None)]
    assert alarms(db) == []
    assert out.failed_events == 0


def test_check_in_and_out_of_an_alarm_are_kept_as_presence_records(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)

    deliver(db, clock, event(EventKind.CHECK_IN))
    deliver(db, clock, event(EventKind.CHECK_OUT))

    assert presence(db) == [(UNIT, "check_in", alarm["id"]), (UNIT, "check_out", alarm["id"])]


# -- the reminder after 30 minutes without check-in ------------------------------------


def test_no_reminder_at_29_minutes_59_seconds(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(29, 59))

    out = sweep(db, clock)

    assert out.reminders == 0
    assert only_alarm(db)["reminder_count"] == 0


def test_reminder_at_30_minutes_is_recorded_on_the_alarm(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(30))

    out = sweep(db, clock)

    alarm = only_alarm(db)
    assert out.reminders == 1
    assert alarm["reminder_count"] == 1
    assert alarm["reminded_at"] == (T0 + minutes(30)).isoformat()
    assert alarm["state"] == "called_out"


def test_reminder_is_in_the_audit_trail(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(30))

    sweep(db, clock)

    entry = only_alarm(db)["log"][-1]
    assert (entry["action"], entry["actor"], entry["at"]) == (
        "remind", "system", (T0 + minutes(30)).isoformat())


def test_reminder_goes_to_the_team_through_the_outbox(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(30))

    sweep(db, clock)

    assert outbox_topics(db)[0] == "trygg/v1/team/solrosen-kungsangen/callout"
    assert reminder_topics(db) == ["trygg/v1/team/solrosen-kungsangen/reminder"]


def test_sweeping_again_at_the_same_time_fires_nothing_more(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(30))
    sweep(db, clock)

    out = sweep(db, clock)

    assert out.reminders == 0
    assert only_alarm(db)["reminder_count"] == 1
    assert len(reminder_topics(db)) == 1


def test_after_the_chains_last_step_the_team_is_reminded_every_30_minutes(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    for at in (30, 45, 60):  # remind, coordinator, red flag
        clock.set(T0 + minutes(at))
        sweep(db, clock)
    clock.set(T0 + minutes(89, 59))
    early = sweep(db, clock)
    clock.advance(minutes(0, 1))

    due = sweep(db, clock)

    assert (early.reminders, due.reminders) == (0, 1)
    assert only_alarm(db)["reminder_count"] == 2


def test_reminder_waits_for_the_call_out_when_dispatch_was_late(
        db: Database, clock: FakeClock) -> None:
    # The alarm arrived at T0, dispatch applied it 5 minutes later: the call-out starts
    # the 30 minutes.
    store(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(5))
    process(db, clock)
    clock.advance(minutes(29))

    out = sweep(db, clock)

    assert out.reminders == 0


def test_phone_kvittering_stops_the_reminders(db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)
    clock.advance(minutes(10))
    db.transaction(lambda s: services.close_by_phone(s, alarm["id"], "no visit needed",
                                                     "operator-1", clock.now()))
    clock.advance(minutes(30))

    out = sweep(db, clock)

    assert out.reminders == 0
    assert only_alarm(db)["state"] == "closed"


def test_phone_kvittering_leaves_no_pending_timer(db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)
    clock.advance(minutes(10))

    db.transaction(lambda s: services.close_by_phone(s, alarm["id"], "no visit needed",
                                                     "operator-1", clock.now()))

    assert pending_deadlines(db) == []


def test_accepting_an_alarm_nobody_was_called_for_starts_the_reminder_clock(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock, "999999")
    clock.advance(minutes(5))
    db.transaction(lambda s: services.accept(s, alarm["id"], "Maria Holm", "operator-1",
                                             clock.now(), RULES))
    clock.advance(minutes(30))

    out = sweep(db, clock)

    assert out.reminders == 1
    assert only_alarm(db)["called_out_at"] == (T0 + minutes(5)).isoformat()


def test_accepting_after_call_out_adds_no_second_reminder(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)
    clock.advance(minutes(3))
    db.transaction(lambda s: services.accept(s, alarm["id"], "Maria Holm", "operator-1",
                                             clock.now(), RULES))
    clock.advance(minutes(30))

    out = sweep(db, clock)

    assert out.reminders == 1


# -- a crash: nothing in memory survives, the deadlines in the database do ------------


def test_overdue_reminder_fires_once_after_a_restart(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(45))  # down through the 30-minute mark
    db = restart()

    fired = sweep(db, clock)
    again = sweep(db, clock)

    assert (fired.reminders, again.reminders) == (1, 0)


def test_after_an_outage_the_overdue_steps_fire_once_each_and_the_repeat_a_full_interval_later(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(70))  # down through 30, 45 and 60
    db = restart()
    fired = [sweep(db, clock).fired for _ in range(4)]  # a sweep a second, same second
    clock.advance(minutes(29, 59))
    early = sweep(db, clock)
    clock.advance(minutes(0, 1))

    due = sweep(db, clock)

    assert [(f.reminders, f.coordinator, f.red_flags) for f in fired] == [
        (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
    assert (early.reminders, due.reminders) == (0, 1)


def test_future_reminder_fires_at_its_time_after_a_restart_and_not_before(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(10))
    db = restart()
    clock.advance(minutes(19, 59))
    early = sweep(db, clock)
    clock.advance(minutes(0, 1))

    due = sweep(db, clock)

    assert (early.reminders, due.reminders) == (0, 1)


def test_pending_reminders_are_rows_that_survive_a_restart(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    db = restart()

    due = pending_deadlines(db)

    # The next call of the call order, the 30-minute reminder and the 22:00 hand-over.
    assert sorted(due) == [T0 + minutes(2), T0 + minutes(30),
                           datetime(2026, 1, 15, 21, 0, tzinfo=UTC)]


# -- the routing decision is frozen on the alarm ---------------------------------------


def move_k1001_to(db: Database, provider_code: str) -> None:
    def move(s: Session) -> None:
        provider = s.execute(select(Provider).where(Provider.code == provider_code)).scalar_one()
        s.execute(update(Customer).where(Customer.code == "K-1001")
                  .values(day_provider_id=provider.id))
    db.transaction(move)


def test_changing_the_day_provider_does_not_move_a_running_alarm(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    move_k1001_to(db, "trygga-hander")
    clock.advance(minutes(2))

    deliver(db, clock, event(EventKind.ALARM))

    alarm = only_alarm(db)
    assert alarm["team"]["code"] == "solrosen-kungsangen"
    assert alarm["repeat_count"] == 1


def test_changing_the_day_provider_keeps_reminders_with_the_original_team(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    move_k1001_to(db, "trygga-hander")
    clock.advance(minutes(30))

    sweep(db, clock)

    assert outbox_topics(db)[-1] == "trygg/v1/team/solrosen-kungsangen/reminder"


def test_changing_the_day_provider_routes_the_next_alarm_to_the_new_one(
        db: Database, clock: FakeClock) -> None:
    first = alarm_now(db, clock)
    db.transaction(lambda s: services.close_by_phone(s, first["id"], "no visit needed",
                                                     "operator-1", clock.now()))
    move_k1001_to(db, "trygga-hander")

    second = alarm_now(db, clock)

    assert second["team"]["code"] == "trygga-hander"


def test_editing_the_call_order_does_not_change_a_running_alarms_copy(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))

    def reorder(s: Session) -> None:
        team = s.execute(select(Team).where(Team.code == "solrosen-kungsangen")).scalar_one()
        team.members.reverse()
        for position, member in enumerate(team.members, start=1):
            member.position = position
    db.transaction(reorder)

    assert only_alarm(db)["call_order"][0]["name"] == "Maria Holm"


def test_alarm_at_215959_accepted_stays_with_the_day_team_after_22(
        db: Database, clock: FakeClock) -> None:
    clock.set(datetime(2026, 1, 15, 20, 59, 59, tzinfo=UTC))  # 21:59:59 in Stockholm
    alarm = alarm_now(db, clock)
    db.transaction(lambda s: services.accept(s, alarm["id"], "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))
    clock.advance(minutes(30))

    sweep(db, clock)

    assert only_alarm(db)["team"]["code"] == "solrosen-kungsangen"
    assert outbox_topics(db)[-1] == "trygg/v1/team/solrosen-kungsangen/reminder"


def test_alarm_is_routed_by_when_it_arrived_not_when_dispatch_applied_it(
        db: Database, clock: FakeClock) -> None:
    clock.set(datetime(2026, 1, 15, 20, 59, 59, tzinfo=UTC))  # 21:59:59 in Stockholm
    store(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(1))  # 22:00:59: night, had the alarm arrived now

    process(db, clock)

    alarm = only_alarm(db)
    assert alarm["team"]["code"] == "solrosen-kungsangen"
    assert alarm["shift"] == "day"


# -- operator actions ------------------------------------------------------------------


def test_operator_action_on_a_missing_alarm_says_which(db: Database, clock: FakeClock) -> None:
    with pytest.raises(AlarmNotFound) as caught:
        db.transaction(lambda s: services.close(s, 4711, "operator-1", clock.now()))

    assert caught.value.alarm_id == 4711


def test_closing_an_alarm_still_awaiting_check_in_is_refused(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)

    with pytest.raises(InvalidTransition):
        db.transaction(lambda s: services.close(s, alarm["id"], "operator-1", clock.now()))

    assert only_alarm(db)["state"] == "called_out"


def test_calling_out_again_sends_another_message_and_keeps_the_first_time(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)
    clock.advance(minutes(4))

    db.transaction(lambda s: services.call_out(s, alarm["id"], "operator-1", clock.now(), RULES))

    assert only_alarm(db)["called_out_at"] == T0.isoformat()
    assert outbox_topics(db) == ["trygg/v1/team/solrosen-kungsangen/callout"] * 2


# -- the outbox ------------------------------------------------------------------------


def test_sent_messages_leave_the_outbox(db: Database, clock: FakeClock) -> None:
    alarm_now(db, clock)
    ids = [i for i, _, _, _ in db.transaction(lambda s: services.pending_outbox(s))]

    db.transaction(lambda s: services.mark_sent(s, ids, clock.now()))

    assert outbox_topics(db) == []


def test_outbox_keeps_unsent_messages_in_the_order_they_were_written(
        db: Database, clock: FakeClock) -> None:
    alarm = alarm_now(db, clock)
    db.transaction(lambda s: services.accept(s, alarm["id"], "Maria Holm", "operator-1",
                                             clock.now(), RULES))
    first = [i for i, _, _, _ in db.transaction(lambda s: services.pending_outbox(s))]
    db.transaction(lambda s: services.mark_sent(s, first, clock.now()))
    clock.advance(minutes(30))
    sweep(db, clock)
    alarm_now(db, clock, "100002")

    assert outbox_topics(db) == ["trygg/v1/team/solrosen-kungsangen/reminder",
                                 "trygg/v1/team/solrosen-bro/callout"]


def test_outbox_hands_out_at_most_the_limit(db: Database, clock: FakeClock) -> None:
    alarm_now(db, clock)
    alarm_now(db, clock, "100002")

    batch = db.transaction(lambda s: services.pending_outbox(s, limit=1))

    assert [topic for _, topic, _, _ in batch] == ["trygg/v1/team/solrosen-kungsangen/callout"]


# -- found in review -------------------------------------------------------------------


def test_press_after_a_check_out_in_the_same_batch_is_routed_to_the_team(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    deliver(db, clock, event(EventKind.CHECK_IN))

    deliver(db, clock, event(EventKind.CHECK_OUT), event(EventKind.ALARM))

    newest = max(alarms(db), key=lambda a: a["id"])
    assert newest["state"] == "called_out"
    assert newest["unknown_device"] is False
    assert newest["team"]["code"] == "solrosen-kungsangen"


def test_alarm_nobody_is_called_out_for_is_reminded_after_30_minutes(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM, cid="424242"))  # nobody registered it
    clock.advance(minutes(29, 59))
    early = sweep(db, clock)
    clock.advance(minutes(0, 1))

    due = sweep(db, clock)

    assert early.reminders == 0
    assert due.reminders == 1
    assert only_alarm(db)["reminder_count"] == 1


def test_press_that_cannot_be_applied_still_reaches_the_queue(
        db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_route(*_: Any, **__: Any) -> Any:
        raise RuntimeError("routing bug")

    monkeypatch.setattr(services, "decide", broken_route)

    out = deliver(db, clock, event(EventKind.ALARM))

    alarm = only_alarm(db)
    assert out.failed_events == 1
    assert alarm["state"] == "received"
    assert alarm["route_reason"] == "processing_error"
    assert alarm["deadline_at"] == (T0 + minutes(30)).isoformat()


def test_check_in_pressed_in_the_same_batch_as_the_alarm_links_its_record(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM), event(EventKind.CHECK_IN))

    records = db.transaction(lambda s: s.execute(select(PresenceRecord)).scalars().all())
    assert [r.alarm_id for r in records] == [only_alarm(db)["id"]]


def test_inbox_metrics_show_events_waiting_and_how_long_the_oldest_has(
        db: Database, clock: FakeClock) -> None:
    from dispatch import metrics

    store(db, clock, event(EventKind.ALARM), event(EventKind.CHECK_IN))
    clock.advance(minutes(5))  # the scrape comes five minutes later

    families = {f.name: f.samples[0].value
                for f in metrics.AlarmStateCollector(db, clock).collect()
                if f.name.startswith("trygg_inbox")}
    assert families["trygg_inbox_backlog"] == 2
    assert families["trygg_inbox_oldest_age_seconds"] == 5 * 60


def test_a_pile_of_overdue_reminders_fires_over_several_sweeps_each_once(
        db: Database, clock: FakeClock) -> None:
    units = [str(700000 + n) for n in range(services.FIRE_BATCH + 20)]  # all unknown
    store(db, clock, *(event(EventKind.ALARM, cid=cid) for cid in units))
    while process(db, clock).more:
        pass
    clock.advance(minutes(45))

    first, second, third = sweep(db, clock), sweep(db, clock), sweep(db, clock)

    assert (first.reminders, second.reminders, third.reminders) == (services.FIRE_BATCH, 20, 0)
    assert {a["reminder_count"] for a in alarms(db)} == {1}
