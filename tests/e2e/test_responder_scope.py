"""A responder sees and answers their own team's alarms, and nothing of anyone else's:
not in the queue, not by id, not by accepting, not on the live stream."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.clock import FakeClock
from dispatch.users import add_user
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings

pytestmark = pytest.mark.mqtt

OWN, OTHER = "100001", "100007"  # by day: Solrosen Kungsängen, and Trygga händer's team


async def test_a_responder_sees_and_accepts_only_their_teams_alarms(
        broker: Broker, sqlite_database_url: str) -> None:
    settings = test_settings(broker, sqlite_database_url)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as service, \
            DeviceLink(broker.host, broker.port, root=settings.mqtt_topic_root) as link:
        for cid in (OWN, OTHER):
            await SimulatedBaseUnit(cid, link).press()
        await service.dispatcher.process_events()
        token = service.db.transaction(lambda s: add_user(
            s, "Rut Responder", "responder", service.clock.now(), team="solrosen-kungsangen"))
        async with api(service, make_token(service)) as operator:
            every = {a["cid"]: a for a in (await operator.get("/api/alarms")).json()["alarms"]}
        async with api(service, token) as responder:
            queue = (await responder.get("/api/alarms")).json()["alarms"]
            history = (await responder.get("/api/alarms?scope=all")).json()["alarms"]
            own = await responder.get(f"/api/alarms/{every[OWN]['id']}")
            other = await responder.get(f"/api/alarms/{every[OTHER]['id']}")
            accept_other = await responder.post(f"/api/alarms/{every[OTHER]['id']}/accept",
                                                json={"responder": "Rut"})
            accept_own = await responder.post(f"/api/alarms/{every[OWN]['id']}/accept",
                                              json={"responder": "Rut"})
            close_own = await responder.post(f"/api/alarms/{every[OWN]['id']}/close")
            seen: list[str] = []
            opened = asyncio.Event()

            async def read_stream() -> None:
                async with responder.stream("GET", "/api/stream") as response:
                    async for line in response.aiter_lines():
                        opened.set()
                        if line.startswith("data: ") and '"alarm"' in line:
                            seen.append(line)

            reader = asyncio.create_task(read_stream())
            await asyncio.wait_for(opened.wait(), 5)  # subscribed before the changes below
            await service.dispatcher.changed([every[OTHER]["id"], every[OWN]["id"]])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), 1)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    assert set(every) == {OWN, OTHER}
    assert [a["cid"] for a in queue] == [OWN] and [a["cid"] for a in history] == [OWN]
    assert own.status_code == 200 and other.status_code == 404
    assert accept_other.status_code == 404
    assert accept_own.status_code == 200 and accept_own.json()["state"] == "accepted"
    assert close_own.status_code == 403  # closing is the alarm centre's
    assert seen and all(f'"cid": "{OWN}"' in line for line in seen), seen
