"""The fleet benchmark: `bench/fleet` (one command), see bench/README.md.

A national fleet and a power cut: 252,000 units heartbeating once a minute (4,200
messages/s), and, while they do, 20,000 registered units of one area lose mains within
10 s (SCAIP `<stc>0085</stc>`) and get it back 50 s later (`0086`), with help calls (alarm
presses, some from inside the cut area) throughout. Against the real gateway with
dispatch beside it (bench/gateway.py), on SQLite and, with `--postgres URL`, PostgreSQL.
It prints:

- every message answered: heartbeats, mains lost, mains restored and help calls, sent
  against answered (target: equal);
- help call -> `<mrs>`, p50 / p99 over the run and during the cut (target p99 < 100 ms),
  and help call -> the operators' queue (`/api/stream`);
- the incident: how long from the first mains lost until `GET /api/incidents` shows it
  open for the cut area, its count once every cut unit is in, and how long from the
  last mains restored until it is closed;
- dispatch's inbox backlog over time, and how long it took to apply the cut;
- peak RSS of the gateway and dispatch (target under 1 GB together);
- the rows written, the registry import's time, and every process's CPU (`others`).

Exit status: 0 when it ran (PASS/FAIL is printed per target), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway as gw
from bench import hbload
from bench.heartbeats import (
    LAST_SEEN_FLUSH_S,
    Db,
    _api_check,
    _log_levels,
    _ms,
    _rss_kb,
    print_table,
)
from bench.ingest import (
    PY_SPY_RATE,
    _child_pid,
    _cpu_pct,
    _delta,
    _expect,
    _free_port,
    _print_log_tail,
    _snapshot,
    _start_py_spy,
    _stop,
    _workdir,
    machine_line,
    pct,
    pg_schema,
    pg_schema_url,
    summarize_py_spy,
)

CUT_AREA = "cut"
MAINS_LOST, MAINS_RESTORED = "L", "R"  # the bursts' ref letters
# Help calls "during the cut" are those due from its first mains lost until this long
# after its last (the gateway may still be working through the burst); the same for the
# restoration.
TAIL_S = 5.0
SAMPLE_S = 0.5     # inbox backlog and RSS
POLL_S = 0.2       # GET /api/incidents
P99_TARGET_MS = 100.0
MEMORY_TARGET_MB = 1024.0
QUIET_OTHERS_PCT = 25.0
IDLE_S = 15.0      # after the load: nothing left and nothing changing for this long


# -- the registry --------------------------------------------------------------------------


@dataclass
class Registry:
    units: int
    cut_units: int
    file_mb: float
    write_s: float        # generating the YAML file (the benchmark's own cost)
    load_s: float = 0.0   # dispatch.config.load_config: YAML parse + validation
    import_s: float = 0.0  # dispatch.registry.import_config, one transaction
    created: int = 0


def write_registry(tmp: Path, help_units: int, cut_units: int) -> tuple[Path, Path, Registry]:
    """The municipality file to import (every customer), and the services' own file (the
    same areas, providers and teams, no customers: the registry is in the database)."""
    t = time.perf_counter()
    cut = [str(hbload.HB_CID_BASE + i) for i in range(cut_units)]
    raw = gw.bench_config(gw.bench_cids(help_units), {CUT_AREA: cut})
    full, services = tmp / "fleet-municipality.yaml", tmp / "fleet-services.yaml"
    gw.dump_config(full, raw)
    gw.dump_config(services, {**raw, "customers": []})
    took = time.perf_counter() - t
    return full, services, Registry(help_units + cut_units, cut_units,
                                    full.stat().st_size / 1e6, took)


def import_registry(url: str, config: Path, reg: Registry) -> None:
    """What `trygg import FILE` does (migrate, load_config, import_config in one
    transaction), into the run's fresh database before the services start, timed."""
    from core.db import Database
    from dispatch.config import load_config
    from dispatch.registry import import_config
    from trygg.migrations import upgrade

    db = Database(url)
    try:
        upgrade(db.engine)
        t = time.perf_counter()
        cfg = load_config(config)
        reg.load_s = time.perf_counter() - t
        t = time.perf_counter()
        counts = db.transaction(lambda s: import_config(s, cfg))
        reg.import_s = time.perf_counter() - t
        reg.created = counts.created
    finally:
        db.close()


