"""The timer benchmark: `bench/timers` (one command), issue 9's "Speed and scale".

100,000 open alarms, each called out with nobody answering, so that their call chains
and escalation chains run as `Deadline` rows; the product's own timer sweep
(`dispatch.worker.Dispatcher.run_timers`, `core.clock.SystemClock`) fires them during a
measured window. On SQLite (a temp file: the default database) and, with `--postgres URL`
(or TRYGG_TEST_POSTGRES_URL set), on PostgreSQL in a fresh schema, dropped afterwards.

Scenarios (`--scenario`; each on a database of its own):

- **steady**: the call-outs evenly spread over the `--spread-min` (60) minutes before the
  window. Each alarm is as the product leaves it at the window's start: those called out
  in the last 4-12 minutes are still calling down their call order (one `call_step` due
  every 2 minutes), the older ones have flagged the operator (no answer), and every one
  has its next escalation step pending (reminder at 30 minutes, coordinator at 45, red
  flag at 60). In the window call steps fall due at ~120/s and escalation steps at
  ~83/s, every kind of step among them.
- **burst**: every alarm called out within one minute, 2 minutes before the window: all
  their second calls fall due within the window's first minute (a mass alarm's chains).
- **burst-reminders**: called out within one minute 30 minutes before: all their first
  reminders fall due within one minute (each a reminder message and a next step).

The database (in a process of its own, so that its memory is not the service's):
migrated by `trygg.migrations.upgrade`; the shipped areas, providers and teams through
`registry.import_config`, and one customer, site and base unit per alarm inserted in
bulk (placed as bench/gateway.py places them); then a dozen of the alarms
**through the product** (the press stored with `core.inbox.append_events`, applied by
`services.process_pending`, its steps fired by `services.fire_due` on a `FakeClock`
stepped to each step's due time, up to the window's start), and the rest generated here
and inserted in bulk: the alarm rows with their frozen decision and chain snapshot
(`escalation.snapshot`), their audit trail, and their deadlines, fired (the history) and
pending. Before inserting anything the generator is run for the dozen product-made alarms
and must give exactly their rows (every column of the alarm, every trail entry, every
deadline with its step, times and token), else the benchmark stops; after inserting, two
generated alarms are read back and checked the same way.

The window starts as long after the prefill began as a trial chunk (inserted and rolled
back) says the prefill will take, twice over (`--lead` sets it). The measured service
then runs in a process of its own, as the service's dispatch with only what timers need:
the real `Database` (writer thread, SQLite pragmas), `Dispatcher.run_timers` (its sweep
every second, at once again after a full batch), `Dispatcher.run_outbox` with a publish
that does nothing (the messages are marked sent as when the broker takes them, so the
outbox works as it would; no MQTT broker is involved), SQLite's checkpoints, and logs as
`trygg run` writes them (to a file). For every deadline due in the window, fired in it
or in the drain after it, the lateness three ways:

- **fired**: `fired_at - due_at` as the database records it (the sweep's clock reading);
- **committed**: when the sweep's transaction had committed (the step has happened, its
  message is in the outbox) minus `due_at`; the target is judged on this one;
- **published**: when the outbox loop had handed the step's message (call-out, reminder,
  coordinator) to the broker (`outbox.sent_at`) minus `due_at`.

Also: the service's CPU over the window minus its idle CPU just before it (the sweep's
cost per second of wall time, and per step fired), by thread, PostgreSQL's backends'
CPU, the service's RSS before, after and peak, the database's size, and the rest of the
machine's CPU (this machine is shared: a NOTE says when it was busy).

`--profile` adds cProfile of the writer thread and the time per SQL statement.
`--fire-batch N` tries another services.FIRE_BATCH without editing the product (in the
service's process only).

Exit status: 0 it ran and every p99 was under 1 s, 1 a target missed, 2 it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import functools
import io
import itertools
import json
import multiprocessing as mp
import os
import pstats
import re
import resource
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.heartbeats import print_table
from bench.ingest import (
    CLK_TCK,
    _machine,
    _ticks,
    _workdir,
    machine_line,
    pct,
    pg_schema,
    pg_schema_url,
)

# The shipped registry's areas and day providers, in the order bench/gateway.py places
# customers (unit i: area i % 2, day provider i % 3).
AREAS = ("kungsangen", "bro")
DAY_PROVIDERS = ("solrosen", "kommunens-hemtjanst", "trygga-hander")
CID_BASE = 700_000
N_ALARMS = 100_000
# From the press's arrival to its call-out: dispatch applying the stored event.
RECEIVE_LEAD = timedelta(milliseconds=150)
TOPIC_ROOT = "bench/timers"
# The measured service's PostgreSQL connections carry this name: their backends' CPU.
APP_NAME = "trygg-bench-timers"
REFERENCE_ALARMS = 12  # made through the product, and the generator checked against them
CHUNK = 5_000  # alarms per bulk transaction
BURST_OFFSET_S = 5.0  # a burst's first step falls due this long into the window
BURST_SPAN_S = 60.0
TARGET_P99_S = 1.0
SCENARIOS = ("steady", "burst", "burst-reminders")

Say = Callable[[str], None]


def say(text: str) -> None:
    print(text, flush=True)


# -- the plan: which alarms, called out when --------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One run: `n` alarms on `url`, as the product leaves them at `anchor` (the window's
    start, epoch seconds), called out over `spread_s` (see `callout`)."""

    backend: str
    scenario: str
    url: str
    n: int
    anchor: float
    spread_s: float
    duration_s: float
    notes: tuple[str, ...] = ()

    @property
    def anchor_at(self) -> datetime:
        return datetime.fromtimestamp(self.anchor, UTC)

    def cid(self, i: int) -> str:
        return cid(i)

    def callout(self, i: int) -> datetime:
        """When alarm i was called out (its press arrived RECEIVE_LEAD before)."""
        offset = (i + 0.5) / self.n * self.spread_s
        if self.scenario == "steady":
            start = -self.spread_s
        elif self.scenario == "burst":
            start = BURST_OFFSET_S - _timers().call_step_after_s
        else:  # burst-reminders
            start = BURST_OFFSET_S - _timers().escalation_steps[0].after_min * 60
        us = round((start + offset) * 1e6)
        return self.anchor_at + timedelta(microseconds=us)


@functools.cache
def _config() -> Any:
    """The shipped areas, providers, teams and timers; no customers (added in bulk)."""
    from bench.gateway import bench_config
    from dispatch.config import MunicipalityConfig

    return MunicipalityConfig.model_validate(bench_config([]))


def _timers() -> Any:
    return _config().timers


def rules() -> Any:
    from dispatch.route_tree import tree_of
    from dispatch.services import DispatchRules

    config = _config()
    return DispatchRules(config.shifts, config.timers, TOPIC_ROOT,
                         routes=tree_of(config.routing, config.shifts),
                         handover=config.handover)


def shift_changes_around(at: datetime) -> tuple[datetime, datetime]:
    """The last 07:00/22:00 shift change at or before `at`, and the next after it."""
    from dispatch.routing import next_shift_change

    shifts = _config().shifts
    last = next_shift_change(at - timedelta(days=1), shifts)
    while (following := next_shift_change(last, shifts)) <= at:
        last = following
    return last, next_shift_change(at, shifts)


