"""The ingest benchmark: `bench/ingest` (one command), see bench/README.md.

Starts a Mosquitto (TCP_NODELAY on) and, one after the other, each in its own process:

1. the ceiling: a bare aiomqtt responder, then a bare paho one (answer every `<mrq>` with
   its `<mrs>`, nothing else), under a closed-loop device side (`--window` outstanding);
2. the gateway (the real `trygg.runtime.Service`, temp SQLite) under the same closed
   loop: throughput of answered, committed alarms; then a database check that every
   answered request is a stored row and nothing else is;
3. a fresh gateway under an open-loop `--rate` alarms/s: latency send -> answer;
4. with `--postgres URL`, steps 2 and 3 again on PostgreSQL (a fresh schema, dropped after);
5. with `--prefill N`, each throughput and latency run also on a database whose event log
   already holds N processed events (bench/prefill.py), right after its empty-log run,
   and the two compared (target: throughput and p99 within 10 %).

The device side (paho, TCP_NODELAY) always runs in a process of its own. Prints a final
table with the targets: gateway >= 0.5 x bare aiomqtt, p99 <= 20 ms at 1,000 alarms/s.
Exit status: 0 all targets met, 1 a target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import gateway as gw
from bench import responders
from bench.loadgen import LoadResult, LoadSpec
from bench.loadgen import run as run_loadgen

TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0  # the issue's target at 1,000/s (it was 50 ms before issue 5)
TARGET_PREFILL_RATIO = 0.9  # prefilled log: throughput and p99 within 10 % of the empty log's
PY_SPY_RATE = 250
NOISY_OTHERS_PCT = 25.0  # % of one core used by other processes that makes a window "noisy"
CLK_TCK = os.sysconf("SC_CLK_TCK")

INSTALL_HINT = """\
bench/ingest needs Mosquitto (a real broker) and did not find it on PATH or in /usr/sbin.
Install it, then run the benchmark again:

    Debian/Ubuntu:  sudo apt-get install -y mosquitto
    Fedora:         sudo dnf install -y mosquitto
    macOS:          brew install mosquitto

(The service does not need to run: the benchmark starts its own on a free port.)"""


# -- CPU accounting from /proc ----------------------------------------------------------------


def _ticks(stat_path: str) -> int | None:
    try:
        with open(stat_path) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@dataclass
class CpuSnap:
    at: float
    procs: dict[str, int | None]
    threads: dict[int, int]  # tid -> ticks, of the process named "gateway"
    machine_busy: int = 0    # all CPUs, ticks not idle (iowait counts as idle)
    machine_steal: int = 0


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal, steal


def _first_child(pid: int) -> int | None:
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = f.read().split()
            if children:
                return int(children[0])
    except OSError:
        pass
    return None


def _snapshot(watch: dict[str, int | None]) -> CpuSnap:
    procs = {name: (_ticks(f"/proc/{pid}/stat") if pid else None)
             for name, pid in watch.items()}
    threads: dict[int, int] = {}
    gpid = watch.get("gateway")
    if gpid:
        try:
            for tid in os.listdir(f"/proc/{gpid}/task"):
                t = _ticks(f"/proc/{gpid}/task/{tid}/stat")
                if t is not None:
                    threads[int(tid)] = t
        except OSError:
            pass
    busy, steal = _machine()
    return CpuSnap(time.perf_counter(), procs, threads, busy, steal)


def _cpu_pct(a: CpuSnap, b: CpuSnap) -> tuple[dict[str, float], dict[int, float]]:
    wall = b.at - a.at
    procs = {}
    for name, t0 in a.procs.items():
        t1 = b.procs.get(name)
        if t0 is not None and t1 is not None and wall > 0:
            procs[name] = 100.0 * (t1 - t0) / CLK_TCK / wall
    threads = {tid: 100.0 * (b.threads[tid] - t0) / CLK_TCK / wall
               for tid, t0 in a.threads.items() if tid in b.threads and wall > 0}
    if wall > 0:
        # Everything else on this shared machine: busy CPU not used by our processes.
        machine = 100.0 * (b.machine_busy - a.machine_busy) / CLK_TCK / wall
        procs["others"] = max(0.0, machine - sum(procs.values()))
        steal = 100.0 * (b.machine_steal - a.machine_steal) / CLK_TCK / wall
        if steal >= 1:
            procs["steal"] = steal
    return procs, threads


def _child_pid(comm: str) -> int | None:
    """The pid of our own child process named `comm` (the Mosquitto tests.brokers started)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index("(") + 1:data.rindex(")")]
        ppid = int(data[data.rindex(")") + 2:].split()[1])
        if ppid == me and name == comm:
            return int(entry)
    return None


