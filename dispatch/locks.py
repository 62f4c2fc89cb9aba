"""Digital locks: an opening during an open alarm is evidence on its trail, and the alarm
centre or the responding team can have the door opened remotely while the alarm is open.

A keyless lock (nyckelfritt lås) reports over SCAIP like a base unit: `stc` 0127
unlocked, 0118 locked, the staff member's id in `ite`; each opening is a proof that
staff were there (004 §14, "platskvittens"). Dispatch puts the opening or closing of a
lock registered at the site of an open alarm on that alarm's trail and changes nothing
else: the unit's check-in is what stops the 30-minute clock (see `note_lock_event`).

Opening remotely writes a `<cmd>` to the outbox (`{root}/dev/{cid}/cmd`, QoS 1, never
retained), the audit entry `lock.open` and the trail entry `lock_open_requested`, all in
one transaction; the lock's own report of the opening then lands on the trail as above.
docs/PROTOCOLS.md describes the command. Functions here run in the caller's transaction.

Errors:

TryggError
 └── CannotOpenLock    the alarm is not open, or its site has no such lock; `reason`
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import TryggError
from core.inbox import DeviceEventRow
from devices import scaip
from devices.events import EventKind
from dispatch import audit, lifecycle
from dispatch.models import OPEN_STATES, Alarm, Device, OutboxMessage

LOCK_EVENT_KINDS = frozenset({EventKind.LOCK_OPENED, EventKind.LOCK_CLOSED})
LOCK = "lock"  # Device.kind
# A command not obeyed by then is void: the door must not open minutes later, when the
# broker was down or the lock offline, and nobody may be there any more.
COMMAND_TTL = timedelta(minutes=2)
OPEN_REQUESTED = "lock_open_requested"


class CannotOpenLock(TryggError):
    """The lock cannot be opened remotely for this alarm; `reason` says why, in a word:
    "alarm_not_open", "no_lock", "which_lock" (several, none named) or "not_at_site"."""

    def __init__(self, alarm_id: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.alarm_id = alarm_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LockOpening:
    """A remote opening asked for: the command waits in the outbox."""

    alarm_id: int
    cid: str
    ref: str
    requested_at: datetime
    expires_at: datetime


def command_topic(root: str, cid: str) -> str:
    """Where a lock reads its commands; only that lock's broker account may read it."""
    return f"{root}/dev/{cid}/cmd"


# -- a lock's reports ------------------------------------------------------------------


def note_lock_event(session: Session, *, cid: str, kind: EventKind, at: datetime,
                    event_id: int) -> list[int]:
    """Put a lock's opening or closing on the trail of every open alarm at its site that
    was raised before it; returns those alarms' ids (none: the event stays in the event
    log only, as any device event does, and no alarm is raised).

    Any registered device at the site counts, not only kind "lock": a base unit may
    report the lock paired to it under its own cid (SCAIP's `dty` 0042 names the lock).
    """
    site_id = session.execute(select(Device.site_id).where(Device.cid == cid)
                              ).scalar_one_or_none()
    if site_id is None:
        return []
    alarms = list(session.execute(
        select(Alarm).where(Alarm.site_id == site_id, Alarm.state.in_(OPEN_STATES),
                            Alarm.received_at <= at).order_by(Alarm.id)).scalars())
    if not alarms:
        return []
    # Not among the inbox's pending columns: looked up for the few lock events that count.
    staff_id = session.execute(select(DeviceEventRow.staff_id)
                               .where(DeviceEventRow.id == event_id)).scalar_one_or_none()
    note = _who_opened(staff_id)
    for alarm in alarms:
        # Evidence, not a transition: the door opening says someone with a key came in,
        # not that the visit began (staff may open for a colleague, or on our command
        # with nobody there yet). Check-in on the unit stops the 30-minute clock, and
        # the follow-up compares the two.
        lifecycle.note_device(alarm, kind.value, at, cid, note)
    return [alarm.id for alarm in alarms]


def _who_opened(staff_id: str | None) -> str:
    if staff_id is None:
        return "no staff id"
    if staff_id.startswith(scaip.REMOTE_OPENING):  # opened on our command
        return f"remote request {staff_id.removeprefix(scaip.REMOTE_OPENING)}"
    return f"staff {staff_id}"


# -- opening remotely ------------------------------------------------------------------


def open_remotely(session: Session, alarm: Alarm, actor: audit.Actor, now: datetime, *,
                  topic_root: str, address: str | None = None,
                  cid: str | None = None) -> LockOpening:
    """Queue an unlock command to the lock at `alarm`'s site (the named one, if `cid`),
    with its audit entry and trail entry. Raises CannotOpenLock."""
    if alarm.state not in OPEN_STATES:
        raise CannotOpenLock(alarm.id, "alarm_not_open",
                             f"alarm {alarm.id} is {alarm.state}: a lock is opened "
                             "remotely only while its alarm is open")
    lock = _lock_of(session, alarm, cid)
    ref = secrets.token_hex(8)  # 16 hex digits: a SCAIP ref, unique per command
    expires_at = now + COMMAND_TTL
    payload = scaip.encode_command(scaip.ScaipCommand(ref=ref, cid=lock, act=scaip.UNLOCK,
                                                      exp=expires_at))
    session.add(OutboxMessage(topic=command_topic(topic_root, lock), message_id=ref,
                              payload=payload.decode(), created_at=now, retain=False))
    audit.record(session, actor, "lock.open", now, subject=("alarm", alarm.id),
                 address=address, detail={"lock": lock, "ref": ref})
    lifecycle.note(alarm, OPEN_REQUESTED, now, actor.name, f"lock {lock}, request {ref}")
    return LockOpening(alarm.id, lock, ref, now, expires_at)


def _lock_of(session: Session, alarm: Alarm, cid: str | None) -> str:
    locks = [] if alarm.site_id is None else list(session.execute(
        select(Device.cid).where(Device.site_id == alarm.site_id, Device.kind == LOCK)
        .order_by(Device.cid)).scalars())
    if not locks:
        raise CannotOpenLock(alarm.id, "no_lock",
                             f"alarm {alarm.id}'s site has no digital lock registered")
    if cid is None:
        if len(locks) > 1:
            raise CannotOpenLock(alarm.id, "which_lock",
                                 f"alarm {alarm.id}'s site has {len(locks)} locks "
                                 f"({', '.join(locks)}): name the one to open")
        return locks[0]
    if cid not in locks:
        raise CannotOpenLock(alarm.id, "not_at_site",
                             f"lock {cid} is not registered at alarm {alarm.id}'s site")
    return cid
