"""The running service: gateway, dispatch, API and dashboard wired together, by role.

`Service` is the composition root. It runs one or both roles:

- gateway: device I/O. MQTT in, events committed to the inbox, answers out; serves only
  /healthz, /readyz and /metrics. It never migrates the schema.
- dispatch: the inbox to alarms, timers, the team outbox, the API and the dashboard;
  migrates the schema and seeds an empty registry.

Both in one process is simplest (tests, `trygg run --single-process`); as two processes
each has its own interpreter lock, and a fault in dispatch's code cannot stop devices
being answered (under `trygg run` the embedded broker lives in the dispatch process, so
production points both roles at Mosquitto).

Whatever `Service` opens it closes; every background loop is a named task, and if one
of them dies the service stops loudly instead of limping on without, say, its reminder
sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Any

import aiomqtt
import structlog
import uvicorn
from prometheus_client import REGISTRY

from core.clock import Clock, SystemClock
from core.db import Database
from core.inbox import LinkState
from core.settings import SHIPPED_CONFIG, Settings
from devices.codecs import Dc09Codec
from dispatch import audit
from dispatch.api.app import create_app, create_ops_app
from dispatch.api.deps import AppState, OpsState
from dispatch.config import MunicipalityConfig, load_config
from dispatch.leader import LeaderLock
from dispatch.live import LiveFeed
from dispatch.metrics import AlarmStateCollector
from dispatch.registry import import_config, registry_is_empty
from dispatch.retention import Retention
from dispatch.route_reload import RouteWatcher, tree_from_file
from dispatch.route_tree import RouteTree, tree_of
from dispatch.services import DispatchRules
from dispatch.supervision import SupervisionRule, Supervisor
from dispatch.technical import MassRule
from dispatch.worker import Dispatcher
from gateway.dc09_framing import Reply
from gateway.dc09_keys import load_keys
from gateway.dc09_tcp import Dc09TcpListener
from gateway.ingest import Ingest
from gateway.last_seen import LastSeenBook
from gateway.mqtt import MqttLink, tls_parameters
from gateway.serial_line import SerialLine, line_settings
from trygg.broker import EmbeddedBroker
from trygg.migrations import upgrade, wait_for_head

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: it re-raises a caught SIGTERM after serving,
    which would kill the process before the service has stopped what it started. The
    `trygg` command turns signals into `Service.stop` instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Role(StrEnum):
    GATEWAY = "gateway"
    DISPATCH = "dispatch"


ALL_ROLES = frozenset(Role)
# Without the gateway in the same process nobody wakes dispatch when events arrive:
# it looks for them this often instead (well inside the dashboard's one second).
INBOX_POLL_S = 0.1
DISPATCH_NICENESS = 10


def _is_open(line: SerialLine) -> bool:
    return line.is_open


class _LeadershipLost(Exception):
    """Another dispatcher may lead now: this one's loops must stop."""


def gateway_client_id(settings: Settings, roles: set[Role] | frozenset[Role]) -> str:
    """The gateway's MQTT client id: stable, and unguessable without its broker password.

    Mosquitto cannot tie a client id to an account, and a client connecting under a
    taken id throws the holder off (and its queued device messages are discarded). An
    id derived from the topic root alone could be worked out from this code by any
    unit's account; keyed with the gateway's own password, only the gateway knows it.
    """
    root = settings.mqtt_topic_root.encode()
    key = settings.mqtt.password if settings.mqtt else None
    suffix = (hmac.new(key.encode(), root, hashlib.sha256).hexdigest()[:20] if key
              else hashlib.sha256(root).hexdigest()[:8])  # no accounts: nothing to guard
    return f"trygg-{'-'.join(sorted(roles))}-{suffix}"


