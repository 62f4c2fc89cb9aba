"""Call chains and escalation: who is called next, and who is told when nobody comes.

In the manner of Grafana OnCall's escalation snapshot. When the call-out starts, the
chain is copied onto the alarm (`Alarm.chain`): the call order was frozen with the
routing decision, and the timings and steps are taken from the configuration now, so a
later change moves no running chain. Every scheduled step is a `Deadline` row keyed by
the alarm and the step, carrying the token the alarm held when it was scheduled; when
the chain moves on (an answer, a decline, a hand-over) the alarm takes a new token and
any step still scheduled under the old one is stale and does nothing. One alarm's answer
therefore never stops another's chain, and a step fires once, across restarts too.

Two chains run on an alarm:

- the **call chain**: the first responder of the call order is called; unanswered after
  `call_step_after_s` (2 minutes) the next; after the list has gone round `call_rounds`
  (twice) the operator is flagged (`no_answer_at`). Answering stops it.
- the **escalation chain** after the call-out while nobody has checked in: by default
  remind the team at 30 minutes, the provider's coordinator at 45, a red flag for the
  operator at 60, then a reminder to the team every 30 minutes. Check-in, check-out and
  closing stop it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch import lifecycle, team_messages
from dispatch.config import Timers
from dispatch.models import AWAITING_CHECK_IN, Alarm, AlarmState, Deadline, Provider

log = structlog.get_logger(__name__)

CALL_STEP = "call_step"
ESCALATION = "escalation"
HANDOVER = "handover"
# Before issue 9 the only deadline; migration 0008 turns pending ones into ESCALATION.
REMINDER = "reminder"


@dataclass
class Fired:
    """What firing steps did, for the metrics after the commit."""

    reminders: int = 0
    calls: int = 0
    no_answer: int = 0
    coordinator: int = 0
    red_flags: int = 0
    handovers: int = 0
    stale: int = 0
    failed: int = 0
    alarm_ids: list[int] = field(default_factory=list)

    def merge(self, other: Fired) -> None:
        self.reminders += other.reminders
        self.calls += other.calls
        self.no_answer += other.no_answer
        self.coordinator += other.coordinator
        self.red_flags += other.red_flags
        self.handovers += other.handovers
        self.stale += other.stale
        self.failed += other.failed


def snapshot(timers: Timers, started_at: datetime) -> dict[str, Any]:
    """The chain as the configuration says now, to be frozen on the alarm."""
    return {
        "started_at": started_at.isoformat(),
        "step_after_s": timers.call_step_after_s,
        "rounds": timers.call_rounds,
        "steps": [{"after_s": s.after_min * 60, "action": s.action}
                  for s in timers.escalation_steps],
        "repeat_s": timers.repeat_reminder_min * 60,
    }


def _token() -> str:
    return uuid.uuid4().hex


def _chain(alarm: Alarm, timers: Timers, now: datetime) -> dict[str, Any]:
    if alarm.chain is None:
        alarm.chain = snapshot(timers, now)
    return alarm.chain


def responders(alarm: Alarm) -> list[dict[str, Any]]:
    """Whom the call chain calls, in order: the frozen call order, or the team's own
    phone when it has none."""
    return list(alarm.call_order) or [{"name": None, "phone": alarm.team_phone}]


def calls_in_chain(alarm: Alarm) -> int:
    rounds = int((alarm.chain or {}).get("rounds", 2))
    return len(responders(alarm)) * rounds


def calling(alarm: Alarm) -> dict[str, Any] | None:
    """The responder being called now, if the call chain is running."""
    if alarm.state != AlarmState.CALLED_OUT or alarm.call_token is None \
            or alarm.call_step is None:
        return None
    entries = responders(alarm)
    who = entries[alarm.call_step % len(entries)]
    return {"step": alarm.call_step + 1, "of": calls_in_chain(alarm),
            "name": who.get("name"), "phone": who.get("phone")}


def same_person(name: str | None, other: str | None) -> bool:
    """Whether two names, one from the call order (the config) and one a user's, are the
    same person's: case and spacing differ between what the municipality typed into the
    call order and what the admin typed for the account."""
    if name is None or other is None:
        return False
    return " ".join(name.split()).casefold() == " ".join(other.split()).casefold()


# -- the call chain ------------------------------------------------------------------


def start_calls(session: Session, alarm: Alarm, now: datetime, actor: str,
                timers: Timers, root: str) -> None:
    """The call-out: copy the chain, call the first responder, start the escalation."""
    first = alarm.called_out_at is None
    _chain(alarm, timers, now)
    call(session, alarm, 0, now, actor, root)
    if first:
        start_escalation(session, alarm, now, timers)
    for code in alarm.also_teams or []:
        # A route that matched with `continue`: told of the alarm, not responsible.
        team_messages.queue(session, root, f"team/{code}/notice", alarm, now, "notice")


def call(session: Session, alarm: Alarm, step: int, now: datetime, actor: str,
         root: str) -> None:
    """Call the responder at `step` of the chain, under a new token, and schedule the
    next step; past the end of the chain, flag the operator instead."""
    total = calls_in_chain(alarm)
    if step >= total:
        alarm.call_token = None
        alarm.call_step = None
        lifecycle.no_answer(alarm, now, int((alarm.chain or {}).get("rounds", 2)))
        return
    entries = responders(alarm)
    who = entries[step % len(entries)]
    alarm.call_step = step
    alarm.call_token = _token()
    alarm.no_answer_at = None
    name = who.get("name") or f"the team's phone {alarm.team_phone or ''}".strip()
    lifecycle.call_out(alarm, now, actor, f"{alarm.team_code}: call {step + 1}/{total}, {name}")
    if alarm.team_code:
        team_messages.queue(session, root, f"team/{alarm.team_code}/callout", alarm, now,
                            "callout", step=step + 1, of=total, responder=who.get("name"))
    step_after = timedelta(seconds=int((alarm.chain or {}).get("step_after_s", 120)))
    session.add(Deadline(alarm_id=alarm.id, kind=CALL_STEP, step=step + 1,
                         token=alarm.call_token, due_at=now + step_after))


def next_call(session: Session, alarm: Alarm, now: datetime, actor: str, timers: Timers,
              root: str) -> None:
    """Call the next responder now (a decline, or the operator calling again). After the
    chain ran out, the operator's call-out starts it over from the first."""
    stop_calls(session, alarm, now)
    if alarm.called_out_at is None:
        start_calls(session, alarm, now, actor, timers, root)
        return
    _chain(alarm, timers, now)
    step = 0 if alarm.call_step is None else alarm.call_step + 1
    call(session, alarm, step, now, actor, root)