def plan_run(backend: str, scenario: str, url: str, n: int, anchor: float, spread_min: float,
             duration_s: float, drain_s: float) -> Plan:
    """The plan, kept clear of shift changes: an alarm nobody accepted before 07:00 or
    22:00 is handed to the new shift's team, which this benchmark does not model."""
    spread = spread_min * 60 if scenario == "steady" else BURST_SPAN_S
    plan = Plan(backend, scenario, url, n, anchor, spread, duration_s)
    first = plan.callout(0) - RECEIVE_LEAD - timedelta(seconds=1)
    last_change, next_change = shift_changes_around(plan.anchor_at)
    notes: list[str] = []
    if last_change > first:
        if scenario != "steady":
            raise RuntimeError(f"{scenario}: the alarms would be called out before the shift "
                               f"change of {last_change:%H:%M}Z and handed over; run it later")
        spread = (plan.anchor_at - last_change).total_seconds() - 2
        if spread < 600:
            raise RuntimeError(f"steady: only {spread / 60:.0f} minutes since the shift change "
                               f"of {last_change:%H:%M}Z; run it 10 minutes later")
        notes.append(f"call-outs over the last {spread / 60:.0f} minutes only: the shift "
                     f"changed at {last_change:%H:%M}Z (a hand-over is not modelled)")
    if next_change.timestamp() < anchor + duration_s + drain_s:
        notes.append(f"the shift changes at {next_change:%H:%M}Z, inside the window or the "
                     "drain: every alarm's hand-over falls due then (counted as 'handover')")
    return Plan(backend, scenario, url, n, anchor, spread, duration_s, tuple(notes))


# -- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamInfo:
    """A routing decision as the product freezes it on the alarm (`services._freeze`)."""

    id: int
    code: str
    name: str
    phone: str | None
    provider_code: str
    call_order: tuple[tuple[str, str | None], ...]
    coordinator_note: str | None  # what the coordinator step writes; None: no provider
    route_reason: str
    shift: str
    also_teams: tuple[str, ...]


def cid(i: int) -> str:
    return str(CID_BASE + i)


def seed_registry(session: Any, n: int) -> None:
    """The shipped areas, providers and teams, and a customer, site and unit per alarm."""
    from sqlalchemy import insert, select

    from dispatch.models import Customer, Device, Provider, Site
    from dispatch.registry import import_config

    import_config(session, _config())
    provider_ids = {p.code: p.id for p in session.execute(select(Provider)).scalars()}
    for a in range(0, n, CHUNK):
        idx = range(a, min(n, a + CHUNK))
        session.execute(insert(Customer), [
            {"id": i + 1, "code": f"B-{cid(i)}", "name": f"Bench customer {i}",
             "personal_number": None, "protected_identity": False,
             "day_provider_id": provider_ids[DAY_PROVIDERS[i % 3]]} for i in idx])
        session.execute(insert(Site), [
            {"id": i + 1, "code": f"B-{cid(i)}-1", "customer_id": i + 1, "kind": "main",
             "address": f"Benchvägen {i}", "postal_code": None, "city": "Bro",
             "area_code": AREAS[i % 2], "door_name": None} for i in idx])
        session.execute(insert(Device), [
            {"cid": cid(i), "site_id": i + 1, "kind": "base_unit", "model": "bench unit",
             "supervision_interval_s": None, "supervision_tolerance_s": None} for i in idx])