# -- running the device side ---------------------------------------------------------------


@dataclass
class LoadRun:
    result: LoadResult
    cpu: dict[str, float] = field(default_factory=dict)          # process -> % of one core
    threads: dict[int, float] = field(default_factory=dict)      # gateway tid -> %


def run_load(ctx: Any, spec: LoadSpec, watch: dict[str, int | None],
             on_window_start: Callable[[], None] | None = None) -> LoadRun:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_loadgen, args=(spec, child), name="bench-devices")
    proc.start()
    child.close()
    watch = {**watch, "devices": proc.pid}
    snaps: dict[str, CpuSnap] = {}
    deadline = time.monotonic() + 20 + spec.warmup_s + spec.duration_s + spec.drain_s + 30
    result: LoadResult | None = None
    try:
        while result is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not parent.poll(remaining):
                raise RuntimeError("the device side did not finish in time")
            kind, value = parent.recv()
            if kind == "window":
                snaps[value] = _snapshot(watch)
                if value == "start" and on_window_start is not None:
                    on_window_start()
            elif kind == "result":
                result = value
    except EOFError as exc:
        raise RuntimeError("the device side died; see above") from exc
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    if result.error:
        raise RuntimeError(f"the device side failed: {result.error}")
    run = LoadRun(result)
    if "start" in snaps and "end" in snaps:
        run.cpu, run.threads = _cpu_pct(snaps["start"], snaps["end"])
    return run


def _expect(conn: Connection, kind: str, timeout_s: float, what: str) -> Any:
    if not conn.poll(timeout_s):
        raise RuntimeError(f"{what}: no {kind!r} within {timeout_s:.0f} s")
    try:
        got, value = conn.recv()
    except EOFError as exc:
        raise RuntimeError(f"{what}: the process died") from exc
    if got != kind:
        raise RuntimeError(f"{what}: expected {kind!r}, got {got!r} {value!r}")
    return value


def _stop(proc: Any) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


# -- the phases ------------------------------------------------------------------------------


@dataclass
class Options:
    duration: float
    warmup: float
    window: int
    rate: float
    cids: list[str]
    drain: float
    log_level: str
    profile: Path | None


def _root() -> str:
    return f"bench/{secrets.token_hex(4)}"


def closed_spec(broker: Any, root: str, opts: Options, prefix: str) -> LoadSpec:
    return LoadSpec(broker.host, broker.port, root, prefix, opts.cids, opts.warmup,
                    opts.duration, window=opts.window, drain_s=opts.drain)


def bench_responder(ctx: Any, target: Callable[..., None], label: str, broker: Any,
                    opts: Options, mosq_pid: int | None) -> LoadRun:
    root = _root()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(broker.host, broker.port, root, child),
                       name=f"bench-{label}")
    proc.start()
    child.close()
    try:
        if not parent.poll(20) or parent.recv() != "ready":
            raise RuntimeError(f"the {label} responder did not start")
        spec = closed_spec(broker, root, opts, "C")
        spec.keep_refs = False
        return run_load(ctx, spec, {"responder": proc.pid, "broker": mosq_pid})
    finally:
        _stop(proc)


@dataclass
class GatewayRun:
    label: str
    load: LoadRun
    check: gw.DbCheck
    startup_s: float
    metrics: dict[str, float]
    threads: dict[int, str]
    backlog_after: int
    dispatch_drained_s: float | None
    log_path: Path
    log_levels: dict[str, int]
    profile: str | None = None
    mode: str = "service"


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: v - a.get(k, 0.0) for k, v in b.items()}


