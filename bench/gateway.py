"""The gateway under test: the real `trygg.runtime.Service` in a process of its own.

The product path unchanged: `Service` with its real `MqttLink` pointed at the benchmark's
Mosquitto, the real `Ingest` (decode, group commit, answer after the commit), the real
`Dispatcher` consuming the stored events on the same writer thread, the HTTP API, and
structlog at the given level (to a log file). The registry is seeded by `Service`
itself from a generated configuration: the shipped areas and providers plus one
customer, site and base unit per benchmark cid, so every alarm is routed to a team.

Also here: the database checks the benchmark runs afterwards, from the parent process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, func, select, text

from tests.brokers import free_port

CID_BASE = 900000
DAY_PROVIDERS = ("solrosen", "kommunens-hemtjanst", "trygga-hander")
AREAS = ("kungsangen", "bro")


def bench_cids(n: int) -> list[str]:
    return [str(CID_BASE + i) for i in range(n)]


def bench_config(cids: Sequence[str],
                 areas: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The shipped areas, providers and teams, and one customer per benchmark unit: `cids`
    in the shipped areas in turn, and the units of each of `areas` (code -> cids) in an
    area of its own, which gets a night patrol and a Solrosen team so that its alarms are
    routed too. Validated here, so a mistake fails in the parent, not in a child."""
    from core.settings import SHIPPED_CONFIG
    from dispatch.config import MunicipalityConfig

    raw = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    raw["municipality"] = "Benchmark"
    placed = [(cid, AREAS[i % len(AREAS)]) for i, cid in enumerate(cids)]
    for area, area_cids in (areas or {}).items():
        raw["areas"].append({"code": area, "name": f"Bench area {area}"})
        for provider in raw["providers"]:
            if provider["code"] == DAY_PROVIDERS[0] or provider["kind"] == "night":
                team = "nattpatrull" if provider["kind"] == "night" else provider["code"]
                provider["teams"].append({"code": f"{team}-{area}", "name": f"{team} {area}",
                                          "area": area})
        placed.extend((cid, area) for cid in area_cids)
    raw["customers"] = [
        {
            "code": f"B-{cid}",
            "name": f"Bench customer {i}",
            "day_provider": DAY_PROVIDERS[i % len(DAY_PROVIDERS)],
            "sites": [{
                "code": f"B-{cid}-1",
                "address": f"Benchvägen {i}",
                "city": "Bro",
                "area": area,
                "devices": [{"cid": cid, "model": "bench unit"}],
            }],
        }
        for i, (cid, area) in enumerate(placed)
    ]
    MunicipalityConfig.model_validate(raw)
    return raw


def dump_config(path: Path, raw: dict[str, Any]) -> None:
    # libyaml's dumper when there is one: pure-Python YAML takes ~20 s for 20,000 customers.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(raw, Dumper=dumper, allow_unicode=True), encoding="utf-8")


def write_config(path: Path, cids: list[str],
                 areas: Mapping[str, Sequence[str]] | None = None) -> None:
    """The shipped areas, providers and teams, and one customer per benchmark unit."""
    dump_config(path, bench_config(cids, areas))


@dataclass
class GatewaySpec:
    mqtt_url: str
    root: str
    database_url: str
    config: Path
    http_port: int
    log_path: Path
    log_level: str = "info"
    # "service": the whole trygg.runtime.Service (the figure that counts).
    # "ingest-only": the same MqttLink + Ingest + Database, without dispatch, API or
    # timers, to show how much of the gateway's time dispatch takes (--ingest-only).
    mode: str = "service"


# -- the child process ------------------------------------------------------------------


def run(spec: GatewaySpec, conn: Connection) -> None:
    """Process entry: start the service, answer "stats", stop on "stop"."""
    log = spec.log_path.open("w", encoding="utf-8", buffering=1)
    sys.stderr = log  # structlog's PrintLoggerFactory binds sys.stderr when configured
    try:
        asyncio.run(_main(spec, conn))
    except BaseException as exc:
        import traceback

        traceback.print_exc(file=log)
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