def route_teams(session: Any, plan: Plan) -> dict[tuple[str, str], TeamInfo]:
    """The team each (area, day provider) is routed to when the plan's alarms come in
    (one shift: plan_run keeps them clear of shift changes), by the product's routing."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from dispatch.models import Team
    from dispatch.registry import SqlTeamDirectory
    from dispatch.route_tree import Facts, decide
    from dispatch.routing import shift_at

    r = rules()
    at = plan.callout(0) - RECEIVE_LEAD
    teams: dict[tuple[str, str], TeamInfo] = {}
    for area in AREAS:
        for provider in DAY_PROVIDERS:
            decision = decide(r.route_tree, Facts(area=area, provider=provider), at,
                              SqlTeamDirectory(session))
            assert decision.team is not None, (area, provider)
            team = session.execute(select(Team).where(Team.id == decision.team.id).options(
                selectinload(Team.members), selectinload(Team.provider))).scalar_one()
            p = team.provider
            who = p.coordinator_name or "the coordinator"
            phone = f", {p.coordinator_phone}" if p.coordinator_phone else ""
            teams[area, provider] = TeamInfo(
                team.id, team.code, team.name, team.phone, p.code,
                tuple((m.name, m.phone) for m in team.members), f"{p.code}: {who}{phone}",
                decision.reason.value, shift_at(at, r.shifts).value,
                tuple(t.code for t in decision.also_teams))
    return teams


# -- the generator ----------------------------------------------------------------------------


@dataclass
class AlarmRows:
    alarm: dict[str, Any]
    log: list[dict[str, Any]]
    deadlines: list[dict[str, Any]]


def _token() -> str:
    return os.urandom(16).hex()  # as uuid.uuid4().hex: 32 hex digits


def generate(plan: Plan, i: int, alarm_id: int, team: TeamInfo, handover_due: datetime,
             timers: Any) -> AlarmRows:
    """Alarm i as the product leaves it at the plan's anchor: pressed, called out by
    dispatch RECEIVE_LEAD later, nobody answering; every step due before the anchor fired
    on time (dispatch.escalation and dispatch.lifecycle, replayed), the rest pending."""
    from dispatch import escalation

    cid, c = plan.cid(i), plan.callout(i)
    anchor = plan.anchor_at
    received = c - RECEIVE_LEAD
    if handover_due < anchor:
        raise RuntimeError("a hand-over would have fired before the window: not modelled")
    chain = escalation.snapshot(timers, c)
    steps, started = chain["steps"], c
    entries = [{"name": n, "phone": p} for n, p in team.call_order] \
        or [{"name": None, "phone": team.phone}]
    total = len(entries) * int(chain["rounds"])
    a: dict[str, Any] = {
        "id": alarm_id, "cid": cid, "state": None, "source_event_id": None,
        "priority": 0, "unknown_device": False, "site_id": i + 1, "customer_id": i + 1,
        "team_id": team.id, "team_code": team.code, "team_name": team.name,
        "team_phone": team.phone, "route_reason": team.route_reason, "shift": team.shift,
        "call_order": [{"name": n, "phone": p} for n, p in team.call_order],
        "provider_code": team.provider_code, "also_teams": list(team.also_teams),
        "chain": chain, "call_step": None, "call_token": None, "escalation_token": None,
        "received_at": received, "called_out_at": None, "accepted_at": None,
        "accepted_by": None, "on_site_at": None, "completed_at": None, "closed_at": None,
        "closed_by": None, "close_reason": None, "closed_via": None, "reminded_at": None,
        "reminder_count": 0, "no_answer_at": None, "coordinator_at": None,
        "red_flag_at": None, "on_way_at": None, "kvittering": None, "visit_reason": None,
        "handed_over_at": None, "repeat_count": 0, "version": 0,
    }
    log: list[dict[str, Any]] = []
    deadlines: list[dict[str, Any]] = []

    def note(action: str, at: datetime, actor: str, text: str, to_state: str) -> None:
        log.append({"alarm_id": alarm_id, "action": action, "from_state": a["state"],
                    "to_state": to_state, "at": at, "actor": actor, "note": text})
        a["state"] = to_state
        a["version"] += 1

    def schedule(kind: str, step: int | None, token: str | None, due: datetime) -> None:
        deadlines.append({"alarm_id": alarm_id, "kind": kind, "due_at": due, "fired_at": None,
                          "cancelled_at": None, "step": step, "token": token})

    def call(step: int, now: datetime) -> None:  # escalation.call
        if step >= total:
            a["call_token"] = a["call_step"] = None
            a["no_answer_at"] = now
            note("no_answer", now, "system", f"nobody of the call order answered in "
                 f"{chain['rounds']} round(s): call the team", "called_out")
            return
        who = entries[step % len(entries)]
        a["call_step"], a["call_token"], a["no_answer_at"] = step, _token(), None
        name = who["name"] or f"the team's phone {team.phone or ''}".strip()
        first = a["called_out_at"] is None
        a["called_out_at"] = a["called_out_at"] or now
        note("call_out" if first else "call_out_again", now, "system",
             f"{team.code}: call {step + 1}/{total}, {name}", "called_out")
        schedule(escalation.CALL_STEP, step + 1, a["call_token"],
                 now + timedelta(seconds=int(chain["step_after_s"])))

    def escalate(step: int, token: str, now: datetime) -> None:  # escalation._fire_escalation
        action = steps[step]["action"] if step < len(steps) else "remind_team"
        if action == "remind_team":
            a["reminded_at"] = now
            a["reminder_count"] += 1
            note("remind", now, "system", f"reminder {a['reminder_count']}: no check-in",
                 "called_out")
        elif action == "notify_coordinator":
            a["coordinator_at"] = a["coordinator_at"] or now
            note("escalate_coordinator", now, "system", team.coordinator_note
                 or "no provider to escalate to: the operator calls", "called_out")
        else:
            a["red_flag_at"] = a["red_flag_at"] or now
            note("red_flag", now, "system",
                 f"no check-in {steps[step]['after_s'] // 60} minutes after the call-out",
                 "called_out")
        if step + 1 < len(steps):
            due = max(now, started + timedelta(seconds=steps[step + 1]["after_s"]))
        else:
            due = now + timedelta(seconds=int(chain["repeat_s"]))
        schedule(escalation.ESCALATION, step + 1, token, due)

    note("receive", received, f"device:{cid}",
         f"routed: {team.route_reason} to {team.code}", "received")
    call(0, c)  # the call-out (escalation.start_calls), then the escalation chain
    a["escalation_token"] = _token()
    schedule(escalation.ESCALATION, 0, a["escalation_token"],
             c + timedelta(seconds=steps[0]["after_s"]))
    schedule(escalation.HANDOVER, None, None, handover_due)  # services._schedule_handover
    while True:  # fire_due: the earliest due first, in the order they were scheduled
        due = [d for d in deadlines if d["fired_at"] is None and d["due_at"] < anchor]
        if not due:
            break
        d = min(due, key=lambda d: d["due_at"])
        d["fired_at"] = now = d["due_at"]
        if d["kind"] == escalation.CALL_STEP:
            call(d["step"], now)
        else:
            escalate(d["step"], d["token"], now)
    return AlarmRows(a, log, deadlines)


# -- checked against the product ---------------------------------------------------------------


def reference_indices(n: int) -> list[int]:
    """A dozen alarms across the plan's times and all six (area, provider) placements."""
    k = min(REFERENCE_ALARMS, n)
    picked: list[int] = []
    for j in range(k):
        base = j * n // k
        i = min(n - 1, base - base % 6 + j % 6)
        if i not in picked:
            picked.append(i)
    return picked


def make_through_product(url: str, plan: Plan, indices: list[int]) -> None:
    """Alarms `indices` as the product makes them: the press stored as the gateway stores
    it, applied by process_pending at its call-out time, every step fired by fire_due at
    its due time (a FakeClock), up to the anchor."""
    from sqlalchemy import func, select, update

    from core.clock import FakeClock
    from core.db import Database
    from core.inbox import Incoming, append_events
    from devices import scaip
    from dispatch import services
    from dispatch.models import Deadline, OutboxMessage

    r = rules()
    anchor = plan.anchor_at
    todo = sorted(indices, key=plan.callout)
    db = Database(url)
    clock = FakeClock(plan.callout(todo[0]))
    pending = (Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))
    try:
        while True:
            next_due = db.transaction(lambda s: s.execute(
                select(func.min(Deadline.due_at)).where(*pending)).scalar())
            next_call = plan.callout(todo[0]) if todo else None
            if next_call is not None and (next_due is None or next_call <= next_due):
                i = todo.pop(0)
                frame = (f"<mrq><ref>B{i}</ref><cid>{plan.cid(i)}</cid><dty>0003</dty></mrq>"
                         .encode())
                item = Incoming(scaip.decode(frame), frame, next_call - RECEIVE_LEAD)
                db.transaction(lambda s, item=item: append_events(s, [item]))  # type: ignore[misc]
                clock.set(next_call)
                db.transaction(lambda s: services.process_pending(s, clock.now(), r,
                                                                  budget_s=60.0))
            elif next_due is not None and next_due < anchor:
                clock.set(next_due)
                db.transaction(lambda s: services.fire_due(s, clock.now(), r))
            else:
                break
        # Their messages went out long ago, as the generated alarms' did.
        db.transaction(lambda s: s.execute(update(OutboxMessage).where(
            OutboxMessage.sent_at.is_(None)).values(sent_at=OutboxMessage.created_at)))
    finally:
        db.close()


def _normal(rows: AlarmRows) -> dict[str, Any]:
    """What must be equal: every column, ids aside; tokens by the role they play."""
    a = rows.alarm
    roles = {a["call_token"]: "<call_token>", a["escalation_token"]: "<escalation_token>",
             None: None}
    for token in [a["call_token"], a["escalation_token"]] + [d["token"] for d in rows.deadlines]:
        if token is not None and not re.fullmatch(r"[0-9a-f]{32}", token):
            raise AssertionError(f"token {token!r} is not 32 hex digits")
    alarm = {k: (roles[v] if k in ("call_token", "escalation_token") else v)
             for k, v in a.items() if k not in ("id", "source_event_id")}
    log = [tuple(e[k] for k in ("action", "from_state", "to_state", "at", "actor", "note"))
           for e in rows.log]
    deadlines = sorted(
        (d["kind"], d["step"], d["due_at"], d["fired_at"], d["cancelled_at"],
         roles.get(d["token"], "<an earlier token>")) for d in rows.deadlines)
    return {"alarm": alarm, "log": log, "deadlines": deadlines}


