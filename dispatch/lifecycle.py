"""The life of an alarm as named transitions, each timestamped into the audit trail.

received -> called_out -> accepted -> on_site (check-in) -> completed (check-out) -> closed,
and closed by phone kvittering from any state before closed (a reason is required), or
cancelled as a false alarm. Check-in and check-out come from the unit or, when it cannot
(a broken unit, a visit without an alarm), from the responder's phone; the unit's
check-in counts first where both exist. Each kind of kvittering is recorded as such.
Pure rules over an `Alarm` row: no session, no clock; the caller passes `at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.errors import TryggError
from dispatch.models import AWAITING_CHECK_IN, OPEN_STATES, Alarm, AlarmLogEntry, AlarmState

S = AlarmState


class InvalidTransition(TryggError):
    """The alarm is not in a state that allows this action."""

    def __init__(self, alarm_id: int | None, action: str, state: str) -> None:
        super().__init__(f"alarm {alarm_id}: cannot {action} while {state}")
        self.alarm_id = alarm_id
        self.action = action
        self.state = state


class MissingReason(TryggError):
    """Closing by phone kvittering needs a reason, for the follow-up."""


def _log(alarm: Alarm, action: str, at: datetime, actor: str, note: str | None = None,
         to_state: AlarmState | None = None) -> None:
    from_state = alarm.state
    if to_state is not None:
        alarm.state = to_state
    alarm.version = (alarm.version or 0) + 1
    alarm.log.append(AlarmLogEntry(
        action=action, from_state=from_state, to_state=alarm.state, at=at, actor=actor, note=note,
    ))


def _require(alarm: Alarm, action: str, allowed: tuple[AlarmState, ...]) -> None:
    if alarm.state not in allowed:
        raise InvalidTransition(alarm.id, action, alarm.state)


def receive(alarm: Alarm, at: datetime, actor: str) -> None:
    """Start the trail of a new alarm (the routing decision is already on the row)."""
    if alarm.state is not None:
        raise InvalidTransition(alarm.id, "receive", alarm.state)
    alarm.received_at = at
    note = f"routed: {alarm.route_reason}" + (f" to {alarm.team_code}" if alarm.team_code else "")
    # A new alarm has no state yet, so its first entry comes from none.
    _log(alarm, "receive", at, actor, note, S.RECEIVED)


def call_out(alarm: Alarm, at: datetime, actor: str, note: str | None = None) -> bool:
    """Call out the team. Calling out again (the next in the call order) keeps the first time.

    Returns True when this was the first call-out, which starts the 30-minute clock.
    """
    _require(alarm, "call out", (S.RECEIVED, S.CALLED_OUT, S.ACCEPTED))
    first = alarm.called_out_at is None
    if first:
        alarm.called_out_at = at
    to_state = S.CALLED_OUT if alarm.state == S.RECEIVED else None
    _log(alarm, "call_out" if first else "call_out_again", at, actor,
         note or alarm.team_code, to_state)
    return first


def decline(alarm: Alarm, responder: str, at: datetime, actor: str) -> None:
    """A called responder says no: the chain moves on to the next at once."""
    _require(alarm, "decline", (S.CALLED_OUT,))
    _log(alarm, "decline", at, actor, f"declined by {responder}")


def no_answer(alarm: Alarm, at: datetime, rounds: int) -> None:
    """The call order went round `rounds` times unanswered: the operator must act."""
    alarm.no_answer_at = at
    _log(alarm, "no_answer", at, "system",
         f"nobody of the call order answered in {rounds} round(s): call the team")


def on_my_way(alarm: Alarm, at: datetime, actor: str) -> None:
    """The responder who accepted is travelling (from their phone)."""
    _require(alarm, "say on my way", (S.ACCEPTED,))
    alarm.on_way_at = alarm.on_way_at or at
    _log(alarm, "on_my_way", at, actor)


def accept(alarm: Alarm, responder: str, at: datetime, actor: str) -> None:
    """The operator records the name of the person who answered the call-out."""
    responder = responder.strip()
    if not responder:
        raise MissingReason("the name of the person who answered is required")
    _require(alarm, "accept", (S.RECEIVED, S.CALLED_OUT))
    if alarm.called_out_at is None:  # the operator phoned someone directly
        alarm.called_out_at = at
    alarm.accepted_at = at
    alarm.accepted_by = responder
    _log(alarm, "accept", at, actor, f"answered by {responder}", S.ACCEPTED)


def check_in(alarm: Alarm, at: datetime, cid: str) -> None:
    """Staff pressed yellow then green: on site. Stops the arrival clock."""
    _require(alarm, "check in", AWAITING_CHECK_IN)
    alarm.on_site_at = at
    alarm.kvittering = "unit"
    _log(alarm, "check_in", at, f"device:{cid}", None, S.ON_SITE)


def check_in_by_responder(alarm: Alarm, at: datetime, actor: str) -> None:
    """Checked in from the responder's phone, when the unit cannot (004 §8.2.4)."""
    _require(alarm, "check in", AWAITING_CHECK_IN)
    alarm.on_site_at = at
    alarm.kvittering = "responder"
    _log(alarm, "check_in", at, actor, "by the responder's phone", S.ON_SITE)


