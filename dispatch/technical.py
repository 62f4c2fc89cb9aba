"""Technical alarms and mass events: what is wrong with a device, not who needs help.

A technical alarm (mains lost, battery low or failed, tamper, link fault) is a work item
for the alarm manager. It is opened by its event (or by supervision, for a device gone
quiet), cleared by the restoring event or by hand with a note, and every step is in its
trail. It has no call-out and no 30-minute clock: those belong to help calls, which
never wait behind this traffic (the inbox takes them first, `core.inbox.pending`).

When many units of one area get the same fault within a short window (a power cut, a
mobile mast down), their alarms are gathered into one incident: the operator sees one
row with its kind, area and count, which grows while units join and closes when the
last of them is back. Functions here run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.errors import TryggError
from devices.events import EventKind
from dispatch.models import (
    Device,
    Incident,
    Site,
    TechnicalAlarm,
    TechnicalKind,
    TechnicalLogEntry,
    TechnicalState,
)

OPENED_BY: dict[EventKind, TechnicalKind] = {
    EventKind.MAINS_LOST: TechnicalKind.MAINS_LOST,
    EventKind.BATTERY_LOW: TechnicalKind.BATTERY_LOW,
    EventKind.BATTERY_FAULT: TechnicalKind.BATTERY_FAULT,
    EventKind.TAMPER: TechnicalKind.TAMPER,
    EventKind.LINK_FAULT: TechnicalKind.LINK_FAULT,
}
CLEARED_BY: dict[EventKind, tuple[TechnicalKind, ...]] = {
    EventKind.MAINS_RESTORED: (TechnicalKind.MAINS_LOST,),
    EventKind.BATTERY_OK: (TechnicalKind.BATTERY_LOW, TechnicalKind.BATTERY_FAULT),
    EventKind.LINK_RESTORED: (TechnicalKind.LINK_FAULT,),
}
TECHNICAL_EVENT_KINDS = frozenset(OPENED_BY) | frozenset(CLEARED_BY)
# Only these are gathered into incidents: they happen to whole areas at once.
MASS_KINDS = frozenset({TechnicalKind.MAINS_LOST, TechnicalKind.LINK_FAULT})
SUPERVISION = "supervision"


class TechnicalAlarmNotFound(TryggError):
    def __init__(self, technical_id: int) -> None:
        super().__init__(f"no technical alarm {technical_id}")
        self.technical_id = technical_id


class AlreadyCleared(TryggError):
    def __init__(self, technical_id: int) -> None:
        super().__init__(f"technical alarm {technical_id} is already cleared")
        self.technical_id = technical_id


@dataclass(frozen=True)
class MassRule:
    """So many units of one area with one fault within the window make an incident."""

    units: int = 20
    window: timedelta = timedelta(minutes=2)


@dataclass
class HealthChange:
    """What a unit of work changed, for the dashboard and MQTT after the commit."""

    touched: int = 0  # technical alarms opened, repeated or cleared
    incident_ids: list[int] = field(default_factory=list)
    # (cid, "online" | "offline", when last heard) for the retained availability topic
    availability: list[tuple[str, str, datetime | None]] = field(default_factory=list)
    opened: dict[str, int] = field(default_factory=dict)  # by kind, for the metrics
    cleared: dict[str, int] = field(default_factory=dict)
    # ("opened" | "closed", incident id, kind, area), logged after the commit
    incidents_changed: list[tuple[str, int, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.touched or self.incident_ids)

    def merge(self, other: HealthChange) -> None:
        self.touched += other.touched
        self.incident_ids.extend(i for i in other.incident_ids if i not in self.incident_ids)
        self.availability.extend(other.availability)
        self.incidents_changed.extend(other.incidents_changed)
        for kind, n in other.opened.items():
            self.opened[kind] = self.opened.get(kind, 0) + n
        for kind, n in other.cleared.items():
            self.cleared[kind] = self.cleared.get(kind, 0) + n


def _note(alarm: TechnicalAlarm, action: str, at: datetime, actor: str,
          note: str | None = None) -> None:
    alarm.log.append(TechnicalLogEntry(action=action, at=at, actor=actor, note=note))
    alarm.version = (alarm.version or 0) + 1


def faults_of(cids: Iterable[str]) -> Select[TechnicalAlarm]:
    """Every technical alarm of these devices, open or not, through the index on cid."""
    return select(TechnicalAlarm).where(TechnicalAlarm.cid.in_(list(cids)))


class TechnicalBook:
    """What one transaction looked up about devices' faults: each thing once, not per event.

    A power cut brings thousands of technical events at once; applying each with its own
    look-ups of the device's open faults, its area and the area's incident made dispatch
    fall far behind. Kept up to date as faults open and clear within the transaction.
    """

    def __init__(self, session: Session, cids: Iterable[str] = ()) -> None:
        self.session = session
        wanted = set(cids)
        self._open: dict[tuple[str, str], TechnicalAlarm] = {}
        self._areas: dict[str, str | None] = dict.fromkeys(wanted)
        self._incidents: dict[tuple[str, str], Incident | None] = {}
        if wanted:
            # By cid alone, the state checked here: with `state = ?` in the query
            # SQLite chose the state index and read every open fault for each batch,
            # 20,000 of them in a power cut. A device has few faults in all.
            for alarm in session.execute(faults_of(wanted)).scalars():
                if alarm.state != TechnicalState.OPEN:
                    continue
                # Only appended to here: the trail is not loaded to add one entry.
                set_committed_value(alarm, "log", [])
                self._open[(alarm.cid, alarm.kind)] = alarm
            self._areas.update(session.execute(
                select(Device.cid, Site.area_code).join(Site, Device.site_id == Site.id)
                .where(Device.cid.in_(wanted))).all())

    def open_fault_of(self, cid: str, kind: str) -> TechnicalAlarm | None:
        if cid not in self._areas:  # not looked up with the batch (supervision, say)
            self._load(cid)
        return self._open.get((cid, kind))

    def area_of(self, cid: str) -> str | None:
        if cid not in self._areas:
            self._load(cid)
        return self._areas[cid]

    def _load(self, cid: str) -> None:
        loaded = TechnicalBook(self.session, [cid])
        self._open.update(loaded._open)
        self._areas.update(loaded._areas)

    def opened(self, alarm: TechnicalAlarm) -> None:
        self._open[(alarm.cid, alarm.kind)] = alarm

    def cleared(self, alarm: TechnicalAlarm) -> None:
        self._open.pop((alarm.cid, alarm.kind), None)

    def incident(self, kind: str, area: str) -> Incident | None:
        key = (kind, area)
        if key not in self._incidents or (
                (held := self._incidents[key]) is not None and held.state != "open"):
            self._incidents[key] = self.session.execute(select(Incident).where(
                Incident.kind == kind, Incident.area_code == area,
                Incident.state == "open")).scalar_one_or_none()
        return self._incidents[key]

    def incident_opened(self, incident: Incident) -> None:
        self._incidents[(incident.kind, incident.area_code)] = incident


def on_event(book: TechnicalBook, *, cid: str, kind: EventKind, at: datetime,
             event_id: int | None, status_code: str | None, rule: MassRule,
             change: HealthChange) -> None:
    """Apply a device's technical event: open (or repeat) its fault, or clear it."""
    actor = f"device:{cid}"
    code = f"code {status_code}" if status_code else None
    if kind in OPENED_BY:
        tkind = OPENED_BY[kind]
        existing = book.open_fault_of(cid, tkind.value)
        if existing is not None:
            _note(existing, "repeated", at, actor, code)
            change.touched += 1
            return
        open_fault(book, cid=cid, kind=tkind, at=at, source="device", actor=actor,
                   event_id=event_id, rule=rule, change=change, note=code)
        return
    for tkind in CLEARED_BY[kind]:
        if (alarm := book.open_fault_of(cid, tkind.value)) is not None:
            clear_fault(book, alarm, at=at, actor=actor,
                        note=f"restored ({code})" if code else "restored", change=change)