def stop_calls(session: Session, alarm: Alarm, now: datetime) -> None:
    """Someone answered (or the alarm moved on): no more calls under this token."""
    alarm.call_token = None
    _cancel(session, alarm.id, now, (CALL_STEP,))


def _fire_call_step(session: Session, alarm: Alarm, step: int, token: str | None,
                    now: datetime, root: str, fired: Fired) -> None:
    if token is None or token != alarm.call_token or alarm.state != AlarmState.CALLED_OUT:
        fired.stale += 1
        return
    call(session, alarm, step, now, "system", root)
    if alarm.call_token is None:
        fired.no_answer += 1
        log.warning("alarm_no_answer", alarm_id=alarm.id, team=alarm.team_code)
    else:
        fired.calls += 1
    fired.alarm_ids.append(alarm.id)


# -- the escalation chain ------------------------------------------------------------


def start_escalation(session: Session, alarm: Alarm, start: datetime, timers: Timers) -> None:
    """Run the escalation chain from `start` (the call-out, or the alarm's arrival when
    nobody could be called), replacing any running one."""
    _cancel(session, alarm.id, start, (ESCALATION, REMINDER))
    alarm.chain = {**_chain(alarm, timers, start), "started_at": start.isoformat()}
    alarm.escalation_token = _token()
    steps = alarm.chain["steps"]
    session.add(Deadline(alarm_id=alarm.id, kind=ESCALATION, step=0,
                         token=alarm.escalation_token,
                         due_at=start + timedelta(seconds=steps[0]["after_s"])))