def bench_gateway(ctx: Any, label: str, broker: Any, db_url: str, opts: Options,
                  config: Path, tmp: Path, mosq_pid: int | None, *, open_loop: bool,
                  prefix: str, mode: str = "service") -> GatewayRun:
    root = _root()
    spec = gw.GatewaySpec(mqtt_url=broker.url, root=root, database_url=db_url,
                          config=config, http_port=_free_port(),
                          log_path=tmp / f"gateway-{label}.log", log_level=opts.log_level,
                          mode=mode)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=gw.run, args=(spec, child), name=f"bench-gateway-{label}")
    t0 = time.perf_counter()
    proc.start()
    child.close()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        _expect(parent, "ready", 180, f"gateway ({label})")
        startup_s = time.perf_counter() - t0
        parent.send("stats")
        before = _expect(parent, "stats", 30, "gateway stats")
        if open_loop:
            load_spec = LoadSpec(broker.host, broker.port, root, prefix, opts.cids,
                                 opts.warmup, opts.duration, rate=opts.rate,
                                 drain_s=opts.drain)
        else:
            load_spec = closed_spec(broker, root, opts, prefix)

        profile_out = None
        if opts.profile is not None:
            profile_out = opts.profile / f"gateway-{label}.txt"

            def start_profiler() -> None:
                nonlocal profiler
                profiler = _start_py_spy(proc.pid, opts.duration, profile_out)
        else:
            start_profiler = None  # type: ignore[assignment]

        # The dispatch role runs beside the gateway as its child: ours, not "others".
        watch = {"gateway": proc.pid, "dispatch": _first_child(proc.pid), "broker": mosq_pid}
        load = run_load(ctx, load_spec, watch, on_window_start=start_profiler)
        parent.send("stats")
        after = _expect(parent, "stats", 30, "gateway stats")
        # How far dispatch (its own process, beside the gateway) trails the ingest,
        # and how long it takes to catch up once the load stops.
        backlog = gw.unprocessed_events(db_url) if mode == "service" else 0
        drained_s: float | None = 0.0 if backlog == 0 else None
        t_wait = time.perf_counter()
        while backlog and time.perf_counter() - t_wait < opts.drain:
            time.sleep(0.25)
            backlog_now = gw.unprocessed_events(db_url)
            if backlog_now == 0:
                drained_s = time.perf_counter() - t_wait
                break
        parent.send("stop")
        _expect(parent, "stopped", 60, f"gateway ({label}) stop")
        proc.join(30)
    except Exception:
        _print_log_tail(spec.log_path)
        raise
    finally:
        _stop(proc)
        if profiler is not None:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.terminate()
    check = gw.check_database(db_url, prefix, load.result.answered_refs,
                              load.result.unanswered_refs, opts.cids)
    profile_summary = None
    if profile_out is not None and profile_out.exists():
        profile_summary = summarize_py_spy(profile_out, after["threads"], proc.pid,
                                           PY_SPY_RATE, opts.duration)
    return GatewayRun(label, load, check, startup_s, _delta(before["samples"], after["samples"]),
                      {int(k): v for k, v in after["threads"].items()}, backlog, drained_s,
                      spec.log_path, _log_levels(spec.log_path), profile_summary, mode)


def _free_port() -> int:
    from tests.brokers import free_port

    return free_port()


def _log_levels(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            for level in ("warning", "error", "critical"):
                if f'"level": "{level}"' in line:
                    counts[level] = counts.get(level, 0) + 1
    except OSError:
        pass
    return counts


def _print_log_tail(path: Path, lines: int = 30) -> None:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return
    print(f"--- last lines of {path} ---", file=sys.stderr)
    for line in tail:
        print(line, file=sys.stderr)


# -- profiling (optional, --profile DIR) -----------------------------------------------------


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _start_py_spy(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = _py_spy()
    if exe is None:
        print("  (--profile: py-spy not found; `.venv/bin/pip install py-spy`)")
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))),
         "--rate", str(PY_SPY_RATE), "--format", "raw", "--threads", "--gil",
         "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Where a sample goes: the first category whose marker is in its stack (so logging done
# inside a publish counts as logging). Markers are py-spy frame names ("func (file:line)").
PROFILE_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging (stdlib + structlog)", ("logging/__init__.py", "structlog/")),
    ("dispatch: apply events (process_pending)", ("process_pending",)),
    ("dispatch: live-feed views (Dispatcher.changed)", ("Dispatcher.changed",)),
    ("dispatch: timers and outbox", ("fire_due", "pending_outbox", "mark_sent",
                                     "send_outbox")),
    ("ingest: store batch (append_events)", ("append_events",)),
    ("database commit", ("do_commit",)),
    ("ingest: decode frame (Ingest.on_frame)", ("Ingest.on_frame",)),
    ("ingest: publish answers (Ingest._publish)", ("Ingest._publish", "MqttLink.publish")),
    ("ingest: writer loop (Ingest.run)", ("Ingest.run",)),
    ("MQTT socket I/O (paho loop_read/loop_write)", ("loop_read", "loop_write", "loop_misc")),
    ("event loop: select", ("EpollSelector.select",)),
]


