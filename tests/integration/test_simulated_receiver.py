"""The simulated alarm receiver against the real gateway path: a real serial line opening
the receiver's pty by its path, the real DC-09 codec, Ingest and SQLite.

The receiver and Ingest share one FakeClock, so the frames' timestamps lie in the
codec's window unless a test moves the receiver's clock on purpose.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.clock import FakeClock
from core.db import Database
from core.settings import Settings
from devices.codecs import CODECS, Codec
from dispatch.config import load_config
from gateway.dc09_framing import Reply
from gateway.ingest import Ingest
from gateway.serial_line import LineSettings, LineState, SerialLine, line_settings
from simulator import (
    ReceiverEvent,
    SimulatedReceiver,
    Unanswered,
    play_receiver_traffic,
)
from tests.integration.test_serial_line import eventually, running, stored
from trygg.cli import build_parser, dc09_accounts, log_if_failed, simulated_receiver
from trygg.supervise import GatewayProcess

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
ACCOUNT = "4321"  # Margit Andersson's panel in the shipped registry

OnFrame = Callable[[bytes, Reply], None]


class LaggingOnce:
    """A receiver's clock that is two minutes behind for its first reading only."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.readings = 0

    def now(self) -> datetime:
        self.readings += 1
        lag = timedelta(minutes=2) if self.readings == 1 else timedelta()
        return self.clock.now() - lag


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def codec() -> Codec:
    return CODECS["dc09"]


@pytest.fixture
async def ingest(empty_db: Database, clock: FakeClock) -> AsyncIterator[Ingest]:
    async for running_ingest in running(Ingest(empty_db, clock)):
        yield running_ingest


def into(ingest: Ingest, codec: Codec) -> OnFrame:
    """What the runtime passes: each frame into Ingest with the line's reply."""
    return lambda frame, reply: ingest.accept(frame, codec, reply)


async def opened(path: str, on_frame: OnFrame) -> SerialLine:
    line = SerialLine(LineSettings(path, "rx1"), on_frame,
                      backoff_initial_s=0.02, backoff_max_s=0.1)
    await line.__aenter__()
    await line.wait_state(LineState.OPEN, 5)
    return line


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[SimulatedReceiver]:
    async with SimulatedReceiver(clock=clock, answer_timeout_s=1.0) as rx:
        yield rx


@pytest.fixture
async def line(receiver: SimulatedReceiver, ingest: Ingest,
               codec: Codec) -> AsyncIterator[SerialLine]:
    opened_line = await opened(receiver.slave_path, into(ingest, codec))
    yield opened_line
    await opened_line.__aexit__()


# -- events through the real line ----------------------------------------------------


async def test_an_alarm_is_acked_and_stored_once(
        receiver: SimulatedReceiver, line: SerialLine, ingest: Ingest) -> None:
    answer = await receiver.alarm(ACCOUNT)

    assert (answer.token, answer.seq, answer.account) == ("ACK", "0001", ACCOUNT)
    assert stored(ingest.db) == [(ACCOUNT, "0001", "alarm")]
    assert receiver.tally.answered[ReceiverEvent.ALARM] == 1
    assert receiver.tally.transmissions == 1


async def test_a_poll_is_acked_and_stored_as_a_test(
        receiver: SimulatedReceiver, line: SerialLine, ingest: Ingest) -> None:
    answer = await receiver.poll(ACCOUNT)

    assert (answer.token, answer.seq) == ("ACK", "0001")
    assert stored(ingest.db) == [(ACCOUNT, "0001", "test")]


async def test_mains_lost_and_restored_are_stored_as_such(
        receiver: SimulatedReceiver, line: SerialLine, ingest: Ingest) -> None:
    await receiver.mains_lost(ACCOUNT)
    await receiver.mains_restored(ACCOUNT)

    assert stored(ingest.db) == [(ACCOUNT, "0001", "mains_lost"),
                                 (ACCOUNT, "0002", "mains_restored")]


async def test_a_contact_id_receiver_alarm_is_stored_as_an_alarm(
        clock: FakeClock, ingest: Ingest, codec: Codec) -> None:
    async with SimulatedReceiver(clock=clock, content="ADM-CID") as receiver:
        line = await opened(receiver.slave_path, into(ingest, codec))
        answer = await receiver.alarm(ACCOUNT)
        await line.__aexit__()

    assert answer.token == "ACK"
    assert stored(ingest.db) == [(ACCOUNT, "0001", "alarm")]


async def test_seq_wraps_from_9999_to_0001(
        clock: FakeClock, ingest: Ingest, codec: Codec) -> None:
    async with SimulatedReceiver(clock=clock, first_seq=9999) as receiver:
        line = await opened(receiver.slave_path, into(ingest, codec))
        answers = [await receiver.poll(ACCOUNT) for _ in range(2)]
        await line.__aexit__()

    assert [a.seq for a in answers] == ["9999", "0001"]
    assert stored(ingest.db) == [(ACCOUNT, "9999", "test"), (ACCOUNT, "0001", "test")]


# -- resends ---------------------------------------------------------------------------


