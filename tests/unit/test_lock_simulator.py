"""The simulated lock against an in-memory link: what it reports, and which commands it obeys."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

from devices import scaip
from devices.scaip import ScaipCommand, ScaipRequest, ScaipResponse, Snu
from simulator import SimulatedLock

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LOCK = "300001"


class FakeLink:
    """Answers every request OK at once, and hands the test a lock's command queue."""

    def __init__(self) -> None:
        self.sent: list[ScaipRequest] = []
        self.listening: dict[str, asyncio.Queue[bytes]] = {}
        self._waiting: dict[tuple[str, str], asyncio.Queue[ScaipResponse]] = {}

    async def publish(self, cid: str, frame: bytes) -> None:
        request = scaip.parse_request(frame)
        self.sent.append(request)
        self._waiting[(cid, request.ref)].put_nowait(ScaipResponse(ref=request.ref, snu=Snu.OK))

    @contextlib.contextmanager
    def expect(self, cid: str, ref: str) -> Iterator[asyncio.Queue[ScaipResponse]]:
        answers: asyncio.Queue[ScaipResponse] = asyncio.Queue()
        self._waiting[(cid, ref)] = answers
        try:
            yield answers
        finally:
            del self._waiting[(cid, ref)]

    @contextlib.asynccontextmanager
    async def commands(self, cid: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.listening[cid] = queue
        try:
            yield queue
        finally:
            del self.listening[cid]

    def command(self, frame: bytes, cid: str = LOCK) -> None:
        self.listening[cid].put_nowait(frame)

    def reports(self) -> list[tuple[str | None, str | None, str | None]]:
        return [(r.stc, r.dty, r.ite) for r in self.sent]


def unlock(ref: str = "R1", cid: str = LOCK, exp: datetime = NOW + timedelta(minutes=2)) -> bytes:
    return scaip.encode_command(ScaipCommand(ref=ref, cid=cid, act="unlock", exp=exp))


async def eventually(check: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_staff_member_opening_the_door_reports_unlocked_with_their_id() -> None:
    link = FakeLink()
    lock = SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=None)

    answer = await lock.open("4711")

    assert answer.snu == Snu.OK
    assert link.reports() == [("0127", "0042", "4711")]
    assert lock.is_open


async def test_the_lock_locks_itself_again_after_its_latch_time() -> None:
    link = FakeLink()
    async with SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=0.01) as lock:
        await lock.open("4711")
        await eventually(lambda: len(link.sent) == 2)

    assert link.reports() == [("0127", "0042", "4711"), ("0118", "0042", None)]
    assert not lock.is_open


async def test_an_unlock_command_opens_it_and_the_report_names_the_command() -> None:
    link = FakeLink()
    async with SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=None) as lock:
        link.command(unlock("R1"))
        await eventually(lambda: bool(link.sent))

    assert lock.obeyed == ["R1"]
    assert link.reports() == [("0127", "0042", "remote:R1")]


async def test_a_command_delivered_twice_opens_the_door_once() -> None:
    link = FakeLink()
    async with SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=None) as lock:
        link.command(unlock("R1"))
        link.command(unlock("R1"))
        await eventually(lambda: bool(lock.refused))
        await eventually(lambda: bool(link.sent))

    assert lock.obeyed == ["R1"]
    assert lock.refused == [("R1", "already_obeyed")]
    assert len(link.sent) == 1


async def test_an_expired_command_is_ignored() -> None:
    link = FakeLink()
    async with SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=None) as lock:
        link.command(unlock("R1", exp=NOW - timedelta(seconds=1)))
        await eventually(lambda: bool(lock.refused))

    assert lock.refused == [("R1", "expired")]
    assert lock.obeyed == [] and link.sent == []


async def test_a_command_for_another_lock_or_without_expiry_or_garbled_is_ignored() -> None:
    link = FakeLink()
    async with SimulatedLock(LOCK, link, clock=lambda: NOW, relock_after_s=None) as lock:
        link.command(unlock("R1", cid="300002"))
        link.command(scaip.encode_command(ScaipCommand("R2", LOCK, "unlock")))
        link.command(b"<cmd><ref>R3</ref>")
        await eventually(lambda: len(lock.refused) == 3)

    assert lock.refused == [("R1", "not_this_lock"), ("R2", "no_expiry"), (None, "not_xml")]
    assert link.sent == [] and not lock.is_open