def summarize_py_spy(path: Path, thread_names: dict[Any, str], pid: int, rate: int,
                     duration: float, top: int = 15) -> str:
    """Collapsed stacks -> GIL time by thread, by category and by function.

    Recorded with `py-spy --gil`: only the thread holding the GIL is sampled, so a
    count / (rate x duration) is the share of wall time that thread ran Python (C code
    that releases the GIL, like SQLite's own work, is not counted). 100 % = the GIL
    was busy the whole time: nothing more fits in this process.
    """
    names = {int(k): v for k, v in thread_names.items()}
    per_thread: dict[str, int] = {}
    per_category: dict[str, int] = {}
    self_time: dict[str, int] = {}
    samples = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack.startswith("thread (") or not count_s.isdigit():
            continue  # (a frame of generated code can span lines: that sample is dropped)
        count = int(count_s)
        frames = stack.split(";")
        tid = _tid_of(frames[0])
        if len(frames) > 1 and "(" not in frames[1]:  # py-spy names the thread next
            tname = frames.pop(1)
        else:
            tname = names.get(tid or -1, frames[0])
        if tid == pid:
            tname = "MainThread (event loop)"
        per_thread[tname] = per_thread.get(tname, 0) + count
        samples += count
        category = "other"
        for label, markers in PROFILE_CATEGORIES:
            if any(m in f for f in frames for m in markers):
                category = label
                break
        per_category[category] = per_category.get(category, 0) + count
        if len(frames) > 1:
            leaf = f"{tname.split(' ')[0]}: {frames[-1]}"
            self_time[leaf] = self_time.get(leaf, 0) + count
    if not samples:
        return "(no samples)"
    full = rate * duration / 100.0  # samples that make 1 % of one core

    def table(counts: dict[str, int], limit: int | None = None) -> list[str]:
        items = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [f"  {n / full:5.1f}%  {name}" for name, n in items]

    out = [f"GIL held, % of the {duration:g} s window ({samples} samples at {rate}/s):",
           "by thread:", *table(per_thread), "by what it was doing:", *table(per_category),
           f"top {top} functions by self time:", *table(self_time, top)]
    return "\n".join(out)


def _tid_of(thread_frame: str) -> int | None:
    # py-spy --threads roots each stack with e.g. "thread (0x7F..)" or "process 123:..."
    for token in thread_frame.replace("(", " ").replace(")", " ").split():
        if token.isdigit():
            return int(token)
    return None


# -- figures and printing --------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def latency_line(values: list[float]) -> str:
    v = sorted(values)
    if not v:
        return "no answers"
    return (f"p50 {pct(v, 50):.1f} ms, p90 {pct(v, 90):.1f} ms, p99 {pct(v, 99):.1f} ms, "
            f"p99.9 {pct(v, 99.9):.1f} ms, max {v[-1]:.1f} ms  (n={len(v)})")


def _cpu_line(run: LoadRun) -> str:
    return ", ".join(f"{name} {v:.0f}%" for name, v in run.cpu.items())


def print_load(title: str, run: LoadRun) -> None:
    r = run.result
    print(f"  {title}: {r.throughput:,.0f} answers/s "
          f"({r.in_window} in {r.window_s:.1f} s; sent {r.sent}, answered {r.answered}, "
          f"outstanding after drain {r.outstanding_at_end})")
    what = ("latency at saturation (closed loop: mostly queueing behind the window)"
            if r.mode == "closed" else "latency send -> answer (from the scheduled send time)")
    print(f"    {what}: {latency_line(r.latencies_ms)}")
    if r.mode == "open":
        print(f"    sender: worst lateness against its schedule {1000 * r.send_lag_max_s:.1f} ms")
    issues = []
    if r.not_ok:
        issues.append(f"non-zero snu {r.not_ok}")
    for name in ("duplicates", "unexpected", "bad_frames"):
        if getattr(r, name):
            issues.append(f"{name} {getattr(r, name)}")
    print(f"    answers checked strictly with scaip.decode_response: {r.strict_checked}"
          + (f"; PROBLEMS: {', '.join(issues)}" if issues else "; all snu 0, refs matched"))
    print(f"    CPU during the window (% of one core; {os.cpu_count()} cores, 'others' = "
          f"the rest of this machine): {_cpu_line(run)}")
    others = run.cpu.get("others", 0.0) + run.cpu.get("steal", 0.0)
    if others >= NOISY_OTHERS_PCT:
        print(f"    NOTE: other work on this machine used {others:.0f}% of a core during this "
              f"window; the figures above are lower than on a quiet machine")