class Service:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 run_timer_loop: bool = True, roles: Iterable[Role] = ALL_ROLES,
                 readiness: dict[str, Callable[[], bool]] | None = None) -> None:
        self.settings = settings
        self.roles = frozenset(roles)
        if not self.roles:
            raise ValueError("a service needs at least one role")
        self.clock = clock or SystemClock()
        self.run_timer_loop = run_timer_loop
        # On PostgreSQL a process of dispatch alone does its database work at a lower
        # CPU priority: the gateway's answers come first, and dispatch applies the
        # backlog with the rest. Not on SQLite: a thread put aside while it holds the
        # file's one write lock would hold up the gateway (priority inversion); there
        # dispatch keeps its transactions short instead. Both roles in one process share
        # one writer: no change either.
        nice = (self.roles == {Role.DISPATCH}
                and not settings.database_url.startswith("sqlite"))
        self.db = Database(settings.database_url,
                           writer_niceness=DISPATCH_NICENESS if nice else 0)
        self.config: MunicipalityConfig = load_config(settings.config or SHIPPED_CONFIG)
        self.rules = DispatchRules(
            self.config.shifts, self.config.timers, settings.mqtt_topic_root,
            MassRule(units=settings.mass_event_units,
                     window=timedelta(seconds=settings.mass_event_window_s)),
            # A bad route tree stops the start here, saying where, not at the first alarm.
            tree_from_file(settings.routing_file, self.config.shifts)
            if settings.routing_file else tree_of(self.config.routing, self.config.shifts),
            self.config.handover)
        # Edits of the route tree apply to the next alarms without a restart.
        self.route_watcher = RouteWatcher(
            settings.routing_file or settings.config or SHIPPED_CONFIG, self.config.shifts)
        self.supervision = SupervisionRule(
            interval=timedelta(seconds=settings.supervision_interval_s),
            tolerance=timedelta(seconds=settings.supervision_tolerance_s),
            models={name: (timedelta(seconds=m.interval_s), timedelta(seconds=m.tolerance_s))
                    for name, m in self.config.supervision.models.items()})
        self.live = LiveFeed()
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        self._failed = asyncio.Event()
        self._collector: AlarmStateCollector | None = None
        self.mqtt_host, self.mqtt_port = self._mqtt_address()
        # A stable client id per topic root gives the gateway a persistent broker session
        # (the broker keeps device messages while it reconnects). Dispatch alone only
        # publishes: it gets a fresh id, so a standby beside the leader does not throw
        # the leader's link off the broker by connecting under the same one.
        identifier = gateway_client_id(settings, self.roles) \
            if Role.GATEWAY in self.roles else None
        self.link = MqttLink("devices", self.mqtt_host, self.mqtt_port,
                             identifier=identifier,
                             username=settings.mqtt.username if settings.mqtt else None,
                             password=settings.mqtt.password if settings.mqtt else None,
                             tls=self._mqtt_tls(),
                             on_state=self._link_state)
        # Since when the devices' broker link has been up without a break: supervision
        # judges nobody quiet for a time in which we could not hear them.
        self.listening_since: datetime | None = None
        self._link_changed_at: datetime | None = None
        self.dispatcher = Dispatcher(self.db, self.clock, self.rules, self.live,
                                     publish=self._publish_to_team)
        both = self.roles == ALL_ROLES
        self.last_seen = LastSeenBook(self.db, flush_s=settings.last_seen_flush_s,
                                      clock=self.clock,
                                      listening_since=lambda: self.listening_since,
                                      links=self._link_states)
        self.ingest = Ingest(self.db, self.clock, topic_root=settings.mqtt_topic_root,
                             # The interval units are given is the one they are held to.
                             heartbeat_interval_min=max(
                                 int(settings.supervision_interval_s // 60), 1),
                             resend_window=timedelta(seconds=settings.resend_window_s),
                             last_seen=self.last_seen,
                             on_committed=self.dispatcher.wake if both else None)
        if Role.GATEWAY in self.roles:
            self.ingest.attach(self.link)
        checks = {"mqtt": lambda: self.link.connected, **(readiness or {})}
        self.serial_lines, self.dc09_listener = self._dc09_links()
        for line in self.serial_lines:
            # A receiver whose line is down cannot pass on anyone's alarm: not ready.
            checks[f"serial:{line.name}"] = partial(_is_open, line)
        # Of several dispatch processes on one database only the lock holder runs the
        # loops; a standby serves the API and says "not ready" here until it leads.
        self.leader = LeaderLock(settings.database_url)
        self.retention = Retention(
            self.db, self.clock, event_days=settings.event_retention_days,
            raw_frame_days=settings.raw_frame_retention_days,
            interval_s=settings.retention_interval_s)
        self.supervisor = Supervisor(self.db, self.clock, self.supervision, self.rules.mass,
                                     topic_root=settings.mqtt_topic_root,
                                     sweep_s=settings.supervision_sweep_s,
                                     on_change=self.dispatcher.health_changed)
        if Role.DISPATCH in self.roles:
            checks["dispatch_leader"] = lambda: self.leader.is_leader
            self.app_state: AppState | None = AppState(
                db=self.db, clock=self.clock, rules=self.rules, live=self.live,
                dispatcher=self.dispatcher, readiness=checks, supervision=self.supervision,
                settings=settings)
            self.app = create_app(self.app_state)
        else:
            self.app_state = None
            self.app = create_ops_app(OpsState(db=self.db, readiness=checks, settings=settings))
        self.server = _Server(uvicorn.Config(
            self.app, host=settings.http_host, port=settings.http_port,
            log_config=None, access_log=False, lifespan="off",
            server_header=False,  # no product and version for a scanner to match
            # X-Forwarded-For only from the proxies named: otherwise any local process
            # could pick the address it is locked out and audited by.
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=settings.forwarded_allow_ips or None))

    def _mqtt_address(self) -> tuple[str, int]:
        target = self.settings.mqtt
        if target is None:
            return "127.0.0.1", self.settings.embedded_mqtt_port
        return target.host, target.port

    def _mqtt_tls(self) -> aiomqtt.TLSParameters | None:
        """TLS for an mqtts:// broker, with TRYGG_MQTT_CA_FILE and the client certificate."""
        settings, target = self.settings, self.settings.mqtt
        files = (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file)
        if target is None or not target.tls:
            if any(files):
                log.warning("mqtt_tls_files_unused", reason="TRYGG_MQTT_URL is not mqtts://")
            return None
        return tls_parameters(*files)

    def _dc09_links(self) -> tuple[list[SerialLine], Dc09TcpListener | None]:
        """The DC-09 receivers' serial lines and the TCP listener, if configured (gateway)."""
        settings = self.settings
        if Role.GATEWAY not in self.roles:
            return [], None
        if not settings.serial_paths and settings.dc09_tcp_address is None:
            return [], None
        keys = load_keys(settings.dc09_keys_file) if settings.dc09_keys_file else {}
        codec = Dc09Codec(keys=keys, past_s=settings.dc09_time_past_s,
                          future_s=settings.dc09_time_future_s)

        def on_frame(frame: bytes, reply: Reply) -> None:
            self.ingest.accept(frame, codec, reply)

        lines = [SerialLine(line, on_frame)
                 for line in line_settings(settings.serial_paths, self.config.serial)]
        address = settings.dc09_tcp_address
        listener = Dc09TcpListener(*address, on_frame) if address else None
        return lines, listener

    def _link_state(self, up: bool) -> None:
        now = self.clock.now()
        self.listening_since = now if up else None
        self._link_changed_at = now

    def _link_states(self) -> list[LinkState]:
        """The state of every link to devices, as the gateway writes it for the dashboard."""
        states = [LinkState("mqtt", "mqtt", self.link.state.value, self._link_changed_at)]
        states += [LinkState(f"serial:{line.name}", "serial", line.state.value, None)
                   for line in self.serial_lines]
        if self.dc09_listener is not None:
            states.append(LinkState("dc09_tcp", "dc09_tcp",
                                    "listening" if self.dc09_listener.listening else "starting",
                                    None))
        return states

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    async def _publish_to_team(self, topic: str, payload: str, *, retain: bool = False) -> None:
        await self.link.publish(topic, payload, retain=retain)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._on_task_done)
        self._tasks.append(task)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("service_task_died", task=task.get_name(), error=repr(exc))
        self._failed.set()  # any loop ending stops the service

    async def __aenter__(self) -> Service:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)  # close what was opened before failing
            raise

    async def _start(self) -> Service:
        dispatch, gateway = Role.DISPATCH in self.roles, Role.GATEWAY in self.roles
        if dispatch:
            await asyncio.to_thread(upgrade, self.db.engine)
            await self.db.write(self._seed_registry)
            self._collector = AlarmStateCollector(self.db, self.clock)
            REGISTRY.register(self._collector)
        else:
            await asyncio.to_thread(wait_for_head, self.db.engine)
        if self.settings.mqtt is None and dispatch:
            await self._stack.enter_async_context(EmbeddedBroker("127.0.0.1", self.mqtt_port))
        self._spawn(self.link.run(), "trygg.mqtt")
        if self.db.is_sqlite:
            self._spawn(self.db.run_checkpoints(), "trygg.db.checkpoint")
        if gateway:
            self._spawn(self.ingest.run(), "trygg.gateway.ingest")
            self._spawn(self.last_seen.run(), "trygg.gateway.last_seen")
            for line in self.serial_lines:
                self._spawn(line.run(), f"trygg.gateway.serial.{line.name}")
            if self.dc09_listener is not None:
                await self.dc09_listener.start()
                self._stack.push_async_callback(self.dc09_listener.close)
        if dispatch:
            self._spawn(self._lead(), "trygg.dispatch.lead")
            await self.leader.wait_tried(timeout_s=5)  # a lone dispatcher leads at once
        self._spawn(self.server.serve(), "trygg.http")
        if gateway:
            # Without the broker the gateway is useless; dispatch is not (the dashboard,
            # reminders and the inbox go on, and the team outbox waits for the link).
            await self.link.wait_connected(timeout_s=30)
        while not self.server.started:
            if self._failed.is_set():
                raise RuntimeError("the service failed while starting; see the log")
            await asyncio.sleep(0.02)
        log.info("service_started", roles=sorted(self.roles), http=self.http_url,
                 mqtt=f"{self.mqtt_host}:{self.mqtt_port}",
                 topic_root=self.settings.mqtt_topic_root)
        return self

    async def _let_go_of_devices(self) -> None:
        """A graceful stop: commit and answer the frames already taken from the broker
        (the client has acknowledged them: the broker will not send them again), and
        write last-seen, while the link is still up. No unsubscribe: the persistent
        session keeps the subscription, so the broker queues what devices send while
        no gateway is connected. A frame taken in the moment between the drain and the
        disconnect goes unanswered, and its device resends it."""
        await self.ingest.drain()
        await self.last_seen.flush()

    def _leader_loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, Any]]]:
        """The loops only the leading dispatcher runs, by task name: add new ones here."""
        poll_s = 1.0 if Role.GATEWAY in self.roles else INBOX_POLL_S
        loops: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
            "trygg.dispatch.events": lambda: self.dispatcher.run_events(poll_s),
            "trygg.dispatch.outbox": self.dispatcher.run_outbox,
            "trygg.dispatch.routes": self._watch_routes,
        }
        if self.run_timer_loop:
            loops["trygg.dispatch.timers"] = lambda: self.dispatcher.run_timers(
                self.settings.timer_sweep_s)
            loops["trygg.dispatch.retention"] = self.retention.run
            loops["trygg.dispatch.supervision"] = self.supervisor.run
        return loops

    async def _lead(self) -> None:
        """Hold or wait for the leader lock; run the leader's loops while it is held.

        Leadership lost (the lock's connection gone) stops the loops and waits to lead
        again; a loop that dies stops the service, as any other task does.
        """
        async with self.leader:
            while True:
                await self.leader.wait_leading()
                try:
                    async with asyncio.TaskGroup() as loops:
                        for name, loop in self._leader_loops().items():
                            loops.create_task(loop(), name=name)
                        loops.create_task(self._until_lost(), name="trygg.dispatch.lead-watch")
                except* _LeadershipLost:
                    log.warning("dispatch_loops_stopped", reason="leadership lost")

    async def _watch_routes(self) -> None:
        while True:
            await asyncio.sleep(self.settings.routing_reload_s)
            try:
                tree = await asyncio.to_thread(self.route_watcher.poll)
            except Exception:  # a loop that ends stops the service: this one must not
                log.exception("routes_watch_failed")
                continue
            if tree is not None:
                self.use_routes(tree)

    def use_routes(self, tree: RouteTree) -> None:
        """Route the next alarms by `tree`; running ones keep their frozen decision."""
        self.rules = dataclasses.replace(self.rules, routes=tree)
        self.dispatcher.rules = self.rules
        if self.app_state is not None:
            self.app_state.rules = self.rules

    async def _until_lost(self) -> None:
        await self.leader.wait_lost()
        raise _LeadershipLost

    def _seed_registry(self, session: Any) -> None:
        # An empty database gets the configured registry; after that the API owns it,
        # and `trygg import` applies a file on purpose.
        if registry_is_empty(session):
            counts = import_config(session, self.config)
            audit.record(session, audit.System("system"), "registry.seed", self.clock.now(),
                         detail={"created": counts.created})
            log.info("registry_seeded", created=counts.created)

    async def wait(self) -> None:
        """Until a signal stops uvicorn, a background loop dies, or `stop` is called."""
        await self._failed.wait()

    def stop(self) -> None:
        self._failed.set()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if Role.GATEWAY in self.roles and self._tasks:
            await self._let_go_of_devices()
        self.server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "trygg.http":
                task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 10)
        await self._stack.aclose()
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
            self._collector = None
        self.db.close()
        log.info("service_stopped")