async def _main(spec: GatewaySpec, conn: Connection) -> None:
    from core.logs import configure_logging
    from core.settings import Settings
    from trygg.runtime import Role, Service

    configure_logging(spec.log_level)
    settings = Settings(mqtt_url=spec.mqtt_url, mqtt_topic_root=spec.root,
                        database_url=spec.database_url, http_port=spec.http_port,
                        config=spec.config, log_level=spec.log_level)
    if spec.mode == "ingest-only":
        async with _IngestOnly(settings) as ingest_only:
            await _serve(conn, ingest_only.wait())
    else:
        # As `trygg run` runs the product: this process is the gateway role, and the
        # dispatch role (migrations, registry, alarms) is a process of its own beside it.
        dispatch, dispatch_port = await _start_dispatch_ready(spec)
        try:
            async with Service(settings, roles={Role.GATEWAY}) as service:
                await _serve(conn, service.wait(),
                             {"dispatch_pid": dispatch.pid, "dispatch_port": dispatch_port})
        finally:
            dispatch.terminate()
            dispatch.wait(20)
    conn.send(("stopped", None))


async def _start_dispatch_ready(spec: GatewaySpec) -> tuple[subprocess.Popen[bytes], int]:
    """Start dispatch and wait until it is ready, as `trygg run` does before the gateway.

    A port picked as free can be taken by another connection's ephemeral port during a
    slow start (a big prefilled database): uvicorn then exits with 3, and we try again on
    another port.
    """
    for attempt in range(3):
        dispatch, port = _start_dispatch(spec)
        try:
            await _wait_ready(port, dispatch)
            return dispatch, port
        except RuntimeError:
            if dispatch.poll() != 3 or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_dispatch(spec: GatewaySpec) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "TRYGG_MQTT_URL": spec.mqtt_url, "TRYGG_MQTT_TOPIC_ROOT": spec.root,
           "TRYGG_DATABASE_URL": spec.database_url, "TRYGG_CONFIG": str(spec.config),
           "TRYGG_HTTP_PORT": str(port), "TRYGG_LOG_LEVEL": spec.log_level}
    log = spec.log_path.with_suffix(".dispatch.log").open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "trygg.cli", "run", "--role", "dispatch"],
                            env=env, stdout=log, stderr=log)
    return proc, port


async def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    import httpx

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the dispatch process exited with {proc.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("dispatch did not become ready")
            await asyncio.sleep(0.1)


class _IngestOnly:
    """What `Service` builds for the device side, and nothing else (no dispatch)."""

    def __init__(self, settings: Any) -> None:
        from core.clock import SystemClock
        from core.db import Database
        from gateway.ingest import Ingest
        from gateway.mqtt import MqttLink

        self.db = Database(settings.database_url)
        target = settings.mqtt
        self.link = MqttLink("devices", target.host, target.port,
                             identifier=f"trygg-gateway-bench-{os.getpid()}")
        self.ingest = Ingest(self.db, SystemClock(), topic_root=settings.mqtt_topic_root)
        self.ingest.attach(self.link)
        self.tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> _IngestOnly:
        from trygg.migrations import upgrade

        await asyncio.to_thread(upgrade, self.db.engine)
        self.tasks = [asyncio.create_task(self.link.run()),
                      asyncio.create_task(self.ingest.run())]
        await self.link.wait_connected(timeout_s=30)
        return self

    async def wait(self) -> None:
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)

    async def __aexit__(self, *exc: object) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.db.close()