async def test_a_naked_frame_is_resent_with_a_fresh_timestamp_and_then_acked(
        clock: FakeClock, ingest: Ingest, codec: Codec) -> None:
    async with SimulatedReceiver(clock=LaggingOnce(clock)) as receiver:
        line = await opened(receiver.slave_path, into(ingest, codec))
        answer = await receiver.alarm(ACCOUNT)
        await line.__aexit__()

    assert (answer.token, answer.seq) == ("ACK", "0001")
    assert (receiver.tally.naks, receiver.tally.resends) == (1, 1)
    assert stored(ingest.db) == [(ACCOUNT, "0001", "alarm")]


async def test_an_alarm_whose_ack_is_lost_is_resent_identically_and_stored_once(
        clock: FakeClock, ingest: Ingest, codec: Codec) -> None:
    frames: list[bytes] = []

    def losing_the_first_answer(frame: bytes, reply: Reply) -> None:
        frames.append(frame)
        lost = len(frames) == 1
        ingest.accept(frame, codec, (lambda _: None) if lost else reply)

    async with SimulatedReceiver(clock=clock, answer_timeout_s=0.3) as receiver:
        line = await opened(receiver.slave_path, losing_the_first_answer)
        answer = await receiver.alarm(ACCOUNT)
        await line.__aexit__()

    assert answer.token == "ACK"
    assert len(frames) == 2 and frames[0] == frames[1]
    assert (receiver.tally.timeouts, receiver.tally.resends) == (1, 1)
    assert stored(ingest.db) == [(ACCOUNT, "0001", "alarm")]


async def test_the_receiver_gives_up_after_its_resends_when_the_line_never_answers(
        clock: FakeClock) -> None:
    frames: list[bytes] = []
    async with SimulatedReceiver(clock=clock, answer_timeout_s=0.1,
                                 max_resends=2) as receiver:
        line = await opened(receiver.slave_path, lambda frame, _reply: frames.append(frame))
        with pytest.raises(Unanswered) as caught:
            await receiver.alarm(ACCOUNT)
        await line.__aexit__()

    assert (caught.value.cid, caught.value.ref, caught.value.transmissions) == (
        ACCOUNT, "0001", 3)
    assert len(frames) == 3
    assert receiver.tally.gave_up == 1


async def test_closing_the_receiver_takes_the_gateways_line_down(
        clock: FakeClock, ingest: Ingest, codec: Codec) -> None:
    async with SimulatedReceiver(clock=clock) as receiver:
        line = await opened(receiver.slave_path, into(ingest, codec))

    await line.wait_state(LineState.DOWN, 5)
    await line.__aexit__()


# -- the demo ----------------------------------------------------------------------------


async def test_demo_traffic_polls_and_alarms_through_the_line(
        receiver: SimulatedReceiver, line: SerialLine, ingest: Ingest) -> None:
    traffic = asyncio.create_task(play_receiver_traffic(
        receiver, [ACCOUNT], poll_every_s=0.2, first_poll_after_s=0.0,
        alarm_mean_interval_s=0.1, rng=random.Random(4)))

    def heard(kind: str) -> bool:
        return any(row[2] == kind for row in stored(ingest.db))

    await eventually(lambda: heard("test") and heard("alarm"))
    traffic.cancel()
    await asyncio.gather(traffic, return_exceptions=True)

    assert {row[0] for row in stored(ingest.db)} == {ACCOUNT}


def test_the_shipped_registry_has_one_dc09_account() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "municipality.yaml")

    assert dc09_accounts(config) == [ACCOUNT]


async def test_trygg_run_simulate_points_the_gateway_at_the_receivers_line(
        ingest: Ingest, codec: Codec) -> None:
    args = build_parser().parse_args(["run", "--simulate"])

    async with simulated_receiver(Settings(serial_ports=""), args) as (settings, receiver):
        assert receiver is not None
        child_env = GatewayProcess(settings)._env()
        (line_config,) = line_settings(settings.serial_paths, {})
        line = await opened(line_config.path, into(ingest, codec))
        receiver.clock = ingest.clock
        answer = await receiver.alarm(ACCOUNT)
        await line.__aexit__()

    assert settings.serial_paths == [line_config.path]
    assert child_env["TRYGG_SERIAL_PORTS"] == line_config.path
    assert answer.token == "ACK"


@pytest.mark.parametrize(("serial_ports", "argv"), [
    ("/dev/ttyUSB0", ["run", "--simulate"]),
    ("", ["run"]),
    ("", ["run", "--simulate", "--role", "dispatch"]),
])
async def test_no_simulated_receiver_with_real_lines_without_simulate_or_elsewhere(
        serial_ports: str, argv: list[str]) -> None:
    given = Settings(serial_ports=serial_ports)

    async with simulated_receiver(given, build_parser().parse_args(argv)) as (settings,
                                                                             receiver):
        pass

    assert receiver is None
    assert settings is given


async def test_demo_traffic_on_a_receiver_that_stopped_working_is_logged_at_once(
        clock: FakeClock) -> None:
    async with SimulatedReceiver(clock=clock) as receiver:
        pass  # closed: every frame now fails
    with capture_logs() as logs:
        traffic = asyncio.create_task(play_receiver_traffic(
            receiver, [ACCOUNT], first_poll_after_s=0.0), name="trygg.simulator.receiver")
        traffic.add_done_callback(log_if_failed)
        await asyncio.wait({traffic}, timeout=5)
        await asyncio.sleep(0)  # done callbacks run on the loop's next turn

    (failed,) = [e for e in logs if e["event"] == "demo_traffic_failed"]
    assert failed["log_level"] == "error"
    assert "not open" in failed["error"]
