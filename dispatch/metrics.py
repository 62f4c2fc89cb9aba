"""Prometheus metrics of dispatch. Labels are states and kinds, never people."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.db import Database
from core.inbox import inbox_backlog
from dispatch.models import Alarm, AlarmState

ALARMS_RECEIVED = Counter("trygg_alarms_received_total", "New alarms, by routing reason",
                          ["route"])
REMINDERS = Counter("trygg_reminders_total", "Reminders sent for alarms without check-in")
EVENT_FAILURES = Counter("trygg_event_processing_failures_total",
                         "Stored device events dispatch could not apply (kept, flagged)")
TRANSITIONS = Counter("trygg_alarm_transitions_total", "Operator actions on alarms",
                      ["action"])


def _aware(value: datetime) -> datetime:
    # func.min bypasses the column type on SQLite: the value may come back naive UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AlarmStateCollector(Collector):
    """`trygg_alarms{state}`: counted in the database at scrape time, so never stale."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("trygg_alarms", "Alarms by state", labels=["state"])
        with self.db.sessions() as session:
            counts = dict(session.execute(
                select(Alarm.state, func.count()).group_by(Alarm.state)).all())
            backlog, oldest = inbox_backlog(session)
        for state in AlarmState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family
        # Stored and answered, not yet applied: alarms not yet on the operators' screens.
        yield GaugeMetricFamily("trygg_inbox_backlog",
                                "Device events stored but not yet applied by dispatch",
                                value=backlog)
        # A stuck head of the inbox shows here even when only a few events wait behind it.
        age = 0.0 if oldest is None else (datetime.now(UTC) - _aware(oldest)).total_seconds()
        yield GaugeMetricFamily("trygg_inbox_oldest_age_seconds",
                                "Age of the oldest device event dispatch has not applied",
                                value=max(age, 0.0))
