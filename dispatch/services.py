"""Use cases of dispatch, each a function run inside one transaction on the writer thread.

The gateway has already stored every device event; `process_pending` consumes them in
order (an inbox), so an event answered to its device is never lost if dispatch fails.
Operator actions and the timer sweep live here too. They return the ids of the alarms
they changed, so the caller can push those to the dashboard after the commit.

Every write that must happen once is conditional, so that even two dispatchers at once
(the leader lock lost, say) cannot apply anything twice: an event is marked processed
only if nobody has (`core.inbox.mark_processed`), a deadline fires only if it has not
fired, and an outbox message is marked sent only if it was not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from core import inbox
from core.errors import TryggError
from devices.events import EventKind
from dispatch import escalation, lifecycle, locks, orders, team_messages, technical
from dispatch.config import Handover, Shifts, Timers
from dispatch.escalation import Fired
from dispatch.models import (
    AWAITING_CHECK_IN,
    OPEN_STATES,
    Alarm,
    AlarmState,
    Customer,
    Deadline,
    Device,
    OutboxMessage,
    PresenceRecord,
    Site,
    Team,
)
from dispatch.registry import SqlTeamDirectory
from dispatch.route_tree import Explained, Facts, RouteTree, decide, default_tree
from dispatch.routing import TeamDirectory, TeamRef, next_shift_change, shift_at
from dispatch.technical import HealthChange, MassRule

log = structlog.get_logger(__name__)

class AlarmNotFound(TryggError):
    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"no alarm {alarm_id}")
        self.alarm_id = alarm_id


@dataclass(frozen=True)
class DispatchRules:
    shifts: Shifts = field(default_factory=Shifts)
    timers: Timers = field(default_factory=Timers)
    topic_root: str = "trygg/v1"
    mass: MassRule = field(default_factory=MassRule)
    # The route tree; None: the day/night rule of `shifts`, as a tree (the same routes).
    routes: RouteTree | None = None
    handover: Handover = field(default_factory=Handover)

    @property
    def route_tree(self) -> RouteTree:
        return self.routes if self.routes is not None else default_tree(self.shifts)


@dataclass(frozen=True, slots=True)
class NewAlarm:
    """An alarm this unit of work created: logged and counted once it is committed."""

    alarm_id: int
    cid: str
    route: str
    team: str | None


@dataclass
class Outcome:
    """What a unit of work changed, for the dashboard push and the metrics after commit.

    Nothing here is logged or counted inside the transaction: the caller does that after
    the commit, so a batch rolled back leaves no trace in the metrics.
    """

    alarm_ids: list[int] = field(default_factory=list)
    received: list[NewAlarm] = field(default_factory=list)
    processed: int = 0
    more: bool = False  # events were left for the next transaction
    failed_events: int = 0
    health: HealthChange = field(default_factory=HealthChange)
    fired: Fired = field(default_factory=Fired)

    @property
    def reminders(self) -> int:
        return self.fired.reminders

    @property
    def new_alarms(self) -> dict[str, int]:
        """The new alarms by routing reason."""
        counts: dict[str, int] = {}
        for alarm in self.received:
            counts[alarm.route] = counts.get(alarm.route, 0) + 1
        return counts

    def touch(self, alarm_id: int | None) -> None:
        if alarm_id is not None and alarm_id not in self.alarm_ids:
            self.alarm_ids.append(alarm_id)

    def merge(self, other: Outcome) -> None:
        """Take in what a sub-step (one event's savepoint) changed, once it is kept."""
        for alarm_id in other.alarm_ids:
            self.touch(alarm_id)
        self.received.extend(other.received)
        self.fired.merge(other.fired)
        self.failed_events += other.failed_events
        self.health.merge(other.health)


# -- device events -------------------------------------------------------------------


# Events per transaction: about what fits in the budget, so the lookups made for a batch
# are used rather than made again by the next one.
PROCESS_BATCH = 25
# A background transaction must not hold the single writer for long: devices are waiting
# behind it for their answers. Events left over go in the next transaction.
PROCESS_BUDGET_S = 0.01


def process_pending(session: Session, now: datetime, rules: DispatchRules,
                    limit: int = PROCESS_BATCH,
                    budget_s: float = PROCESS_BUDGET_S) -> Outcome:
    """Apply stored device events that dispatch has not seen yet, oldest first.

    The batch runs in one savepoint; if any event fails, the batch is redone event by
    event, each in its own savepoint, and a failing event is flagged and skipped.
    """
    rows = inbox.pending(session, limit)
    if not rows:
        return Outcome()
    try:
        with session.begin_nested():
            out = _apply_rows(session, rows, now, rules, budget_s, isolate=False)
    except Exception:
        log.warning("event_batch_failed_retrying_one_by_one", first_event_id=rows[0].id)
        out = _apply_rows(session, rows, now, rules, budget_s, isolate=True)
    inbox.mark_processed(session, [row.id for row in rows[: out.processed]], now)
    out.more = out.processed < len(rows) or len(rows) == limit
    return out


# The first key of the advisory locks that let one transaction at a time open an alarm
# for a unit ("unit").
UNIT_LOCK_NS = 0x756E6974


def hold_units(session: Session, cids: Iterable[str]) -> None:
    """Until the transaction ends, no other may open an alarm for these units (PostgreSQL;
    SQLite has one writer): a press applied by the leader and an alarm raised by phone on
    another process would otherwise both find none open and open one each. In sorted
    order, so two holders never wait for each other."""
    held = sorted(set(cids))
    if not held or session.get_bind().dialect.name != "postgresql":
        return
    # One statement for a batch of presses; unnest keeps the array's (sorted) order.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, hashtext(coalesce(current_schema(), '')"
             " || ':' || cid)) FROM unnest(CAST(:cids AS text[])) AS cid"),
        {"ns": UNIT_LOCK_NS, "cids": held})


