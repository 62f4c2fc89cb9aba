"""A DC-09 alarm end to end: an alarm receiver on a real serial line (a pty) and a panel
over real TCP, through the whole service, to the operators' queue.

A DC-09 account is a device like a base unit: the shipped registry ties account 4321
to Margit Andersson's home in Kungsängen (day provider: the municipality's home care).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.clock import FakeClock
from devices import dc09
from gateway.dc09_framing import Framer
from tests.brokers import Broker, free_port
from tests.e2e.test_alarm_path import wait_for_alarm
from tests.harness import MONDAY_10_LOCAL, api, make_token, running_service, test_settings
from tests.ptys import Pty
from trygg.runtime import Service

ACCOUNT = "4321"


def medical(seq: int, account: str = ACCOUNT) -> bytes:
    return dc09.encode_frame(token="SIA-DCS", seq=seq, account=account,
                             data=f"#{account}|Nri1/MA001", timestamp=MONDAY_10_LOCAL)


@pytest.fixture
def pty(tmp_path: Path) -> Any:
    receiver = Pty(tmp_path / "ttyRX1")
    yield receiver
    receiver.close()


async def alarms(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await client.get("/api/alarms")).json()["alarms"]


@pytest.fixture
async def service(broker: Broker, sqlite_database_url: str, pty: Pty) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_database_url, serial_ports=str(pty.link),
                             dc09_tcp=f"127.0.0.1:{free_port()}", last_seen_flush_s=0.1)
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL)) as running:
        await running.serial_lines[0].wait_state(running.serial_lines[0].state.OPEN, 5)
        yield running


async def test_an_alarm_through_the_receiver_is_routed_to_the_accounts_site(
        service: Service, pty: Pty) -> None:
    client = api(service, make_token(service))

    pty.write(medical(7))
    answer = await pty.answer()
    alarm = await wait_for_alarm(client, ACCOUNT)

    assert (answer.token, answer.seq, answer.account) == ("ACK", "0007", ACCOUNT)
    assert alarm["state"] == "called_out"
    assert alarm["team"]["code"] == "kommunens-hemtjanst"
    assert alarm["customer"]["name"] == "Margit Andersson"
    assert alarm["unknown_device"] is False
    await client.aclose()


async def test_an_unregistered_accounts_alarm_is_an_unknown_device_alarm(
        service: Service, pty: Pty) -> None:
    client = api(service, make_token(service))

    pty.write(medical(1, account="ABC123"))

    assert (await pty.answer()).token == "ACK"
    alarm = await wait_for_alarm(client, "ABC123")
    assert alarm["unknown_device"] is True
    await client.aclose()


async def test_a_resent_frame_is_answered_again_and_raises_one_alarm(
        service: Service, pty: Pty) -> None:
    client = api(service, make_token(service))

    pty.write(medical(12))
    pty.write(medical(12))  # the receiver did not hear our ACK and sends it again

    assert [(await pty.answer()).token for _ in range(2)] == ["ACK", "ACK"]
    await wait_for_alarm(client, ACCOUNT)
    (alarm,) = await alarms(client)
    assert alarm["repeat_count"] == 0
    await client.aclose()


async def test_a_damaged_frame_is_refused_and_raises_nothing(
        service: Service, pty: Pty) -> None:
    client = api(service, make_token(service))
    frame = bytearray(medical(3))
    frame[-5] ^= 0x01  # one bit of the timestamp flipped on the line: the CRC fails

    pty.write(bytes(frame))

    assert (await pty.answer()).token == "NAK"
    pty.write(medical(4))  # the resend, intact
    assert (await pty.answer()).token == "ACK"
    await wait_for_alarm(client, ACCOUNT)
    assert len(await alarms(client)) == 1
    await client.aclose()


async def test_a_panel_reporting_over_tcp_is_answered_on_its_connection(
        service: Service) -> None:
    client = api(service, make_token(service))
    address = service.settings.dc09_tcp_address
    assert address is not None
    reader, writer = await asyncio.open_connection(*address)

    writer.write(medical(21))
    await writer.drain()
    framer = Framer()
    frames: list[bytes] = []
    async with asyncio.timeout(5):
        while not frames:
            frames += framer.feed(await reader.read(4096))

    assert dc09.decode_answer(frames[0]).token == "ACK"
    await wait_for_alarm(client, ACCOUNT)
    writer.close()
    await client.aclose()


async def test_the_serial_line_state_is_visible_to_operators_and_readiness(
        service: Service, pty: Pty) -> None:
    client = api(service, make_token(service))
    await service.last_seen.flush()

    links = {li["name"]: li for li in (await client.get("/api/links")).json()["links"]}
    ready = await client.get("/readyz")

    assert links["serial:line1"]["state"] == "open"
    assert links["dc09_tcp"]["state"] == "listening"
    assert ready.status_code == 200
    assert ready.json()["checks"]["serial:line1"] is True

    pty.unplug()
    await service.serial_lines[0].wait_state(service.serial_lines[0].state.DOWN, 5)
    await service.last_seen.flush()

    links = {li["name"]: li for li in (await client.get("/api/links")).json()["links"]}
    ready = await client.get("/readyz")
    assert links["serial:line1"]["state"] == "down"
    assert ready.status_code == 503
    await client.aclose()
