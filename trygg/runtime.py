"""The running service: gateway, dispatch, API and dashboard (and the simulator) wired together.

`Service` is the composition root. Whatever it opens it closes; every background loop is
a named task, and if one of them dies the service stops loudly instead of limping on
without, say, its reminder sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import structlog
import uvicorn
from prometheus_client import REGISTRY

from dispatch.api.app import create_app
from dispatch.api.deps import AppState
from dispatch.config import MunicipalityConfig, load_config
from dispatch.live import LiveFeed
from dispatch.metrics import AlarmStateCollector
from dispatch.registry import import_config, registry_is_empty
from dispatch.services import DispatchRules
from dispatch.worker import Dispatcher
from gateway.ingest import Ingest
from gateway.mqtt import MqttLink
from trygg.broker import EmbeddedBroker
from trygg.clock import Clock, SystemClock
from trygg.db import Database
from trygg.migrations import upgrade
from trygg.settings import SHIPPED_CONFIG, Settings

log = structlog.get_logger(__name__)


class Service:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 run_timer_loop: bool = True) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.run_timer_loop = run_timer_loop
        self.db = Database(settings.database_url)
        self.config: MunicipalityConfig = load_config(settings.config or SHIPPED_CONFIG)
        self.rules = DispatchRules(self.config.shifts, self.config.timers,
                                   settings.mqtt_topic_root)
        self.live = LiveFeed()
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        self._failed = asyncio.Event()
        self._collector: AlarmStateCollector | None = None
        self.mqtt_host, self.mqtt_port = self._mqtt_address()
        # A stable client id per topic root gives the gateway a persistent broker session.
        suffix = hashlib.sha256(settings.mqtt_topic_root.encode()).hexdigest()[:8]
        self.link = MqttLink("devices", self.mqtt_host, self.mqtt_port,
                             identifier=f"trygg-gateway-{suffix}",
                             username=settings.mqtt.username if settings.mqtt else None,
                             password=settings.mqtt.password if settings.mqtt else None)
        self.dispatcher = Dispatcher(self.db, self.clock, self.rules, self.live,
                                     publish=self._publish_to_team)
        self.ingest = Ingest(self.db, self.clock, topic_root=settings.mqtt_topic_root,
                             on_committed=self.dispatcher.wake)
        self.ingest.attach(self.link)
        self.app = create_app(AppState(
            db=self.db, clock=self.clock, rules=self.rules, live=self.live,
            dispatcher=self.dispatcher, readiness={"mqtt": lambda: self.link.connected}))
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host=settings.http_host, port=settings.http_port,
            log_config=None, access_log=False, lifespan="off"))

    def _mqtt_address(self) -> tuple[str, int]:
        target = self.settings.mqtt
        if target is None:
            return "127.0.0.1", self.settings.embedded_mqtt_port
        return target.host, target.port

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    async def _publish_to_team(self, topic: str, payload: str) -> None:
        await self.link.publish(topic, payload)

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
        self._failed.set()  # any loop ending (even uvicorn on SIGTERM) stops the service

    async def __aenter__(self) -> Service:
        await asyncio.to_thread(upgrade, self.db.engine)
        await self.db.write(self._seed_registry)
        self._collector = AlarmStateCollector(self.db)
        REGISTRY.register(self._collector)
        if self.settings.mqtt is None:
            await self._stack.enter_async_context(EmbeddedBroker("127.0.0.1", self.mqtt_port))
        self._spawn(self.link.run(), "trygg.gateway.mqtt")
        self._spawn(self.ingest.run(), "trygg.gateway.ingest")
        self._spawn(self.dispatcher.run_events(), "trygg.dispatch.events")
        if self.run_timer_loop:
            self._spawn(self.dispatcher.run_timers(self.settings.timer_sweep_s),
                        "trygg.dispatch.timers")
        self._spawn(self.dispatcher.run_outbox(), "trygg.dispatch.outbox")
        self._spawn(self.server.serve(), "trygg.http")
        await self.link.wait_connected(timeout_s=30)
        while not self.server.started:
            if self._failed.is_set():
                raise RuntimeError("the service failed while starting; see the log")
            await asyncio.sleep(0.02)
        log.info("service_started", http=self.http_url, mqtt=f"{self.mqtt_host}:{self.mqtt_port}",
                 topic_root=self.settings.mqtt_topic_root)
        return self

    def _seed_registry(self, session: Any) -> None:
        # An empty database gets the configured registry; after that the API owns it,
        # and `trygg import` applies a file on purpose.
        if registry_is_empty(session):
            counts = import_config(session, self.config)
            log.info("registry_seeded", created=counts.created)

    async def wait(self) -> None:
        """Until a signal stops uvicorn or a background loop dies."""
        await self._failed.wait()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "trygg.http":
                task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 10)
        await self._stack.aclose()
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
        self.db.close()
        log.info("service_stopped")
