"""A receiver's serial line on a real pseudo-terminal, into the real Ingest and SQLite.

The line opens a symlink to a pty's slave by name, as it would /dev/ttyUSB0; the test
plays the receiver on the master. Unplugging is closing the master and removing the
link; plugging back in is a new pty behind the same link.
"""

from __future__ import annotations

import asyncio
import os
import termios
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from core.clock import FakeClock
from core.db import Database, Lane
from devices import dc09
from devices.codecs import Codec
from gateway.dc09_framing import Reply
from gateway.errors import LineConfigError, LineDown
from gateway.ingest import Ingest
from gateway.serial_line import LineSettings, LineState, SerialLine, line_settings
from tests.dc09 import ACCOUNT, T0, eventually, medical, running, sample, stored
from tests.ptys import Pty


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "rx1")
    yield p
    p.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


class UnreachableDatabase(Database):
    """Writes fail as they do once the server is gone, until `reachable` is set."""

    reachable = False

    async def write(self, fn: Any, lane: Lane = Lane.OPERATOR) -> Any:
        if not self.reachable:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return await super().write(fn, lane)


def serial_line(pty: Pty, on_frame: Callable[[bytes, Reply], None],
                name: str = "rx1") -> SerialLine:
    return SerialLine(LineSettings(str(pty.link), name), on_frame,
                      backoff_initial_s=0.02, backoff_max_s=0.1)


def into(ingest: Ingest, codec: Codec) -> Callable[[bytes, Reply], None]:
    """What the runtime passes: each frame into Ingest with the line's reply."""
    return lambda frame, reply: ingest.accept(frame, codec, reply)


# -- frames in, events committed, answers out ------------------------------------------------


async def test_medical_alarm_is_committed_before_its_ack_is_written(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    rows_when_answering: list[list[tuple[str, str, str]]] = []

    def on_frame(frame: bytes, reply: Reply) -> None:
        def checked(answer: bytes) -> None:
            rows_when_answering.append(stored(ingest.db))
            reply(answer)
        ingest.accept(frame, codec, checked)

    async with serial_line(pty, on_frame) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=1))
        answer = await pty.answer()

    assert (answer.token, answer.seq, answer.account) == ("ACK", "0001", ACCOUNT)
    assert rows_when_answering == [[(ACCOUNT, "0001", "alarm")]]


async def test_a_frame_split_over_three_writes_is_answered_once(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    frame = medical(seq=2)
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        for piece in (frame[:7], frame[7:30], frame[30:]):
            pty.write(piece)
            await asyncio.sleep(0.02)  # let the line read each piece on its own
        answer = await pty.answer()
        with pytest.raises(TimeoutError):
            await pty.answer(timeout_s=0.3)

    assert (answer.token, answer.seq) == ("ACK", "0002")
    assert stored(ingest.db) == [(ACCOUNT, "0002", "alarm")]


async def test_two_frames_in_one_write_are_both_stored_and_answered(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=3) + medical(seq=4, account="5678"))
        answers = [await pty.answer(), await pty.answer()]

    assert sorted((a.token, a.seq, a.account) for a in answers) == [
        ("ACK", "0003", ACCOUNT), ("ACK", "0004", "5678")]
    assert sorted(stored(ingest.db)) == [(ACCOUNT, "0003", "alarm"), ("5678", "0004", "alarm")]


async def test_garbage_between_frames_is_dropped_and_counted_and_the_frames_answered(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    before = sample("trygg_dc09_framing_discards_total", transport="serial", reason="garbage")
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(b"\x00\xff+++ATH0" + medical(seq=5) + b"line noise" + medical(seq=6))
        answers = [await pty.answer(), await pty.answer()]

    assert [(a.token, a.seq) for a in answers] == [("ACK", "0005"), ("ACK", "0006")]
    assert len(stored(ingest.db)) == 2
    assert sample("trygg_dc09_framing_discards_total",
                  transport="serial", reason="garbage") == before + 2


async def test_a_resent_identical_frame_is_answered_twice_and_stored_once(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=7))
        first = await pty.answer()
        pty.write(medical(seq=7))
        second = await pty.answer()

    assert (first.token, first.seq) == (second.token, second.seq) == ("ACK", "0007")
    assert stored(ingest.db) == [(ACCOUNT, "0007", "alarm")]


