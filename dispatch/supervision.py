"""Heartbeat supervision: every device must be heard within its interval plus a tolerance.

A device not heard for that long gets a `link_fault` technical alarm, and its retained
availability on MQTT (`{root}/dev/{cid}/availability`, as zigbee2mqtt does) turns
"offline"; hearing it again clears the fault and turns it "online". The sweep runs on
the dispatch leader against `device_links` (the last-seen the gateway writes), so there
is one judge however many gateways listen.

Nobody is judged quiet for a time in which we could not hear them: supervision counts
from the moment the gateway has been listening without a break (it notes that in the
database, `core.inbox.gateway_hearing`) or this dispatcher began to lead, whichever is
later. A restart of Trygg or of the broker therefore raises no storm of false link
faults, and while the gateway is deaf (broker down, gateway stopped) no new fault is
raised at all: that outage is an alarm of its own (/readyz, `trygg_mqtt_connected`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog
from prometheus_client import Counter
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from core import inbox
from core.clock import Clock
from core.db import Database, Lane
from core.inbox import DeviceLink
from dispatch.models import Device, OutboxMessage, Site, TechnicalAlarm, TechnicalKind
from dispatch.technical import (
    SUPERVISION,
    HealthChange,
    MassRule,
    TechnicalBook,
    clear_fault,
    open_fault,
)

log = structlog.get_logger(__name__)

LINK_FAULTS_RAISED = Counter("trygg_supervision_link_faults_total",
                             "Devices found quiet past their interval and tolerance")
# Devices judged in one sweep at most: a mast down takes thousands quiet at once, and
# one transaction must not hold the writer for long. The rest come in the next sweep.
SWEEP_LIMIT = 2000


@dataclass(frozen=True)
class SupervisionRule:
    """How often devices must be heard; per model from the configuration, per device in
    the registry, and these defaults for devices with neither."""

    interval: timedelta = timedelta(hours=1)
    tolerance: timedelta = timedelta(minutes=10)
    # model name -> (interval, tolerance)
    models: Mapping[str, tuple[timedelta, timedelta]] = field(default_factory=dict)
    # The gateway's own "still alive" note older than this: it is not listening.
    gateway_stale: timedelta = timedelta(seconds=30)

    def limits(self, model: str | None, interval_s: int | None,
               tolerance_s: int | None) -> tuple[timedelta, timedelta]:
        interval, tolerance = self.models.get(model or "", (self.interval, self.tolerance))
        if interval_s is not None:
            interval = timedelta(seconds=interval_s)
        if tolerance_s is not None:
            tolerance = timedelta(seconds=tolerance_s)
        return interval, tolerance

    def allowed_silence(self, model: str | None, interval_s: int | None,
                        tolerance_s: int | None) -> timedelta:
        interval, tolerance = self.limits(model, interval_s, tolerance_s)
        return interval + tolerance


def availability_topic(root: str, cid: str) -> str:
    return f"{root}/dev/{cid}/availability"


def publish_availability(session: Session, root: str, cid: str, state: str,
                         last_seen: datetime | None, now: datetime) -> None:
    """Queue the device's availability in the outbox, retained, in this transaction."""
    payload = json.dumps({"state": state, "cid": cid,
                          "last_seen_at": last_seen.isoformat() if last_seen else None,
                          "at": now.isoformat()})
    session.add(OutboxMessage(topic=availability_topic(root, cid), payload=payload,
                              created_at=now, retain=True, attempts=0))


def sweep(session: Session, now: datetime, *, rule: SupervisionRule, mass: MassRule,
          topic_root: str, leading_since: datetime,
          limit: int = SWEEP_LIMIT) -> HealthChange:
    """Clear the link faults of devices heard again; raise them for devices gone quiet."""
    change = HealthChange()
    _clear_heard(session, now, topic_root, change, limit)
    listening = inbox.gateway_hearing(session, now, rule.gateway_stale)
    if listening is None:
        return change  # deaf: nobody can be judged quiet now
    since = max(listening, leading_since)
    overdue = _overdue(session, now, since, rule, limit)
    book = TechnicalBook(session, [cid for cid, _, _, _ in overdue])
    for cid, silence, area, last_seen in overdue:
        quiet_for = int((now - last_seen).total_seconds())
        open_fault(book, cid=cid, kind=TechnicalKind.LINK_FAULT, at=now,
                   source=SUPERVISION, actor="system", rule=mass, change=change,
                   quiet_since=last_seen, area_code=area,
                   note=f"not heard for {quiet_for} s (allowed {int(silence.total_seconds())} s)")
        publish_availability(session, topic_root, cid, "offline", last_seen, now)
        change.availability.append((cid, "offline", last_seen))
    return change