def print_gateway(g: GatewayRun) -> None:
    m = g.metrics
    commits = m.get("trygg_ingest_batch_size_count", 0)
    events = m.get("trygg_ingest_batch_size_sum", 0)
    lat_n = m.get("trygg_ingest_latency_seconds_count", 0)
    lat_s = m.get("trygg_ingest_latency_seconds_sum", 0)
    what = ("migrations + registry seeding" if g.mode == "service"
            else "migrations; ingest only: MqttLink + Ingest, no dispatch")
    print(f"    gateway started in {g.startup_s:.1f} s ({what})")
    if commits:
        print(f"    gateway metrics over the run: {int(events)} events in {int(commits)} "
              f"commits (mean batch {events / commits:.1f}); mean in-gateway latency "
              f"(arrival -> answer PUBACKed) {1000 * lat_s / max(lat_n, 1):.1f} ms")
    failures = m.get("trygg_event_store_failures_total", 0)
    rejected = sum(v for k, v in m.items() if k.startswith("trygg_frame_rejections_total"))
    if failures or rejected:
        print(f"    PROBLEMS: store failures {failures:.0f}, rejected frames {rejected:.0f}")
    if g.load.threads:
        parts = []
        for tid, v in sorted(g.load.threads.items(), key=lambda kv: -kv[1]):
            if v < 1:
                continue
            name = g.threads.get(tid, "?")
            parts.append(f"{name} {v:.0f}%")
        print(f"    gateway CPU by thread: {', '.join(parts)}")
    c = g.check
    verdict = "OK" if c.ok else "MISMATCH"
    print(f"    database check: {c.rows} device_events rows for {c.answered} distinct requests "
          f"answered; answered but not stored (or stored under another cid) "
          f"{c.answered_not_stored}; stored but not answered {c.stored_not_answered} -> {verdict}")
    if c.in_flight:
        print(f"      ({c.in_flight} requests were still unanswered when the device side stopped "
              f"waiting; {c.stored_not_answered} of them were committed, their answers late)")
    drained = (f"caught up {g.dispatch_drained_s:.1f} s after the load"
               if g.dispatch_drained_s is not None else "still behind when the gateway stopped")
    if g.mode == "service":
        print(f"    dispatch: {g.backlog_after} events not yet consumed right after the run, "
              f"{drained}; {c.alarms} alarms, {c.alarm_log} audit entries, "
              f"{c.unprocessed} unconsumed at stop")
    if g.log_levels:
        print(f"    gateway log {g.log_path.name}: {g.log_levels}")
    if g.profile:
        print("    py-spy profile of the gateway over the measured window:")
        for line in g.profile.splitlines():
            print(f"      {line}")