async def test_a_frame_with_a_bad_crc_gets_a_nak_and_no_row(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    frame = medical(seq=8)
    bad_crc = b"\n" + (b"0000" if frame[1:5] != b"0000" else b"FFFF") + frame[5:]
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(bad_crc)
        answer = await pty.frame()

    assert answer.startswith(b"\n") and b'"NAK"0000' in answer
    assert stored(ingest.db) == []


async def test_a_plain_contact_id_line_is_stored_and_acked_with_one_byte(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    async with serial_line(pty, into(ingest, codec)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(dc09.encode_contact_id_line(ACCOUNT, 1, 100, 1, 15))
        answer = await pty.read()

    assert answer == dc09.ACK_BYTE
    assert [(cid, kind) for cid, _, kind in stored(ingest.db)] == [(ACCOUNT, "alarm")]


async def test_no_ack_is_written_while_the_database_is_down_and_the_resend_is_answered(
        pty: Pty, empty_db: Database, clock: FakeClock, codec: Codec) -> None:
    database = UnreachableDatabase(empty_db.url)
    failures = sample("trygg_event_store_failures_total")
    try:
        async for ingest in running(Ingest(database, clock)):
            async with serial_line(pty, into(ingest, codec)) as line:
                await line.wait_state(LineState.OPEN, 5)
                pty.write(medical(seq=9))
                await eventually(lambda: sample("trygg_event_store_failures_total") > failures)
                with pytest.raises(TimeoutError):
                    await pty.answer(timeout_s=0.5)
                database.reachable = True
                pty.write(medical(seq=9))  # the receiver resends what was not answered
                answer = await pty.answer()
    finally:
        database.close()

    assert (answer.token, answer.seq) == ("ACK", "0009")
    assert stored(empty_db) == [(ACCOUNT, "0009", "alarm")]


# -- the line itself ------------------------------------------------------------------------


async def test_a_line_that_drops_goes_down_reopens_and_frames_flow_again(
        pty: Pty, ingest: Ingest, codec: Codec) -> None:
    losses = sample("trygg_serial_line_losses_total", line="rx-drop")
    async with serial_line(pty, into(ingest, codec), name="rx-drop") as line:
        await line.wait_state(LineState.OPEN, 5)
        up_while_open = sample("trygg_serial_line_up", line="rx-drop")
        pty.write(medical(seq=10))
        before = await pty.answer()
        pty.unplug()
        await line.wait_state(LineState.DOWN, 5)
        up_while_down = sample("trygg_serial_line_up", line="rx-drop")
        pty.plug_in()
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=11))
        after = await pty.answer()

    assert (up_while_open, up_while_down) == (1, 0)
    assert [before.seq, after.seq] == ["0010", "0011"]
    assert [ref for _, ref, _ in stored(ingest.db)] == ["0010", "0011"]
    assert sample("trygg_serial_line_losses_total", line="rx-drop") >= losses + 1


async def test_an_answer_for_a_line_that_dropped_raises_line_down(pty: Pty) -> None:
    replies: list[Reply] = []
    async with serial_line(pty, lambda frame, reply: replies.append(reply)) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=12))
        await eventually(lambda: bool(replies))
        pty.unplug()
        await line.wait_state(LineState.DOWN, 5)
        pty.plug_in()
        await line.wait_state(LineState.OPEN, 5)

        # Not even to the reopened line: its receiver resends, and is answered then.
        with pytest.raises(LineDown):
            replies[0](b"late answer")
        with pytest.raises(TimeoutError):
            await pty.read(timeout_s=0.2)


async def test_a_device_path_that_is_missing_at_start_is_opened_once_it_appears(
        pty: Pty) -> None:
    pty.unplug()
    frames: list[bytes] = []
    async with serial_line(pty, lambda frame, reply: frames.append(frame)) as line:
        await line.wait_state(LineState.DOWN, 5)
        pty.plug_in()
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=13))
        await eventually(lambda: bool(frames))

    assert frames == [medical(seq=13)]


async def test_a_second_process_cannot_open_a_line_already_open(pty: Pty) -> None:
    first = serial_line(pty, lambda frame, reply: None, name="rx-first")
    second = serial_line(pty, lambda frame, reply: None, name="rx-second")
    async with first:
        await first.wait_state(LineState.OPEN, 5)
        async with second:
            await second.wait_state(LineState.DOWN, 5)

            assert first.state is LineState.OPEN


