"""The life of an alarm: named transitions, their timestamps, and the audit trail they leave."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dispatch import lifecycle
from dispatch.lifecycle import InvalidTransition, MissingReason
from dispatch.models import Alarm, AlarmState

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
CID = "100001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def received() -> Alarm:
    alarm = Alarm(id=7, cid=CID, route_reason="day_provider", team_code="solrosen-kungsangen",
                  priority=0, reminder_count=0, repeat_count=0)
    lifecycle.receive(alarm, T0, f"device:{CID}")
    return alarm


def called_out() -> Alarm:
    alarm = received()
    lifecycle.call_out(alarm, at(1), "system")
    return alarm


def accepted() -> Alarm:
    alarm = called_out()
    lifecycle.accept(alarm, "Maria Holm", at(3), "operator-1")
    return alarm


def on_site() -> Alarm:
    alarm = accepted()
    lifecycle.check_in(alarm, at(20), CID)
    return alarm


def completed() -> Alarm:
    alarm = on_site()
    lifecycle.check_out(alarm, at(35), CID)
    return alarm


def trail(alarm: Alarm) -> list[tuple[str, str | None, str | None, str]]:
    return [(e.action, e.from_state, e.to_state, e.actor) for e in alarm.log]


# -- the happy path --------------------------------------------------------------------


def test_received_alarm_starts_its_trail_with_the_routing_decision() -> None:
    alarm = received()

    assert alarm.state == AlarmState.RECEIVED
    assert alarm.received_at == T0
    assert trail(alarm) == [("receive", None, "received", "device:100001")]
    assert alarm.log[0].note == "routed: day_provider to solrosen-kungsangen"
    assert alarm.log[0].at == T0


def test_call_out_moves_to_called_out_and_starts_the_clock() -> None:
    alarm = received()

    first = lifecycle.call_out(alarm, at(1), "system")

    assert first is True
    assert alarm.state == AlarmState.CALLED_OUT
    assert alarm.called_out_at == at(1)
    assert trail(alarm)[-1] == ("call_out", "received", "called_out", "system")
    assert alarm.log[-1].note == "solrosen-kungsangen"


def test_calling_out_again_keeps_the_first_call_out_time() -> None:
    alarm = called_out()

    first = lifecycle.call_out(alarm, at(5), "operator-1")

    assert first is False
    assert alarm.called_out_at == at(1)
    assert alarm.state == AlarmState.CALLED_OUT
    assert trail(alarm)[-1] == ("call_out_again", "called_out", "called_out", "operator-1")
    assert alarm.log[-1].at == at(5)


def test_calling_out_again_after_accept_stays_accepted() -> None:
    alarm = accepted()

    lifecycle.call_out(alarm, at(5), "operator-1")

    assert alarm.state == AlarmState.ACCEPTED
    assert alarm.called_out_at == at(1)


def test_accept_records_who_answered_and_when() -> None:
    alarm = called_out()

    lifecycle.accept(alarm, "  Maria Holm ", at(3), "operator-1")

    assert alarm.state == AlarmState.ACCEPTED
    assert alarm.accepted_at == at(3)
    assert alarm.accepted_by == "Maria Holm"
    assert trail(alarm)[-1] == ("accept", "called_out", "accepted", "operator-1")
    assert alarm.log[-1].note == "answered by Maria Holm"


def test_accept_without_call_out_counts_the_call_from_the_accept() -> None:
    # The operator phoned someone directly, e.g. for an unknown-device alarm.
    alarm = received()

    lifecycle.accept(alarm, "Maria Holm", at(4), "operator-1")

    assert alarm.state == AlarmState.ACCEPTED
    assert alarm.called_out_at == at(4)


@pytest.mark.parametrize("name", ["", "   "], ids=["empty", "whitespace"])
def test_accept_needs_the_name_of_who_answered(name: str) -> None:
    alarm = called_out()

    with pytest.raises(MissingReason):
        lifecycle.accept(alarm, name, at(3), "operator-1")

    assert alarm.state == AlarmState.CALLED_OUT
    assert alarm.accepted_by is None
    assert [e.action for e in alarm.log] == ["receive", "call_out"]


def test_check_in_puts_the_alarm_on_site() -> None:
    alarm = accepted()

    lifecycle.check_in(alarm, at(20), CID)

    assert alarm.state == AlarmState.ON_SITE
    assert alarm.on_site_at == at(20)
    assert trail(alarm)[-1] == ("check_in", "accepted", "on_site", "device:100001")


def test_check_in_straight_after_call_out_is_allowed() -> None:
    alarm = called_out()

    lifecycle.check_in(alarm, at(20), CID)

    assert alarm.state == AlarmState.ON_SITE


def test_check_out_completes_the_visit() -> None:
    alarm = on_site()

    lifecycle.check_out(alarm, at(35), CID)

    assert alarm.state == AlarmState.COMPLETED
    assert alarm.completed_at == at(35)
    assert alarm.closed_via == "unit"
    assert trail(alarm)[-1] == ("check_out", "on_site", "completed", "device:100001")
    assert alarm.log[-1].note is None


def test_check_out_without_check_in_completes_and_is_noted() -> None:
    alarm = accepted()

    lifecycle.check_out(alarm, at(35), CID)

    assert alarm.state == AlarmState.COMPLETED
    assert alarm.log[-1].note == "check-out without check-in"


def test_close_after_completion_closes_with_who_and_when() -> None:
    alarm = completed()

    lifecycle.close(alarm, at(40), "operator-1")

    assert alarm.state == AlarmState.CLOSED
    assert alarm.closed_at == at(40)
    assert alarm.closed_by == "operator-1"
    assert trail(alarm)[-1] == ("close", "completed", "closed", "operator-1")


def test_whole_life_leaves_one_audit_entry_per_transition_in_order() -> None:
    alarm = completed()
    lifecycle.close(alarm, at(40), "operator-1")

    assert trail(alarm) == [
        ("receive", None, "received", "device:100001"),
        ("call_out", "received", "called_out", "system"),
        ("accept", "called_out", "accepted", "operator-1"),
        ("check_in", "accepted", "on_site", "device:100001"),
        ("check_out", "on_site", "completed", "device:100001"),
        ("close", "completed", "closed", "operator-1"),
    ]
    assert [e.at for e in alarm.log] == [T0, at(1), at(3), at(20), at(35), at(40)]


# -- phone kvittering ------------------------------------------------------------------


def test_phone_kvittering_closes_an_open_alarm_with_its_reason() -> None:
    alarm = called_out()

    lifecycle.close_by_phone(alarm, " Handled by phone, no visit needed ", at(10), "operator-1")

    assert alarm.state == AlarmState.CLOSED
    assert alarm.closed_at == at(10)
    assert alarm.closed_by == "operator-1"
    assert alarm.close_reason == "Handled by phone, no visit needed"
    assert alarm.closed_via == "phone"
    assert trail(alarm)[-1] == ("phone_kvittering", "called_out", "closed", "operator-1")
    assert alarm.log[-1].note == "Handled by phone, no visit needed"


def test_phone_kvittering_after_check_out_keeps_the_unit_as_how_it_closed() -> None:
    alarm = completed()

    lifecycle.close_by_phone(alarm, "confirmed by phone", at(40), "operator-1")

    assert alarm.state == AlarmState.CLOSED
    assert alarm.closed_via == "unit"


@pytest.mark.parametrize("reason", ["", " \t\n "], ids=["empty", "whitespace"])
def test_phone_kvittering_needs_a_reason(reason: str) -> None:
    alarm = called_out()

    with pytest.raises(MissingReason):
        lifecycle.close_by_phone(alarm, reason, at(10), "operator-1")

    assert alarm.state == AlarmState.CALLED_OUT
    assert alarm.closed_at is None


# -- refused transitions ---------------------------------------------------------------


def test_accept_after_check_in_is_refused() -> None:
    alarm = on_site()

    with pytest.raises(InvalidTransition) as caught:
        lifecycle.accept(alarm, "Maria Holm", at(21), "operator-1")

    assert caught.value.alarm_id == 7
    assert caught.value.action == "accept"
    assert caught.value.state == "on_site"
    assert "alarm 7: cannot accept while on_site" in str(caught.value)
    assert alarm.state == AlarmState.ON_SITE


@pytest.mark.parametrize("make", [received, called_out, accepted, on_site],
                         ids=["received", "called_out", "accepted", "on_site"])
def test_close_before_completed_is_refused(make: Callable[[], Alarm]) -> None:
    alarm = make()
    before = alarm.state

    with pytest.raises(InvalidTransition):
        lifecycle.close(alarm, at(40), "operator-1")

    assert alarm.state == before
    assert alarm.closed_at is None


def test_second_check_in_is_refused() -> None:
    alarm = on_site()

    with pytest.raises(InvalidTransition):
        lifecycle.check_in(alarm, at(22), CID)


def test_check_out_after_completed_is_refused() -> None:
    alarm = completed()

    with pytest.raises(InvalidTransition):
        lifecycle.check_out(alarm, at(36), CID)


def test_call_out_once_on_site_is_refused() -> None:
    alarm = on_site()

    with pytest.raises(InvalidTransition):
        lifecycle.call_out(alarm, at(21), "operator-1")


def test_phone_kvittering_of_a_closed_alarm_is_refused() -> None:
    alarm = called_out()
    lifecycle.close_by_phone(alarm, "no visit needed", at(10), "operator-1")

    with pytest.raises(InvalidTransition):
        lifecycle.close_by_phone(alarm, "again", at(11), "operator-2")

    assert alarm.closed_by == "operator-1"


def test_refused_transition_leaves_no_audit_entry() -> None:
    alarm = on_site()
    entries = len(alarm.log)

    with pytest.raises(InvalidTransition):
        lifecycle.close(alarm, at(40), "operator-1")

    assert len(alarm.log) == entries


# -- reminders and repeats -------------------------------------------------------------


def test_reminder_while_awaiting_check_in_is_counted_and_logged() -> None:
    alarm = called_out()

    reminded = lifecycle.remind(alarm, at(31))

    assert reminded is True
    assert alarm.reminder_count == 1
    assert alarm.reminded_at == at(31)
    assert alarm.state == AlarmState.CALLED_OUT
    assert trail(alarm)[-1] == ("remind", "called_out", "called_out", "system")
    assert alarm.log[-1].note == "reminder 1: no check-in"


@pytest.mark.parametrize("make", [on_site, completed], ids=["on_site", "completed"])
def test_no_reminder_once_staff_are_on_site(make: Callable[[], Alarm]) -> None:
    alarm = make()

    reminded = lifecycle.remind(alarm, at(31))

    assert reminded is False
    assert alarm.reminder_count == 0
    assert alarm.reminded_at is None


def test_repeat_alarm_is_counted_and_logged_without_changing_state() -> None:
    alarm = called_out()

    lifecycle.repeat(alarm, at(2), CID)
    lifecycle.repeat(alarm, at(3), CID)

    assert alarm.repeat_count == 2
    assert alarm.state == AlarmState.CALLED_OUT
    assert trail(alarm)[-1] == ("repeat_alarm", "called_out", "called_out", "device:100001")
    assert alarm.log[-1].note == "repeat 2"