class _Batch:
    """What one transaction of event processing looked up: each thing once, not per event."""

    def __init__(self, session: Session, rows: Sequence[Any]) -> None:
        self.session = session
        # Heartbeats and device status change no alarm: look up only for the rest.
        cids = {row.cid for row in rows if row.kind in ALARM_EVENT_KINDS}
        hold_units(session, {row.cid for row in rows if row.kind == EventKind.ALARM})
        # At most one alarm per unit is open: a press while one is open is a repeat.
        # The rows are locked (PostgreSQL; SQLite has one writer), in id order as
        # everywhere: an operator's change on another process (a close by phone) is
        # waited for and read, not overwritten, and a press meeting it is not taken for
        # a repeat of an alarm closed meanwhile.
        self.open: dict[str, Alarm] = {
            alarm.cid: alarm for alarm in session.execute(
                select(Alarm).where(Alarm.cid.in_(cids), Alarm.state.in_(OPEN_STATES))
                .order_by(Alarm.id).with_for_update()
                .execution_options(populate_existing=True)).scalars()}
        for alarm in self.open.values():
            # Dispatch only appends to an alarm's audit trail and never reads it here, so
            # the trail is not loaded just to add one entry (a unit that keeps pressing
            # has a long one). The appended entries are inserted as usual.
            set_committed_value(alarm, "log", [])
        # Only a press with no open alarm needs routing, and so the registry; a press after
        # a check-out in the same batch is looked up when it comes (`device`).
        to_route = {row.cid for row in rows
                    if row.kind == EventKind.ALARM and row.cid not in self.open}
        self.devices: dict[str, Device | None] = dict.fromkeys(to_route)
        self.devices.update(self._load_devices(to_route))
        self.directory = _RememberingDirectory(SqlTeamDirectory(session))
        self.technical = technical.TechnicalBook(session, {
            row.cid for row in rows if row.kind in technical.TECHNICAL_EVENT_KINDS})
        self._teams: dict[int, Team] = {}
        self.created: list[Alarm] = []  # new alarms, called out together in finish()
        self._changing: set[int] | None = None

    def day_provider(self, customer: Customer, at: datetime) -> str | None:
        """The customer's day provider for a decision at `at`: the registry's, unless a
        provider change concerns them (one query a batch finds who has one)."""
        if self._changing is None:
            self._changing = orders.customers_changing_provider(self.session) \
                if self.devices else set()
        if customer.id in self._changing:
            return orders.day_provider_at(self.session, customer, at)
        return customer.day_provider.code if customer.day_provider else None

    def finish(self, now: datetime, rules: DispatchRules, out: Outcome) -> None:
        """Call out the new alarms: one flush gives them all their ids, not one each."""
        if not self.created:
            return
        self.session.flush()
        for alarm in self.created:
            if alarm.state != AlarmState.RECEIVED:
                pass  # staff checked in within the same batch: nobody to call
            else:
                if alarm.team_code is not None:
                    _call_out(self.session, alarm, now, "system", rules)
                else:
                    # Nobody to call out (unknown unit, no team): the operator must act,
                    # and is reminded like anyone else if nobody has checked in after 30
                    # minutes.
                    escalation.start_escalation(self.session, alarm, alarm.received_at,
                                                rules.timers)
                _schedule_handover(self.session, alarm, alarm.received_at, rules)
            out.touch(alarm.id)
            out.received.append(NewAlarm(alarm.id, alarm.cid, alarm.route_reason,
                                         alarm.team_code))
        self.created.clear()

    def _load_devices(self, cids: set[str]) -> dict[str, Device]:
        if not cids:
            return {}
        return {device.cid: device for device in self.session.execute(
            select(Device).where(Device.cid.in_(cids)).options(
                selectinload(Device.site).selectinload(Site.customer)
                .selectinload(Customer.day_provider))).scalars()}

    def device(self, cid: str) -> Device | None:
        if cid not in self.devices:
            self.devices[cid] = self._load_devices({cid}).get(cid)
        return self.devices[cid]

    def team(self, team_id: int) -> Team:
        if team_id not in self._teams:
            self._teams[team_id] = _team(self.session, team_id)
        return self._teams[team_id]