# A unit check-in this soon after the phone's is the same arrival, confirmed.
UNIT_CONFIRMS_WITHIN = timedelta(minutes=15)


def unit_confirms(alarm: Alarm, at: datetime, cid: str) -> bool:
    """The unit checks in after the phone did: the unit's check-in counts first, so its
    time becomes the arrival. False when there is nothing to replace."""
    if alarm.kvittering != "responder" or alarm.state != S.ON_SITE \
            or alarm.on_site_at is None or not timedelta(0) <= at - alarm.on_site_at <= \
            UNIT_CONFIRMS_WITHIN:
        # Long after (a planned visit's check-in on a visit nobody checked out of) it is
        # another visit, not this one's arrival.
        return False
    replaced = alarm.on_site_at
    alarm.on_site_at = at
    alarm.kvittering = "unit"
    _log(alarm, "check_in", at, f"device:{cid}",
         f"the unit's check-in replaces the phone's of {replaced.isoformat() if replaced else '-'}")
    return True


def check_out(alarm: Alarm, at: datetime, cid: str) -> None:
    """The unit says "check out": the visit is over."""
    _require(alarm, "check out", OPEN_STATES)
    note = None if alarm.state == S.ON_SITE else "check-out without check-in"
    alarm.completed_at = at
    alarm.closed_via = "unit"
    _log(alarm, "check_out", at, f"device:{cid}", note, S.COMPLETED)


def check_out_by_responder(alarm: Alarm, at: datetime, actor: str) -> None:
    """Checked out from the responder's phone: only after a check-in, which the unit
    may have made."""
    _require(alarm, "check out", (S.ON_SITE,))
    alarm.completed_at = at
    alarm.closed_via = "responder"
    _log(alarm, "check_out", at, actor, "by the responder's phone", S.COMPLETED)


def close(alarm: Alarm, at: datetime, actor: str) -> None:
    """The operator closes a completed alarm."""
    _require(alarm, "close", (S.COMPLETED,))
    alarm.closed_at = at
    alarm.closed_by = actor
    _log(alarm, "close", at, actor, None, S.CLOSED)


def close_by_phone(alarm: Alarm, reason: str, at: datetime, actor: str) -> None:
    """Kvittering by phone: the alarm was dealt with without a visit (004 §8.2.4)."""
    reason = reason.strip()
    if not reason:
        raise MissingReason("a reason is required to close an alarm by phone kvittering")
    _require(alarm, "close by phone", (*OPEN_STATES, S.COMPLETED))
    alarm.closed_at = at
    alarm.closed_by = actor
    alarm.close_reason = reason
    alarm.closed_via = alarm.closed_via or "phone"
    alarm.kvittering = alarm.kvittering or "phone"
    _log(alarm, "phone_kvittering", at, actor, reason, S.CLOSED)


