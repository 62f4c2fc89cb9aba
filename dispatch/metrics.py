"""Prometheus metrics of dispatch. Labels are states and kinds, never people."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.clock import Clock, SystemClock
from core.db import Database
from core.inbox import inbox_backlog
from core.logs import Throttle
from dispatch.models import Alarm, AlarmState, Incident, TechnicalAlarm, TechnicalKind

log = structlog.get_logger(__name__)

ALARMS_RECEIVED = Counter("trygg_alarms_received_total", "New alarms, by routing reason",
                          ["route"])
REMINDERS = Counter("trygg_reminders_total", "Reminders sent for alarms without check-in")
ROUTE_RELOADS = Counter(
    "trygg_route_reloads_total",
    "Changes of the route tree file: applied, or refused (the running rules stay)",
    ["outcome"])
CHAIN_STEPS = Counter(
    "trygg_chain_steps_total",
    "Steps of alarms' call and escalation chains carried out, by what they did "
    "(call, no_answer, coordinator, red_flag, handover; stale: dropped, the alarm had "
    "moved on; failed: could not be carried out, the alarm flagged)", ["step"])
EVENT_FAILURES = Counter("trygg_event_processing_failures_total",
                         "Stored device events dispatch could not apply (kept, flagged)")
EVENTS_QUARANTINED = Counter(
    "trygg_events_quarantined_total",
    "Events set aside after failing again and again outside the per-event guard")
INBOX_RACES_LOST = Counter(
    "trygg_inbox_races_lost_total",
    "Batches rolled back because another dispatcher had marked their events first")
DISPATCH_LEADER = Gauge("trygg_dispatch_leader",
                        "1 while this process is the dispatcher that leads, 0 on standby")
OUTBOX_SENT = Counter("trygg_outbox_sent_total", "Messages to teams published")
OUTBOX_PUBLISH_FAILURES = Counter(
    "trygg_outbox_publish_failures_total",
    "Failed tries to publish a message to a team (not counting the broker being down)")
OUTBOX_SET_ASIDE = Counter(
    "trygg_outbox_set_aside_total",
    "Messages to teams given up on after repeated failures (see outbox.last_error)")
TECHNICAL_OPENED = Counter("trygg_technical_alarms_opened_total",
                           "Technical alarms opened (device faults, quiet devices), by kind",
                           ["kind"])
TECHNICAL_CLEARED = Counter("trygg_technical_alarms_cleared_total",
                            "Technical alarms cleared, by the device or by hand, by kind",
                            ["kind"])
SIGN_INS = Counter("trygg_sign_ins_total",
                   "Sign-in attempts by outcome (ok, wrong, unknown_user, disabled, locked)",
                   ["outcome"])
REVEALS = Counter("trygg_identity_reveals_total",
                  "Protected identities shown in clear on an alarm, by an operator")
TRANSITIONS = Counter("trygg_alarm_transitions_total", "Operator actions on alarms",
                      ["action"])


def _aware(value: datetime) -> datetime:
    # func.min bypasses the column type on SQLite: the value may come back naive UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AlarmStateCollector(Collector):
    """`trygg_alarms{state}` and the inbox backlog, counted in the database at scrape time.

    A scrape must answer while the database is down, since that is when it is needed
    most: then these families are left out, `trygg_metrics_database_up` is 0, and every
    other metric of the process is served as usual.
    """

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self._failures = Throttle(60.0)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.db.sessions() as session:
                counts = dict(session.execute(
                    select(Alarm.state, func.count()).group_by(Alarm.state)).all())
                backlog, oldest = inbox_backlog(session)
                technical = dict(session.execute(
                    select(TechnicalAlarm.kind, func.count())
                    .where(TechnicalAlarm.state == "open")
                    .group_by(TechnicalAlarm.kind)).all())
                incidents = session.execute(select(func.count()).select_from(Incident)
                                            .where(Incident.state == "open")).scalar_one()
        except Exception as exc:
            if (count := self._failures.hit()) is not None:
                log.warning("metrics_database_unavailable", scrapes=count,
                            error=type(exc).__name__)
            yield _database_up(0)
            return
        yield _database_up(1)
        family = GaugeMetricFamily("trygg_alarms", "Alarms by state", labels=["state"])
        for state in AlarmState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family
        family = GaugeMetricFamily("trygg_technical_alarms_open",
                                   "Open technical alarms, by kind", labels=["kind"])
        for kind in TechnicalKind:
            family.add_metric([kind.value], technical.get(kind.value, 0))
        yield family
        yield GaugeMetricFamily("trygg_incidents_open",
                                "Open mass events (many units of one area with one fault)",
                                value=incidents)
        # Stored and answered, not yet applied: alarms not yet on the operators' screens.
        yield GaugeMetricFamily("trygg_inbox_backlog",
                                "Device events stored but not yet applied by dispatch",
                                value=backlog)
        # A stuck head of the inbox shows here even when only a few events wait behind it.
        age = 0.0 if oldest is None else (self.clock.now() - _aware(oldest)).total_seconds()
        yield GaugeMetricFamily("trygg_inbox_oldest_age_seconds",
                                "Age of the oldest device event dispatch has not applied",
                                value=max(age, 0.0))


def _database_up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily("trygg_metrics_database_up",
                             "1 if the last scrape could read the database, else 0",
                             value=value)