async def test_a_handler_that_raises_does_not_take_the_line_down(pty: Pty) -> None:
    handled: list[bytes] = []

    def on_frame(frame: bytes, reply: Reply) -> None:
        handled.append(frame)
        if len(handled) == 1:
            raise RuntimeError("a bug in the handler")
        reply(b"\x06")

    async with serial_line(pty, on_frame) as line:
        await line.wait_state(LineState.OPEN, 5)
        pty.write(medical(seq=14))
        pty.write(medical(seq=15))
        answer = await pty.read()

        assert line.state is LineState.OPEN
    assert answer == b"\x06"
    assert len(handled) == 2


async def test_the_configured_speed_is_set_on_the_port_in_raw_mode(pty: Pty) -> None:
    # A pty keeps CS8 without parity whatever it is told, so only the speed shows here.
    settings = LineSettings(str(pty.link), "rx-2400", baudrate=2400, parity="E")
    async with SerialLine(settings, lambda frame, reply: None) as line:
        await line.wait_state(LineState.OPEN, 5)
        fd = os.open(pty.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            _, _, _, lflag, ispeed, ospeed, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)

    assert (ispeed, ospeed) == (termios.B2400, termios.B2400)
    assert not lflag & (termios.ICANON | termios.ECHO)  # raw: CR and LF pass untouched


async def test_cancelling_run_closes_the_line(pty: Pty) -> None:
    line = serial_line(pty, lambda frame, reply: None, name="rx-cancel")
    task = asyncio.create_task(line.run())
    await line.wait_state(LineState.OPEN, 5)

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert line.state is LineState.DOWN
    assert sample("trygg_serial_line_up", line="rx-cancel") == 0
    # Closed: the pty reads as hung up once nobody has the slave open.
    with pytest.raises(OSError):
        os.read(pty.master, 1)


# -- settings ---------------------------------------------------------------------------------


def test_line_settings_take_defaults_then_each_lines_own_values() -> None:
    config = {"serial": {"defaults": {"baudrate": 2400, "parity": "even"},
                         "lines": {"/dev/ttyUSB0": {"name": "rx1", "baudrate": 9600},
                                   "/dev/ttyS9": {"name": "elsewhere"}}}}

    lines = line_settings(["/dev/ttyUSB0", "/dev/ttyUSB1"], config)

    assert lines == [LineSettings("/dev/ttyUSB0", "rx1", baudrate=9600, parity="E"),
                     LineSettings("/dev/ttyUSB1", "line2", baudrate=2400, parity="E")]


def test_line_settings_without_a_serial_section_are_the_standard_ones() -> None:
    assert line_settings(["/dev/ttyUSB0"], {}) == [LineSettings("/dev/ttyUSB0", "line1")]


@pytest.mark.parametrize(("config", "where"), [
    ({"serial": {"lines": {"/dev/ttyUSB0": {"baudrate": "fast"}}}}, "baudrate"),
    ({"serial": {"lines": {"/dev/ttyUSB0": {"baudrate": True}}}}, "baudrate"),
    ({"serial": {"defaults": {"bytesize": 9}}}, "bytesize"),
    ({"serial": {"defaults": {"parity": "X"}}}, "parity"),
    ({"serial": {"defaults": {"stopbits": 3}}}, "stopbits"),
    ({"serial": {"defaults": {"baud": 9600}}}, "serial.defaults"),
    ({"serial": {"defaults": {"name": "rx"}}}, "serial.defaults"),
    ({"serial": {"lines": {"/dev/ttyUSB0": {"name": "Pelle's flat"}}}}, "name"),
    ({"serial": {"lines": ["/dev/ttyUSB0"]}}, "serial.lines"),
    ({"serial": {"line": {}}}, "serial"),
])
def test_bad_line_settings_are_refused_naming_the_setting(
        config: dict[str, Any], where: str) -> None:
    with pytest.raises(LineConfigError) as raised:
        line_settings(["/dev/ttyUSB0"], config)

    assert where in raised.value.where


def test_two_lines_may_not_share_a_name_or_a_path() -> None:
    config = {"serial": {"lines": {"/dev/ttyUSB0": {"name": "rx"},
                                   "/dev/ttyUSB1": {"name": "rx"}}}}

    with pytest.raises(LineConfigError, match="name"):
        line_settings(["/dev/ttyUSB0", "/dev/ttyUSB1"], config)
    with pytest.raises(LineConfigError, match="path"):
        line_settings(["/dev/ttyUSB0", "/dev/ttyUSB0"], {})


def test_a_url_is_refused_as_a_device_path() -> None:
    with pytest.raises(LineConfigError, match="URL"):
        line_settings(["rfc2217://10.0.0.5:4001"], {})