class _RememberingDirectory:
    """Team lookups asked once per batch: many alarms share an area and a provider."""

    def __init__(self, directory: SqlTeamDirectory) -> None:
        self._directory = directory
        self._day: dict[tuple[str, str], TeamRef | None] = {}
        self._night: dict[str, TeamRef | None] = {}

    def day_team(self, provider_code: str, area_code: str) -> TeamRef | None:
        key = (provider_code, area_code)
        if key not in self._day:
            self._day[key] = self._directory.day_team(provider_code, area_code)
        return self._day[key]

    def night_team(self, area_code: str) -> TeamRef | None:
        if area_code not in self._night:
            self._night[area_code] = self._directory.night_team(area_code)
        return self._night[area_code]

    def named_team(self, code: str) -> TeamRef | None:
        key = ("", code)  # no provider code is empty
        if key not in self._day:
            self._day[key] = self._directory.named_team(code)
        return self._day[key]


ALARM_EVENT_KINDS = frozenset({EventKind.ALARM, EventKind.CHECK_IN, EventKind.CHECK_OUT,
                               EventKind.CANCELLED})


def _apply_rows(session: Session, rows: Sequence[Any], now: datetime,
                rules: DispatchRules, budget_s: float, *, isolate: bool) -> Outcome:
    out = Outcome()
    started = time.monotonic()  # the lookups count against the budget too
    batch = _Batch(session, rows)
    for row in rows:
        if out.processed and time.monotonic() - started > budget_s:
            break
        if not isolate:
            _apply(batch, row, now, rules, out)
        else:
            # What this event changed counts only if its savepoint is kept.
            event_out = Outcome()
            try:
                with session.begin_nested():
                    _apply(batch, row, now, rules, event_out)
                    batch.finish(now, rules, event_out)
            except Exception as exc:  # a bug must not stop the events behind it
                inbox.note_error(session, row.id, f"{type(exc).__name__}: {exc}")
                out.failed_events += 1
                log.error("event_processing_failed", event_id=row.id, cid=row.cid,
                          error=type(exc).__name__)
                if row.kind == EventKind.ALARM:
                    _fallback_alarm(session, row, rules, out)
                batch = _Batch(session, rows)  # what the failed event touched is undone
            else:
                out.merge(event_out)
        out.processed += 1
    batch.finish(now, rules, out)
    return out


def _fallback_alarm(session: Session, row: Any, rules: DispatchRules, out: Outcome) -> None:
    """A press that could not be applied still reaches the operators' queue."""
    try:
        with session.begin_nested():
            alarm = Alarm(cid=row.cid, source_event_id=row.id, priority=row.priority,
                          unknown_device=False, route_reason=PROCESSING_ERROR,
                          call_order=[])
            session.add(alarm)
            lifecycle.receive(alarm, row.received_at, f"device:{row.cid}")
            session.flush()
            escalation.start_escalation(session, alarm, row.received_at, rules.timers)
    except Exception as exc:
        log.error("fallback_alarm_failed", event_id=row.id, cid=row.cid,
                  error=type(exc).__name__)
        return
    out.touch(alarm.id)
    out.received.append(NewAlarm(alarm.id, alarm.cid, PROCESSING_ERROR, None))


PROCESSING_ERROR = "processing_error"


def quarantine_head(session: Session, now: datetime, error: str,
                    rules: DispatchRules) -> Outcome:
    """Set the head of the inbox aside: it failed again and again outside the per-event
    guard (a bug in the batch's lookups, say), and would otherwise block every event
    behind it for good. It is marked processed with the error; a press still reaches the
    operators' queue as a "processing_error" alarm.
    """
    out = Outcome()
    rows = inbox.pending(session, 1)
    if not rows:
        return out
    head = rows[0]
    inbox.mark_processed(session, [head.id], now, error=f"quarantined: {error}")
    out.processed = out.failed_events = 1
    log.error("event_quarantined", event_id=head.id, cid=head.cid, kind=head.kind)
    if head.kind == EventKind.ALARM:
        _fallback_alarm(session, head, rules, out)
    return out