async def _serve(conn: Connection, wait: Any, info: dict[str, Any] | None = None) -> None:
    """Report ready (with the dispatch process's pid and HTTP port when there is one), then
    answer the parent's "stats" until it says "stop"."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    conn.send(("ready", {"pid": os.getpid(), **(info or {})}))
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    failed = asyncio.ensure_future(wait)
    try:
        while True:
            get = asyncio.create_task(commands.get())
            done, _ = await asyncio.wait({get, failed}, return_when=asyncio.FIRST_COMPLETED)
            if failed in done:
                get.cancel()
                conn.send(("failed", "a service loop ended; see the gateway log"))
                return
            command = get.result()
            if command == "stats":
                conn.send(("stats", _stats()))
            elif command == "stop":
                return
    finally:
        loop.remove_reader(conn.fileno())
        failed.cancel()


def _stats() -> dict[str, Any]:
    """The gateway's own Prometheus figures, and which OS thread is which."""
    from prometheus_client import REGISTRY

    samples: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if not metric.name.startswith("trygg_"):
            continue
        for s in metric.samples:
            if s.name.endswith(("_created",)):
                continue
            key = s.name + (
                "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
                if s.labels else "")
            samples[key] = s.value
    threads = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    return {"samples": samples, "threads": threads}


# -- checks from the parent -------------------------------------------------------------


@dataclass
class DbCheck:
    rows: int                  # device_events rows of this run (by ref prefix)
    answered: int              # distinct requests the device side got an answer to
    answered_not_stored: int   # answered but no row: must be 0
    stored_not_answered: int   # rows never answered (sent before the stop, not drained)
    unprocessed: int           # rows dispatch had not consumed yet when checked
    alarms: int
    alarm_log: int

    in_flight: int = 0         # sent but not answered when the device side gave up waiting

    @property
    def ok(self) -> bool:
        """Nothing answered that is not stored; and when every request was answered, the
        rows are exactly the answered requests (else the surplus must be in-flight ones)."""
        if self.answered_not_stored:
            return False
        if self.in_flight == 0:
            return self.rows == self.answered
        return self.stored_not_answered <= self.in_flight


def check_database(url: str, ref_prefix: str, answered_refs: list[str],
                   unanswered_refs: list[str], cids: list[str]) -> DbCheck:
    """Compare the device_events rows of one run with what its device side saw answered.

    The load generator sends ref f"{ref_prefix}{i}" from cids[i % len(cids)], so each
    stored row is also checked to carry the cid its ref was sent from.
    """
    from core.inbox import DeviceEventRow

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(DeviceEventRow.ref, DeviceEventRow.cid)
                .where(DeviceEventRow.ref.like(f"{ref_prefix}%"))
            ).all()
            unprocessed = c.execute(
                select(func.count()).select_from(DeviceEventRow)
                .where(DeviceEventRow.processed_at.is_(None))
            ).scalar_one()
            alarms = c.execute(text("SELECT count(*) FROM alarms")).scalar_one()
            alarm_log = c.execute(text("SELECT count(*) FROM alarm_log")).scalar_one()
    finally:
        engine.dispose()
    stored = {ref: cid for ref, cid in rows}
    answered = set(answered_refs)
    def cid_of(ref: str) -> str:
        return cids[int(ref[len(ref_prefix):]) % len(cids)]

    missing = [r for r in answered if stored.get(r) != cid_of(r)]
    # A stored row must be one of the requests sent and not answered yet, never a stranger.
    strangers = set(stored) - answered - set(unanswered_refs)
    missing.extend(strangers)
    return DbCheck(rows=len(rows), answered=len(answered),
                   answered_not_stored=len(missing),
                   stored_not_answered=len(set(stored) - answered),
                   in_flight=len(unanswered_refs),
                   unprocessed=int(unprocessed), alarms=int(alarms),
                   alarm_log=int(alarm_log))


def unprocessed_events(url: str) -> int:
    from core.inbox import DeviceEventRow

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(
                select(func.count()).select_from(DeviceEventRow)
                .where(DeviceEventRow.processed_at.is_(None))).scalar_one())
    finally:
        engine.dispose()