def help_cids(help_units: int, cut_units: int, in_cut: float) -> list[str]:
    """One registered unit per help call: a share `in_cut` of them inside the cut area
    (spread over it), the rest from the benchmark's units in the shipped areas."""
    others = iter(gw.bench_cids(help_units))
    n_cut = sum(1 for j in range(help_units) if int((j + 1) * in_cut) > int(j * in_cut))
    step = max(cut_units // max(n_cut, 1), 1)
    out: list[str] = []
    k = 0
    for j in range(help_units):
        if int((j + 1) * in_cut) > int(j * in_cut):
            out.append(str(hbload.HB_CID_BASE + (k * step) % cut_units))
            k += 1
        else:
            out.append(next(others))
    return out


# -- the operators' incident list ----------------------------------------------------------


class IncidentWatch(threading.Thread):
    """Polls GET /api/incidents as an operator; notes the cut area's incident over time."""

    def __init__(self, port: int, token: str, area: str) -> None:
        super().__init__(name="bench-incidents", daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/incidents"
        self.token = token
        self.area = area
        self.stop = threading.Event()
        self.samples: list[tuple[float, str, int, int]] = []  # (when, state, count, peak)
        self.first_open_at: float | None = None
        self.closed_at: float | None = None
        self.max_count = 0
        self.peak = 0
        self.incident_ids: set[int] = set()
        self.polls = 0
        self.slowest_poll_s = 0.0
        self.errors: list[str] = []

    def run(self) -> None:
        import httpx

        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"},
                          timeout=10) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    resp = client.get(self.url, params={"scope": "all"})
                    resp.raise_for_status()
                    self._note(time.monotonic(), resp.json()["incidents"])
                except Exception as exc:
                    if len(self.errors) < 5:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                took = time.monotonic() - started
                self.polls += 1
                self.slowest_poll_s = max(self.slowest_poll_s, took)
                self.stop.wait(max(POLL_S - took, 0.0))

    def _note(self, now: float, incidents: list[dict[str, Any]]) -> None:
        mine = [i for i in incidents if i["area"] == self.area and i["kind"] == "mains_lost"]
        if not mine:
            return
        first = min(mine, key=lambda i: i["id"])  # a second one would be a new cut
        self.incident_ids.update(i["id"] for i in mine)
        state, count, peak = first["state"], int(first["count"]), int(first["peak"])
        if state == "open" and self.first_open_at is None:
            self.first_open_at = now
        if state == "closed" and self.closed_at is None:
            self.closed_at = now
        self.max_count = max(self.max_count, count)
        self.peak = max(self.peak, peak)
        if not self.samples or self.samples[-1][1:] != (state, count, peak):
            self.samples.append((now, state, count, peak))

    def peaked(self, units: int) -> float | None:
        """When the incident's peak was first seen at `units` or more: every unit in (its
        count may never show them all at once if restorations began before)."""
        return next((t for t, _, _, peak in self.samples if peak >= units), None)


# -- one run -------------------------------------------------------------------------------


@dataclass
class Run:
    backend: str
    t0: float
    plan: hbload.Plan
    registry: Registry
    senders: list[dict[str, Any]]
    bursts: dict[str, Any]
    receiver: hbload.ReceiverResult
    sse: dict[str, Any]
    incidents: IncidentWatch
    before: dict[str, Any]
    after: dict[str, Any]
    backlog: list[tuple[float, int]]   # (seconds after t0, unprocessed events)
    backlog_after: int
    drained_at: float | None           # when the backlog was first 0 after its peak
    load_ended_at: float               # the receiver's "sent": no new messages after this
    settled: tuple[float, int, int] | None  # the wait after the load: (s, backlog from, to)
    gateway_metrics: dict[str, float]  # the gateway's Prometheus samples over the run
    rss_peak_kb: dict[str, int]
    cpu: dict[str, float]
    cpu_cut: dict[str, float]
    startup_s: float
    api_check: str
    profile: dict[str, str] = field(default_factory=dict)
    log_levels: dict[str, int] = field(default_factory=dict)


def counts(db: Db, since: datetime | None = None) -> dict[str, Any]:
    from sqlalchemy import text

    with db.engine.connect() as c:
        kinds: dict[Any, Any] = dict(c.execute(text(
            "SELECT kind, count(*) FROM device_events GROUP BY kind")).all())
        technical: dict[Any, Any] = dict(c.execute(text(
            "SELECT state, count(*) FROM technical_alarms GROUP BY state")).all())
    out: dict[str, Any] = {
        "events": {str(k): int(n) for k, n in kinds.items()},
        "technical": {str(k): int(n) for k, n in technical.items()},
        "technical_log": int(db.scalar("SELECT count(*) FROM technical_alarm_log")),
        "incidents": int(db.scalar("SELECT count(*) FROM incidents")),
        "links": int(db.scalar("SELECT count(*) FROM device_links")),
        "alarms": int(db.scalar("SELECT count(*) FROM alarms")),
    }
    if since is not None:
        out["links_touched"] = int(db.scalar(
            "SELECT count(*) FROM device_links WHERE last_seen_at >= :since",
            since=since.replace(tzinfo=None)))
    return out


def bench_backend(ctx: Any, backend: str, db_url: str, broker: Any, args: argparse.Namespace,
                  configs: tuple[Path, Path], registry: Registry, tmp: Path,
                  help_from: list[str], mosq_pid: int | None) -> Run:
    full_config, services_config = configs
    reg = Registry(**vars(registry))
    print(f"  registry import (as `trygg import`): {reg.units:,} units ...", flush=True)
    try:
        import_registry(db_url, full_config, reg)
    except Exception as exc:
        raise RuntimeError(f"the registry import failed: {type(exc).__name__}: {exc}") from exc
    print(f"    load_config {reg.load_s:.1f} s (YAML {reg.file_mb:.1f} MB), import_config "
          f"{reg.import_s:.1f} s: {reg.created:,} rows created", flush=True)

    root = f"bench/{secrets.token_hex(4)}"
    cut_units = args.cut_units
    bursts = (
        hbload.Burst(MAINS_LOST, "0085", hbload.HB_CID_BASE, cut_units, args.cut_at,
                     args.cut_spread),
        hbload.Burst(MAINS_RESTORED, "0086", hbload.HB_CID_BASE, cut_units, args.restore_at,
                     args.restore_spread),
    )
    plan = hbload.Plan(broker.host, broker.port, root, args.rate, args.units, args.duration,
                       args.senders, args.help_rate, help_from, bursts, args.answer_window)
    spec = gw.GatewaySpec(mqtt_url=broker.url, root=root, database_url=db_url,
                          config=services_config, http_port=_free_port(),
                          log_path=tmp / f"gateway-{backend}.log", log_level=args.log_level)
    parent, child = ctx.Pipe()
    gproc = ctx.Process(target=gw.run, args=(spec, child), name=f"bench-gateway-{backend}")
    t_start = time.perf_counter()
    gproc.start()
    child.close()
    procs: list[Any] = []
    profilers: dict[str, tuple[subprocess.Popen[bytes] | None, Path, int]] = {}
    db = Db(db_url)
    watch_incidents: IncidentWatch | None = None
    try:
        info = _expect(parent, "ready", 180, f"gateway ({backend})")
        startup_s = time.perf_counter() - t_start
        dpid, dport = info.get("dispatch_pid"), info.get("dispatch_port")
        print(f"  gateway pid {gproc.pid}, dispatch pid {dpid} (API on :{dport}); "
              f"started in {startup_s:.1f} s")
        if args.seed_links:
            took = db.seed_links(args.units, args.interval)
            print(f"  device_links seeded: {args.units:,} units last seen within their "
                  f"{args.interval:g} s interval ({took:.1f} s)")
        token = db.operator_token()

        sse_conn, sse_child = ctx.Pipe()
        sse = ctx.Process(target=hbload.watch_sse, name="bench-sse",
                          args=(f"http://127.0.0.1:{dport}/api/stream", token, sse_child))
        sse.start()
        procs.append(sse)
        sse_errors = _expect(sse_conn, "ready", 30, "the SSE watcher")
        if sse_errors:
            raise RuntimeError(f"the SSE watcher: {sse_errors}")
        rx_conn, rx_child = ctx.Pipe()
        rx = ctx.Process(target=hbload.run_receiver, args=(plan, rx_child, args.drain),
                         name="bench-fleet-receiver")
        rx.start()
        procs.append(rx)
        _expect(rx_conn, "ready", 30, "the receiver")
        senders = []
        for i in range(args.senders):
            sc, sc_child = ctx.Pipe()
            sp = ctx.Process(target=hbload.run_sender, args=(plan, i, sc_child),
                             name=f"bench-fleet-sender{i}")
            sp.start()
            procs.append(sp)
            senders.append((sp, sc))
        bc, bc_child = ctx.Pipe()
        bp = ctx.Process(target=hbload.run_burst_sender, args=(plan, bc_child),
                         name="bench-fleet-bursts")
        bp.start()
        procs.append(bp)
        for _, sc in senders:
            _expect(sc, "ready", 30, "a sender")
        _expect(bc, "ready", 30, "the burst sender")

        before = counts(db)
        wall_start = datetime.now(UTC)
        watch = {"gateway": gproc.pid, "dispatch": dpid, "broker": mosq_pid,
                 "receiver": rx.pid, "bursts": bp.pid, "sse": sse.pid, "bench": os.getpid(),
                 **{f"sender{i}": sp.pid for i, (sp, _) in enumerate(senders)}}
        parent.send("stats")
        metrics0 = _expect(parent, "stats", 30, "gateway stats")["samples"]
        watch_incidents = IncidentWatch(dport, token, CUT_AREA)
        watch_incidents.start()
        t0 = time.monotonic() + 1.0
        for _, sc in senders:
            sc.send(("go", t0))
        bc.send(("go", t0))
        rx_conn.send(("go", t0))
        print(f"  load: {plan.heartbeats:,} heartbeats at {args.rate:g}/s from "
              f"{args.units:,} units ({args.senders} senders), {plan.help_calls} help calls; "
              f"mains lost from {cut_units:,} units at {args.cut_at:g} s (over "
              f"{args.cut_spread:g} s), restored at {args.restore_at:g} s (over "
              f"{args.restore_spread:g} s); {args.duration:g} s ...", flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, pid in (("gateway", gproc.pid), ("dispatch", dpid)):
                out = args.profile / f"fleet-{backend}-{name}.txt"
                profilers[name] = (_start_py_spy(pid, args.duration, out), out, pid)
        while time.monotonic() < t0:
            time.sleep(0.01)
        snap0 = _snapshot(watch)
        cut_from, cut_to = t0 + args.cut_at, t0 + args.cut_at + args.cut_spread + TAIL_S
        snap_cut: list[Any] = []
        backlog: list[tuple[float, int]] = []
        rss_peak: dict[str, int] = {}
        end = t0 + args.duration
        sent_signal = False
        snap1 = None
        next_sample = time.monotonic()

        def sample(now: float) -> None:
            try:
                backlog.append((now - t0, db.backlog()))
            except Exception as exc:  # a locked read must not end the run
                print(f"  (backlog sample failed: {type(exc).__name__})")
            for name, pid in (("gateway", gproc.pid), ("dispatch", dpid)):
                rss, hwm = _rss_kb(pid)
                rss_peak[name] = max(rss_peak.get(name, 0), rss, hwm)

        while True:
            now = time.monotonic()
            if (not snap_cut and now >= cut_from) or (len(snap_cut) == 1 and now >= cut_to):
                snap_cut.append(_snapshot(watch))
            if now >= next_sample:
                next_sample = now + SAMPLE_S
                sample(now)
            if not sent_signal and rx_conn.poll(0):
                _expect(rx_conn, "sent", 1, "the receiver")
                sent_signal = True
                load_ended_at = now
                snap1 = _snapshot(watch)
                print(f"  load sent; inbox backlog now {backlog[-1][1] if backlog else '?'}; "
                      f"draining (up to {args.drain:g} s) ...", flush=True)
            if sent_signal and rx_conn.poll(0):
                break
            if now > end + args.drain + 120:
                raise RuntimeError("the receiver did not finish in time")
            time.sleep(0.05)
        rx_result: hbload.ReceiverResult = _expect(rx_conn, "result", 10, "the receiver")
        sender_results = [_expect(sc, "result", 60, "a sender") for _, sc in senders]
        burst_result = _expect(bc, "result", 60, "the burst sender")
        settled = settle(args.close_wait, backlog, watch_incidents, sample)
        time.sleep(LAST_SEEN_FLUSH_S + 1.0)  # the last batch of last-seen writes
        watch_incidents.stop.set()
        watch_incidents.join(15)
        after = counts(db, since=wall_start)
        backlog_after = db.backlog()
        api_check = _api_check(dport, token, plan, rx_result)
        sample(time.monotonic())
        profile: dict[str, str] = {}
        parent.send("stats")
        stats = _expect(parent, "stats", 30, "gateway stats")
        threads: dict[str, Any] = stats["threads"]
        gateway_metrics = _delta(metrics0, stats["samples"])
        for name, (proc, out, pid) in profilers.items():
            if proc is not None:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.terminate()
            if out.exists():
                profile[name] = summarize_py_spy(out, threads if name == "gateway" else {},
                                                 pid, PY_SPY_RATE, args.duration)
        sse_conn.send("stop")
        sse_result = _expect(sse_conn, "result", 30, "the SSE watcher")
        parent.send("stop")
        _expect(parent, "stopped", 60, f"gateway ({backend}) stop")
        gproc.join(30)
    except Exception:
        _print_log_tail(spec.log_path)
        _print_log_tail(spec.log_path.with_suffix(".dispatch.log"))
        raise
    finally:
        if watch_incidents is not None:
            watch_incidents.stop.set()
        for proc, _, _ in profilers.values():
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for p in procs:
            _stop(p)
        _stop(gproc)
        db.close()
    assert snap1 is not None
    cpu, _ = _cpu_pct(snap0, snap1)
    cpu_cut = _cpu_pct(snap_cut[0], snap_cut[1])[0] if len(snap_cut) == 2 else {}
    # Dispatch has caught up when its inbox is empty again after its peak (the cut's
    # events may reach the gateway, and so the inbox, long after they were sent).
    peak_at = max(backlog, key=lambda sample: sample[1], default=(0.0, 0))
    drained_at = next((t0 + t for t, n in backlog if t > peak_at[0] and n == 0), None)
    return Run(backend, t0, plan, reg, sender_results, burst_result, rx_result, sse_result,
               watch_incidents, before, after, backlog, backlog_after, drained_at,
               load_ended_at, settled, gateway_metrics, rss_peak, cpu, cpu_cut, startup_s,
               api_check, profile, _log_levels(spec.log_path))


def settle(wait_s: float, backlog: list[tuple[float, int]], incidents: IncidentWatch,
           sample: Any) -> tuple[float, int, int] | None:
    """After the load: until dispatch has applied every event and the incident is closed,
    or nothing has changed for IDLE_S with nothing left to apply (events that never reached
    the gateway cannot close it), up to `wait_s`, with a line every 30 s.
    Returns (seconds, backlog at start, at end)."""
    started = time.monotonic()
    sample(started)
    first = backlog[-1][1] if backlog else 0
    said = changed = started
    state = None
    while time.monotonic() - started < wait_s:
        now = time.monotonic()
        empty = bool(backlog) and backlog[-1][1] == 0
        if empty and (incidents.closed_at is not None or now - changed >= IDLE_S):
            break
        if (new := (empty, incidents.samples[-1] if incidents.samples else None)) != state:
            state, changed = new, now
        time.sleep(SAMPLE_S)
        now = time.monotonic()
        sample(now)
        if now - said >= 30:
            said = now
            count = incidents.samples[-1][2] if incidents.samples else "-"
            print(f"    ... {now - started:.0f} s: dispatch {backlog[-1][1]:,} events behind, "
                  f"incident count {count}", flush=True)
    if not backlog:
        return None
    return time.monotonic() - started, first, backlog[-1][1]


# -- figures -------------------------------------------------------------------------------


@dataclass
class HelpCall:
    due: float
    mrs_ms: float | None
    queue_ms: float | None
    in_cut: bool


def help_calls(r: Run, cut_cids: set[str]) -> list[HelpCall]:
    rx = r.receiver
    first: dict[str, list[float]] = {}
    for at, cid, _alarm_id in r.sse.get("seen", []):
        first.setdefault(cid, []).append(at)
    out = []
    for j, due in sorted(rx.help_sent_at.items()):
        answered = rx.help_answered_at.get(j)
        shown = [t for t in first.get(r.plan.help_cid(j), []) if t >= due]
        out.append(HelpCall(due, None if answered is None else (answered - due) * 1000,
                            (min(shown) - due) * 1000 if shown else None,
                            r.plan.help_cid(j) in cut_cids))
    return out


def _window(r: Run, burst: hbload.Burst) -> tuple[float, float]:
    return r.t0 + burst.at_s, r.t0 + burst.at_s + burst.spread_s + TAIL_S


def _values(calls: list[HelpCall], attr: str, window: tuple[float, float] | None = None
            ) -> list[float]:
    return [v for c in calls if (v := getattr(c, attr)) is not None
            and (window is None or window[0] <= c.due < window[1])]


def _p99(values: list[float]) -> float:
    return pct(sorted(values), 99) if values else float("nan")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Figures:
    sent: dict[str, int]
    answered: dict[str, int]
    help: list[HelpCall]
    cut_window: tuple[float, float]
    restore_window: tuple[float, float]
    incident_shown_s: float | None
    incident_full_s: float | None
    incident_closed_s: float | None
    cut_applied_s: float | None
    rss_mb: tuple[float, float]
    reached_gateway: int   # messages the gateway took in (answered at once, stored, refused)
    not_sent: int          # answers the gateway could not hand to its broker connection

    @property
    def all_answered(self) -> bool:
        return all(self.answered[k] == n for k, n in self.sent.items())

    def p99_ok(self, window: tuple[float, float] | None = None) -> bool:
        values = _values(self.help, "mrs_ms", window)
        return bool(values) and _p99(values) < P99_TARGET_MS and all(
            c.mrs_ms is not None for c in self.help
            if window is None or window[0] <= c.due < window[1])

    @property
    def memory_ok(self) -> bool:
        return sum(self.rss_mb) < MEMORY_TARGET_MB


def figures(r: Run) -> Figures:
    rx, b = r.receiver, r.bursts
    lost, restored = r.plan.bursts
    sent = {"heartbeats": sum(s["sent"] for s in r.senders), "help calls": rx.help_sent,
            "mains lost": lost.units, "mains restored": restored.units}
    answered = {"heartbeats": rx.hb_answered, "help calls": len(rx.help_answered_at),
                "mains lost": rx.bursts[MAINS_LOST].answered,
                "mains restored": rx.bursts[MAINS_RESTORED].answered}
    cut_cids = {lost.cid(i) for i in range(lost.units)}
    first_lost = b["first_sent_at"].get(MAINS_LOST)
    last_restored = b["last_sent_at"].get(MAINS_RESTORED)
    inc = r.incidents
    full_at = inc.peaked(lost.units)

    def since(a: float | None, b_: float | None) -> float | None:
        return None if a is None or b_ is None else a - b_

    return Figures(
        sent, answered, help_calls(r, cut_cids), _window(r, lost), _window(r, restored),
        since(inc.first_open_at, first_lost), since(full_at, first_lost),
        since(inc.closed_at, last_restored), since(r.drained_at, first_lost),
        (r.rss_peak_kb.get("gateway", 0) / 1024, r.rss_peak_kb.get("dispatch", 0) / 1024),
        reached_gateway(r.gateway_metrics),
        int(r.gateway_metrics.get("trygg_answers_not_sent_total", 0)))


def reached_gateway(m: dict[str, float]) -> int:
    """Messages the gateway took in, from its own counters: heartbeats, stored events,
    resends and rejected frames."""
    prefixes = ("trygg_heartbeats_total", "trygg_device_events_total",
                "trygg_device_event_duplicates_total", "trygg_frame_rejections_total")
    return int(sum(v for k, v in m.items() if k.startswith(prefixes)))


def _s(value: float | None, unit: str = "s") -> str:
    return "never (within the run and its drain)" if value is None else f"{value:,.1f} {unit}"


def _backlog_line(r: Run, every_s: float = 5.0) -> str:
    """The inbox backlog as the largest sample of each `every_s` seconds."""
    buckets: dict[int, int] = {}
    for t, n in r.backlog:
        k = int(t // every_s)
        buckets[k] = max(buckets.get(k, 0), n)
    return " ".join(f"{k * every_s:g}s:{n:,}" for k, n in sorted(buckets.items()))


def _incident_line(r: Run, every_s: float = 5.0) -> str:
    buckets: dict[int, str] = {}
    for t, state, count, _peak in r.incidents.samples:
        buckets[int((t - r.t0) // every_s)] = f"{count:,}" if state == "open" else "closed"
    return " ".join(f"{k * every_s:g}s:{v}" for k, v in sorted(buckets.items()))


def print_run(r: Run) -> None:
    f = figures(r)
    rx = r.receiver
    print("  messages sent / answered (counted by ref after the drain):")
    for kind, n in f.sent.items():
        extra = ""
        if kind == "heartbeats":
            extra = f"; duplicates {rx.hb_duplicates}, non-zero snu {rx.hb_not_ok}"
        elif kind == "help calls":
            extra = f"; non-zero snu {rx.help_not_ok}"
        else:
            got = rx.bursts[MAINS_LOST if kind == "mains lost" else MAINS_RESTORED]
            extra = f"; duplicates {got.duplicates}, non-zero snu {got.not_ok}"
        print(f"    {kind:15} {n:>9,} / {f.answered[kind]:>9,}{extra}")
    total = sum(f.sent.values())
    print(f"    the gateway took in {f.reached_gateway:,} of the {total:,} messages sent"
          + (f" ({total - f.reached_gateway:,} never reached it: the broker drops what "
             f"overflows a client's queue of 100,000)" if f.reached_gateway < total else "")
          + f"; answers it could not hand to the broker: {f.not_sent:,}")
    lag = max((s["lag_max_s"] for s in r.senders), default=0.0)
    print(f"    senders' worst lateness: heartbeats {1000 * lag:,.0f} ms, bursts "
          f"{1000 * r.bursts['lag_max_s']:,.0f} ms, help calls {1000 * rx.help_lag_max_s:,.0f} "
          f"ms; unacked by the broker {sum(s['unacked'] for s in r.senders)} + "
          f"{r.bursts['unacked']}, refused by paho {sum(s['refused'] for s in r.senders)} + "
          f"{r.bursts['refused']}; unexpected answers {rx.unexpected}, malformed "
          f"{rx.bad_frames} ({rx.strict_checked:,} read strictly)")
    print(f"  latency, scheduled send -> <mrs>: heartbeats {_ms(rx.hb_latency_ms)}")
    print(f"    mains lost {_ms(rx.bursts[MAINS_LOST].latency_ms)}")
    print(f"    mains restored {_ms(rx.bursts[MAINS_RESTORED].latency_ms)}")
    print(f"  the gateway's own figures: {gateway_line(r.gateway_metrics)}")
    in_cut = sum(1 for c in f.help if c.in_cut)
    print(f"  help calls ({len(f.help)}, {in_cut} from units in the cut area):")
    for label, window in (("all", None), ("during the cut", f.cut_window),
                          ("during the restoration", f.restore_window)):
        print(f"    {label:23} -> <mrs> {_ms(_values(f.help, 'mrs_ms', window))}")
        print(f"    {'':23} -> operators' queue {_ms(_values(f.help, 'queue_ms', window))}")
    missing = sum(1 for c in f.help if c.queue_ms is None)
    if missing:
        print(f"    {missing} help calls never appeared on /api/stream")
    print(f"    {r.api_check}")
    inc = r.incidents
    print(f"  incident ({CUT_AREA}, mains_lost), GET /api/incidents every {POLL_S:g} s "
          f"({inc.polls:,} polls, slowest {inc.slowest_poll_s * 1000:,.0f} ms):")
    print(f"    open on the list {_s(f.incident_shown_s)} after the first mains lost was sent")
    print(f"    count {inc.max_count:,} at most (peak {inc.peak:,}; {r.plan.bursts[0].units:,} "
          f"units cut); all in {_s(f.incident_full_s)} after the first mains lost")
    print(f"    closed {_s(f.incident_closed_s)} after the last mains restored was sent"
          + (f"; incidents for the area: {len(inc.incident_ids)}"
             if len(inc.incident_ids) != 1 else ""))
    if inc.samples:
        print(f"    count over time (last seen per 5 s, seconds after the start): "
              f"{_incident_line(r)}")
    if inc.errors:
        print(f"    poll errors: {inc.errors}")
    print(f"  dispatch inbox backlog (largest sample per 5 s, seconds after the start): "
          f"{_backlog_line(r)}")
    print(f"    max {max((n for _, n in r.backlog), default=0):,}; back to 0 "
          f"after it: {_s(f.cut_applied_s)} after the first mains lost; {r.backlog_after:,} "
          f"at the end")
    if r.settled is not None:
        took, start, end = r.settled
        print(f"    after the load: from {start:,} to {end:,} events behind in {took:.0f} s "
              f"({(start - end) / max(took, 1e-9):,.0f} events/s applied with no new load)")
    a, b = r.after, r.before
    kinds = {k: a["events"].get(k, 0) - b["events"].get(k, 0) for k in a["events"]}
    print("  rows written: device_events " + ", ".join(
        f"{k} {n:,}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]) if n))
    print(f"    technical_alarms {sum(a['technical'].values()):,} "
          f"({', '.join(f'{k} {n:,}' for k, n in a['technical'].items())}), "
          f"technical_alarm_log {a['technical_log']:,}, incidents {a['incidents']}, alarms "
          f"+{a['alarms'] - b['alarms']}, device_links +{a['links'] - b['links']:,} "
          f"({a.get('links_touched', 0):,} last seen during the run)")
    reg = r.registry
    print(f"  registry: {reg.units:,} units ({reg.cut_units:,} in area {CUT_AREA}); import "
          f"{reg.load_s + reg.import_s:.1f} s (load_config {reg.load_s:.1f} s, import_config "
          f"{reg.import_s:.1f} s); the services then started in {r.startup_s:.1f} s")
    print(f"  memory, peak RSS: gateway {f.rss_mb[0]:,.0f} MB, dispatch {f.rss_mb[1]:,.0f} MB")
    for label, cpu in (("the load", r.cpu), ("the cut", r.cpu_cut)):
        print(f"  CPU during {label} (% of one core; 'others' = the rest of this machine): "
              + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items()))
    if r.cpu.get("others", 0) > QUIET_OTHERS_PCT:
        print(f"  NOTE: other work on this machine used {r.cpu['others']:.0f} % of a core "
              f"during the load: the latencies are worse than on a quiet machine")
    if r.log_levels:
        print(f"  logs: {r.log_levels}")
    for name, text in r.profile.items():
        print(f"  py-spy, {name}, over the load:")
        for line in text.splitlines():
            print(f"    {line}")


def gateway_line(m: dict[str, float]) -> str:
    stored = sum(v for k, v in m.items() if k.startswith("trygg_device_events_total"))
    commits = m.get("trygg_ingest_batch_size_count", 0)
    lat_n = m.get("trygg_ingest_latency_seconds_count", 0)
    mean_ms = 1000 * m.get("trygg_ingest_latency_seconds_sum", 0) / max(lat_n, 1)
    buckets = sorted((float(k.split("le=")[1].rstrip("}")), v) for k, v in m.items()
                     if k.startswith("trygg_ingest_latency_seconds_bucket{"))
    p99 = next((le for le, n in buckets if lat_n and n >= 0.99 * lat_n), float("inf"))
    return (f"{m.get('trygg_heartbeats_total', 0):,.0f} heartbeats answered, {stored:,.0f} "
            f"events stored in {commits:,.0f} commits (mean batch "
            f"{stored / max(commits, 1):.1f}); stored events' arrival -> answer handed to "
            f"the link: mean {mean_ms:,.1f} ms, 99 % within {1000 * p99:,.0f} ms; answers not "
            f"sent {m.get('trygg_answers_not_sent_total', 0):.0f}")


def print_summary(runs: list[Run]) -> None:
    rows: list[tuple[str, ...]] = [("figure", *[r.backend for r in runs], "target", "")]
    figs = [figures(r) for r in runs]

    def row(name: str, values: list[str], target: str = "", ok: list[bool] | None = None,
            ) -> None:
        rows.append((name, *values, target, "" if ok is None else _verdict(all(ok))))

    for kind in figs[0].sent:
        row(f"{kind} sent / answered", [f"{f.sent[kind]:,} / {f.answered[kind]:,}"
                                        for f in figs])
    row("every message answered", [_verdict(f.all_answered) for f in figs], "sent = answered",
        [f.all_answered for f in figs])
    row("  reached the gateway / answers not sent",
        [f"{f.reached_gateway:,} / {f.not_sent:,}" for f in figs])
    row("help call -> <mrs> p50 / p99", [_p(_values(f.help, "mrs_ms")) for f in figs],
        f"p99 < {P99_TARGET_MS:g} ms", [f.p99_ok() for f in figs])
    row("  during the cut", [_p(_values(f.help, "mrs_ms", f.cut_window)) for f in figs],
        f"p99 < {P99_TARGET_MS:g} ms", [f.p99_ok(f.cut_window) for f in figs])
    row("help call -> operators' queue p50 / p99",
        [_p(_values(f.help, "queue_ms")) for f in figs])
    row("  during the cut", [_p(_values(f.help, "queue_ms", f.cut_window)) for f in figs])
    row("heartbeat -> <mrs> p50 / p99", [_p(r.receiver.hb_latency_ms) for r in runs])
    row("mains lost -> <mrs> p50 / p99",
        [_p(r.receiver.bursts[MAINS_LOST].latency_ms) for r in runs])
    row("peak RSS gateway + dispatch",
        [f"{f.rss_mb[0]:,.0f} + {f.rss_mb[1]:,.0f} = {sum(f.rss_mb):,.0f} MB" for f in figs],
        f"< {MEMORY_TARGET_MB:,.0f} MB", [f.memory_ok for f in figs])
    row("incident open, after first mains lost", [_s(f.incident_shown_s) for f in figs])
    row("incident count (all cut units in after)",
        [f"{r.incidents.max_count:,} / {r.plan.bursts[0].units:,} ({_s(f.incident_full_s)})"
         for r, f in zip(runs, figs, strict=True)])
    row("incident closed, after last restored", [_s(f.incident_closed_s) for f in figs])
    row("inbox backlog max / back to 0 after",
        [f"{max((n for _, n in r.backlog), default=0):,} / {_s(f.cut_applied_s)}"
         for r, f in zip(runs, figs, strict=True)])
    row("rows: events / technical / incidents",
        [f"{sum(r.after['events'].values()) - sum(r.before['events'].values()):,} / "
         f"{sum(r.after['technical'].values()):,} / {r.after['incidents']}" for r in runs])
    row("registry import (load + import)",
        [f"{r.registry.load_s:.0f} + {r.registry.import_s:.0f} s ({r.registry.units:,} units)"
         for r in runs])
    row("CPU gateway / dispatch / others",
        [f"{r.cpu.get('gateway', 0):.0f} / {r.cpu.get('dispatch', 0):.0f} / "
         f"{r.cpu.get('others', 0):.0f} %" for r in runs])
    print_table(rows)


def _p(values: list[float]) -> str:
    v = sorted(values)
    return f"{pct(v, 50):,.0f} / {pct(v, 99):,.0f} ms (n={len(v)})" if v else "-"


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=4200.0,
                   help="heartbeats per second, all units together (default 4200)")
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds of load (default 120)")
    p.add_argument("--interval", type=float, default=60.0,
                   help="each unit's heartbeat interval in seconds (default 60); units = "
                        "rate x interval unless --units")
    p.add_argument("--units", type=int, default=None,
                   help="heartbeating units (default rate x interval = 252,000)")
    p.add_argument("--senders", type=int, default=2,
                   help="heartbeat sender processes (default 2)")
    p.add_argument("--cut-units", type=int, default=20000,
                   help="registered units of the cut area, all of which lose mains "
                        "(default 20000; they are the first heartbeating units)")
    p.add_argument("--cut-at", type=float, default=30.0,
                   help="seconds into the load when the power goes (default 30)")
    p.add_argument("--cut-spread", type=float, default=10.0,
                   help="seconds over which the cut units report mains lost (default 10)")
    p.add_argument("--restore-at", type=float, default=80.0,
                   help="seconds into the load when the power comes back (default 80)")
    p.add_argument("--restore-spread", type=float, default=None,
                   help="seconds over which they report it (default: --cut-spread)")
    p.add_argument("--help-rate", type=float, default=1.0,
                   help="help calls (alarm presses) per second (default 1)")
    p.add_argument("--help-units", type=int, default=1000,
                   help="registered units outside the cut area, and units the help calls "
                        "come from (default 1000)")
    p.add_argument("--help-in-cut", type=float, default=0.25,
                   help="share of the help calls from units in the cut area (default 0.25)")
    p.add_argument("--drain", type=float, default=60.0,
                   help="max seconds to wait after the load for the answers (default 60)")
    p.add_argument("--close-wait", type=float, default=600.0,
                   help="then max seconds to wait for dispatch to apply every event and "
                        "the incident to close (default 600)")
    p.add_argument("--no-seed-links", dest="seed_links", action="store_false",
                   help="do not give every unit a device_links row before the run")
    p.add_argument("--answer-window", type=int, default=65535,
                   help="QoS 1 answers the broker may have in flight to the one receiver "
                        "that stands for every unit (MQTT 5 Receive Maximum; default "
                        "65535). 0: MQTT 3.1.1 and Mosquitto's 20, as bench/heartbeats")
    p.add_argument("--postgres", metavar="URL", default=None,
                   help="also run on PostgreSQL (a fresh schema, dropped afterwards)")
    p.add_argument("--skip-sqlite", action="store_true", help="with --postgres: PostgreSQL only")
    p.add_argument("--log-level", default="info", help="the services' log level (default info)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (logs, SQLite)")
    p.add_argument("--profile", metavar="DIR", type=Path, default=None,
                   help="record the gateway and dispatch with py-spy over the load "
                        "(`.venv/bin/pip install py-spy`) and print where their time went")
    args = p.parse_args(argv)
    if args.units is None:
        args.units = round(args.rate * args.interval)
    if args.restore_spread is None:
        args.restore_spread = args.cut_spread
    if not 0 < args.cut_units <= args.units:
        p.error("--cut-units must be between 1 and --units (the cut units heartbeat too)")
    if not 0 <= args.answer_window <= 65535:
        p.error("--answer-window is 0 (MQTT 3.1.1) or an MQTT 5 Receive Maximum, 1..65535")
    if not 0 <= args.help_in_cut <= 1:
        p.error("--help-in-cut is a share between 0 and 1")
    if not (args.cut_at >= 0 and args.cut_at + args.cut_spread <= args.restore_at
            and args.restore_at + args.restore_spread <= args.duration):
        p.error("need 0 <= --cut-at, cut-at + cut-spread <= --restore-at, and "
                "restore-at + restore-spread <= --duration")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        print("bench/fleet needs Mosquitto (apt-get install -y mosquitto)", file=sys.stderr)
        return 2
    from tests.brokers import mosquitto

    backends: list[tuple[str, str | None]] = []
    if not args.skip_sqlite:
        backends.append(("sqlite", None))
    if args.postgres:
        backends.append(("postgresql", args.postgres))
    if not backends:
        print("nothing to run: --skip-sqlite without --postgres", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    help_from = help_cids(args.help_units, args.cut_units, args.help_in_cut)
    rule = (os.environ.get("TRYGG_MASS_EVENT_UNITS", "20"),
            os.environ.get("TRYGG_MASS_EVENT_WINDOW_S", "120"))
    print(f"Trygg fleet benchmark — {machine_line()}")
    print(f"load: {args.rate:g} heartbeats/s from {args.units:,} units (cids "
          f"{hbload.HB_CID_BASE}.., each every {args.units / args.rate:.0f} s) for "
          f"{args.duration:g} s; a power cut: {args.cut_units:,} of them (area "
          f"{CUT_AREA!r}) send mains lost (stc 0085) from {args.cut_at:g} s over "
          f"{args.cut_spread:g} s and mains restored (0086) from {args.restore_at:g} s over "
          f"{args.restore_spread:g} s, heartbeating throughout; {args.help_rate:g} help "
          f"call/s, {args.help_in_cut:.0%} from the cut area; incident rule: {rule[0]} units "
          f"within {rule[1]} s")
    runs: list[Run] = []
    try:
        with _workdir(args.keep) as tmp, mosquitto() as broker:
            mosq_pid = _child_pid("mosquitto")
            print(f"broker: {binary} on {broker.host}:{broker.port} (pid {mosq_pid})")
            full, services, registry = write_registry(tmp, args.help_units, args.cut_units)
            print(f"registry file: {registry.units:,} customers, sites and units, "
                  f"{registry.file_mb:.1f} MB, written in {registry.write_s:.1f} s")
            for backend, pg_url in backends:
                print(f"\n[{backend}]", flush=True)
                schema = None
                if pg_url is None:
                    url = f"sqlite:///{tmp / 'fleet.db'}"
                else:
                    schema = f"trygg_bench_{secrets.token_hex(4)}"
                    pg_schema(pg_url, schema, create=True)
                    url = pg_schema_url(pg_url, schema)
                    print(f"  schema {schema} (dropped afterwards)")
                try:
                    run = bench_backend(ctx, backend, url, broker, args, (full, services),
                                        registry, tmp, help_from, mosq_pid)
                finally:
                    if schema is not None:
                        pg_schema(pg_url, schema, create=False)  # type: ignore[arg-type]
                print_run(run)
                runs.append(run)
            print_summary(runs)
    except RuntimeError as exc:
        print(f"\nbench/fleet: {exc}", file=sys.stderr)
        return 2
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s; load average now "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