def _apply(batch: _Batch, row: Any, now: datetime, rules: DispatchRules,
           out: Outcome) -> None:
    kind = EventKind(row.kind)
    if kind is EventKind.ALARM:
        _on_alarm(batch, row, now, rules, out)
    elif kind in (EventKind.CHECK_IN, EventKind.CHECK_OUT):
        out.touch(_on_presence(batch, row, kind, now))
    elif kind in technical.TECHNICAL_EVENT_KINDS:
        technical.on_event(batch.technical, cid=row.cid, kind=kind, at=row.received_at,
                           event_id=row.id, status_code=row.status_code, rule=rules.mass,
                           change=out.health)
    elif kind in locks.LOCK_EVENT_KINDS:
        # Evidence on the open alarm at the lock's site, never a state change by itself.
        for alarm_id in locks.note_lock_event(batch.session, cid=row.cid, kind=kind,
                                              at=row.received_at, event_id=row.id):
            out.touch(alarm_id)
    elif kind is EventKind.CANCELLED:
        alarm = batch.open.get(row.cid)
        if alarm is not None:
            lifecycle.note_device(alarm, "device_cancelled", row.received_at, row.cid,
                                  "the unit sent a cancel; the alarm stays open")
            out.touch(alarm.id)


def _on_alarm(batch: _Batch, row: Any, now: datetime, rules: DispatchRules,
              out: Outcome) -> None:
    session, at = batch.session, row.received_at
    existing = batch.open.get(row.cid)
    if existing is not None:
        lifecycle.repeat(existing, at, row.cid)
        existing.priority = max(existing.priority, row.priority)
        out.touch(existing.id)
        return
    device = batch.device(row.cid)
    site = device.site if device else None
    customer = site.customer if site else None
    facts = Facts(area=site.area_code if site else None,
                  provider=batch.day_provider(customer, at) if customer else None,
                  site_kind=site.kind if site else None, priority=row.priority)
    decision = decide(rules.route_tree, facts, at, batch.directory)
    alarm = Alarm(
        cid=row.cid, source_event_id=row.id, priority=row.priority,
        unknown_device=site is None,
        site_id=site.id if site else None, customer_id=customer.id if customer else None,
    )
    _freeze(alarm, decision, batch.team(decision.team.id) if decision.team else None,
            at, rules)
    session.add(alarm)
    lifecycle.receive(alarm, at, f"device:{row.cid}")
    batch.open[row.cid] = alarm
    batch.created.append(alarm)  # counted in finish(), once it has an id


def _freeze(alarm: Alarm, decision: Explained, team: Team | None, at: datetime,
            rules: DispatchRules) -> None:
    """Put a routing decision on the alarm: its team, call order and the teams to tell."""
    alarm.team_id = team.id if team else None
    alarm.team_code = team.code if team else None
    alarm.team_name = team.name if team else None
    alarm.team_phone = team.phone if team else None
    alarm.provider_code = team.provider.code if team else None
    alarm.route_reason = decision.reason.value
    alarm.shift = shift_at(at, rules.shifts).value
    alarm.call_order = [{"name": m.name, "phone": m.phone} for m in team.members] \
        if team else []
    alarm.also_teams = [t.code for t in decision.also_teams]


def _team(session: Session, team_id: int) -> Team:
    return session.execute(
        select(Team).where(Team.id == team_id)
        .options(selectinload(Team.members), selectinload(Team.provider))).scalar_one()


def _on_presence(batch: _Batch, row: Any, kind: EventKind,
                 now: datetime) -> int | None:
    session, at = batch.session, row.received_at
    alarm = batch.open.get(row.cid)
    if kind is EventKind.CHECK_IN and alarm is not None and alarm.state not in AWAITING_CHECK_IN:
        if alarm.kvittering == "responder":
            # Checked in from the phone first: the unit's check-in counts first.
            session.add(PresenceRecord(cid=row.cid, kind=kind.value, at=at,
                                       alarm_id=alarm.id, event_id=row.id))
            lifecycle.unit_confirms(alarm, at, row.cid)
            return alarm.id
        alarm = None  # already on site: a second check-in is only recorded
    if alarm is not None and alarm.id is None:
        session.flush()  # pressed in this same batch: the record needs its id
    session.add(PresenceRecord(cid=row.cid, kind=kind.value, at=at,
                               alarm_id=alarm.id if alarm else None, event_id=row.id))
    if alarm is None:
        # Staff may check in on a planned visit or after the alarm was closed by phone:
        # kept for the follow-up, not an error.
        log.info("presence_without_alarm", cid=row.cid, kind=kind.value)
        return None
    if kind is EventKind.CHECK_IN:
        lifecycle.check_in(alarm, at, row.cid)
    else:
        lifecycle.check_out(alarm, at, row.cid)
        del batch.open[row.cid]  # completed: no longer open
    escalation.stop_escalation(session, alarm, now)
    return alarm.id