def product_rows(session: Any, cid: str) -> AlarmRows:
    from sqlalchemy import select

    from dispatch.models import Alarm, AlarmLogEntry, Deadline

    def columns(row: Any) -> dict[str, Any]:
        return {c.key: getattr(row, c.key) for c in row.__table__.columns}

    alarm = session.execute(select(Alarm).where(Alarm.cid == cid)).scalar_one()
    log = session.execute(select(AlarmLogEntry).where(AlarmLogEntry.alarm_id == alarm.id)
                          .order_by(AlarmLogEntry.id)).scalars()
    deadlines = session.execute(select(Deadline).where(Deadline.alarm_id == alarm.id)
                                .order_by(Deadline.id)).scalars()
    return AlarmRows(columns(alarm), [columns(e) for e in log], [columns(d) for d in deadlines])


def compare(product: AlarmRows, generated: AlarmRows) -> list[str]:
    """The differences, as lines; none when the generator writes what the product does."""
    p, g = _normal(product), _normal(generated)
    out: list[str] = []
    missing = set(p["alarm"]) ^ set(g["alarm"])
    if missing:
        out.append(f"alarms columns differ: {sorted(missing)} (teach bench/timers.py "
                   "the new columns)")
    for key in sorted(set(p["alarm"]) & set(g["alarm"])):
        if p["alarm"][key] != g["alarm"][key]:
            out.append(f"alarm.{key}: product {p['alarm'][key]!r}, bench {g['alarm'][key]!r}")
    for name in ("log", "deadlines"):
        if p[name] != g[name]:
            out.append(f"{name}: product")
            out.extend(f"    {row}" for row in p[name])
            out.append("  bench")
            out.extend(f"    {row}" for row in g[name])
    return out


# -- the prefill (a process of its own) -------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A run as asked for; its Plan (the window's start) is made by the prefill."""

    backend: str
    scenario: str
    url: str
    n: int
    spread_min: float
    duration_s: float
    drain_s: float
    baseline_s: float
    lead_s: float | None  # --lead; None: from the prefill's own calibration

    def plan(self, anchor: float) -> Plan:
        return plan_run(self.backend, self.scenario, self.url, self.n, anchor,
                        self.spread_min, self.duration_s, self.drain_s)


@dataclass
class Prefilled:
    plan: Plan
    seconds: float
    registry_s: float
    calibration: str
    reference_s: float
    rows_s: float
    checked: int
    rows: dict[str, int]
    pending: dict[str, int]


def _insert(c: Any, chunk: list[AlarmRows]) -> None:
    from sqlalchemy import insert

    from dispatch.models import Alarm, AlarmLogEntry, Deadline

    c.execute(insert(Alarm), [r.alarm for r in chunk])
    many = _copy if c.dialect.name == "postgresql" else _executemany
    many(c, AlarmLogEntry.__table__, [e for r in chunk for e in r.log])
    many(c, Deadline.__table__, [d for r in chunk for d in r.deadlines])


def _executemany(c: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    c.execute(insert(table), rows)


def _copy(c: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY, three times as fast here as executemany; each value converted
    by its column type's own bind step where it has one (UTCDateTime: naive UTC)."""
    if not rows:
        return
    columns = [table.c[key] for key in rows[0]]
    convert = [getattr(col.type, "process_bind_param", None) for col in columns]
    cursor = c.connection.driver_connection.cursor()
    names = ", ".join(col.name for col in columns)
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(f(v, c.dialect) if f and v is not None else v
                                 for f, v in zip(convert, row.values(), strict=True)))


def _generator(engine: Any, plan: Plan) -> Callable[[int, int], AlarmRows]:
    """generate() for this plan: alarm i with id `alarm_id`, its team by its placement."""
    from sqlalchemy.orm import Session

    from dispatch.routing import next_shift_change

    with Session(engine) as s:
        teams = route_teams(s, plan)
    timers, shifts = _timers(), _config().shifts
    handover_due = next_shift_change(plan.callout(0) - RECEIVE_LEAD, shifts)
    if next_shift_change(plan.callout(plan.n - 1) - RECEIVE_LEAD, shifts) != handover_due:
        raise RuntimeError("the alarms straddle a shift change (not modelled)")

    def make(i: int, alarm_id: int) -> AlarmRows:
        return generate(plan, i, alarm_id, teams[AREAS[i % 2], DAY_PROVIDERS[i % 3]],
                        handover_due, timers)
    return make


def _anchor(spec: Spec, engine: Any, started: float, say: Say) -> tuple[float, str]:
    """When the window starts: --lead after the prefill started, or as long from now as
    the rest of the prefill will take, timed on a chunk inserted and rolled back."""
    if spec.lead_s is not None:
        return round(started + spec.lead_s), f"--lead {spec.lead_s:.0f} s"
    sample = min(spec.n, 2_000)
    trial = spec.plan(time.time() + 600)
    t0 = time.perf_counter()
    make = _generator(engine, trial)
    with engine.connect() as c, c.begin() as tx:
        _insert(c, [make(i, 10_000_000 + i) for i in range(sample)])
        tx.rollback()
    per_alarm = (time.perf_counter() - t0) / sample
    # The rows (twice the trial's pace: the indexes grow, the machine is shared), the
    # database's upkeep after them (VACUUM ANALYZE, a checkpoint), the alarms made
    # through the product, the service's start and its idle baseline.
    rest = per_alarm * spec.n * 2 + 30 + spec.baseline_s + 5
    say(f"    calibration: {1000 * per_alarm:.2f} ms per alarm; the window starts in "
        f"{rest:.0f} s")
    return round(time.time() + rest), f"{1000 * per_alarm:.2f} ms per alarm measured"


def prefill(spec: Spec, say: Say) -> Prefilled:
    from sqlalchemy import create_engine, event, func, select, text
    from sqlalchemy.orm import Session

    from dispatch.models import Deadline
    from trygg.migrations import upgrade

    started, t0 = time.time(), time.perf_counter()
    engine = create_engine(spec.url)
    if spec.backend == "sqlite":
        # Only while filling: the service opens the file with its own pragmas (WAL, FULL).
        event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA synchronous=OFF"))
    try:
        upgrade(engine)
        with Session(engine) as s:
            seed_registry(s, spec.n)
            s.commit()
        registry_s = time.perf_counter() - t0
        say(f"    registry: {spec.n:,} customers, sites and units in {registry_s:.0f} s")
        anchor, calibration = _anchor(spec, engine, started, say)
        plan = spec.plan(anchor)
        make = _generator(engine, plan)

        t1 = time.perf_counter()
        refs = reference_indices(plan.n)
        make_through_product(plan.url, plan, refs)
        with Session(engine) as s:
            made = {i: product_rows(s, plan.cid(i)) for i in refs}
        problems: list[str] = []
        for i, rows in made.items():
            mine = make(i, rows.alarm["id"])
            problems.extend(f"  alarm {plan.cid(i)}: {line}" for line in compare(rows, mine))
        if problems:
            raise RuntimeError("the generated rows differ from what the product writes:\n"
                               + "\n".join(problems))
        reference_s = time.perf_counter() - t1
        say(f"    {len(refs)} alarms made through the product (process_pending, fire_due "
            f"on a FakeClock up to the window), and the generator gives exactly their rows")

        t2 = time.perf_counter()
        with Session(engine) as s:
            next_id = int(s.execute(text("SELECT max(id) FROM alarms")).scalar() or 0) + 1
        others = [i for i in range(plan.n) if i not in made]
        for a in range(0, len(others), CHUNK):
            with engine.begin() as c:
                _insert(c, [make(i, next_id + a + k)
                            for k, i in enumerate(others[a:a + CHUNK])])
            done = min(len(others), a + CHUNK)
            if done % (10 * CHUNK) == 0 or done == len(others):
                say(f"    generated {done:,} / {len(others):,} alarms, "
                    f"{time.perf_counter() - t2:.0f} s")
        with Session(engine) as s:  # the insert path checked too: two read back
            for k in (0, len(others) - 1) if others else ():
                rows = product_rows(s, plan.cid(others[k]))
                diff = compare(rows, make(others[k], rows.alarm["id"]))
                if diff:
                    raise RuntimeError("a generated alarm reads back differently:\n"
                                       + "\n".join(diff))
        if plan.backend == "postgresql":
            with engine.begin() as c:  # the ids given explicitly: the sequences follow
                for table in ("alarms", "customers", "sites"):
                    c.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"(SELECT max(id) FROM {table}))"))
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                # As autovacuum would long since have done to tables this old.
                c.execute(text("VACUUM ANALYZE"))
        else:
            with engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        rows_s = time.perf_counter() - t2
        with Session(engine) as s:
            counts = {t: int(s.execute(text(f"SELECT count(*) FROM {t}")).scalar() or 0)
                      for t in ("alarms", "alarm_log", "deadlines")}
            pending = dict(s.execute(select(Deadline.kind, func.count()).where(
                Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))
                .group_by(Deadline.kind)).all())
    finally:
        engine.dispose()
    return Prefilled(plan, time.perf_counter() - t0, registry_s, calibration, reference_s,
                     rows_s, len(made), counts, pending)