def machine_line() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_schema_url(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def pg_schema(url: str, schema: str, *, create: bool) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as c:
            if create:
                c.execute(text(f'CREATE SCHEMA "{schema}"'))
            else:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0,
                   help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="seconds of load before the measured window (default 2)")
    p.add_argument("--window", type=int, default=200,
                   help="closed loop: requests outstanding (default 200)")
    p.add_argument("--rate", type=float, default=1000.0,
                   help="open loop for the latency run: alarms per second (default 1000)")
    p.add_argument("--cids", type=int, default=1000,
                   help="distinct base units, all registered (default 1000)")
    p.add_argument("--drain", type=float, default=10.0,
                   help="max seconds to wait for outstanding answers after a run (default 10)")
    p.add_argument("--postgres", metavar="URL", default=None,
                   help="also run the gateway on PostgreSQL, e.g. "
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test "
                        "(a fresh schema, dropped afterwards)")
    p.add_argument("--skip-sqlite", action="store_true",
                   help="with --postgres: run the gateway on PostgreSQL only")
    p.add_argument("--log-level", default="info",
                   help="the gateway's log level (default info, as `trygg run`)")
    p.add_argument("--ingest-only", action="store_true",
                   help="diagnostic: also run both loads against the gateway's ingest "
                        "alone (MqttLink + Ingest, no dispatch) to show what dispatch costs")
    p.add_argument("--keep", action="store_true",
                   help="keep the temp directory (gateway logs, SQLite files) and print it")
    p.add_argument("--profile", metavar="DIR", type=Path, default=None,
                   help="record the gateway with py-spy during each measured window, "
                        "write raw stacks to DIR and print a summary")
    p.add_argument("--prefill", type=float, default=0, metavar="N",
                   help="also run the throughput and latency runs on a database whose event "
                        "log already holds N processed events (e.g. 10000000 or 1e7), each "
                        "right after its empty-log run, and compare (target: within 10 %%)")
    p.add_argument("--prefill-cids", type=int, default=100_000, metavar="N",
                   help="distinct units the prefilled events are spread over (default 100000)")
    p.add_argument("--prefill-cache", type=Path, default=Path("/tmp/trygg-bench-prefill"),
                   metavar="DIR",
                   help="SQLite: keep the prefilled template file here and copy it for each "
                        "run (default /tmp/trygg-bench-prefill; keyed by migration head and N)")
    p.add_argument("--no-prefill-cache", action="store_true",
                   help="SQLite: generate the prefilled file for each run, keep nothing")
    args = p.parse_args(argv)
    args.prefill = int(args.prefill)
    if args.no_prefill_cache:
        args.prefill_cache = None
    if args.window > args.cids:
        p.error("--window must not exceed --cids (one outstanding request per unit)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    from tests.brokers import mosquitto

    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    opts = Options(args.duration, args.warmup, args.window, args.rate, gw.bench_cids(args.cids),
                   args.drain, args.log_level, args.profile)
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    print(f"Trygg ingest benchmark — {machine_line()}")
    print(f"load: {args.cids} registered base units (cids {opts.cids[0]}..{opts.cids[-1]}, "
          f"each routed to a team), pendant alarms (dty 0003), QoS 1 both ways; "
          f"closed loop window {args.window}; {args.warmup:g} s warm-up + {args.duration:g} s "
          f"measured per run; latency run open loop at {args.rate:g}/s")
    if args.prefill:
        print(f"prefill: {args.prefill:,} processed events over {args.prefill_cids:,} units in "
              f"the last 80 days, for a second throughput and latency run per database "
              f"(bench/prefill.py; SQLite template cache: {args.prefill_cache or 'off'})")
    backends: list[tuple[str, str | None]] = []
    if not args.skip_sqlite:
        backends.append(("sqlite", None))
    if args.postgres:
        backends.append(("postgresql", args.postgres))
    if not backends:
        print("nothing to run: --skip-sqlite without --postgres", file=sys.stderr)
        return 2

    try:
        with _workdir(args.keep) as tmp, mosquitto() as broker:
            mosq_pid = _child_pid("mosquitto")
            print(f"broker: {binary} on {broker.host}:{broker.port} "
                  f"(set_tcp_nodelay true, pid {mosq_pid})\n")
            config = tmp / "bench-municipality.yaml"
            gw.write_config(config, opts.cids)

            print("[1/3] ceiling: bare responders (answer every <mrq>, nothing else)")
            aio = bench_responder(ctx, responders.run_aiomqtt, "aiomqtt", broker, opts, mosq_pid)
            print_load("bare aiomqtt responder", aio)
            paho = bench_responder(ctx, responders.run_paho, "paho", broker, opts, mosq_pid)
            print_load("bare paho responder", paho)

            gateway_runs: dict[str, tuple[GatewayRun, GatewayRun]] = {}
            ingest_only_runs: dict[str, tuple[GatewayRun, GatewayRun]] = {}
            for step, (backend, pg_url) in enumerate(backends):
                try:
                    print(f"\n[{2 + step}/{1 + len(backends)}] the gateway on {backend}")
                    dbs = _databases(pg_url, tmp, args.ingest_only, args.prefill,
                                     args.prefill_cache, args.prefill_cids)
                    for line in dbs.where:
                        print(f"  {line}")
                    # With --prefill the runs alternate empty / prefilled, so that the two
                    # figures compared are as close in time (and machine noise) as can be.
                    variants = [("", dbs.empty)] + ([(f"+{_count(args.prefill)}", dbs.full)]
                                                    if dbs.full else [])
                    tputs: dict[str, GatewayRun] = {}
                    for suffix, urls in variants:
                        label = f"{backend}{suffix}"
                        tput = bench_gateway(ctx, f"{label}-throughput", broker, urls[0],
                                             opts, config, tmp, mosq_pid, open_loop=False,
                                             prefix="T")
                        print_load(f"gateway ({label}), closed loop (window {args.window})",
                                   tput.load)
                        print_gateway(tput)
                        tputs[suffix] = tput
                    for suffix, urls in variants:
                        label = f"{backend}{suffix}"
                        lat = bench_gateway(ctx, f"{label}-latency", broker, urls[1], opts,
                                            config, tmp, mosq_pid, open_loop=True, prefix="L")
                        print_load(f"gateway ({label}), open loop at {args.rate:g}/s", lat.load)
                        print_gateway(lat)
                        gateway_runs[label] = (tputs[suffix], lat)
                    urls = dbs.empty
                    if args.ingest_only:
                        only = bench_gateway(ctx, f"{backend}-ingest-only-throughput", broker,
                                             urls[2], opts, config, tmp, mosq_pid,
                                             open_loop=False, prefix="I", mode="ingest-only")
                        print_load(f"diagnostic: ingest alone, closed loop (window "
                                   f"{args.window})", only.load)
                        print_gateway(only)
                        only_lat = bench_gateway(ctx, f"{backend}-ingest-only-latency", broker,
                                                 urls[3], opts, config, tmp, mosq_pid,
                                                 open_loop=True, prefix="J", mode="ingest-only")
                        print_load(f"diagnostic: ingest alone, open loop at {args.rate:g}/s",
                                   only_lat.load)
                        print_gateway(only_lat)
                        ingest_only_runs[backend] = (only, only_lat)
                finally:
                    if pg_url is not None:
                        for schema in _PG_SCHEMAS:
                            pg_schema(pg_url, schema, create=False)
                        _PG_SCHEMAS.clear()
            ok = print_summary(aio, paho, gateway_runs, ingest_only_runs, args.rate)
    except RuntimeError as exc:
        print(f"\nbench/ingest: {exc}", file=sys.stderr)
        return 2
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s; load average now "
          f"{os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


_PG_SCHEMAS: list[str] = []


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="trygg-bench-"))
        try:
            yield path
        finally:
            print(f"kept {path} (gateway logs, SQLite files)")
    else:
        with tempfile.TemporaryDirectory(prefix="trygg-bench-") as tmp:
            yield Path(tmp)