def stop_escalation(session: Session, alarm: Alarm, now: datetime) -> None:
    """Someone is on site, or the alarm is closed: nothing more to chase."""
    alarm.escalation_token = None
    _cancel(session, alarm.id, now, (ESCALATION, REMINDER, CALL_STEP, HANDOVER))


def _fire_escalation(session: Session, alarm: Alarm, step: int, token: str | None,
                     now: datetime, timers: Timers, root: str, fired: Fired) -> None:
    if alarm.state not in AWAITING_CHECK_IN:
        fired.stale += 1
        return
    if token is None:  # a reminder scheduled before the chains (migration 0008)
        alarm.escalation_token = alarm.escalation_token or _token()
        token = alarm.escalation_token
        # Its chain runs from the call-out it was scheduled from, not from now: the
        # coordinator at 45 minutes, not 45 after the upgrade.
        _chain(alarm, timers, alarm.called_out_at or alarm.received_at)
    if token != alarm.escalation_token:
        fired.stale += 1
        return
    chain = _chain(alarm, timers, now)
    steps = chain["steps"]
    action = steps[step]["action"] if step < len(steps) else "remind_team"
    if action == "remind_team":
        lifecycle.remind(alarm, now)
        if alarm.team_code:
            team_messages.queue(session, root, f"team/{alarm.team_code}/reminder", alarm,
                                now, "reminder")
        fired.reminders += 1
        log.warning("alarm_reminder", alarm_id=alarm.id, team=alarm.team_code,
                    count=alarm.reminder_count)
    elif action == "notify_coordinator":
        _notify_coordinator(session, alarm, now, root)
        fired.coordinator += 1
    else:
        lifecycle.red_flag(alarm, now, steps[step]["after_s"] // 60)
        fired.red_flags += 1
        log.warning("alarm_red_flag", alarm_id=alarm.id, team=alarm.team_code)
    fired.alarm_ids.append(alarm.id)
    # The next step at its own time from the start (no drift); after an outage the
    # steps that are overdue come one a sweep, each carried out, none twice.
    if step + 1 < len(steps):
        started = datetime.fromisoformat(chain["started_at"])
        due = max(now, started + timedelta(seconds=steps[step + 1]["after_s"]))
    else:
        due = now + timedelta(seconds=int(chain.get("repeat_s", 1800)))
    session.add(Deadline(alarm_id=alarm.id, kind=ESCALATION, step=step + 1, token=token,
                         due_at=due))


def _notify_coordinator(session: Session, alarm: Alarm, now: datetime, root: str) -> None:
    provider = session.execute(select(Provider).where(
        Provider.code == alarm.provider_code)).scalar_one_or_none() \
        if alarm.provider_code else None
    if provider is None:
        lifecycle.coordinator(alarm, now, "no provider to escalate to: the operator calls")
        return
    who = provider.coordinator_name or "the coordinator"
    phone = f", {provider.coordinator_phone}" if provider.coordinator_phone else ""
    lifecycle.coordinator(alarm, now, f"{provider.code}: {who}{phone}")
    team_messages.queue(session, root, f"provider/{provider.code}/escalation", alarm, now,
                        "escalation")
    log.warning("alarm_escalated_to_coordinator", alarm_id=alarm.id,
                provider=provider.code)


# -- the sweep -----------------------------------------------------------------------


def fire(session: Session, alarm: Alarm, kind: str, step: int | None, token: str | None,
         now: datetime, timers: Timers, root: str, fired: Fired) -> bool:
    """Carry out one claimed step of `alarm`; False if `kind` is not a chain's."""
    if kind == CALL_STEP:
        _fire_call_step(session, alarm, step or 0, token, now, root, fired)
    elif kind in (ESCALATION, REMINDER):
        _fire_escalation(session, alarm, step or 0, token, now, timers, root, fired)
    else:
        return False
    return True


def _cancel(session: Session, alarm_id: int | None, now: datetime,
            kinds: tuple[str, ...]) -> None:
    if alarm_id is None:
        return
    session.execute(
        update(Deadline)
        .where(Deadline.alarm_id == alarm_id, Deadline.kind.in_(kinds),
               Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False))