# -- operator actions ----------------------------------------------------------------


def _load(session: Session, alarm_id: int) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise AlarmNotFound(alarm_id)
    return alarm


class AlreadyOpen(TryggError):
    """The site has an open alarm already: act on that one."""

    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"alarm {alarm_id} is open for this site already: act on it")
        self.alarm_id = alarm_id


class UnknownSite(TryggError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no site {code!r}, or it has no base unit")
        self.code = code


def raise_by_phone(session: Session, site_code: str, reason: str, actor: str,
                   now: datetime, rules: DispatchRules, priority: int = 5) -> Alarm:
    """An alarm the operator raises: the customer phoned the centre, or the unit is
    broken and could not raise one. It is routed and called out as a press at the
    site's base unit would be, and the responder checks in from the phone (`/m/`)."""
    reason = reason.strip()
    if not reason:
        raise lifecycle.MissingReason("a reason is required to raise an alarm by phone")
    site = session.execute(select(Site).where(Site.code == site_code).options(
        selectinload(Site.devices), selectinload(Site.customer)
        .selectinload(Customer.day_provider))).scalar_one_or_none()
    unit = next((d for d in site.devices if d.kind == "base_unit"), None) if site else None
    if site is None or unit is None:
        raise UnknownSite(site_code)
    # One open alarm per unit, as for a press: a second would split the follow-up.
    hold_units(session, [unit.cid])
    existing = session.execute(select(Alarm.id).where(
        Alarm.cid == unit.cid, Alarm.state.in_(OPEN_STATES))).scalar()
    if existing is not None:
        raise AlreadyOpen(existing)
    customer = site.customer
    day_provider = orders.day_provider_at(session, customer, now) \
        if customer.id in orders.customers_changing_provider(session) \
        else (customer.day_provider.code if customer.day_provider else None)
    decision = decide(rules.route_tree, Facts(area=site.area_code, provider=day_provider,
                                              site_kind=site.kind, priority=priority),
                      now, SqlTeamDirectory(session))
    alarm = Alarm(cid=unit.cid, priority=priority, unknown_device=False, site_id=site.id,
                  customer_id=customer.id)
    _freeze(alarm, decision, _team(session, decision.team.id) if decision.team else None,
            now, rules)
    session.add(alarm)
    lifecycle.receive(alarm, now, actor)
    lifecycle.note(alarm, "raised_by_phone", now, actor, reason)
    session.flush()
    if alarm.team_code is not None:
        _call_out(session, alarm, now, "system", rules)
    else:
        escalation.start_escalation(session, alarm, now, rules.timers)
    _schedule_handover(session, alarm, now, rules)
    return alarm


def lock_alarm(session: Session, alarm_id: int) -> Alarm:
    """The alarm, its row locked for this transaction (PostgreSQL; SQLite has one writer),
    read fresh: the timer sweep takes alarm rows in the same order, alarm before its
    deadlines, so an operator's or responder's change and a step never interleave."""
    alarm = session.get(Alarm, alarm_id, with_for_update=True, populate_existing=True)
    if alarm is None:
        raise AlarmNotFound(alarm_id)
    return alarm


def call_out(session: Session, alarm_id: int, actor: str, now: datetime,
             rules: DispatchRules) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    if alarm.team_code is None:
        # Nobody would be called: the operator phones someone and records who answered.
        raise lifecycle.InvalidTransition(alarm.id, "call out without a responsible team",
                                          alarm.state)
    _call_out(session, alarm, now, actor, rules)
    return alarm


def accept(session: Session, alarm_id: int, responder: str, actor: str, now: datetime,
           rules: DispatchRules) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    had_call_out = alarm.called_out_at is not None
    lifecycle.accept(alarm, responder, now, actor)
    escalation.stop_calls(session, alarm, now)
    if not had_call_out:
        # The operator phoned someone directly: the 30 minutes start now, replacing the
        # chain that ran from the alarm's arrival.
        escalation.start_escalation(session, alarm, now, rules.timers)
    return alarm


def decline(session: Session, alarm_id: int, responder: str, actor: str, now: datetime,
            rules: DispatchRules) -> Alarm:
    """A called responder declines: the next of the call order is called at once."""
    alarm = lock_alarm(session, alarm_id)
    called = escalation.calling(alarm)
    lifecycle.decline(alarm, responder, now, actor)
    # A decline that comes after the chain moved on (to the next, who may still answer)
    # is only noted: moving on again would pass over someone who was never asked.
    if called is not None and (called["name"] is None
                               or escalation.same_person(called["name"], responder)):
        escalation.next_call(session, alarm, now, "system", rules.timers, rules.topic_root)
    return alarm


def on_my_way(session: Session, alarm_id: int, actor: str, now: datetime) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    lifecycle.on_my_way(alarm, now, actor)
    return alarm


def check_in_by_responder(session: Session, alarm_id: int, actor: str,
                          now: datetime) -> Alarm:
    """The responder's phone says on site, when the unit cannot."""
    alarm = lock_alarm(session, alarm_id)
    lifecycle.check_in_by_responder(alarm, now, actor)
    escalation.stop_escalation(session, alarm, now)
    return alarm


def check_out_by_responder(session: Session, alarm_id: int, actor: str,
                           now: datetime) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    lifecycle.check_out_by_responder(alarm, now, actor)
    escalation.stop_escalation(session, alarm, now)
    return alarm


def false_alarm(session: Session, alarm_id: int, reason: str, actor: str,
                now: datetime, rules: DispatchRules) -> Alarm:
    """Cancelled as a false alarm: the chains stop and the team is told to stand down."""
    alarm = lock_alarm(session, alarm_id)
    lifecycle.false_alarm(alarm, reason, now, actor)
    escalation.stop_escalation(session, alarm, now)
    if alarm.team_code and alarm.called_out_at is not None:
        team_messages.queue(session, rules.topic_root, f"team/{alarm.team_code}/cancel",
                            alarm, now, "cancel")
    return alarm


def give_visit_reason(session: Session, alarm_id: int, reason: str, actor: str,
                      now: datetime) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    lifecycle.give_visit_reason(alarm, reason, now, actor)
    return alarm


def close(session: Session, alarm_id: int, actor: str, now: datetime) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    lifecycle.close(alarm, now, actor)
    return alarm


def close_by_phone(session: Session, alarm_id: int, reason: str, actor: str,
                   now: datetime) -> Alarm:
    alarm = lock_alarm(session, alarm_id)
    lifecycle.close_by_phone(alarm, reason, now, actor)
    escalation.stop_escalation(session, alarm, now)
    return alarm


def _call_out(session: Session, alarm: Alarm, now: datetime, actor: str,
              rules: DispatchRules) -> None:
    """The call-out: the first call of the chain, or (the operator again) the next."""
    if alarm.called_out_at is None:
        escalation.start_calls(session, alarm, now, actor, rules.timers, rules.topic_root)
    else:
        escalation.next_call(session, alarm, now, actor, rules.timers, rules.topic_root)


# -- shift hand-over -----------------------------------------------------------------


def _schedule_handover(session: Session, alarm: Alarm, after: datetime,
                       rules: DispatchRules) -> None:
    """At the next 07:00 or 22:00, an alarm nobody accepted goes to the new shift."""
    if rules.handover.unaccepted == "keep" or alarm.site_id is None:
        return  # an unknown unit has no site to route anywhere
    session.add(Deadline(alarm_id=alarm.id, kind=escalation.HANDOVER,
                         due_at=next_shift_change(after, rules.shifts)))


def _fire_handover(session: Session, alarm: Alarm, now: datetime, rules: DispatchRules,
                   fired: Fired) -> None:
    if alarm.state not in (AlarmState.RECEIVED, AlarmState.CALLED_OUT) \
            or alarm.accepted_at is not None:
        fired.stale += 1  # accepted (it stays theirs), on site or closed
        return
    decision = decide(rules.route_tree, _facts_of(session, alarm), now,
                      SqlTeamDirectory(session))
    new = decision.team
    if new is not None and new.code != alarm.team_code:
        old = alarm.team_code
        escalation.stop_calls(session, alarm, now)
        if old:  # their phones drop it: it is no longer theirs
            team_messages.queue(session, rules.topic_root, f"team/{old}/withdrawn", alarm,
                                now, "withdrawn")
        _freeze(alarm, decision, _team(session, new.id), now, rules)
        lifecycle.hand_over(alarm, now, old, f"nobody accepted before the shift change "
                                             f"(route {decision.route})")
        alarm.call_step = None
        if alarm.called_out_at is None:
            escalation.start_calls(session, alarm, now, "system", rules.timers,
                                   rules.topic_root)
        else:
            escalation.call(session, alarm, 0, now, "system", rules.topic_root)
        fired.handovers += 1
        fired.alarm_ids.append(alarm.id)
        log.warning("alarm_handed_over", alarm_id=alarm.id, from_team=old,
                    to_team=alarm.team_code)
    _schedule_handover(session, alarm, now, rules)


def _facts_of(session: Session, alarm: Alarm) -> Facts:
    site = alarm.site
    customer = site.customer if site else None
    provider = None
    if customer is not None:
        provider = orders.day_provider_at(session, customer, alarm.received_at) \
            if customer.id in orders.customers_changing_provider(session) \
            else (customer.day_provider.code if customer.day_provider else None)
    return Facts(area=site.area_code if site else None, provider=provider,
                 site_kind=site.kind if site else None, priority=alarm.priority)


def explain(session: Session, alarm: Alarm, at: datetime, tree: RouteTree,
            teams: TeamDirectory) -> Explained:
    """How `tree` would route `alarm`'s unit at `at`."""
    return decide(tree, _facts_of(session, alarm), at, teams)


# -- durable timers ------------------------------------------------------------------


FIRE_BATCH = 200


def next_due(session: Session) -> datetime | None:
    """When the earliest pending deadline is due (from the partial index)."""
    return session.execute(select(func.min(Deadline.due_at)).where(
        Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))).scalar()


