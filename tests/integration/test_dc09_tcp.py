"""The DC-09 TCP listener on a real socket, into the real Ingest and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from core.clock import FakeClock
from core.db import Database, Lane
from devices import dc09
from devices.codecs import Codec
from gateway.dc09_framing import Framer, OnFrame, Reply
from gateway.dc09_tcp import Dc09TcpListener
from gateway.errors import LineDown
from gateway.ingest import Ingest
from tests.dc09 import ACCOUNT, T0, eventually, medical, running, sample, stored


class Panel:
    """A sender on its own TCP connection, reading the answers it is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._framer = Framer()
        self._frames: list[bytes] = []

    @classmethod
    async def connect(cls, listener: Dc09TcpListener) -> Panel:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound_port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, timeout_s: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout_s):
            while not self._frames:
                data = await self.reader.read(4096)
                if not data:
                    raise ConnectionError("closed by the listener")
                self._frames += self._framer.feed(data)
        return self._frames.pop(0)

    async def answer(self, timeout_s: float = 5.0) -> dc09.Dc09Answer:
        return dc09.decode_answer(await self.frame(timeout_s))

    async def closed_by_listener(self, timeout_s: float = 5.0) -> bool:
        """True once the listener closed (EOF or reset) before sending anything more."""
        async with asyncio.timeout(timeout_s):
            try:
                return await self.reader.read(4096) == b""
            except ConnectionResetError:
                return True

    def reset(self) -> None:
        """Go away with a TCP reset, as a panel losing power mid-frame looks."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def into(ingest: Ingest, codec: Codec) -> OnFrame:
    """What the runtime passes: each frame into Ingest with the connection's reply."""
    return lambda frame, reply: ingest.accept(frame, codec, reply)


def listener(on_frame: OnFrame, **kwargs: Any) -> Dc09TcpListener:
    return Dc09TcpListener("127.0.0.1", 0, on_frame, **kwargs)


class UnreachableDatabase(Database):
    """Writes fail as they do once the server is gone, until `reachable` is set."""

    reachable = False

    async def write(self, fn: Any, lane: Lane = Lane.OPERATOR) -> Any:
        if not self.reachable:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return await super().write(fn, lane)


# -- frames in, events committed, answers out ------------------------------------------------


async def test_medical_alarm_is_committed_before_its_ack_is_sent(
        ingest: Ingest, codec: Codec) -> None:
    rows_when_answering: list[list[tuple[str, str, str]]] = []

    def on_frame(frame: bytes, reply: Reply) -> None:
        def checked(answer: bytes) -> None:
            rows_when_answering.append(stored(ingest.db))
            reply(answer)
        ingest.accept(frame, codec, checked)

    async with listener(on_frame) as server:
        panel = await Panel.connect(server)
        await panel.send(medical(seq=1))
        answer = await panel.answer()
        await panel.close()

    assert (answer.token, answer.seq, answer.account) == ("ACK", "0001", ACCOUNT)
    assert rows_when_answering == [[(ACCOUNT, "0001", "alarm")]]


async def test_a_frame_split_over_three_writes_is_answered_once(
        ingest: Ingest, codec: Codec) -> None:
    frame = medical(seq=2)
    async with listener(into(ingest, codec)) as server:
        panel = await Panel.connect(server)
        for piece in (frame[:3], frame[3:25], frame[25:]):
            await panel.send(piece)
            await asyncio.sleep(0.02)  # let the listener read each piece on its own
        answer = await panel.answer()
        with pytest.raises(TimeoutError):
            await panel.answer(timeout_s=0.3)
        await panel.close()

    assert (answer.token, answer.seq) == ("ACK", "0002")
    assert stored(ingest.db) == [(ACCOUNT, "0002", "alarm")]


async def test_two_frames_in_one_write_with_garbage_between_are_both_answered(
        ingest: Ingest, codec: Codec) -> None:
    before = sample("trygg_dc09_framing_discards_total", transport="tcp", reason="garbage")
    async with listener(into(ingest, codec)) as server:
        panel = await Panel.connect(server)
        await panel.send(b"\xff\xfe" + medical(seq=3) + b"noise" + medical(seq=4))
        answers = [await panel.answer(), await panel.answer()]
        await panel.close()

    assert sorted((a.token, a.seq) for a in answers) == [("ACK", "0003"), ("ACK", "0004")]
    assert [ref for _, ref, _ in stored(ingest.db)] == ["0003", "0004"]
    assert sample("trygg_dc09_framing_discards_total",
                  transport="tcp", reason="garbage") == before + 2


async def test_a_resent_identical_frame_is_answered_twice_and_stored_once(
        ingest: Ingest, codec: Codec) -> None:
    async with listener(into(ingest, codec)) as server:
        panel = await Panel.connect(server)
        await panel.send(medical(seq=5))
        first = await panel.answer()
        again = await Panel.connect(server)  # panels often reconnect to resend
        await again.send(medical(seq=5))
        second = await again.answer()
        await panel.close()
        await again.close()

    assert (first.token, first.seq) == (second.token, second.seq) == ("ACK", "0005")
    assert stored(ingest.db) == [(ACCOUNT, "0005", "alarm")]


async def test_a_frame_with_a_bad_crc_gets_a_nak_and_no_row(
        ingest: Ingest, codec: Codec) -> None:
    frame = medical(seq=6)
    bad_crc = b"\n" + (b"0000" if frame[1:5] != b"0000" else b"FFFF") + frame[5:]
    async with listener(into(ingest, codec)) as server:
        panel = await Panel.connect(server)
        await panel.send(bad_crc)
        answer = await panel.frame()
        await panel.close()

    assert b'"NAK"0000' in answer
    assert stored(ingest.db) == []