def log_to(path: Path) -> None:
    """The product's logs as `trygg run` writes them (JSON, info), to a file of the run's:
    each step fired logs a warning, and that costs what it costs in the service too."""
    from core.logs import configure_logging

    stream = path.open("a", encoding="utf-8")
    with contextlib.redirect_stderr(stream):
        configure_logging("info")  # binds sys.stderr, now the file


def _child(fn: Callable[..., Any], args: tuple[Any, ...], log_path: Path,
           conn: Connection) -> None:
    try:
        log_to(log_path)
        conn.send(("ok", fn(*args)))
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def in_process(name: str, fn: Callable[..., Any], *args: Any, log_path: Path) -> Any:
    """fn(*args) in a fresh process of its own (spawn), its logs to `log_path`: the
    prefill's memory never counts as the service's, nor one run's as the next's."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, log_path, child), name=name)
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "failed", f"the process died (exit {proc.exitcode})"
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{name} failed: {value}")
    return value


# -- the measured service ---------------------------------------------------------------------


@dataclass
class Sweep:
    started: float
    committed: float
    steps: int


@dataclass
class Snap:
    """CPU and memory of this process (and PostgreSQL's backends serving it) at a moment."""

    at: float
    cpu_s: float
    threads: dict[str, float]
    rss_kb: int
    hwm_kb: int
    pg_ticks: dict[int, int]
    machine_busy: int


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _thread_cpu(writer: int | None) -> dict[str, float]:
    """CPU seconds by thread: the writer (by its native id: Python 3.11 does not name OS
    threads), the event loop, the rest (reads, checkpoints)."""
    out: dict[str, float] = {"writer": 0.0, "event loop": 0.0, "other threads": 0.0}
    me = os.getpid()
    for tid in os.listdir("/proc/self/task"):
        ticks = _ticks(f"/proc/self/task/{tid}/stat")
        if ticks is not None:
            name = ("writer" if int(tid) == writer else
                    "event loop" if int(tid) == me else "other threads")
            out[name] += ticks / CLK_TCK
    return out


class Backends:
    """The CPU of PostgreSQL's backends serving the measured service (by application_name)."""

    def __init__(self, url: str | None) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url) if url else None

    def ticks(self) -> dict[int, int]:
        if self.engine is None:
            return {}
        from sqlalchemy import text

        with self.engine.connect() as c:
            pids = c.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name "
                                  "= :name"), {"name": APP_NAME}).scalars().all()
        found = {pid: _ticks(f"/proc/{pid}/stat") for pid in pids}
        return {pid: t for pid, t in found.items() if t is not None}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def snap(backends: Backends, writer: int | None) -> Snap:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Snap(time.time(), usage.ru_utime + usage.ru_stime, _thread_cpu(writer),
                _status_kb("VmRSS"), _status_kb("VmHWM"), backends.ticks(), _machine()[0])


@dataclass
class Measured:
    baseline: tuple[Snap, Snap]
    window: tuple[Snap, Snap]
    end: Snap
    sweeps: list[Sweep]
    profile: str = ""


def _make_dispatcher(db: Any, r: Any, sweeps: list[Sweep], args: argparse.Namespace) -> Any:
    from core.clock import SystemClock
    from dispatch.live import LiveFeed
    from dispatch.services import Outcome
    from dispatch.worker import Dispatcher

    class TimedDispatcher(Dispatcher):
        """The product's dispatcher, noting when each sweep that fired something began
        and when its transaction had committed."""

        async def fire_due(self) -> Outcome:
            started = time.time()
            out = await super().fire_due()
            f = out.fired
            steps = (f.calls + f.no_answer + f.reminders + f.coordinator + f.red_flags
                     + f.handovers + f.stale + getattr(f, "failed", 0))
            if steps:
                sweeps.append(Sweep(started, time.time(), steps))
            return out

    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        """The broker took it (no MQTT here: the outbox's own work is what counts)."""

    return TimedDispatcher(db, SystemClock(), r, LiveFeed(), publish=publish)


class Profiler:
    """cProfile of the writer thread's transactions and time per SQL statement, switched
    on for the window only (`--profile`)."""

    def __init__(self) -> None:
        self.on = False
        self.profile = cProfile.Profile()
        self.statements: dict[str, list[float]] = {}
        self._started = threading.local()

    def attach(self, db: Any) -> None:
        from sqlalchemy import event

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self._started.at = time.perf_counter()

        def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                  executemany: bool) -> None:
            if not self.on:
                return
            took = time.perf_counter() - self._started.at
            key = re.sub(r"\s+", " ", statement)[:150]
            entry = self.statements.setdefault(key, [0, 0.0, 0])
            entry[0] += 1
            entry[1] += took
            entry[2] += len(params) if executemany and params else 1

        event.listen(db.write_engine, "before_cursor_execute", before)
        event.listen(db.write_engine, "after_cursor_execute", after)
        original = db.transaction

        def transaction(fn: Callable[[Any], Any]) -> Any:
            if not self.on:
                return original(fn)
            self.profile.enable()
            try:
                return original(fn)
            finally:
                self.profile.disable()

        db._writer._run = transaction  # the writer thread's entry: profiled in place

    def report(self, window_s: float) -> str:
        out = io.StringIO()
        out.write("  writer thread, top functions by own time (cProfile, window only):\n")
        stats = pstats.Stats(self.profile, stream=out)
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(30)
        out.write("  SQL statements on the writer, by total time (statements, rows, total "
                  "s, share of the window):\n")
        for key, (count, took, rows) in sorted(self.statements.items(),
                                               key=lambda kv: -kv[1][1])[:14]:
            out.write(f"    {count:>8,} {rows:>9,} {took:7.2f} s {100 * took / window_s:5.1f} %"
                      f"  {key}\n")
        return out.getvalue()


