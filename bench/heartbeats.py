"""The heartbeat benchmark: `bench/heartbeats` (one command), see bench/README.md.

A flood of heartbeats (`<mty>PI</mty>`, default 4,200/s from 252,000 units, each once a
minute) with one help call a second (an alarm press from a registered unit) against the
real gateway with dispatch beside it (bench/gateway.py: the gateway role in one process,
`trygg run --role dispatch` in another), on SQLite and, with `--postgres URL`, on
PostgreSQL. It prints:

- every message answered: heartbeats and help calls sent vs answered (the target);
- help calls: latency to their `<mrs>` and to the operators' queue (the alarm's first
  appearance on the dispatch API's live stream `/api/stream`, with an operator's token);
- rows written per thousand heartbeats (device_events and device_links, before/after);
- dispatch's inbox backlog (max during the run, at the end of the load, after the drain);
- memory: peak RSS of the gateway and of the dispatch process;
- CPU of each process over the load, and the rest of the machine (`others`).

Exit status: 0 when it ran (whatever the targets say: PASS/FAIL is printed), 2 when the
benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import gateway as gw
from bench import hbload
from bench.ingest import (
    _child_pid,
    _cpu_pct,
    _expect,
    _free_port,
    _print_log_tail,
    _snapshot,
    _stop,
    _workdir,
    machine_line,
    pct,
    pg_schema,
    pg_schema_url,
)

# Heartbeats' last-seen may be written in batches this often (core.settings
# last_seen_flush_s); the row counts are taken after waiting this long past the drain.
LAST_SEEN_FLUSH_S = 5.0
SAMPLE_S = 0.5


@dataclass
class Run:
    backend: str
    plan: hbload.Plan
    senders: list[dict[str, Any]]
    receiver: hbload.ReceiverResult
    sse: dict[str, Any]
    before: dict[str, int]
    after: dict[str, int]
    pg_writes: dict[str, int] | None
    backlog_max: int
    backlog_end_of_load: int
    backlog_after: int
    drained_s: float | None
    rss_peak_kb: dict[str, int]
    cpu: dict[str, float]
    startup_s: float
    api_check: str
    log_levels: dict[str, int] = field(default_factory=dict)


# -- database figures ------------------------------------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.engine = create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def scalar(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import text

        with self.engine.connect() as c:
            return c.execute(text(sql), params).scalar()

    def backlog(self) -> int:
        return int(self.scalar("SELECT count(*) FROM device_events WHERE processed_at IS NULL"))

    def counts(self, since: datetime | None = None) -> dict[str, int]:
        out = {
            "events": int(self.scalar("SELECT count(*) FROM device_events")),
            "events_heartbeat": int(self.scalar(
                "SELECT count(*) FROM device_events WHERE kind = 'heartbeat'")),
            "links": int(self.scalar("SELECT count(*) FROM device_links")),
            "alarms": int(self.scalar("SELECT count(*) FROM alarms")),
        }
        if since is not None:
            out["links_touched"] = int(self.scalar(
                "SELECT count(*) FROM device_links WHERE last_seen_at >= :since",
                since=since.replace(tzinfo=None)))
        return out

    def pg_writes(self) -> dict[str, int] | None:
        """PostgreSQL only: rows inserted + updated + deleted per table, from its statistics."""
        if not self.url.startswith("postgresql"):
            return None
        from sqlalchemy import text

        with self.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            rows = c.execute(text(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname IN "
                "('device_events', 'device_links')")).all()
        return {name: int(n) for name, n in rows}

    def operator_token(self) -> str:
        from sqlalchemy.orm import Session

        from dispatch.users import add_user

        with Session(self.engine) as s:
            token = add_user(s, f"bench-{secrets.token_hex(3)}", "operator", datetime.now(UTC))
            s.commit()
        return token

    def seed_links(self, units: int, interval_s: float) -> float:
        """Every heartbeating unit already known (as after months of service): one
        device_links row each, last seen within its interval. Returns seconds taken."""
        from sqlalchemy import MetaData, Table, insert

        t0 = time.perf_counter()
        table = Table("device_links", MetaData(), autoload_with=self.engine)
        now = datetime.now(UTC).replace(tzinfo=None)
        cols = {c.name for c in table.columns}
        batch: list[dict[str, Any]] = []
        with self.engine.begin() as c:
            for u in range(units):
                row: dict[str, Any] = {"cid": str(hbload.HB_CID_BASE + u)}
                if "last_seen_at" in cols:
                    row["last_seen_at"] = now - timedelta(seconds=interval_s * (u + 1) / units)
                if "last_kind" in cols:
                    row["last_kind"] = "heartbeat"
                batch.append(row)
                if len(batch) == 20_000:
                    c.execute(insert(table), batch)
                    batch = []
            if batch:
                c.execute(insert(table), batch)
        return time.perf_counter() - t0


def _rss_kb(pid: int | None) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) once it is gone."""
    if not pid:
        return 0, 0
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