def has_due(session: Session, now: datetime) -> bool:
    """A read: is any deadline due? (Most sweeps find none.)"""
    return session.execute(select(Deadline.id).where(
        Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None),
        Deadline.due_at <= now).limit(1)).first() is not None


def fire_due(session: Session, now: datetime, rules: DispatchRules) -> Outcome:
    """Carry out due deadlines, once each, up to FIRE_BATCH. After a crash, overdue ones
    fire now.

    The batch runs in one savepoint; if a step fails (a bug, a value the database
    refuses) the batch is redone step by step, each in a savepoint of its own, and the
    one that fails is set aside with its alarm flagged for the operator, while the rest
    of the batch, every other alarm's chain, goes on.
    """
    due = session.execute(
        select(Deadline.id, Deadline.alarm_id)
        .where(Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None),
               Deadline.due_at <= now)
        .order_by(Deadline.due_at)
        .limit(FIRE_BATCH)  # after an outage the rest fire on the next sweep, at once
    ).all()
    out = Outcome()
    if not due:
        return out
    alarm_ids = {row.alarm_id for row in due}
    if session.get_bind().dialect.name == "postgresql":
        # The alarm rows first, then their deadlines, in the order every other writer
        # takes them: an alarm that another process is changing (an accept on a standby
        # serving the API) is left for the next sweep rather than raced or deadlocked.
        alarm_ids = set(session.execute(
            select(Alarm.id).where(Alarm.id.in_(alarm_ids))
            .with_for_update(skip_locked=True)).scalars())
    ids = [row.id for row in due if row.alarm_id in alarm_ids]
    # Fired only if still unfired: of two sweeps at once, one fires each deadline.
    claimed = session.execute(
        update(Deadline)
        .where(Deadline.id.in_(ids), Deadline.fired_at.is_(None),
               Deadline.cancelled_at.is_(None))
        .values(fired_at=now)
        .returning(Deadline.id, Deadline.alarm_id, Deadline.kind, Deadline.due_at,
                   Deadline.step, Deadline.token)
        .execution_options(synchronize_session=False)).all() if ids else []
    fired = out.fired
    steps = sorted(claimed, key=lambda d: (d.due_at, d.id))
    # The batch's alarms in one query, not one each, held here for the batch (the
    # session's identity map only holds them weakly); their audit trails are only
    # appended to, so they are not loaded just to add an entry (as in _Batch).
    held = _preload(session, steps)
    try:
        # The batch in one savepoint; only if a step fails is it redone step by step,
        # each in its own, so the one that fails can be set aside (as for events).
        with session.begin_nested():
            batch = Fired()
            for row in steps:
                _fire_one(session, row, now, rules, batch)
        fired.merge(batch)
        fired.alarm_ids.extend(batch.alarm_ids)
    except Exception:
        log.warning("chain_batch_failed_retrying_one_by_one", steps=len(steps))
        held = _preload(session, steps)
        for row in steps:
            _fire_alone(session, row, now, rules, out)
    del held
    for alarm_id in fired.alarm_ids:
        out.touch(alarm_id)
    fired.alarm_ids.clear()
    # More may be due: the sweep goes on at once; but not when none of the batch could be
    # taken (its alarms all being changed elsewhere), or it would spin on the same rows.
    out.more = len(due) == FIRE_BATCH and bool(claimed)
    return out


