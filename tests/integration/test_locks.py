"""Digital locks against a real SQLite file: openings as evidence on an open alarm's trail,
their battery and tamper as technical alarms, and the remote opening's outbox, audit and
trail entries written together or not at all.

Events go in as the gateway stores them and are applied by `process_pending`; the
shipped registry gets a lock at K-1001's door (the site of base unit 100001).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from core.clock import FakeClock
from core.db import Database
from core.inbox import DeviceEventRow, Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices import scaip
from devices.events import DeviceEvent, EventKind
from dispatch import audit, health, locks, services
from dispatch.config import load_config
from dispatch.models import Alarm, AuditEntry, Device, OutboxMessage, Site, TechnicalAlarm
from dispatch.services import DispatchRules, Outcome
from dispatch.views import alarm_view

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
UNIT, LOCK = "100001", "300001"  # both at K-1001-1 in Kungsängen (shipped)
OTHER_UNIT, OTHER_LOCK = "100003", "300003"  # K-1003-1, also in Kungsängen
OPERATOR = audit.System("op-anna", user_id=7, role="operator")
_refs = count(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def with_locks(db: Database) -> Database:
    def add(s: Any) -> None:
        sites = dict(s.execute(select(Site.code, Site.id)).all())
        # LOCK is in the shipped registry already, at K-1001-1.
        s.add(Device(cid=OTHER_LOCK, kind="lock", site_id=sites["K-1003-1"]))
    db.transaction(add)
    return db


def ev(kind: EventKind, cid: str, *, staff_id: str | None = None,
       code: str | None = None) -> DeviceEvent:
    return DeviceEvent(kind=kind, protocol="scaip", cid=cid, ref=f"L{next(_refs):04d}",
                       device_type=scaip.DTY_LOCK if cid.startswith("3") else "0002",
                       status_code=code, staff_id=staff_id,
                       priority=5 if kind is EventKind.ALARM else 0)


def opened(cid: str = LOCK, staff_id: str | None = "4711") -> DeviceEvent:
    return ev(EventKind.LOCK_OPENED, cid, staff_id=staff_id, code="0127")


def closed(cid: str = LOCK, staff_id: str | None = None) -> DeviceEvent:
    return ev(EventKind.LOCK_CLOSED, cid, staff_id=staff_id, code="0118")


def deliver(db: Database, clock: FakeClock, *events: DeviceEvent) -> Outcome:
    now = clock.now()
    db.transaction(lambda s: append_events(s, [Incoming(e, b"<mrq/>", now) for e in events]))
    return db.transaction(lambda s: services.process_pending(s, now, RULES, budget_s=60.0))


def alarms(db: Database) -> list[dict[str, Any]]:
    return db.transaction(lambda s: [
        alarm_view(a, RULES.timers.reminder_after, with_log=True)
        for a in s.execute(select(Alarm).order_by(Alarm.id)).scalars()])


def trail(alarm: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["actor"], e["note"]) for e in alarm["log"]]


def open_remotely(db: Database, clock: FakeClock, alarm_id: int,
                  cid: str | None = None) -> locks.LockOpening:
    now = clock.now()

    def request(s: Session) -> locks.LockOpening:
        alarm = s.get(Alarm, alarm_id)
        assert alarm is not None
        return locks.open_remotely(s, alarm, OPERATOR, now, topic_root="trygg/v1",
                                   address="10.0.0.5", cid=cid)

    return db.transaction(request)


def outbox(db: Database) -> list[OutboxMessage]:
    return db.transaction(lambda s: list(s.execute(
        select(OutboxMessage).order_by(OutboxMessage.id)).scalars()))


def audit_entries(db: Database, action: str) -> list[AuditEntry]:
    return db.transaction(lambda s: list(s.execute(
        select(AuditEntry).where(AuditEntry.action == action)).scalars()))


# -- openings as evidence --------------------------------------------------------------


def test_a_lock_opened_during_an_open_alarm_at_its_site_is_on_the_alarms_trail(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    clock.advance(timedelta(minutes=9))

    out = deliver(with_locks, clock, opened(staff_id="4711"))

    (alarm,) = alarms(with_locks)
    assert trail(alarm)[-1] == ("lock_opened", f"device:{LOCK}", "staff 4711")
    assert alarm["log"][-1]["at"] == (T0 + timedelta(minutes=9)).isoformat()
    assert out.alarm_ids == [alarm["id"]]


def test_a_lock_opening_changes_no_state_and_does_not_stop_the_30_minute_clock(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    clock.advance(timedelta(minutes=9))

    deliver(with_locks, clock, opened())

    (alarm,) = alarms(with_locks)
    assert alarm["state"] == "called_out"
    assert alarm["on_site_at"] is None
    assert alarm["deadline_at"] == (T0 + timedelta(minutes=30)).isoformat()
    assert alarm["log"][-1]["from_state"] == alarm["log"][-1]["to_state"] == "called_out"


def test_the_lock_closing_is_on_the_trail_too_and_check_in_still_moves_the_alarm(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    deliver(with_locks, clock, opened(staff_id="4711"))
    deliver(with_locks, clock, ev(EventKind.CHECK_IN, UNIT))

    deliver(with_locks, clock, closed(staff_id="4711"))

    (alarm,) = alarms(with_locks)
    assert [a for a, _, _ in trail(alarm)] == [
        "receive", "call_out", "lock_opened", "check_in", "lock_closed"]
    assert trail(alarm)[-1] == ("lock_closed", f"device:{LOCK}", "staff 4711")
    assert alarm["state"] == "on_site"


def test_an_opening_on_our_command_says_so_on_the_trail(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))

    deliver(with_locks, clock, opened(staff_id="remote:9f2c4a1b7e3d5f60"))

    (alarm,) = alarms(with_locks)
    assert trail(alarm)[-1] == ("lock_opened", f"device:{LOCK}",
                                "remote request 9f2c4a1b7e3d5f60")


def test_a_lock_opened_with_no_open_alarm_raises_none_and_is_kept_as_an_event(
        with_locks: Database, clock: FakeClock) -> None:
    out = deliver(with_locks, clock, opened())

    kept = with_locks.transaction(lambda s: s.execute(
        select(DeviceEventRow.kind, DeviceEventRow.staff_id, DeviceEventRow.processed_at)
        .where(DeviceEventRow.cid == LOCK)).one())
    assert alarms(with_locks) == []
    assert out.processed == 1 and out.alarm_ids == [] and out.failed_events == 0
    assert tuple(kept) == ("lock_opened", "4711", T0)


def test_a_lock_at_another_site_does_not_touch_the_alarm(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))

    deliver(with_locks, clock, opened(OTHER_LOCK), opened("999999"))

    (alarm,) = alarms(with_locks)
    assert [a for a, _, _ in trail(alarm)] == ["receive", "call_out"]


def test_a_lock_opened_after_the_check_out_is_not_on_the_completed_alarm(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    deliver(with_locks, clock, ev(EventKind.CHECK_IN, UNIT))
    deliver(with_locks, clock, ev(EventKind.CHECK_OUT, UNIT))

    deliver(with_locks, clock, opened())

    (alarm,) = alarms(with_locks)
    assert alarm["state"] == "completed"
    assert "lock_opened" not in [a for a, _, _ in trail(alarm)]


def test_a_lock_opened_before_the_press_is_not_evidence_even_in_the_same_batch(
        with_locks: Database, clock: FakeClock) -> None:
    # Help calls are applied first in a batch: the earlier opening comes after the press.
    now = clock.now()
    with_locks.transaction(lambda s: append_events(s, [
        Incoming(opened(), b"<mrq/>", now),
        Incoming(ev(EventKind.ALARM, UNIT), b"<mrq/>", now + timedelta(seconds=5))]))

    with_locks.transaction(lambda s: services.process_pending(s, now, RULES, budget_s=60.0))

    (alarm,) = alarms(with_locks)
    assert [a for a, _, _ in trail(alarm)] == ["receive", "call_out"]


def test_a_lock_opened_in_the_same_batch_as_the_press_lands_on_the_new_alarm(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT), opened())

    (alarm,) = alarms(with_locks)
    assert [a for a, _, _ in trail(alarm)] == ["receive", "lock_opened", "call_out"]


def test_lock_events_log_the_cid_and_staff_id_but_never_a_name(
        with_locks: Database, clock: FakeClock) -> None:
    with capture_logs() as logs:
        deliver(with_locks, clock, ev(EventKind.ALARM, UNIT), opened(staff_id="4711"))
        open_remotely(with_locks, clock, alarms(with_locks)[0]["id"])

    said = repr(logs)
    assert "Lindqvist" not in said and "Tibblevägen" not in said and "op-anna" not in said


# -- battery, faults and tamper ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "code", "technical"), [
    (EventKind.BATTERY_LOW, "0016", "battery_low"),
    (EventKind.BATTERY_FAULT, "0014", "battery_fault"),
    (EventKind.TAMPER, "0125", "tamper"),
])
def test_a_locks_battery_and_tamper_are_technical_alarms_like_a_units(
        with_locks: Database, clock: FakeClock, kind: EventKind, code: str,
        technical: str) -> None:
    out = deliver(with_locks, clock, ev(kind, LOCK, code=code))

    (fault,) = with_locks.transaction(lambda s: [health.technical_view(a) for a in s.execute(
        select(TechnicalAlarm)).scalars()])
    assert (fault["cid"], fault["kind"], fault["state"], fault["area"]) == (
        LOCK, technical, "open", "kungsangen")
    assert alarms(with_locks) == []
    assert out.health.opened == {technical: 1}


def test_a_locks_battery_recharged_clears_its_battery_alarm(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.BATTERY_LOW, LOCK, code="0016"))

    deliver(with_locks, clock, ev(EventKind.BATTERY_OK, LOCK, code="0015"))

    state = with_locks.transaction(lambda s: s.execute(select(TechnicalAlarm.state)).scalar())
    assert state == "cleared"


# -- opening remotely ----------------------------------------------------------------------


def test_opening_remotely_queues_one_unlock_for_the_sites_lock_not_retained(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    alarm_id = alarms(with_locks)[0]["id"]

    opening = open_remotely(with_locks, clock, alarm_id)

    command = [m for m in outbox(with_locks) if m.topic.endswith("/cmd")]
    assert [(m.topic, m.retain, m.message_id) for m in command] == [
        (f"trygg/v1/dev/{LOCK}/cmd", False, opening.ref)]
    assert scaip.decode_command(command[0].payload.encode()) == scaip.ScaipCommand(
        ref=opening.ref, cid=LOCK, act="unlock", exp=T0 + locks.COMMAND_TTL)
    assert opening.expires_at == T0 + timedelta(minutes=2)


def test_every_remote_opening_is_in_the_audit_log_and_on_the_trail(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    alarm_id = alarms(with_locks)[0]["id"]

    first = open_remotely(with_locks, clock, alarm_id)
    second = open_remotely(with_locks, clock, alarm_id)

    entries = audit_entries(with_locks, "lock.open")
    assert [(e.actor, e.user_id, e.role, e.subject_type, e.subject_id, e.address, e.detail)
            for e in entries] == [
        ("op-anna", 7, "operator", "alarm", str(alarm_id), "10.0.0.5",
         {"lock": LOCK, "ref": first.ref}),
        ("op-anna", 7, "operator", "alarm", str(alarm_id), "10.0.0.5",
         {"lock": LOCK, "ref": second.ref})]
    assert trail(alarms(with_locks)[0])[-2:] == [
        ("lock_open_requested", "op-anna", f"lock {LOCK}, request {first.ref}"),
        ("lock_open_requested", "op-anna", f"lock {LOCK}, request {second.ref}")]
    assert first.ref != second.ref


@pytest.mark.parametrize("how", ["phone", "check_out"])
def test_a_lock_is_not_opened_for_an_alarm_no_longer_open_and_nothing_is_written(
        with_locks: Database, clock: FakeClock, how: str) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    alarm_id = alarms(with_locks)[0]["id"]
    if how == "phone":
        with_locks.transaction(lambda s: services.close_by_phone(
            s, alarm_id, "pressed by mistake", "op-anna", clock.now()))
    else:
        deliver(with_locks, clock, ev(EventKind.CHECK_OUT, UNIT))
    before = alarms(with_locks)[0]["log"]

    with pytest.raises(locks.CannotOpenLock) as refused:
        open_remotely(with_locks, clock, alarm_id)

    assert refused.value.reason == "alarm_not_open"
    assert [m for m in outbox(with_locks) if m.topic.endswith("/cmd")] == []
    assert audit_entries(with_locks, "lock.open") == []
    assert alarms(with_locks)[0]["log"] == before


def test_a_site_without_a_lock_has_nothing_to_open(
        with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, "100002"))  # K-1002 in Bro: no lock

    with pytest.raises(locks.CannotOpenLock) as refused:
        open_remotely(with_locks, clock, alarms(with_locks)[0]["id"])

    assert refused.value.reason == "no_lock"
    assert "no digital lock" in str(refused.value)


def test_a_lock_of_another_site_cannot_be_named(with_locks: Database, clock: FakeClock) -> None:
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))

    with pytest.raises(locks.CannotOpenLock) as refused:
        open_remotely(with_locks, clock, alarms(with_locks)[0]["id"], cid=OTHER_LOCK)

    assert refused.value.reason == "not_at_site"
    assert outbox(with_locks)[-1].topic.endswith("/callout")


def test_a_site_with_two_locks_needs_the_one_to_open_named(
        with_locks: Database, clock: FakeClock) -> None:
    def add_back_door(s: Any) -> None:
        site = s.execute(select(Site.id).where(Site.code == "K-1001-1")).scalar_one()
        s.add(Device(cid="300002", kind="lock", site_id=site))
    with_locks.transaction(add_back_door)
    deliver(with_locks, clock, ev(EventKind.ALARM, UNIT))
    alarm_id = alarms(with_locks)[0]["id"]

    with pytest.raises(locks.CannotOpenLock) as refused:
        open_remotely(with_locks, clock, alarm_id)
    opening = open_remotely(with_locks, clock, alarm_id, cid="300002")

    assert refused.value.reason == "which_lock"
    assert opening.cid == "300002"
    assert outbox(with_locks)[-1].topic == "trygg/v1/dev/300002/cmd"