# -- one run -----------------------------------------------------------------------------------


def bench_backend(ctx: Any, backend: str, db_url: str, broker: Any, args: argparse.Namespace,
                  config: Path, tmp: Path, help_cids: list[str], mosq_pid: int | None) -> Run:
    root = f"bench/{secrets.token_hex(4)}"
    plan = hbload.Plan(broker.host, broker.port, root, args.rate, args.units, args.duration,
                       args.senders, args.help_rate, help_cids)
    spec = gw.GatewaySpec(mqtt_url=broker.url, root=root, database_url=db_url, config=config,
                          http_port=_free_port(), log_path=tmp / f"gateway-{backend}.log",
                          log_level=args.log_level)
    parent, child = ctx.Pipe()
    gproc = ctx.Process(target=gw.run, args=(spec, child), name=f"bench-gateway-{backend}")
    t_start = time.perf_counter()
    gproc.start()
    child.close()
    procs: list[Any] = []
    db = Db(db_url)
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

        # The operators' view first, then the receiver, then the senders.
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
                         name="bench-hb-receiver")
        rx.start()
        procs.append(rx)
        _expect(rx_conn, "ready", 30, "the receiver")
        senders = []
        for i in range(args.senders):
            sc, sc_child = ctx.Pipe()
            sp = ctx.Process(target=hbload.run_sender, args=(plan, i, sc_child),
                             name=f"bench-hb-sender{i}")
            sp.start()
            procs.append(sp)
            senders.append((sp, sc))
        for _, sc in senders:
            _expect(sc, "ready", 30, "a sender")

        before = db.counts()
        pg_before = db.pg_writes()
        wall_start = datetime.now(UTC)
        watch = {"gateway": gproc.pid, "dispatch": dpid, "broker": mosq_pid,
                 "receiver": rx.pid, "sse": sse.pid,
                 **{f"sender{i}": sp.pid for i, (sp, _) in enumerate(senders)}}
        t0 = time.monotonic() + 1.0
        for _, sc in senders:
            sc.send(("go", t0))
        rx_conn.send(("go", t0))
        print(f"  load: {plan.heartbeats:,} heartbeats at {args.rate:g}/s from "
              f"{args.units:,} units ({args.senders} senders) + {plan.help_calls} help calls "
              f"over {args.duration:g} s ...", flush=True)
        while time.monotonic() < t0:
            time.sleep(0.01)
        snap0 = _snapshot(watch)
        backlog_max = 0
        rss_peak: dict[str, int] = {}
        end = t0 + args.duration
        sent_signal = False
        next_sample = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + SAMPLE_S
                try:
                    backlog_max = max(backlog_max, db.backlog())
                except Exception as exc:  # a locked read must not end the run
                    print(f"  (backlog sample failed: {type(exc).__name__})")
                for name, pid in (("gateway", gproc.pid), ("dispatch", dpid)):
                    rss, hwm = _rss_kb(pid)
                    rss_peak[name] = max(rss_peak.get(name, 0), rss, hwm)
            if not sent_signal and rx_conn.poll(0):
                _expect(rx_conn, "sent", 1, "the receiver")
                sent_signal = True
                snap1 = _snapshot(watch)
                backlog_end_of_load = db.backlog()
                backlog_max = max(backlog_max, backlog_end_of_load)
                print(f"  load sent; inbox backlog now {backlog_end_of_load:,}; draining "
                      f"(up to {args.drain:g} s) ...", flush=True)
            if sent_signal and rx_conn.poll(0):
                break
            if now > end + args.drain + 120:
                raise RuntimeError("the receiver did not finish in time")
            time.sleep(0.05)
        rx_result: hbload.ReceiverResult = _expect(rx_conn, "result", 10, "the receiver")
        sender_results = [_expect(sc, "result", 60, "a sender") for _, sc in senders]
        # Dispatch's backlog after the answers: how long until it has applied everything.
        t_wait = time.monotonic()
        backlog_after = db.backlog()
        drained_s: float | None = 0.0 if backlog_after == 0 else None
        while backlog_after and time.monotonic() - t_wait < args.drain:
            time.sleep(0.5)
            backlog_after = db.backlog()
            for name, pid in (("gateway", gproc.pid), ("dispatch", dpid)):
                rss, hwm = _rss_kb(pid)
                rss_peak[name] = max(rss_peak.get(name, 0), rss, hwm)
            if backlog_after == 0:
                drained_s = time.monotonic() - t_wait
        # Heartbeats' last-seen may be written in batches: give the last batch its time.
        time.sleep(LAST_SEEN_FLUSH_S + 1.0)
        after = db.counts(since=wall_start)
        pg_after = db.pg_writes()
        pg_writes = ({k: pg_after.get(k, 0) - pg_before.get(k, 0) for k in pg_after}
                     if pg_after is not None and pg_before is not None else None)
        api_check = _api_check(dport, token, plan, rx_result)
        for name, pid in (("gateway", gproc.pid), ("dispatch", dpid)):
            rss, hwm = _rss_kb(pid)
            rss_peak[name] = max(rss_peak.get(name, 0), rss, hwm)
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
        for p in procs:
            _stop(p)
        _stop(gproc)
        db.close()
    cpu, _threads = _cpu_pct(snap0, snap1)
    return Run(backend, plan, sender_results, rx_result, sse_result, before, after, pg_writes,
               backlog_max, backlog_end_of_load, backlog_after, drained_s, rss_peak, cpu,
               startup_s, api_check, _log_levels(spec.log_path))