def _overdue(session: Session, now: datetime, since: datetime, rule: SupervisionRule,
             limit: int) -> list[tuple[str, timedelta, str | None, datetime]]:
    """Heard devices without an open link fault, silent past what they are allowed.

    One exact range query per class of allowance (each configured model, everyone
    else), through the index on last-seen, so a healthy fleet of any size costs a few
    index probes. Devices with their own interval in the registry are few; they are
    judged one by one.
    """
    faulted = aliased(TechnicalAlarm)
    no_open_fault = ~exists().where(
        faulted.cid == Device.cid, faulted.kind == TechnicalKind.LINK_FAULT.value,
        faulted.state == "open")
    own = (Device.supervision_interval_s.is_not(None)
           | Device.supervision_tolerance_s.is_not(None))
    columns = (Device.cid, Device.model, Device.supervision_interval_s,
               Device.supervision_tolerance_s, Site.area_code, DeviceLink.last_seen_at)
    base = (select(*columns).join(DeviceLink, DeviceLink.cid == Device.cid)
            .outerjoin(Site, Site.id == Device.site_id).where(no_open_fault))
    classes = [(rule.interval + rule.tolerance,
                ~own & (Device.model.is_(None) | Device.model.not_in(list(rule.models))))]
    classes += [(i + t, ~own & (Device.model == model))
                for model, (i, t) in rule.models.items()]
    found: list[tuple[str, timedelta, str | None, datetime]] = []
    for silence, which in classes:
        if since + silence >= now:
            continue  # within the grace: nobody of this class is overdue yet
        for cid, _, _, _, area, last_seen in session.execute(
                base.where(which, DeviceLink.last_seen_at < now - silence)
                .order_by(DeviceLink.last_seen_at).limit(limit - len(found))):
            found.append((cid, silence, area, last_seen))
        if len(found) >= limit:
            return found
    for cid, model, interval_s, tolerance_s, area, last_seen in session.execute(
            base.where(own)):
        silence = rule.allowed_silence(model, interval_s, tolerance_s)
        if max(last_seen, since) + silence < now and len(found) < limit:
            found.append((cid, silence, area, last_seen))
    return found


def _clear_heard(session: Session, now: datetime, topic_root: str, change: HealthChange,
                 limit: int) -> None:
    heard = session.execute(
        select(TechnicalAlarm, DeviceLink.last_seen_at)
        .join(DeviceLink, DeviceLink.cid == TechnicalAlarm.cid)
        .where(and_(TechnicalAlarm.kind == TechnicalKind.LINK_FAULT.value,
                    TechnicalAlarm.state == "open", TechnicalAlarm.source == SUPERVISION,
                    DeviceLink.last_seen_at > TechnicalAlarm.quiet_since))
        .order_by(TechnicalAlarm.id).limit(limit)).all()
    book = TechnicalBook(session)
    for alarm, last_seen in heard:
        clear_fault(book, alarm, at=now, actor="system",
                    note=f"heard again at {last_seen.isoformat()}", change=change)
        publish_availability(session, topic_root, alarm.cid, "online", last_seen, now)
        change.availability.append((alarm.cid, "online", last_seen))


class Supervisor:
    """Sweeps every `sweep_s` on the leader; `sweep_once` is what tests drive."""

    def __init__(self, db: Database, clock: Clock, rule: SupervisionRule, mass: MassRule,
                 *, topic_root: str = "trygg/v1", sweep_s: float = 10.0,
                 on_change: Callable[[HealthChange], object] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.rule = rule
        self.mass = mass
        self.topic_root = topic_root
        self.sweep_s = sweep_s
        self.on_change = on_change
        self.leading_since: datetime | None = None

    async def sweep_once(self) -> HealthChange:
        now = self.clock.now()
        if self.leading_since is None:
            self.leading_since = now
        change = await self.db.write(partial(
            sweep, now=now, rule=self.rule, mass=self.mass, topic_root=self.topic_root,
            leading_since=self.leading_since), Lane.BACKGROUND)
        raised = change.opened.get(TechnicalKind.LINK_FAULT.value, 0)
        LINK_FAULTS_RAISED.inc(raised)
        if raised or change.availability:
            log.info("supervision_swept", link_faults=raised,
                     back=sum(1 for _, state, _ in change.availability if state == "online"))
        if change and self.on_change is not None:
            result = self.on_change(change)
            if asyncio.iscoroutine(result):
                await result
        return change

    async def run(self) -> None:
        # Counted from when this dispatcher began to lead: the grace starts now.
        self.leading_since = self.clock.now()
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:
                log.error("supervision_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(self.sweep_s)
