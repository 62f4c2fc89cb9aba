"""Run the whole service in-process for end-to-end tests, and talk to it as users and devices do."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from core.clock import Clock
from core.settings import Settings
from dispatch.users import add_user
from tests.brokers import Broker, free_port
from trygg.runtime import Service

# The service's clock in tests: never the hour the test happens to run at. A Monday in
# November (CET, UTC+1), inside and outside the day providers' 07:00-22:00.
MONDAY_10_LOCAL = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
MONDAY_23_LOCAL = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 23:00 in Stockholm: night


class ShiftedClock:
    """Starts at a chosen instant and then moves with real elapsed (monotonic) time.

    For tests where time has to pass on its own, such as a dashboard counting down to a
    deadline, but must not depend on the hour or the date the test is run at.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._start = start.astimezone(UTC)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)

    def advance(self, delta: timedelta) -> None:
        self._start += delta


def test_settings(broker: Broker, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mqtt_url": broker.url,
        # Each service gets its own topic root, so tests sharing the broker never meet.
        "mqtt_topic_root": f"test/{secrets.token_hex(4)}",
        "database_url": database_url,
        "http_port": free_port(),
        "timer_sweep_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_service(settings: Settings, *, clock: Clock | None = None,
                          run_timer_loop: bool = True) -> AsyncIterator[Service]:
    """The whole service in this process. Without a `clock` it runs on a ShiftedClock from
    a weekday morning, never on the wall clock: a test passes at 03:00 as at noon."""
    clock = clock or ShiftedClock(MONDAY_10_LOCAL)
    async with Service(settings, clock=clock, run_timer_loop=run_timer_loop) as service:
        yield service


def make_token(service: Service, name: str = "operator-1", role: str = "operator") -> str:
    now = service.clock.now()
    return service.db.transaction(lambda s: add_user(s, name, role, now))


def api(service: Service, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=service.http_url, headers=headers, timeout=10)


class RawDevice:
    """A device side that publishes exact bytes and collects every <mrs> it is sent."""

    def __init__(self, broker: Broker, root: str, cid: str) -> None:
        self.broker = broker
        self.root = root
        self.cid = cid
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()
        self._stack = contextlib.AsyncExitStack()
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> RawDevice:
        self._client = await self._stack.enter_async_context(
            aiomqtt.Client(self.broker.host, self.broker.port))
        await self._client.subscribe(f"{self.root}/dev/{self.cid}/mrs", qos=1)
        task = asyncio.create_task(self._collect())
        self._stack.push_async_callback(_cancel, task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _collect(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            await self.answers.put(message.payload)

    async def send(self, frame: bytes, topic_cid: str | None = None) -> None:
        assert self._client is not None
        await self._client.publish(f"{self.root}/dev/{topic_cid or self.cid}/mrq", frame, qos=1)

    async def answer(self, timeout_s: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.answers.get(), timeout_s)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trygg.db'}"


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