def _api_check(port: int, token: str, plan: hbload.Plan, rx: hbload.ReceiverResult) -> str:
    """GET /api/alarms as an operator: is every answered help call's unit in the queue?"""
    import httpx

    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/api/alarms",
                         params={"scope": "open"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
        resp.raise_for_status()
        cids = {a["cid"] for a in resp.json()["alarms"]}
    except Exception as exc:
        return f"GET /api/alarms failed: {type(exc).__name__}: {exc}"
    wanted = {plan.help_cid(j) for j in rx.help_answered_at}
    missing = wanted - cids
    return (f"GET /api/alarms: {len(wanted & cids)} / {len(wanted)} answered help calls' units "
            f"have an open alarm" + (f"; MISSING {sorted(missing)[:5]}" if missing else ""))


def _log_levels(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in (path, path.with_suffix(".dispatch.log")):
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            for level in ("warning", "error", "critical"):
                if f'"level": "{level}"' in line:
                    who = "dispatch" if p.name.endswith(".dispatch.log") else "gateway"
                    key = f"{who} {level}"
                    counts[key] = counts.get(key, 0) + 1
    return counts


# -- figures -----------------------------------------------------------------------------------


@dataclass
class Figures:
    hb_sent: int
    hb_answered: int
    help_sent: int
    help_answered: int
    help_mrs_ms: list[float]
    help_queue_ms: list[float]
    help_not_in_queue: int
    hb_ms: list[float]
    rows_per_k: float
    event_rows_hb: int
    link_rows: int
    links_touched: int


def figures(r: Run) -> Figures:
    rx = r.receiver
    hb_sent = sum(s["sent"] for s in r.senders)
    mrs = [(rx.help_answered_at[j] - rx.help_sent_at[j]) * 1000 for j in rx.help_answered_at]
    first: dict[str, list[float]] = {}
    for at, cid, _alarm_id in r.sse.get("seen", []):
        first.setdefault(cid, []).append(at)
    queue: list[float] = []
    missing = 0
    for j, due in rx.help_sent_at.items():
        times = [t for t in first.get(r.plan.help_cid(j), []) if t >= due]
        if times:
            queue.append((min(times) - due) * 1000)
        else:
            missing += 1
    ev_hb = r.after["events_heartbeat"] - r.before["events_heartbeat"]
    links = r.after["links"] - r.before["links"]
    rows_per_k = 1000 * (ev_hb + links) / hb_sent if hb_sent else float("nan")
    return Figures(hb_sent, rx.hb_answered, rx.help_sent, len(rx.help_answered_at), mrs, queue,
                   missing, rx.hb_latency_ms, rows_per_k, ev_hb, links,
                   r.after.get("links_touched", 0))


def _ms(values: list[float]) -> str:
    v = sorted(values)
    if not v:
        return "-"
    return f"{pct(v, 50):,.0f} / {pct(v, 99):,.0f} ms (max {v[-1]:,.0f}, n={len(v)})"


def print_run(r: Run) -> None:
    f = figures(r)
    rx = r.receiver
    lag = max((s["lag_max_s"] for s in r.senders), default=0.0)
    late = sum(s["late_100ms"] for s in r.senders)
    print(f"  heartbeats: sent {f.hb_sent:,}, answered {f.hb_answered:,} "
          f"({f.hb_sent - f.hb_answered:,} unanswered after the drain), duplicates "
          f"{rx.hb_duplicates}, non-zero snu {rx.hb_not_ok}")
    print(f"    sent to schedule: worst sender lateness {1000 * lag:,.0f} ms, "
          f"{late:,} heartbeats sent > 100 ms late; unacked by the broker "
          f"{sum(s['unacked'] for s in r.senders)}")
    print(f"    latency scheduled send -> <mrs>: {_ms(f.hb_ms)}")
    print(f"  help calls: sent {f.help_sent}, answered {f.help_answered}, non-zero snu "
          f"{rx.help_not_ok}; sender lateness max {1000 * rx.help_lag_max_s:.0f} ms")
    print(f"    -> <mrs> p50 / p99: {_ms(f.help_mrs_ms)}")
    print(f"    -> operators' queue (first on /api/stream) p50 / p99: {_ms(f.help_queue_ms)}"
          + (f"; {f.help_not_in_queue} never appeared" if f.help_not_in_queue else ""))
    print(f"    {r.api_check}")
    print(f"  answers: {rx.strict_checked} read strictly with scaip.decode_response; "
          f"unexpected {rx.unexpected}, malformed {rx.bad_frames}")
    print(f"  rows: device_events +{r.after['events'] - r.before['events']:,} "
          f"({f.event_rows_hb:,} heartbeats), device_links +{f.link_rows:,} "
          f"({f.links_touched:,} rows last seen during the run), alarms "
          f"+{r.after['alarms'] - r.before['alarms']}")
    print(f"    rows per 1,000 heartbeats (heartbeat rows in device_events + new device_links "
          f"rows): {f.rows_per_k:,.1f}")
    if r.pg_writes is not None:
        w = r.pg_writes
        print(f"    PostgreSQL statistics, rows inserted+updated+deleted: device_events "
              f"{w.get('device_events', 0):,}, device_links {w.get('device_links', 0):,} "
              f"= {1000 * sum(w.values()) / max(f.hb_sent, 1):,.1f} per 1,000 heartbeats")
    drained = (f"applied everything {r.drained_s:.1f} s after the answers"
               if r.drained_s is not None else f"still {r.backlog_after:,} behind after the drain")
    print(f"  dispatch inbox backlog: max {r.backlog_max:,} while loading and draining, "
          f"{r.backlog_end_of_load:,} when the load ended; {drained}")
    print(f"  memory, peak RSS: gateway {r.rss_peak_kb.get('gateway', 0) / 1024:,.0f} MB, "
          f"dispatch {r.rss_peak_kb.get('dispatch', 0) / 1024:,.0f} MB")
    print("  CPU during the load (% of one core; 'others' = the rest of this machine): "
          + ", ".join(f"{k} {v:.0f}%" for k, v in r.cpu.items()))
    if r.log_levels:
        print(f"  logs: {r.log_levels}")


def print_summary(runs: list[Run]) -> None:
    rows: list[tuple[str, ...]] = [("figure", *[r.backend for r in runs], "target", "")]
    figs = [figures(r) for r in runs]
    all_ok = [f.hb_answered == f.hb_sent and f.help_answered == f.help_sent for f in figs]

    def row(name: str, values: list[str], target: str = "", verdict: str = "") -> None:
        rows.append((name, *values, target, verdict))

    row("heartbeats sent / answered", [f"{f.hb_sent:,} / {f.hb_answered:,}" for f in figs])
    row("help calls sent / answered", [f"{f.help_sent} / {f.help_answered}" for f in figs])
    row("every message answered", ["PASS" if ok else "FAIL" for ok in all_ok],
        "all answered", "PASS" if all(all_ok) else "FAIL")
    row("heartbeat -> <mrs> p50 / p99", [_p(f.hb_ms) for f in figs])
    row("help call -> <mrs> p50 / p99", [_p(f.help_mrs_ms) for f in figs])
    row("help call -> operators' queue p50 / p99", [_p(f.help_queue_ms) for f in figs])
    row("rows per 1,000 heartbeats", [f"{f.rows_per_k:,.0f}" for f in figs])
    row("inbox backlog max / end of load / after",
        [f"{r.backlog_max:,} / {r.backlog_end_of_load:,} / {r.backlog_after:,}" for r in runs])
    row("peak RSS gateway / dispatch",
        [f"{r.rss_peak_kb.get('gateway', 0) / 1024:,.0f} / "
         f"{r.rss_peak_kb.get('dispatch', 0) / 1024:,.0f} MB" for r in runs])
    row("CPU gateway / dispatch / others",
        [f"{r.cpu.get('gateway', 0):.0f} / {r.cpu.get('dispatch', 0):.0f} / "
         f"{r.cpu.get('others', 0):.0f} %" for r in runs])
    print_table(rows)


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table, the first row its header."""
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+-" + "-+-".join("-" * x for x in w) + "-+"
    print("\n" + line)
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w[k]) for k, c in enumerate(r)) + " |")
        if i == 0:
            print(line)
    print(line)


def _p(values: list[float]) -> str:
    v = sorted(values)
    return f"{pct(v, 50):,.0f} / {pct(v, 99):,.0f} ms" if v else "-"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/heartbeats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=4200.0,
                   help="heartbeats per second, all units together (default 4200)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of load (default 60)")
    p.add_argument("--interval", type=float, default=60.0,
                   help="each unit's heartbeat interval in seconds (default 60, the "
                        "shortest SCAIP allows); units = rate x interval unless --units")
    p.add_argument("--units", type=int, default=None,
                   help="heartbeating units (default rate x interval = 252,000)")
    p.add_argument("--senders", type=int, default=2,
                   help="sender processes sharing the heartbeats (default 2)")
    p.add_argument("--help-rate", type=float, default=1.0,
                   help="help calls (alarm presses) per second (default 1)")
    p.add_argument("--help-units", type=int, default=1000,
                   help="registered units the help calls come from, one each (default 1000)")
    p.add_argument("--drain", type=float, default=60.0,
                   help="max seconds to wait for outstanding answers, and then for "
                        "dispatch's backlog, after the load (default 60)")
    p.add_argument("--no-seed-links", dest="seed_links", action="store_false",
                   help="do not give every unit a device_links row before the run (by "
                        "default they have one, as units known for months would)")
    p.add_argument("--postgres", metavar="URL", default=None,
                   help="also run on PostgreSQL (a fresh schema, dropped afterwards)")
    p.add_argument("--skip-sqlite", action="store_true", help="with --postgres: PostgreSQL only")
    p.add_argument("--log-level", default="info", help="the services' log level (default info)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (logs, SQLite)")
    args = p.parse_args(argv)
    if args.units is None:
        args.units = round(args.rate * args.interval)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        print("bench/heartbeats needs Mosquitto (apt-get install -y mosquitto)", file=sys.stderr)
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
    help_cids = gw.bench_cids(args.help_units)
    print(f"Trygg heartbeat benchmark — {machine_line()}")
    print(f"load: {args.rate:g} heartbeats/s (mty PI) from {args.units:,} units (cids "
          f"{hbload.HB_CID_BASE}.., each every {args.units / args.rate:.0f} s), "
          f"{args.help_rate:g} help call/s from {args.help_units} registered units "
          f"(cids {help_cids[0]}..), QoS 1 both ways, {args.duration:g} s, "
          f"{args.senders} sender processes + 1 receiver")
    runs: list[Run] = []
    try:
        with _workdir(args.keep) as tmp, mosquitto() as broker:
            mosq_pid = _child_pid("mosquitto")
            print(f"broker: {binary} on {broker.host}:{broker.port} (pid {mosq_pid})")
            config = tmp / "bench-municipality.yaml"
            gw.write_config(config, help_cids)
            for backend, pg_url in backends:
                print(f"\n[{backend}]", flush=True)
                schema = None
                if pg_url is None:
                    url = f"sqlite:///{tmp / 'heartbeats.db'}"
                else:
                    schema = f"trygg_bench_{secrets.token_hex(4)}"
                    pg_schema(pg_url, schema, create=True)
                    url = pg_schema_url(pg_url, schema)
                    print(f"  schema {schema} (dropped afterwards)")
                try:
                    run = bench_backend(ctx, backend, url, broker, args, config, tmp,
                                        help_cids, mosq_pid)
                finally:
                    if schema is not None:
                        pg_schema(pg_url, schema, create=False)  # type: ignore[arg-type]
                print_run(run)
                runs.append(run)
            print_summary(runs)
    except RuntimeError as exc:
        print(f"\nbench/heartbeats: {exc}", file=sys.stderr)
        return 2
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s; load average now "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