RUN_NAMES = ("throughput", "latency", "ingest-only-throughput", "ingest-only-latency")


@dataclass
class Databases:
    empty: list[str]           # one fresh, empty database per run (RUN_NAMES)
    full: list[str] | None     # --prefill: the throughput and latency runs' prefilled ones
    where: list[str]


def _count(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def _databases(pg_url: str | None, tmp: Path, ingest_only: bool, prefill: int,
               cache: Path | None, prefill_cids: int) -> Databases:
    """A fresh database per gateway run (see RUN_NAMES), and where they are; with
    `prefill`, also a prefilled one for the throughput and the latency run."""
    from bench import prefill as pf

    names = RUN_NAMES if ingest_only else RUN_NAMES[:2]
    where: list[str] = []
    full: list[str] | None = None
    if pg_url is None:
        empty = [f"sqlite:///{tmp / f'{n}.db'}" for n in names]
        where.append(f"temp SQLite files in {tmp}, WAL, synchronous=FULL")
        if prefill:
            full = []
            for n in RUN_NAMES[:2]:
                path = tmp / f"{n}-prefilled.db"
                how = pf.sqlite_prefilled(path, prefill, cache, _say, prefill_cids)
                full.append(f"sqlite:///{path}")
                where.append(f"{path.name}: {prefill:,} processed events, {how}")
    else:
        empty = [_new_schema(pg_url) for _ in names]
        if prefill:
            full = []
            for _ in RUN_NAMES[:2]:
                url = _new_schema(pg_url)
                how = pf.pg_prefill(url, prefill, _say, prefill_cids)
                full.append(url)
                where.append(f"schema {_PG_SCHEMAS[-1]}: {prefill:,} processed events, {how}")
        where.insert(0, f"fresh schemas {', '.join(_PG_SCHEMAS)}, dropped afterwards")
    if prefill:
        # Let the prefill's gigabytes reach the disk now, not during a measured window
        # (the gateway fsyncs every commit).
        t0 = time.perf_counter()
        os.sync()
        where.append(f"sync after the prefill: {time.perf_counter() - t0:.1f} s")
    return Databases(empty, full, where)


def _new_schema(pg_url: str) -> str:
    schema = f"trygg_bench_{secrets.token_hex(4)}"
    pg_schema(pg_url, schema, create=True)
    _PG_SCHEMAS.append(schema)
    return pg_schema_url(pg_url, schema)


def _say(line: str) -> None:
    print(line, flush=True)


def print_summary(aio: LoadRun, paho: LoadRun,
                  gateway_runs: dict[str, tuple[GatewayRun, GatewayRun]],
                  ingest_only_runs: dict[str, tuple[GatewayRun, GatewayRun]],
                  rate: float) -> bool:
    a, p = aio.result.throughput, paho.result.throughput
    rows: list[tuple[str, str, str, str]] = [
        ("bare aiomqtt responder", f"{a:,.0f} answers/s", "", ""),
        ("bare paho responder", f"{p:,.0f} answers/s", "", ""),
        ("ratio aiomqtt / paho", f"{a / p:.2f}" if p else "-", "", ""),
    ]
    ok = True
    for backend, (tput, lat) in gateway_runs.items():
        g = tput.load.result.throughput
        ratio = g / a if a else 0.0
        ratio_ok = ratio >= TARGET_RATIO
        db_ok = tput.check.ok and lat.check.ok
        rows.append((f"gateway ({backend}) answered+committed", f"{g:,.0f} alarms/s", "", ""))
        rows.append(("ratio gateway / bare aiomqtt", f"{ratio:.2f}",
                     f">= {TARGET_RATIO}", "PASS" if ratio_ok else "FAIL"))
        rows.append(("ratio gateway / bare paho", f"{g / p:.2f}" if p else "-", "", ""))
        lr = lat.load.result
        v = sorted(lr.latencies_ms)
        p50, p99 = pct(v, 50), pct(v, 99)
        achieved = lr.throughput
        rate_ok = achieved >= 0.98 * rate and lr.outstanding_at_end == 0
        lat_ok = p99 <= TARGET_P99_MS and rate_ok
        rows.append((f"latency at {rate:g}/s ({backend}): achieved rate",
                     f"{achieved:,.0f}/s", f">= {0.98 * rate:,.0f}/s, none lost",
                     "PASS" if rate_ok else "FAIL"))
        rows.append((f"latency at {rate:g}/s ({backend}): p50 / p99",
                     f"{p50:.1f} / {p99:.1f} ms", f"p99 <= {TARGET_P99_MS:g} ms",
                     "PASS" if lat_ok else "FAIL"))
        rows.append((f"database check ({backend}): rows vs answered",
                     f"{tput.check.rows} / {tput.check.answered}, "
                     f"{lat.check.rows} / {lat.check.answered}",
                     "answered all stored", "PASS" if db_ok else "FAIL"))
        ok = ok and ratio_ok and lat_ok and db_ok
        diag = ingest_only_runs.get(backend)
        if diag is not None:
            only, only_lat = diag
            o = only.load.result.throughput
            rows.append((f"diagnostic ({backend}): ingest alone, no dispatch",
                         f"{o:,.0f} alarms/s = {o / a:.2f} x aiomqtt" if a else f"{o:,.0f}/s",
                         "(not a target)", ""))
            ov = sorted(only_lat.load.result.latencies_ms)
            rows.append((f"diagnostic ({backend}): ingest alone at {rate:g}/s p50 / p99",
                         f"{pct(ov, 50):.1f} / {pct(ov, 99):.1f} ms "
                         f"({only_lat.load.result.throughput:,.0f}/s)",
                         "(not a target)", ""))
    # --prefill: each backend's prefilled runs against its empty-log runs of this invocation.
    for backend, (tput, lat) in gateway_runs.items():
        if "+" not in backend:
            continue
        base = gateway_runs.get(backend.split("+")[0])
        if base is None:
            continue
        g0, g1 = base[0].load.result.throughput, tput.load.result.throughput
        p0 = pct(sorted(base[1].load.result.latencies_ms), 99)
        p1 = pct(sorted(lat.load.result.latencies_ms), 99)
        t_ok = g0 > 0 and g1 >= TARGET_PREFILL_RATIO * g0
        l_ok = p1 <= p0 / TARGET_PREFILL_RATIO
        rows.append((f"{backend} vs empty: throughput", f"{g1:,.0f} vs {g0:,.0f}/s = "
                     f"{g1 / g0:.2f}" if g0 else "-", f">= {TARGET_PREFILL_RATIO:g} x empty",
                     "PASS" if t_ok else "FAIL"))
        rows.append((f"{backend} vs empty: p99 at {rate:g}/s", f"{p1:.1f} vs {p0:.1f} ms = "
                     f"{p1 / p0:.2f}" if p0 else "-",
                     f"<= {1 / TARGET_PREFILL_RATIO:.2f} x empty", "PASS" if l_ok else "FAIL"))
        ok = ok and t_ok and l_ok
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "+-" + "-+-".join("-" * x for x in w) + "-+"
    print("\n" + line)
    for r in [("figure", "value", "target", ""), *rows]:
        print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
        if r[0] == "figure":
            print(line)
    print(line)
    print("overall: " + ("PASS" if ok else "FAIL"))
    return ok


if __name__ == "__main__":
    sys.exit(main())
