"""Call chains, escalation, shift hand-over and the kinds of kvittering, on a real SQLite
file with the shipped registry and a fake clock.

K-1001's unit 100001 is in Kungsängen: Solrosen Kungsängen by day (call order Maria
Holm, Ahmed Yusuf, Lena Berg), Nattpatrull Kungsängen by night (bil 1, bil 2).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.clock import FakeClock
from core.db import Database
from devices.events import EventKind
from dispatch import services
from dispatch.config import Handover
from dispatch.lifecycle import InvalidTransition
from dispatch.models import Deadline, OutboxMessage
from dispatch.route_tree import RouteTree
from dispatch.services import Outcome
from tests.integration.test_dispatch_services import (
    RULES,
    T0,
    alarms,
    deliver,
    event,
    minutes,
    only_alarm,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def sweep(db: Database, clock: FakeClock, rules: services.DispatchRules = RULES) -> Outcome:
    now = clock.now()
    return db.transaction(lambda s: services.fire_due(s, now, rules))


def sweep_until(db: Database, clock: FakeClock, until: datetime, step: timedelta,
                rules: services.DispatchRules = RULES) -> None:
    """Sweep every `step` up to and including `until`, as the timer loop would."""
    while clock.now() < until:
        clock.set(min(clock.now() + step, until))
        sweep(db, clock, rules)


def messages(db: Database) -> list[tuple[str, dict[str, Any]]]:
    return db.transaction(lambda s: [
        (m.topic, json.loads(m.payload))
        for m in s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()])


def callouts(db: Database) -> list[tuple[str, str | None]]:
    return [(topic.split("/")[3], payload["responder"]) for topic, payload in messages(db)
            if topic.endswith("/callout")]


def log_of(alarm: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [e for e in alarm["log"] if e["action"] == action]


def pending(db: Database) -> list[tuple[str, int | None]]:
    return db.transaction(lambda s: sorted(
        (d.kind, d.step) for d in s.execute(select(Deadline).where(
            Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))).scalars()))


# -- the call chain ----------------------------------------------------------------


def test_the_first_of_the_call_order_is_called_and_after_two_minutes_the_next(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    first = only_alarm(db)["calling"]
    clock.advance(minutes(1, 59))
    sweep(db, clock)
    still = only_alarm(db)["calling"]
    clock.advance(minutes(0, 1))

    sweep(db, clock)

    alarm = only_alarm(db)
    assert (first["step"], first["of"], first["name"]) == (1, 6, "Maria Holm")
    assert still == first
    assert (alarm["calling"]["step"], alarm["calling"]["name"]) == (2, "Ahmed Yusuf")
    assert callouts(db) == [("solrosen-kungsangen", "Maria Holm"),
                            ("solrosen-kungsangen", "Ahmed Yusuf")]
    assert [e["note"] for e in alarm["log"] if e["action"].startswith("call_out")] == [
        "solrosen-kungsangen: call 1/6, Maria Holm",
        "solrosen-kungsangen: call 2/6, Ahmed Yusuf"]


def test_after_the_call_order_went_round_twice_the_operator_is_flagged(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))

    sweep_until(db, clock, T0 + minutes(20), minutes(0, 30))

    alarm = only_alarm(db)
    assert [name for _, name in callouts(db)] == [
        "Maria Holm", "Ahmed Yusuf", "Lena Berg"] * 2
    assert alarm["no_answer_at"] == (T0 + minutes(12)).isoformat()
    assert alarm["attention"] == ["no_answer"]
    assert alarm["calling"] is None
    assert len(log_of(alarm, "no_answer")) == 1


def test_an_answer_stops_the_chain(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(1))
    alarm_id = only_alarm(db)["id"]
    db.transaction(lambda s: services.accept(s, alarm_id, "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))

    sweep_until(db, clock, T0 + minutes(20), minutes(0, 30))

    assert callouts(db) == [("solrosen-kungsangen", "Maria Holm")]
    assert only_alarm(db)["no_answer_at"] is None
    assert ("call_step", 1) not in pending(db)


def test_a_stale_step_does_nothing(db: Database, clock: FakeClock) -> None:
    # Maria declines at once: Ahmed is called under a new token. Should the step that
    # was scheduled for Maria's two minutes still come round (cancelled too late, say),
    # its token is no longer the alarm's and it calls nobody.
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    clock.advance(minutes(0, 30))
    db.transaction(lambda s: services.decline(s, alarm_id, "Maria Holm", "Maria Holm",
                                              clock.now(), RULES))
    db.transaction(lambda s: s.execute(
        update(Deadline).where(Deadline.kind == "call_step", Deadline.step == 1)
        .values(cancelled_at=None)))
    clock.set(T0 + minutes(2))

    out = sweep(db, clock)

    assert out.fired.stale == 1
    assert only_alarm(db)["calling"]["name"] == "Ahmed Yusuf"
    assert [name for _, name in callouts(db)] == ["Maria Holm", "Ahmed Yusuf"]


def test_one_alarms_answer_does_not_stop_anothers_chain(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM), event(EventKind.ALARM, "100002"))
    first, second = alarms(db)
    db.transaction(lambda s: services.accept(s, first["id"], "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))
    clock.advance(minutes(2))

    sweep(db, clock)

    assert alarms(db)[1]["calling"]["name"] == "Sara Nilsson"
    assert second["team"]["code"] == "solrosen-bro"


def test_a_decline_calls_the_next_at_once_and_is_on_the_timeline(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    clock.advance(minutes(0, 30))

    db.transaction(lambda s: services.decline(s, alarm_id, "Maria Holm", "Maria Holm",
                                              clock.now(), RULES))

    alarm = only_alarm(db)
    assert (alarm["calling"]["step"], alarm["calling"]["name"]) == (2, "Ahmed Yusuf")
    assert [e["note"] for e in log_of(alarm, "decline")] == ["declined by Maria Holm"]
    due = db.transaction(lambda s: s.execute(select(Deadline.due_at).where(
        Deadline.kind == "call_step", Deadline.fired_at.is_(None),
        Deadline.cancelled_at.is_(None))).scalar_one())
    assert due == T0 + minutes(2, 30)


def test_a_late_decline_from_someone_no_longer_called_passes_nobody_over(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    clock.set(T0 + minutes(2))
    sweep(db, clock)  # Ahmed is called now

    db.transaction(lambda s: services.decline(s, alarm_id, "Maria Holm", "Maria Holm",
                                              clock.now(), RULES))

    alarm = only_alarm(db)
    assert alarm["calling"]["name"] == "Ahmed Yusuf"
    assert [e["note"] for e in log_of(alarm, "decline")] == ["declined by Maria Holm"]


def test_a_decline_from_an_account_named_in_other_case_and_spacing_calls_the_next(
        db: Database, clock: FakeClock) -> None:
    """The call order says "Maria Holm"; the admin typed her account as "maria  holm"."""
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]

    db.transaction(lambda s: services.decline(s, alarm_id, "maria  holm", "maria  holm",
                                              clock.now(), RULES))

    # Before: taken for a late decline from someone else, and Maria's two minutes ran on.
    assert only_alarm(db)["calling"]["name"] == "Ahmed Yusuf"


def test_the_operator_calling_again_after_the_chain_ran_out_starts_it_over(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    sweep_until(db, clock, T0 + minutes(13), minutes(1))
    alarm_id = only_alarm(db)["id"]

    db.transaction(lambda s: services.call_out(s, alarm_id, "operator-1", clock.now(),
                                               RULES))

    alarm = only_alarm(db)
    assert (alarm["calling"]["step"], alarm["calling"]["name"]) == (1, "Maria Holm")
    assert alarm["attention"] == []
    assert alarm["called_out_at"] == T0.isoformat()  # the clock still runs from the first


def test_a_team_without_a_call_order_is_called_on_its_own_phone(
        db: Database, clock: FakeClock) -> None:
    def clear(s: Any) -> None:
        from dispatch.models import Team
        team = s.execute(select(Team).where(Team.code == "solrosen-kungsangen")).scalar_one()
        team.members.clear()
    db.transaction(clear)

    deliver(db, clock, event(EventKind.ALARM))
    sweep_until(db, clock, T0 + minutes(5), minutes(1))

    alarm = only_alarm(db)
    assert alarm["no_answer_at"] == (T0 + minutes(4)).isoformat()  # twice round, alone
    assert callouts(db) == [("solrosen-kungsangen", None)] * 2


def test_the_chain_is_the_configuration_at_the_call_out(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    faster = dataclasses.replace(RULES, timers=RULES.timers.model_copy(
        update={"call_step_after_s": 30, "call_rounds": 1}))

    sweep_until(db, clock, T0 + minutes(2), minutes(0, 30), faster)

    # The running chain keeps the two minutes and two rounds copied onto it.
    assert only_alarm(db)["calling"]["step"] == 2
    assert only_alarm(db)["calling"]["of"] == 6


# -- the escalation chain ----------------------------------------------------------


def accept_now(db: Database, clock: FakeClock) -> int:
    alarm_id = only_alarm(db)["id"]
    db.transaction(lambda s: services.accept(s, alarm_id, "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))
    return alarm_id


def test_30_minutes_remind_45_the_coordinator_60_a_red_flag(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    accept_now(db, clock)

    seen: dict[int, tuple[int, str | None, str | None]] = {}
    for at in (29, 30, 44, 45, 59, 60):
        clock.set(T0 + minutes(at, 59 if at in (29, 44, 59) else 0))
        sweep(db, clock)
        alarm = only_alarm(db)
        seen[at] = (alarm["reminder_count"], alarm["coordinator_at"], alarm["red_flag_at"])

    assert seen[29] == (0, None, None)
    assert seen[30] == (1, None, None)
    assert seen[44] == (1, None, None)
    assert seen[45][1] == (T0 + minutes(45)).isoformat()
    assert seen[59][2] is None
    assert seen[60][2] == (T0 + minutes(60)).isoformat()
    alarm = only_alarm(db)
    assert alarm["attention"] == ["red_flag"]
    assert [e["note"] for e in log_of(alarm, "escalate_coordinator")] == [
        "solrosen: Solrosen samordnare, +46 8 555 101 00"]
    topics = [t for t, _ in messages(db)]
    assert topics.count("trygg/v1/team/solrosen-kungsangen/reminder") == 1
    assert topics.count("trygg/v1/provider/solrosen/escalation") == 1


@pytest.mark.parametrize("stop", ["unit_check_in", "phone_check_in", "phone_kvittering",
                                  "false_alarm", "check_out"])
def test_nothing_more_after_check_in_or_closing(
        db: Database, clock: FakeClock, stop: str) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    clock.advance(minutes(20))
    now = clock.now()
    if stop == "unit_check_in":
        deliver(db, clock, event(EventKind.CHECK_IN))
    elif stop == "check_out":
        deliver(db, clock, event(EventKind.CHECK_OUT))
    elif stop == "phone_check_in":
        accept_now(db, clock)
        db.transaction(lambda s: services.check_in_by_responder(s, alarm_id, "Maria Holm",
                                                                now))
    elif stop == "phone_kvittering":
        db.transaction(lambda s: services.close_by_phone(s, alarm_id, "no visit needed",
                                                         "operator-1", now))
    else:
        db.transaction(lambda s: services.false_alarm(s, alarm_id, "", "operator-1", now,
                                                      RULES))
    before = len(messages(db))

    sweep_until(db, clock, T0 + minutes(120), minutes(5))

    alarm = only_alarm(db)
    assert (alarm["reminder_count"], alarm["coordinator_at"], alarm["red_flag_at"]) == (
        0, None, None)
    assert len(messages(db)) == before
    assert pending(db) == []


@pytest.mark.parametrize("pressed", [
    datetime(2026, 3, 29, 0, 50, tzinfo=UTC),  # 01:50 CET: the clocks jump 02:00 -> 03:00
    datetime(2026, 10, 25, 0, 50, tzinfo=UTC),  # 02:50 CEST: 03:00 -> 02:00 comes after
])
def test_the_chain_counts_elapsed_minutes_through_a_daylight_saving_night(
        db: Database, clock: FakeClock, pressed: datetime) -> None:
    clock.set(pressed)
    deliver(db, clock, event(EventKind.ALARM))
    accept_now(db, clock)
    clock.set(pressed + minutes(29, 30))
    sweep(db, clock)
    early = only_alarm(db)["reminder_count"]

    sweep_until(db, clock, pressed + minutes(60), minutes(0, 30))  # 30:00, 30:30, ...

    alarm = only_alarm(db)
    assert early == 0
    assert alarm["reminded_at"] == (pressed + minutes(30)).isoformat()
    assert alarm["coordinator_at"] == (pressed + minutes(45)).isoformat()
    assert alarm["red_flag_at"] == (pressed + minutes(60)).isoformat()


def test_no_step_fires_twice_across_a_restart(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    accept_now(db, clock)
    clock.set(T0 + minutes(45))
    sweep(db, clock)  # the reminder (30)
    db = restart()

    for _ in range(3):
        sweep(db, clock)

    alarm = only_alarm(db)
    assert (alarm["reminder_count"], len(log_of(alarm, "escalate_coordinator"))) == (1, 1)


# -- shift hand-over ---------------------------------------------------------------

SE_2150 = datetime(2026, 1, 15, 20, 50, tzinfo=UTC)  # 21:50 in Stockholm (CET)


def test_an_alarm_nobody_accepted_by_22_goes_to_the_night_patrol(
        db: Database, clock: FakeClock) -> None:
    clock.set(SE_2150)
    deliver(db, clock, event(EventKind.ALARM))
    clock.set(datetime(2026, 1, 15, 20, 59, 59, tzinfo=UTC))
    sweep(db, clock)
    before = only_alarm(db)["team"]["code"]
    clock.set(datetime(2026, 1, 15, 21, 0, tzinfo=UTC))  # 22:00

    sweep(db, clock)

    alarm = only_alarm(db)
    assert (before, alarm["team"]["code"]) == ("solrosen-kungsangen",
                                               "nattpatrull-kungsangen")
    assert alarm["handed_over_at"] == "2026-01-15T21:00:00+00:00"
    assert alarm["route_reason"] == "night_patrol"
    assert alarm["provider"] == "nattorganisationen"
    assert (alarm["calling"]["name"], alarm["calling"]["of"]) == (
        "Nattpatrull Kungsängen bil 1", 4)
    assert [e["note"] for e in log_of(alarm, "hand_over")] == [
        "from solrosen-kungsangen to nattpatrull-kungsangen: nobody accepted before the "
        "shift change (route night)"]
    topics = [t.removeprefix("trygg/v1/team/") for t, _ in messages(db)]
    assert topics[-2:] == ["solrosen-kungsangen/withdrawn", "nattpatrull-kungsangen/callout"]
    # The 30 minutes still run from the first call-out: the customer has waited since.
    assert alarm["called_out_at"] == SE_2150.isoformat()


def test_an_alarm_accepted_at_2150_stays_with_the_day_staff(
        db: Database, clock: FakeClock) -> None:
    clock.set(SE_2150)
    deliver(db, clock, event(EventKind.ALARM))
    accept_now(db, clock)
    clock.set(datetime(2026, 1, 15, 21, 0, tzinfo=UTC))

    sweep(db, clock)

    alarm = only_alarm(db)
    assert alarm["team"]["code"] == "solrosen-kungsangen"
    assert alarm["handed_over_at"] is None


def test_at_07_an_alarm_the_night_did_not_accept_goes_to_the_day_provider(
        db: Database, clock: FakeClock) -> None:
    clock.set(datetime(2026, 1, 16, 5, 50, tzinfo=UTC))  # 06:50
    deliver(db, clock, event(EventKind.ALARM))
    clock.set(datetime(2026, 1, 16, 6, 0, tzinfo=UTC))  # 07:00

    sweep(db, clock)

    alarm = only_alarm(db)
    assert alarm["team"]["code"] == "solrosen-kungsangen"
    assert alarm["calling"]["name"] == "Maria Holm"
    assert len(log_of(alarm, "hand_over")) == 1


@pytest.mark.parametrize(("arrived", "boundary"), [
    # The night the clocks go forward (29 March 2026): 07:00 is 05:00 UTC.
    (datetime(2026, 3, 29, 4, 50, tzinfo=UTC), datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
    # The evening before it: 22:00 CET is 21:00 UTC.
    (datetime(2026, 3, 28, 20, 50, tzinfo=UTC), datetime(2026, 3, 28, 21, 0, tzinfo=UTC)),
    # The night the clocks go back (25 October 2026): 07:00 CET is 06:00 UTC.
    (datetime(2026, 10, 25, 5, 50, tzinfo=UTC), datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),
    # The evening before it: 22:00 CEST is 20:00 UTC.
    (datetime(2026, 10, 24, 19, 50, tzinfo=UTC), datetime(2026, 10, 24, 20, 0, tzinfo=UTC)),
])
def test_the_hand_over_comes_at_the_local_shift_change_on_daylight_saving_nights(
        db: Database, clock: FakeClock, arrived: datetime, boundary: datetime) -> None:
    clock.set(arrived)
    deliver(db, clock, event(EventKind.ALARM))
    accepting = only_alarm(db)["team"]["code"]
    clock.set(boundary - timedelta(seconds=1))
    sweep(db, clock)
    before = only_alarm(db)["team"]["code"]
    clock.set(boundary)

    sweep(db, clock)

    after = only_alarm(db)["team"]["code"]
    assert before == accepting
    assert after != before
    assert only_alarm(db)["handed_over_at"] == boundary.isoformat()


def test_the_keep_policy_leaves_the_alarm_with_its_team(
        db: Database, clock: FakeClock) -> None:
    keep = dataclasses.replace(RULES, handover=Handover(unaccepted="keep"))
    clock.set(SE_2150)
    now = clock.now()
    from core.inbox import Incoming, append_events
    db.transaction(lambda s: append_events(s, [Incoming(event(EventKind.ALARM), b"<mrq/>",
                                                        now)]))
    db.transaction(lambda s: services.process_pending(s, now, keep, budget_s=60))
    clock.set(datetime(2026, 1, 15, 21, 0, tzinfo=UTC))

    sweep(db, clock, keep)

    assert only_alarm(db)["team"]["code"] == "solrosen-kungsangen"


def test_a_hand_over_happens_once_across_a_restart(
        db: Database, clock: FakeClock, restart: Callable[[], Database]) -> None:
    clock.set(SE_2150)
    deliver(db, clock, event(EventKind.ALARM))
    clock.set(datetime(2026, 1, 15, 21, 0, 30, tzinfo=UTC))
    sweep(db, clock)
    db = restart()

    sweep(db, clock)

    alarm = only_alarm(db)
    assert len(log_of(alarm, "hand_over")) == 1
    # The next shift change is scheduled, in case the night patrol does not answer.
    assert ("handover", None) in pending(db)


# -- kvittering in every form ------------------------------------------------------


def test_a_check_in_on_the_unit_is_recorded_as_the_units(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(12))

    deliver(db, clock, event(EventKind.CHECK_IN))

    alarm = only_alarm(db)
    assert (alarm["kvittering"], alarm["arrival_seconds"]) == ("unit", 720)


def test_the_units_check_in_counts_first_where_both_exist(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = accept_now(db, clock)
    clock.advance(minutes(10))
    now = clock.now()
    db.transaction(lambda s: services.check_in_by_responder(s, alarm_id, "Maria Holm", now))
    by_phone = only_alarm(db)
    clock.advance(minutes(1))

    deliver(db, clock, event(EventKind.CHECK_IN))

    alarm = only_alarm(db)
    assert (by_phone["kvittering"], by_phone["arrival_seconds"]) == ("responder", 600)
    assert (alarm["kvittering"], alarm["arrival_seconds"]) == ("unit", 660)
    assert alarm["state"] == "on_site"


def test_a_phone_check_in_and_out_when_the_unit_cannot(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = accept_now(db, clock)
    clock.advance(minutes(8))
    t1 = clock.now()
    db.transaction(lambda s: services.on_my_way(s, alarm_id, "Maria Holm", t1))
    clock.advance(minutes(8))
    t2 = clock.now()
    db.transaction(lambda s: services.check_in_by_responder(s, alarm_id, "Maria Holm", t2))
    clock.advance(minutes(10))
    t3 = clock.now()

    db.transaction(lambda s: services.check_out_by_responder(s, alarm_id, "Maria Holm", t3))

    alarm = only_alarm(db)
    assert (alarm["state"], alarm["kvittering"], alarm["closed_via"]) == (
        "completed", "responder", "responder")
    assert (alarm["on_way_at"], alarm["arrival_seconds"], alarm["visit_seconds"]) == (
        t1.isoformat(), 960, 600)
    assert [e["actor"] for e in log_of(alarm, "check_in")] == ["Maria Holm"]


def test_phone_kvittering_and_false_alarm_are_recorded_as_such(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM), event(EventKind.ALARM, "100002"))
    first, second = alarms(db)
    now = clock.now()
    db.transaction(lambda s: services.close_by_phone(s, first["id"], "no visit needed",
                                                     "operator-1", now))

    db.transaction(lambda s: services.false_alarm(s, second["id"], "pressed by mistake",
                                                  "operator-1", now, RULES))

    first, second = alarms(db)
    assert (first["kvittering"], first["state"]) == ("phone", "closed")
    assert (second["kvittering"], second["state"], second["close_reason"]) == (
        "false_alarm", "closed", "pressed by mistake")
    assert messages(db)[-1][0] == "trygg/v1/team/solrosen-bro/cancel"


def test_a_false_alarm_cannot_close_a_closed_alarm(db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    now = clock.now()
    db.transaction(lambda s: services.close_by_phone(s, alarm_id, "handled", "op", now))

    with pytest.raises(InvalidTransition):
        db.transaction(lambda s: services.false_alarm(s, alarm_id, "", "op", now, RULES))


# -- visit length and its reason ---------------------------------------------------


def visit(db: Database, clock: FakeClock, length: timedelta) -> int:
    deliver(db, clock, event(EventKind.ALARM))
    clock.advance(minutes(10))
    deliver(db, clock, event(EventKind.CHECK_IN))
    clock.advance(length)
    deliver(db, clock, event(EventKind.CHECK_OUT))
    return int(only_alarm(db)["id"])


def test_a_visit_over_15_minutes_needs_a_reason(db: Database, clock: FakeClock) -> None:
    alarm_id = visit(db, clock, minutes(15, 1))
    asked = only_alarm(db)["needs_visit_reason"]
    now = clock.now()

    db.transaction(lambda s: services.give_visit_reason(
        s, alarm_id, "the customer had fallen; waited for the ambulance", "Maria Holm", now))

    alarm = only_alarm(db)
    assert asked is True
    assert (alarm["needs_visit_reason"], alarm["visit_reason"]) == (
        False, "the customer had fallen; waited for the ambulance")


def test_a_visit_of_15_minutes_needs_no_reason(db: Database, clock: FakeClock) -> None:
    alarm_id = visit(db, clock, minutes(15))
    now = clock.now()

    with pytest.raises(InvalidTransition, match="15 or less needs none"):
        db.transaction(lambda s: services.give_visit_reason(s, alarm_id, "x", "op", now))
    assert only_alarm(db)["needs_visit_reason"] is False


# -- routes with continue ----------------------------------------------------------

COPY_THE_NIGHT = RouteTree.model_validate({"routes": [
    {"name": "tell the night patrol", "match": {"priority_at_least": 5},
     "to": "night_patrol", "continue": True},
    {"name": "day", "to": "day_provider"}]})


def test_a_continue_routes_team_is_told_and_not_made_responsible(
        db: Database, clock: FakeClock) -> None:
    rules = dataclasses.replace(RULES, routes=COPY_THE_NIGHT)
    now = clock.now()
    from core.inbox import Incoming, append_events
    db.transaction(lambda s: append_events(s, [Incoming(event(EventKind.ALARM), b"<mrq/>",
                                                        now)]))

    db.transaction(lambda s: services.process_pending(s, now, rules, budget_s=60))

    alarm = only_alarm(db)
    assert (alarm["team"]["code"], alarm["also_teams"]) == (
        "solrosen-kungsangen", ["nattpatrull-kungsangen"])
    assert [t for t, _ in messages(db)] == [
        "trygg/v1/team/solrosen-kungsangen/callout",
        "trygg/v1/team/nattpatrull-kungsangen/notice"]


# -- an alarm raised by phone (no press: the customer phoned, the unit is broken) ------


def test_an_alarm_raised_by_phone_is_routed_and_called_out_like_a_press(
        db: Database, clock: FakeClock) -> None:
    now = clock.now()
    raised = db.transaction(lambda s: services.raise_by_phone(
        s, "K-1001-1", "the customer phoned: the pendant does not work", "operator-1", now,
        RULES).id)
    clock.advance(minutes(12))
    later = clock.now()
    db.transaction(lambda s: services.check_in_by_responder(s, raised, "Maria Holm", later))

    alarm = only_alarm(db)
    assert (alarm["cid"], alarm["team"]["code"], alarm["route_reason"]) == (
        "100001", "solrosen-kungsangen", "day_provider")
    assert [e["note"] for e in log_of(alarm, "raised_by_phone")] == [
        "the customer phoned: the pendant does not work"]
    assert callouts(db) == [("solrosen-kungsangen", "Maria Holm")]
    assert (alarm["kvittering"], alarm["arrival_seconds"]) == ("responder", 720)


def test_an_alarm_is_not_raised_by_phone_twice_nor_for_an_unknown_site(
        db: Database, clock: FakeClock) -> None:
    deliver(db, clock, event(EventKind.ALARM))
    now = clock.now()

    with pytest.raises(services.AlreadyOpen):
        db.transaction(lambda s: services.raise_by_phone(s, "K-1001-1", "phoned", "op",
                                                         now, RULES))
    with pytest.raises(services.UnknownSite):
        db.transaction(lambda s: services.raise_by_phone(s, "K-9999-1", "phoned", "op",
                                                         now, RULES))
    assert len(alarms(db)) == 1