def serve(plan: Plan, args: argparse.Namespace) -> Measured:
    """The measured service (its own process), with the changes asked for applied."""
    if args.fire_batch is not None:
        from dispatch import services

        services.FIRE_BATCH = args.fire_batch
    return asyncio.run(_measure(plan, args))


async def _measure(plan: Plan, args: argparse.Namespace) -> Measured:
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url

    from core.db import Database
    from dispatch.models import Deadline, OutboxMessage

    url = plan.url
    pg = plan.backend == "postgresql"
    if pg:
        url = make_url(url).update_query_dict({"application_name": APP_NAME}).render_as_string(
            hide_password=False)
    db = Database(url)
    backends = Backends(plan.url if pg else None)
    profiler = Profiler() if args.profile else None
    if profiler is not None:
        profiler.attach(db)
    writer = db._writer._thread.native_id
    sweeps: list[Sweep] = []
    dispatcher = _make_dispatcher(db, rules(), sweeps, args)
    anchor, end = plan.anchor, plan.anchor + plan.duration_s
    end_at = datetime.fromtimestamp(end, UTC)

    async def until(t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))

    async def waiting() -> int:
        """Steps due in the window not fired yet, and their messages not sent yet."""
        def q(s: Any) -> int:
            due = s.execute(select(func.count()).select_from(Deadline).where(
                Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None),
                Deadline.due_at < end_at)).scalar()
            last = s.execute(select(func.max(Deadline.fired_at)).where(
                Deadline.due_at >= plan.anchor_at, Deadline.due_at < end_at)).scalar()
            unsent = s.execute(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None),
                OutboxMessage.created_at <= (last or end_at))).scalar()
            return int(due or 0) + int(unsent or 0)
        result: int = await db.read(q)
        return result

    tasks = [asyncio.create_task(dispatcher.run_timers(args.sweep_s), name="timers"),
             asyncio.create_task(dispatcher.run_outbox(), name="outbox")]
    if not pg:
        tasks.append(asyncio.create_task(db.run_checkpoints(), name="checkpoints"))
    try:
        await until(anchor - args.baseline)
        b0 = snap(backends, writer)
        await until(anchor)
        w0 = snap(backends, writer)
        if profiler is not None:
            profiler.on = True
        await until(end)
        w1 = snap(backends, writer)
        if profiler is not None:
            profiler.on = False
        while time.time() < end + args.drain:
            if not await waiting():
                break
            await asyncio.sleep(0.5)
        last = snap(backends, writer)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise RuntimeError(f"the {task.get_name()} loop died: {task.exception()!r}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        db.close()
        backends.close()
    report = profiler.report(plan.duration_s) if profiler is not None else ""
    return Measured((b0, w0), (w0, w1), last, sweeps, report)


# -- the figures ------------------------------------------------------------------------------


@dataclass
class Lateness:
    due: int = 0
    fired: int = 0
    fired_s: list[float] = field(default_factory=list)
    committed_s: list[float] = field(default_factory=list)
    published_s: list[float] = field(default_factory=list)
    messages: int = 0  # of the fired, those that send a message
    last_committed: float = 0.0  # epoch seconds, of the last of them
    last_published: float = 0.0

    @property
    def p99(self) -> float:
        v = sorted(self.committed_s)
        # One not fired at all is as late as it gets.
        return float("inf") if self.fired < self.due else pct(v, 99) if v else float("nan")


GROUPS = ("call steps", "escalation steps", "handovers", "all")


@dataclass
class Run:
    plan: Plan
    prefilled: Prefilled
    measured: Measured
    late: dict[str, Lateness]
    by_action: dict[str, int]
    db_bytes: int
    pending_after: int

    @property
    def ok(self) -> bool:
        return all(g.p99 < TARGET_P99_S for g in self.late.values() if g.due)


def figures(plan: Plan, prefilled: Prefilled, m: Measured) -> Run:
    from sqlalchemy import create_engine, func, select

    from dispatch import escalation
    from dispatch.models import Alarm, Deadline, OutboxMessage

    start, end = plan.anchor_at, plan.anchor_at + timedelta(seconds=plan.duration_s)
    engine = create_engine(plan.url)
    try:
        with engine.connect() as c:
            rows = c.execute(select(Deadline.alarm_id, Deadline.kind, Deadline.step,
                                    Deadline.due_at, Deadline.fired_at, Alarm.chain,
                                    Alarm.call_order)
                             .join(Alarm, Alarm.id == Deadline.alarm_id)
                             .where(Deadline.due_at >= start, Deadline.due_at < end,
                                    Deadline.cancelled_at.is_(None))).all()
            sent: dict[tuple[int, datetime, str], datetime | None] = {}
            for topic, payload, created, sent_at in c.execute(
                    select(OutboxMessage.topic, OutboxMessage.payload,
                           OutboxMessage.created_at, OutboxMessage.sent_at)
                    .where(OutboxMessage.created_at >= start)):
                kind = "call" if topic.endswith("/callout") else "escalation"
                sent[json.loads(payload)["alarm_id"], created, kind] = sent_at
            pending_after = int(c.execute(select(func.count()).select_from(Deadline).where(
                Deadline.fired_at.is_(None), Deadline.cancelled_at.is_(None))).scalar() or 0)
    finally:
        engine.dispose()
    starts = [s.started for s in m.sweeps]
    late = {g: Lateness() for g in GROUPS}
    by_action: dict[str, int] = {}
    for alarm_id, kind, step, due, fired, chain, call_order in rows:
        group = {escalation.CALL_STEP: "call steps", escalation.HANDOVER: "handovers"}.get(
            kind, "escalation steps")
        action = _action(kind, step or 0, chain or {}, call_order or [])
        by_action[action] = by_action.get(action, 0) + (1 if fired else 0)
        for g in (late[group], late["all"]):
            g.due += 1
            if fired is None:
                continue
            g.fired += 1
            g.fired_s.append((fired - due).total_seconds())
            k = bisect.bisect_right(starts, fired.timestamp()) - 1
            if k >= 0:
                g.committed_s.append(m.sweeps[k].committed - due.timestamp())
                g.last_committed = max(g.last_committed, m.sweeps[k].committed)
            message = sent.get((alarm_id, fired, "call" if group == "call steps"
                                else "escalation"), "none")
            if message != "none":
                g.messages += 1
                if message is not None:
                    sent_ts = message.timestamp()  # type: ignore[union-attr]
                    g.published_s.append(sent_ts - due.timestamp())
                    g.last_published = max(g.last_published, sent_ts)
    return Run(plan, prefilled, m, late, by_action, db_size(plan), pending_after)


def _action(kind: str, step: int, chain: dict[str, Any], call_order: list[Any]) -> str:
    """What a step does: a call, the no-answer flag (the step past the chain's last
    call), a handover, or the escalation chain's action at that step."""
    from dispatch import escalation

    if kind == escalation.CALL_STEP:
        calls = max(len(call_order), 1) * int(chain.get("rounds", 2))
        return "no_answer" if step >= calls else "call"
    if kind == escalation.HANDOVER:
        return "handover"
    steps = chain.get("steps", [])
    return str(steps[step]["action"]) if step < len(steps) else "remind_team"


def db_size(plan: Plan) -> int:
    if plan.backend == "sqlite":
        path = Path(plan.url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    from sqlalchemy import create_engine, text

    engine = create_engine(plan.url)
    try:
        with engine.connect() as c:
            return int(c.execute(text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
                "current_schema() AND c.relkind IN ('r', 'm')")).scalar() or 0)
    finally:
        engine.dispose()


# -- printing ---------------------------------------------------------------------------------


def _s(values: list[float]) -> str:
    v = sorted(values)
    if not v:
        return "-"
    return f"{pct(v, 50):.2f} / {pct(v, 99):.2f} / {v[-1]:.2f} s"


def _cpu(a: Snap, b: Snap) -> float:
    return 100 * (b.cpu_s - a.cpu_s) / max(b.at - a.at, 1e-9)


def _pg_cpu(a: Snap, b: Snap) -> float:
    ticks = sum(t - a.pg_ticks.get(pid, t) for pid, t in b.pg_ticks.items())
    return 100 * ticks / CLK_TCK / max(b.at - a.at, 1e-9)


def _others(a: Snap, b: Snap, ours: float) -> float:
    machine = 100 * (b.machine_busy - a.machine_busy) / CLK_TCK / max(b.at - a.at, 1e-9)
    return max(0.0, machine - ours)


def cpu_figures(r: Run) -> dict[str, float]:
    (b0, b1), (w0, w1) = r.measured.baseline, r.measured.window
    idle, busy = _cpu(b0, b1), _cpu(w0, w1)
    pg = _pg_cpu(w0, w1) if r.plan.backend == "postgresql" else 0.0
    steps = sum(s.steps for s in r.measured.sweeps if w0.at <= s.started < w1.at)
    return {"window": busy, "idle": idle, "sweep": busy - idle,
            "ms_per_step": 10 * (busy - idle) * (w1.at - w0.at) / steps if steps else 0.0,
            "pg": pg, "pg_idle": _pg_cpu(b0, b1) if r.plan.backend == "postgresql" else 0.0,
            "others": _others(w0, w1, busy + pg)}


def print_run(r: Run) -> None:
    p, m, pre = r.plan, r.measured, r.prefilled
    say(f"  prefill {pre.seconds:.0f} s (registry {pre.registry_s:.0f} s, "
        f"{pre.calibration}, {pre.checked} "
        f"alarms through the product and checked {pre.reference_s:.0f} s, bulk rows "
        f"{pre.rows_s:.0f} s): " + ", ".join(f"{t} {n:,}" for t, n in pre.rows.items())
        + "; pending deadlines "
        + ", ".join(f"{k} {n:,}" for k, n in sorted(pre.pending.items())))
    w, a, ends = m.window, r.late["all"], p.anchor + p.duration_s
    say(f"  window {p.duration_s:.0f} s from {p.anchor_at:%H:%M:%S}Z; "
        + (f"the last step due in it committed {a.last_committed - ends:+.1f} s after its "
           f"end, the last message sent {a.last_published - ends:+.1f} s"
           if a.fired == a.due and len(a.published_s) == a.messages else
           f"{a.due - a.fired:,} steps due in it unfired and "
           f"{a.messages - len(a.published_s):,} messages unsent after {p.duration_s:.0f} s "
           f"+ the drain"))
    say("  fired (due in the window): " + ", ".join(
        f"{k} {n:,}" for k, n in sorted(r.by_action.items())))
    say("  lateness, due -> ... : p50 / p99 / max")
    say(f"    {'':17} {'due':>7} {'fired':>7}   {'fired_at (recorded)':26} "
        f"{'committed':26} {'published (to the team)':26}")
    for name, g in r.late.items():
        if not g.due:
            continue
        say(f"    {name:17} {g.due:>7,} {g.fired:>7,}   {_s(g.fired_s):26} "
            f"{_s(g.committed_s):26} {_s(g.published_s):26}"
            + (f" ({g.messages - len(g.published_s):,} unsent)"
               if g.messages > len(g.published_s) else ""))
    if m.sweeps:
        in_window = [s for s in m.sweeps if w[0].at <= s.started < w[1].at]
        took = [s.committed - s.started for s in in_window]
        say(f"  sweeps that fired steps in the window: {len(in_window):,}, "
            f"{sum(s.steps for s in in_window):,} steps, {_s(took)} per transaction "
            f"(p50 / p99 / max)")
    cpu = cpu_figures(r)
    threads = {k: 100 * (w[1].threads[k] - w[0].threads.get(k, 0.0)) / (w[1].at - w[0].at)
               for k in w[1].threads}
    say(f"  CPU, % of one core: the process {cpu['window']:.0f} % in the window, "
        f"{cpu['idle']:.1f} % idle before it -> the sweep costs {cpu['sweep']:.0f} % "
        f"({cpu['sweep'] / 100:.2f} CPU-seconds per second of wall time, "
        f"{cpu['ms_per_step']:.1f} ms per step fired); by thread: "
        + ", ".join(f"{k} {v:.0f} %" for k, v in threads.items()))
    if p.backend == "postgresql":
        say(f"    PostgreSQL's backends serving it: {cpu['pg']:.0f} % in the window "
            f"({cpu['pg_idle']:.1f} % idle)")
    say(f"    the rest of this machine: {cpu['others']:.0f} %"
        + ("  NOTE: a busy machine, these figures are worse than on a quiet one"
           if cpu["others"] > 50 else ""))
    b0, end = m.baseline[0], m.end
    say(f"  memory, RSS: {b0.rss_kb / 1024:.0f} MB before the window (service idle), "
        f"{w[1].rss_kb / 1024:.0f} MB at its end, peak {end.hwm_kb / 1024:.0f} MB")
    say(f"  database: {r.db_bytes / 1e6:,.0f} MB; deadlines pending after the run "
        f"{r.pending_after:,}")
    if m.profile:
        say(m.profile)


def print_summary(runs: list[Run]) -> None:
    rows: list[list[str]] = [["figure", *[f"{r.plan.backend} {r.plan.scenario}" for r in runs],
                              "target"]]

    def row(name: str, values: list[str], target: str = "") -> None:
        rows.append([name, *values, target])

    def p99(g: Lateness) -> str:
        v = sorted(g.committed_s)
        if not g.due:
            return "-"
        verdict = "PASS" if g.p99 < TARGET_P99_S else "FAIL"
        missing = f", {g.due - g.fired:,} unfired" if g.fired < g.due else ""
        return f"{pct(v, 99):.2f} s {verdict}{missing}" if v else f"- {verdict}{missing}"

    row("alarms / steps due in the window",
        [f"{r.plan.n:,} / {r.late['all'].due:,}" for r in runs])
    row("call steps: p99 lateness (committed)", [p99(r.late["call steps"]) for r in runs],
        "< 1 s")
    row("escalation steps: p99 lateness (committed)",
        [p99(r.late["escalation steps"]) for r in runs], "< 1 s")
    if any(r.late["handovers"].due for r in runs):
        row("handovers: p99 lateness", [p99(r.late["handovers"]) for r in runs], "< 1 s")
    row("all steps: p50 / max lateness (committed)",
        [(lambda v: f"{pct(v, 50):.2f} / {v[-1]:.2f} s" if v else "-")(
            sorted(r.late["all"].committed_s)) for r in runs])
    row("all steps: p99 to the team (published)",
        [(lambda v: f"{pct(v, 99):.2f} s" if v else "-")(sorted(r.late["all"].published_s))
         for r in runs])
    row("sweep CPU per second of wall time", [
        f"{cpu_figures(r)['sweep'] / 100:.2f} s (idle {cpu_figures(r)['idle'] / 100:.3f})"
        for r in runs])
    row("CPU per step fired", [f"{cpu_figures(r)['ms_per_step']:.1f} ms" for r in runs])
    row("PostgreSQL backends' CPU per second",
        [f"{cpu_figures(r)['pg'] / 100:.2f} s" if r.plan.backend == "postgresql" else "-"
         for r in runs])
    row("RSS before / after / peak", [
        f"{r.measured.baseline[0].rss_kb / 1024:.0f} / {r.measured.window[1].rss_kb / 1024:.0f}"
        f" / {r.measured.end.hwm_kb / 1024:.0f} MB" for r in runs])
    row("database size", [f"{r.db_bytes / 1e6:,.0f} MB" for r in runs])
    row("the rest of the machine (CPU)", [f"{cpu_figures(r)['others']:.0f} %" for r in runs])
    print_table(rows)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/timers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alarms", type=int, default=None,
                   help=f"open alarms (default {N_ALARMS:,}; --quick 10,000)")
    p.add_argument("--scenario", default=None,
                   help=f"comma-separated, of {', '.join(SCENARIOS)} (default steady,burst)")
    p.add_argument("--duration", type=float, default=None,
                   help="measured seconds (default 120; --quick 30)")
    p.add_argument("--spread-min", type=float, default=60.0,
                   help="steady: the call-outs spread over this many minutes before the "
                        "window (default 60)")
    p.add_argument("--baseline", type=float, default=None,
                   help="seconds of the idle service measured before the window "
                        "(default 10; --quick 5)")
    p.add_argument("--drain", type=float, default=60.0,
                   help="after the window, at most this long for the steps due in it and "
                        "their messages (default 60)")
    p.add_argument("--lead", type=float, default=None,
                   help="seconds from the start of a prefill to its window (default: "
                        "timed by the prefill on a trial chunk); the rows are made for "
                        "that moment")
    p.add_argument("--sweep-s", type=float, default=1.0,
                   help="the sweep's interval (TRYGG_TIMER_SWEEP_S, default 1)")
    p.add_argument("--quick", action="store_true",
                   help="10,000 alarms, 30-s windows: a check that it works")
    p.add_argument("--postgres", metavar="URL", default=os.environ.get("TRYGG_TEST_POSTGRES_URL"),
                   help="also on PostgreSQL, each run in a fresh schema dropped afterwards "
                        "(default: TRYGG_TEST_POSTGRES_URL if set)")
    p.add_argument("--skip-sqlite", action="store_true", help="with --postgres: PostgreSQL only")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the writer thread and time each SQL statement in the "
                        "window (slows the sweep: its figures are not the benchmark's)")
    p.add_argument("--fire-batch", type=int, default=None,
                   help="try services.FIRE_BATCH = N (monkeypatched here; default as shipped)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temp directory (SQLite files, the service's logs)")
    args = p.parse_args(argv)
    args.alarms = args.alarms or (10_000 if args.quick else N_ALARMS)
    args.duration = args.duration or (30.0 if args.quick else 120.0)
    args.baseline = args.baseline or (5.0 if args.quick else 10.0)
    args.scenarios = (args.scenario or "steady,burst").split(",")
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}: one of {', '.join(SCENARIOS)}")
    if args.skip_sqlite and not args.postgres:
        p.error("--skip-sqlite without --postgres: nothing to run")
    return args


