"""The live stream ends for a user whose token stops working, however busy it is."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from core.clock import FakeClock
from dispatch import users
from dispatch.api import stream
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings
from trygg.runtime import Service

pytestmark = pytest.mark.mqtt


async def event_kinds(client: httpx.AsyncClient, kinds: list[str],
                      on_event: asyncio.Event) -> None:
    """Read the stream until the server ends it, noting each event's name."""
    async with client.stream("GET", "/api/stream") as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
                on_event.set()


ENDINGS = {
    "a new token": lambda s, name, now: users.rotate_token(s, name, "operator", now),
    "tokens revoked": lambda s, name, now: users.revoke_tokens(s, name, now),
    "user disabled": lambda s, name, now: users.set_enabled(s, name, False, now),
}


def revoke(service: Service, name: str, how: str = "a new token") -> None:
    service.db.transaction(lambda s: ENDINGS[how](s, name, service.clock.now()))


@pytest.mark.parametrize("how", list(ENDINGS))
async def test_a_revoked_token_ends_a_busy_stream_within_5_seconds(
        broker: Broker, sqlite_database_url: str, how: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service, \
            DeviceLink(broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service, "leaving"))
        await SimulatedBaseUnit("100001", link).press()
        await service.dispatcher.process_events()
        async with api(service, make_token(service)) as other:
            (alarm,) = (await other.get("/api/alarms")).json()["alarms"]
        kinds: list[str] = []
        got_event = asyncio.Event()
        listener = asyncio.create_task(event_kinds(client, kinds, got_event))

        async def keep_alarms_flowing() -> None:
            while True:  # the alarm changes every 100 ms, as on a busy evening
                await service.dispatcher.changed([alarm["id"]])
                await asyncio.sleep(0.1)

        traffic = asyncio.create_task(keep_alarms_flowing())
        try:
            while "alarm" not in kinds:
                await asyncio.wait_for(got_event.wait(), 5)
                got_event.clear()
            revoke(service, "leaving", how)
            revoked = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(listener), 5)
            ended_after_s = time.monotonic() - revoked
        finally:
            traffic.cancel()
            listener.cancel()
            await asyncio.gather(traffic, listener, return_exceptions=True)
            await client.aclose()

        assert listener.done() and kinds[-1] == "signed_out", kinds[-3:]
        assert ended_after_s < 5


async def test_a_revoked_token_ends_a_quiet_stream(
        broker: Broker, sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "RECHECK_S", 0.1)
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service:
        client = api(service, make_token(service, "leaving"))
        kinds: list[str] = []
        got_event = asyncio.Event()
        listener = asyncio.create_task(event_kinds(client, kinds, got_event))
        await asyncio.wait_for(got_event.wait(), 5)
        revoke(service, "leaving")
        await asyncio.wait_for(listener, 5)
        await client.aclose()

        assert kinds == ["hello", "signed_out"]


async def test_a_new_role_filters_an_open_stream_from_the_next_check_on(
        broker: Broker, sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "RECHECK_S", 0.1)
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service, \
            DeviceLink(broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        client = api(service, make_token(service, "moving"))
        await SimulatedBaseUnit("100001", link).press()
        await service.dispatcher.process_events()
        async with api(service, make_token(service)) as other:
            (alarm,) = (await other.get("/api/alarms")).json()["alarms"]
        kinds: list[str] = []
        got_event = asyncio.Event()
        listener = asyncio.create_task(event_kinds(client, kinds, got_event))
        try:
            while "alarm" not in kinds:
                await service.dispatcher.changed([alarm["id"]])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(got_event.wait(), 1)
                got_event.clear()
            service.db.transaction(lambda s: users.set_role(
                s, "moving", "tfh", service.clock.now()))
            while "resync" not in kinds:
                await asyncio.wait_for(got_event.wait(), 5)
                got_event.clear()
            after = len(kinds)
            for _ in range(5):  # changes keep coming; a tfh user is not told of alarms
                await service.dispatcher.changed([alarm["id"]])
                await asyncio.sleep(0.05)
            await service.dispatcher.changed([alarm["id"]])
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await client.aclose()

        assert "alarm" not in kinds[after:], kinds