def false_alarm(alarm: Alarm, reason: str, at: datetime, actor: str) -> None:
    """Cancelled as a false alarm (pressed by mistake, confirmed with the customer)."""
    _require(alarm, "cancel as a false alarm", OPEN_STATES)
    alarm.closed_at = at
    alarm.closed_by = actor
    alarm.close_reason = reason.strip() or "false alarm"
    alarm.closed_via = "false_alarm"
    alarm.kvittering = "false_alarm"
    _log(alarm, "false_alarm", at, actor, alarm.close_reason, S.CLOSED)


# A visit is paid as a standard 15 minutes; a longer one needs a written reason (004 §6.1).
STANDARD_VISIT_S = 15 * 60


def visit_seconds(alarm: Alarm) -> float | None:
    if alarm.on_site_at is None or alarm.completed_at is None:
        return None
    return (alarm.completed_at - alarm.on_site_at).total_seconds()


def needs_visit_reason(alarm: Alarm) -> bool:
    length = visit_seconds(alarm)
    return length is not None and length > STANDARD_VISIT_S and not alarm.visit_reason


def give_visit_reason(alarm: Alarm, reason: str, at: datetime, actor: str) -> None:
    """Why a visit took longer than 15 minutes, for the reimbursement (004 §6.1)."""
    reason = reason.strip()
    if not reason:
        raise MissingReason("a reason is required")
    length = visit_seconds(alarm)
    if length is None:
        raise InvalidTransition(alarm.id, "give a visit reason before check-in and "
                                "check-out", alarm.state)
    if length <= STANDARD_VISIT_S:
        raise InvalidTransition(alarm.id, f"give a visit reason for a visit of "
                                f"{length / 60:.0f} minutes (15 or less needs none)",
                                alarm.state)
    alarm.visit_reason = reason
    _log(alarm, "visit_reason", at, actor, reason)


def remind(alarm: Alarm, at: datetime) -> bool:
    """No check-in yet: record a reminder. Returns False when the alarm no longer needs one."""
    if alarm.state not in AWAITING_CHECK_IN:
        return False
    alarm.reminded_at = at
    alarm.reminder_count += 1
    _log(alarm, "remind", at, "system", f"reminder {alarm.reminder_count}: no check-in")
    return True


def coordinator(alarm: Alarm, at: datetime, note: str) -> None:
    """Escalated to the provider's coordinator: still no check-in."""
    alarm.coordinator_at = alarm.coordinator_at or at
    _log(alarm, "escalate_coordinator", at, "system", note)


def red_flag(alarm: Alarm, at: datetime, minutes: int) -> None:
    """A red flag for the operator: still nobody on site."""
    alarm.red_flag_at = alarm.red_flag_at or at
    _log(alarm, "red_flag", at, "system", f"no check-in {minutes} minutes after the call-out")


def hand_over(alarm: Alarm, at: datetime, from_team: str | None, note: str) -> None:
    """Nobody of the old shift accepted: the alarm goes to the new shift's team (its new
    routing decision is already on the row)."""
    alarm.handed_over_at = at
    _log(alarm, "hand_over", at, "system", f"from {from_team or '-'} to "
         f"{alarm.team_code or '-'}: {note}")


def repeat(alarm: Alarm, at: datetime, cid: str) -> None:
    """The same unit alarmed again while this alarm is open: one alarm, noted, more urgent."""
    alarm.repeat_count += 1
    _log(alarm, "repeat_alarm", at, f"device:{cid}", f"repeat {alarm.repeat_count}")


def note_device(alarm: Alarm, action: str, at: datetime, cid: str, note: str | None) -> None:
    """Something the unit said about this alarm that changes no state (e.g. a cancel)."""
    _log(alarm, action, at, f"device:{cid}", note)


def note(alarm: Alarm, action: str, at: datetime, actor: str, text: str | None) -> None:
    """Something about this alarm that changes no state, by anyone (a user, a lock)."""
    _log(alarm, action, at, actor, text)