def open_fault(book: TechnicalBook, *, cid: str, kind: TechnicalKind, at: datetime,
               source: str, actor: str, rule: MassRule, change: HealthChange,
               event_id: int | None = None, quiet_since: datetime | None = None,
               area_code: str | None = None, note: str | None = None) -> TechnicalAlarm:
    session = book.session
    area = area_code if area_code is not None else book.area_of(cid)
    alarm = TechnicalAlarm(cid=cid, kind=kind.value, state=TechnicalState.OPEN.value,
                           source=source, area_code=area, opened_at=at,
                           quiet_since=quiet_since, source_event_id=event_id, version=0)
    # Not flushed here: a power cut opens thousands, and the unit of work inserts them
    # together at the end of the transaction (or when a query needs them).
    session.add(alarm)
    _note(alarm, "opened", at, actor, note)
    book.opened(alarm)
    change.touched += 1
    change.opened[kind.value] = change.opened.get(kind.value, 0) + 1
    if kind in MASS_KINDS and area is not None:
        _gather(book, alarm, rule, at, change)
    return alarm


def clear_fault(book: TechnicalBook, alarm: TechnicalAlarm, *, at: datetime, actor: str,
                note: str | None, change: HealthChange, action: str = "cleared") -> None:
    alarm.state = TechnicalState.CLEARED.value
    alarm.cleared_at = at
    alarm.cleared_by = actor
    alarm.clear_note = note
    _note(alarm, action, at, actor, note)
    book.cleared(alarm)
    change.touched += 1
    change.cleared[alarm.kind] = change.cleared.get(alarm.kind, 0) + 1
    if alarm.incident_id is not None:
        _shrink(book.session, alarm.incident_id, at, change)