def _preload(session: Session, steps: Sequence[Any]) -> list[Alarm]:
    alarms = list(session.execute(select(Alarm).where(
        Alarm.id.in_({row.alarm_id for row in steps}))).scalars())
    for alarm in alarms:
        set_committed_value(alarm, "log", [])
    return alarms


def _fire_alone(session: Session, row: Any, now: datetime, rules: DispatchRules,
                out: Outcome) -> None:
    """One step in its own savepoint: one that fails is set aside, its alarm flagged,
    and the rest of the batch, every other alarm's chain, goes on."""
    fired, step = out.fired, Fired()
    try:
        with session.begin_nested():
            _fire_one(session, row, now, rules, step)
    except Exception as exc:
        fired.failed += 1
        log.error("chain_step_failed", deadline_id=row.id, alarm_id=row.alarm_id,
                  kind=row.kind, error=type(exc).__name__)
        _flag_failed_step(session, row.alarm_id, row.kind, now)
        out.touch(row.alarm_id)
    else:
        fired.merge(step)
        fired.alarm_ids.extend(step.alarm_ids)


def _fire_one(session: Session, row: Any, now: datetime, rules: DispatchRules,
              fired: Fired) -> None:
    alarm = _load(session, row.alarm_id)
    if row.kind == escalation.HANDOVER:
        _fire_handover(session, alarm, now, rules, fired)
    elif not escalation.fire(session, alarm, row.kind, row.step, row.token, now,
                             rules.timers, rules.topic_root, fired):
        raise ValueError(f"a deadline of unknown kind {row.kind!r}")


