"""Run the gateway role as a child process of `trygg run`, and restart it if it dies.

The child is the same program (`trygg run --role gateway`) in its own session, so a
Ctrl-C at the terminal reaches only the parent, which then stops the child; and the
child stops by itself if the parent disappears without doing so.

The parent is ready only when the child says it is: alive is not enough, since a child
still connecting or subscribing would let a press sent at that moment go unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from types import TracebackType

import structlog

from core.settings import Settings

log = structlog.get_logger(__name__)
PARENT_PID_ENV = "TRYGG_PARENT_PID"
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


class GatewayProcess:
    def __init__(self, settings: Settings, *, restart_after_s: float = 1.0) -> None:
        self.settings = settings
        self.restart_after_s = restart_after_s
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._child_ready = False
        self._probe: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def http_port(self) -> int:
        return self.settings.gateway_http_port or self.settings.http_port + 1

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def ready(self) -> bool:
        """The child is alive and its own /readyz said ready at the last look."""
        return self.alive() and self._child_ready

    async def _watch_readiness(self, every_s: float = 0.25) -> None:
        # The loops end on `_stopping` as well as on cancel: on Python 3.11 a cancel that
        # meets an await finishing at that moment can be lost (asyncio.wait_for's race),
        # and a stop must not then wait for ever on a loop that goes on probing.
        while not self._stopping:
            self._child_ready = self.alive() and await child_ready(
                self.settings.http_host, self.http_port)
            await asyncio.sleep(every_s)

    def _env(self) -> dict[str, str]:
        # The child runs on the settings it was given, not on whatever the environment
        # says: they may have come from elsewhere (a test, a wrapper).
        env = {**os.environ, **{
            f"TRYGG_{name.upper()}": str(value)
            for name, value in self.settings.model_dump().items() if value is not None}}
        env.update({"TRYGG_HTTP_PORT": str(self.http_port), PARENT_PID_ENV: str(os.getpid())})
        env.pop("TRYGG_GATEWAY_HTTP_PORT", None)
        if self.settings.mqtt_url is None:  # the parent runs the embedded broker
            env["TRYGG_MQTT_URL"] = f"mqtt://127.0.0.1:{self.settings.embedded_mqtt_port}"
        return env

    async def _start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trygg.cli", "run", "--role", "gateway",
            env=self._env(), start_new_session=True)
        self.starts += 1
        log.info("gateway_process_started", pid=self._proc.pid, http_port=self.http_port)

    async def _watch(self) -> None:
        delay = self.restart_after_s
        while not self._stopping:
            if self._proc is not None:
                code = await self._proc.wait()
                if self._stopping:
                    return
                # Devices resend until answered, so a restarted gateway loses nothing.
                log.error("gateway_process_exited", pid=self._proc.pid, returncode=code,
                          restart_in_s=delay)
            await asyncio.sleep(delay)
            if self._stopping:  # no new child once the stop has begun
                return
            try:
                await self._start()
                delay = self.restart_after_s
            except OSError as exc:  # could not even start it: keep trying, less often
                self._proc = None
                delay = min(delay * 2, 30.0)
                log.error("gateway_process_start_failed", error=str(exc), retry_in_s=delay)

    async def __aenter__(self) -> GatewayProcess:
        await self._start()
        self._monitor = asyncio.create_task(self._watch(), name="trygg.supervise.gateway")
        self._probe = asyncio.create_task(self._watch_readiness(),
                                          name="trygg.supervise.gateway_ready")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping = True
        try:
            # The watchers first, so no new child is started behind the stop's back.
            for task in (self._monitor, self._probe):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:  # a watcher that died of a bug must not leave the child running
            if self._proc is not None and self._proc.returncode is None:
                self._proc.terminate()
                try:
                    async with asyncio.timeout(10):
                        await self._proc.wait()
                except TimeoutError:
                    self._proc.kill()
                    await self._proc.wait()


async def child_ready(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether the gateway child's /readyz on `host`:`port` answers 200 (a wildcard
    address is asked on loopback).

    A bare HTTP/1.0 request: the product needs no HTTP client library for one probe.
    """
    writer = None
    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of a stop.
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(_LOOPBACK.get(host, host), port)
        writer.write(b"GET /readyz HTTP/1.0\r\nHost: gateway\r\n\r\n")
        async with asyncio.timeout(timeout_s):
            status_line = await reader.readline()
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()


async def stop_when_orphaned(stop: Callable[[], None], poll_s: float = 1.0) -> None:
    """In a supervised child: call `stop` once the parent that started us is gone."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    # Nothing signals a parent's death to a child in its own session: look.
    while os.getppid() == int(parent):  # noqa: ASYNC110
        await asyncio.sleep(poll_s)
    log.error("gateway_parent_gone", parent_pid=parent)
    stop()