def clear_by_hand(session: Session, technical_id: int, *, actor: str, note: str,
                  now: datetime) -> TechnicalAlarm:
    """The alarm manager clears a fault (a tamper checked, a unit replaced) with a note."""
    alarm = session.get(TechnicalAlarm, technical_id)
    if alarm is None:
        raise TechnicalAlarmNotFound(technical_id)
    if alarm.state != TechnicalState.OPEN:
        raise AlreadyCleared(technical_id)
    clear_fault(TechnicalBook(session), alarm, at=now, actor=actor, note=note,
                change=HealthChange(), action="cleared_by_hand")
    return alarm


# -- incidents ---------------------------------------------------------------------------


def _gather(book: TechnicalBook, alarm: TechnicalAlarm, rule: MassRule, at: datetime,
            change: HealthChange) -> None:
    """Put a new fault into its area's incident, or start one if enough came together."""
    assert alarm.area_code is not None
    session = book.session
    incident = book.incident(alarm.kind, alarm.area_code)
    if incident is not None:
        alarm.incident_id = incident.id
        incident.count += 1
        incident.peak = max(incident.peak, incident.count)
        incident.version += 1
        if incident.id not in change.incident_ids:
            change.incident_ids.append(incident.id)
        return
    recent = select(TechnicalAlarm.id).where(
        TechnicalAlarm.kind == alarm.kind, TechnicalAlarm.area_code == alarm.area_code,
        TechnicalAlarm.state == TechnicalState.OPEN, TechnicalAlarm.incident_id.is_(None),
        TechnicalAlarm.opened_at >= at - rule.window)
    ids = list(session.execute(recent).scalars())
    if len(ids) < rule.units:
        return
    incident = Incident(kind=alarm.kind, area_code=alarm.area_code, state="open",
                        count=len(ids), peak=len(ids), opened_at=at, version=0)
    session.add(incident)
    session.flush()
    book.incident_opened(incident)
    change.incidents_changed.append(("opened", incident.id, incident.kind, incident.area_code))
    session.execute(update(TechnicalAlarm).where(TechnicalAlarm.id.in_(ids))
                    .values(incident_id=incident.id, version=TechnicalAlarm.version + 1)
                    .execution_options(synchronize_session="fetch"))
    change.incident_ids.append(incident.id)


def _shrink(session: Session, incident_id: int, at: datetime, change: HealthChange) -> None:
    incident = session.get(Incident, incident_id)
    if incident is None or incident.state != "open":
        return
    incident.count = max(incident.count - 1, 0)
    incident.version += 1
    if incident.count == 0:
        incident.state = "closed"
        incident.closed_at = at
        change.incidents_changed.append(("closed", incident.id, incident.kind,
                                         incident.area_code))
    if incident.id not in change.incident_ids:
        change.incident_ids.append(incident.id)