@contextlib.contextmanager
def _database(backend: str, args: argparse.Namespace, tmp: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    schema = f"trygg_bench_{secrets.token_hex(4)}"
    pg_schema(args.postgres, schema, create=True)
    try:
        yield pg_schema_url(args.postgres, schema)
    finally:
        pg_schema(args.postgres, schema, create=False)


WHAT = {
    "steady": "called out evenly over the {spread:.0f} minutes before the window",
    "burst": "called out within one minute: every second call due within one minute",
    "burst-reminders": "called out within one minute 30 minutes before: every first "
                       "reminder due within one minute",
}


def bench_one(backend: str, scenario: str, args: argparse.Namespace, tmp: Path) -> Run:
    with _database(backend, args, tmp, scenario) as url:
        spec = Spec(backend, scenario, url, args.alarms, args.spread_min, args.duration,
                    args.drain, args.baseline, args.lead)
        spec.plan(time.time() + 600)  # refused at once if the shifts change in the way
        say(f"\n[{backend} · {scenario}] {spec.n:,} open alarms"
            + (f"; schema {url.rsplit('%3D', 1)[-1]} (dropped afterwards)"
               if backend == "postgresql" else ""))
        log_path = tmp / f"{backend}-{scenario}.log"
        prefilled: Prefilled = in_process("bench-timers-prefill", prefill, spec, say,
                                          log_path=log_path)
        plan = prefilled.plan
        say("  " + WHAT[scenario].format(spread=plan.spread_s / 60))
        for note in plan.notes:
            say(f"  NOTE: {note}")
        spare = plan.anchor - args.baseline - time.time()
        if spare < 5:  # the service's process needs a few seconds to start
            raise RuntimeError(f"the prefill ended {5 - spare:.0f} s too late for the idle "
                               f"baseline: give a --lead longer than "
                               f"{prefilled.seconds + 5 + args.baseline:.0f}")
        say(f"  the service starts (timers, outbox, checkpoints) and idles "
            f"{spare + args.baseline:.0f} s, the last {args.baseline:.0f} s measured")
        measured: Measured = in_process("bench-timers-service", serve, plan, args,
                                        log_path=log_path)
        run = figures(plan, prefilled, measured)
        print_run(run)
        return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ([] if args.skip_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres
                                                              else [])
    from dispatch import services

    say(f"Trygg timer benchmark — {machine_line()}")
    say(f"{args.alarms:,} open alarms per run; scenarios {', '.join(args.scenarios)}; "
        f"windows of {args.duration:.0f} s; FIRE_BATCH {args.fire_batch or services.FIRE_BATCH}"
        + (", profiled" if args.profile else ""))
    runs: list[Run] = []
    try:
        with _workdir(args.keep) as tmp:
            for backend, scenario in itertools.product(backends, args.scenarios):
                runs.append(bench_one(backend, scenario, args, tmp))
    except RuntimeError as exc:
        print(f"\nbench/timers: {exc}", file=sys.stderr)
        return 2
    print_summary(runs)
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