async def test_each_answer_goes_back_on_the_connection_its_frame_came_on(
        ingest: Ingest, codec: Codec) -> None:
    async with listener(into(ingest, codec)) as server:
        first, second = await Panel.connect(server), await Panel.connect(server)
        await first.send(medical(seq=7, account="1111"))
        await second.send(medical(seq=8, account="2222"))
        one, two = await first.answer(), await second.answer()
        await first.close()
        await second.close()

    assert (one.seq, one.account) == ("0007", "1111")
    assert (two.seq, two.account) == ("0008", "2222")


async def test_no_ack_is_sent_while_the_database_is_down_and_the_resend_is_answered(
        empty_db: Database, clock: FakeClock, codec: Codec) -> None:
    database = UnreachableDatabase(empty_db.url)
    failures = sample("trygg_event_store_failures_total")
    try:
        async for ingest in running(Ingest(database, clock)):
            async with listener(into(ingest, codec)) as server:
                panel = await Panel.connect(server)
                await panel.send(medical(seq=9))
                await eventually(lambda: sample("trygg_event_store_failures_total") > failures)
                with pytest.raises(TimeoutError):
                    await panel.answer(timeout_s=0.5)
                database.reachable = True
                await panel.send(medical(seq=9))  # the panel resends what was not answered
                answer = await panel.answer()
                await panel.close()
    finally:
        database.close()

    assert (answer.token, answer.seq) == ("ACK", "0009")
    assert stored(empty_db) == [(ACCOUNT, "0009", "alarm")]


async def test_a_panel_that_shuts_its_side_after_sending_still_gets_its_answer(
        ingest: Ingest, codec: Codec) -> None:
    async with listener(into(ingest, codec)) as server:
        panel = await Panel.connect(server)
        await panel.send(medical(seq=10))
        panel.writer.write_eof()
        answer = await panel.answer()

        assert await panel.closed_by_listener()
        await panel.close()
    assert (answer.token, answer.seq) == ("ACK", "0010")


# -- connections ------------------------------------------------------------------------------


async def test_a_bad_connection_does_not_affect_the_others(
        ingest: Ingest, codec: Codec) -> None:
    async with listener(into(ingest, codec), max_frame=256) as server:
        good = await Panel.connect(server)
        flooding, cut_off = await Panel.connect(server), await Panel.connect(server)
        await flooding.send(b"\n" + b"A" * 5000)  # no CR, ever
        await cut_off.send(medical(seq=11)[:20])
        cut_off.reset()
        await good.send(medical(seq=12))
        answer = await good.answer()
        later = await Panel.connect(server)
        await later.send(medical(seq=13))
        later_answer = await later.answer()
        for panel in (good, flooding, later):
            await panel.close()

    assert [answer.seq, later_answer.seq] == ["0012", "0013"]
    assert [ref for _, ref, _ in stored(ingest.db)] == ["0012", "0013"]


async def test_an_idle_connection_is_closed_after_the_timeout(codec: Codec) -> None:
    idle_closed = sample("trygg_dc09_tcp_connections_closed_total", reason="idle")
    async with listener(lambda frame, reply: None, idle_timeout_s=0.2) as server:
        panel = await Panel.connect(server)

        assert await panel.closed_by_listener(timeout_s=5)
        await eventually(lambda: not server.connections)
        await panel.close()
    assert sample("trygg_dc09_tcp_connections_closed_total", reason="idle") == idle_closed + 1


async def test_the_connection_gauge_counts_open_connections() -> None:
    async with listener(lambda frame, reply: None) as server:
        base = sample("trygg_dc09_tcp_connections")
        panels = [await Panel.connect(server) for _ in range(3)]
        await eventually(lambda: len(server.connections) == 3)
        while_open = sample("trygg_dc09_tcp_connections")
        await panels[0].close()
        await eventually(lambda: len(server.connections) == 2)
        after_one_left = sample("trygg_dc09_tcp_connections")
        for panel in panels[1:]:
            await panel.close()
        await eventually(lambda: not server.connections)

    assert (while_open, after_one_left) == (base + 3, base + 2)
    assert sample("trygg_dc09_tcp_connections") == base


async def test_connections_over_the_limit_are_refused_and_the_others_served() -> None:
    async with listener(lambda frame, reply: reply(b"\x06"), max_connections=1) as server:
        first = await Panel.connect(server)
        await eventually(lambda: len(server.connections) == 1)
        second = await Panel.connect(server)

        assert await second.closed_by_listener()
        await first.send(b"1234181100010157\r")
        assert await first.reader.readexactly(1) == b"\x06"
        await first.close()
        await second.close()


async def test_an_answer_for_a_connection_that_closed_raises_line_down() -> None:
    replies: list[Reply] = []
    async with listener(lambda frame, reply: replies.append(reply)) as server:
        panel = await Panel.connect(server)
        await panel.send(medical(seq=14))
        await eventually(lambda: bool(replies))
        panel.reset()  # the panel is gone before its answer
        await eventually(lambda: not server.connections)

        with pytest.raises(LineDown):
            replies[0](b"late answer")


async def test_closing_the_listener_closes_open_connections() -> None:
    server = listener(lambda frame, reply: None)
    await server.start()
    panel = await Panel.connect(server)
    await eventually(lambda: len(server.connections) == 1)

    await server.close()

    assert await panel.closed_by_listener()
    assert not server.connections
    await panel.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", panel.writer.get_extra_info("peername")[1])


async def test_starting_twice_fails_loudly() -> None:
    async with listener(lambda frame, reply: None) as server:
        with pytest.raises(RuntimeError):
            await server.start()