def _flag_failed_step(session: Session, alarm_id: int, kind: str, now: datetime) -> None:
    """A step that could not be carried out: the operator follows the alarm by hand.

    A failed call or hand-over leaves nobody being called (flagged "no answer"); a
    failed escalation step leaves nobody chasing the check-in (a red flag).
    """
    try:
        with session.begin_nested():
            alarm = _load(session, alarm_id)
            if alarm.state not in OPEN_STATES:
                return
            if kind == escalation.ESCALATION or kind == escalation.REMINDER:
                alarm.red_flag_at = alarm.red_flag_at or now
            elif alarm.state == AlarmState.CALLED_OUT:
                alarm.no_answer_at = alarm.no_answer_at or now
            lifecycle.note(alarm, "step_failed", now, "system",
                           f"a {kind} step could not be carried out: follow this alarm "
                           "by hand")
    except Exception as exc:
        log.error("chain_step_flag_failed", alarm_id=alarm_id, error=type(exc).__name__)


# -- the outbox to teams -------------------------------------------------------------

# Failed tries (other than the broker being down) before a message is set aside.
MAX_PUBLISH_ATTEMPTS = 5


def pending_outbox(session: Session, limit: int = 100,
                   after: int = 0) -> list[tuple[int, str, str, bool]]:
    """Messages still to send (id, topic, payload, retain), oldest first, those with ids
    above `after` (a pass over the outbox goes on where its last round ended); those set
    aside are left out."""
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload,
               OutboxMessage.retain)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
               OutboxMessage.id > after)
        .order_by(OutboxMessage.id).limit(limit)
    ).all()
    return [(row.id, row.topic, row.payload, bool(row.retain)) for row in rows]


def mark_sent(session: Session, ids: Sequence[int], now: datetime) -> int:
    """Mark messages sent, those not marked already; returns how many were marked."""
    if not ids:
        return 0
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None))
        .values(sent_at=now))
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class PublishFailure:
    """A failed try to send an outbox message, as recorded."""

    attempts: int
    set_aside: bool
    message_id: str | None


def note_publish_failed(session: Session, outbox_id: int, error: str, now: datetime,
                        max_attempts: int = MAX_PUBLISH_ATTEMPTS) -> PublishFailure | None:
    """Count a failed try; after `max_attempts` set the message aside (`failed_at`), out
    of the way of the messages behind it. None if it was sent or set aside meanwhile."""
    msg = session.get(OutboxMessage, outbox_id)
    if msg is None or msg.sent_at is not None or msg.failed_at is not None:
        return None
    msg.attempts = (msg.attempts or 0) + 1
    msg.last_error = error[:1000]
    if msg.attempts >= max_attempts:
        msg.failed_at = now
    return PublishFailure(msg.attempts, msg.failed_at is not None, msg.message_id)
