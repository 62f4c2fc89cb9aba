"""A simulated alarm receiver on a pseudo-terminal: DC-09 frames out, answers back.

An alarm receiver hands its accounts' events to the monitoring software over a serial
line. `SimulatedReceiver` plays one: it opens a pty pair, and the gateway opens the
slave (`slave_path`, e.g. `/dev/pts/7`) exactly as it would open `/dev/ttyUSB0`
(TRYGG_SERIAL_PORTS). Each event is one DC-09 frame with the receiver's next sequence
number (0001-9999, then 0001 again) and the current UTC time; the receiver waits for
the answer to it and:

- ACK (same seq and account): done;
- DUH: done, not resent (the line understood the frame and will never take it);
- NAK: sent again with a fresh timestamp (a NAKed frame was not taken, and a NAK for
  a stale timestamp would only come again for the old one);
- nothing within `answer_timeout_s`: sent again byte for byte, since the line may have
  stored it and lost only the answer, and an identical resend is a duplicate to it;

until `max_resends` resends have gone unanswered, when it gives up (`Unanswered`). One
frame is on the line at a time, as on a receiver's automation output, so a NAK (which
names no seq or account) always belongs to the frame waiting for it.

The receiver keeps the slave open too, so its side of the line stays up whether or not
the gateway has it open (a gateway restarting, still starting): frames written
meanwhile are lost, as on a real line, and resent. `play_receiver_traffic` is the
demo's traffic: polls and, now and then, an alarm from each account.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import tty
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Literal

import structlog

from core.clock import Clock, SystemClock
from devices import dc09
from devices.errors import Dc09Error
from gateway.dc09_framing import Framer
from simulator.errors import Unanswered

log = structlog.get_logger(__name__)

_READ_SIZE = 4096
_NAK, _DUH = "NAK", "DUH"
Content = Literal["SIA-DCS", "ADM-CID"]


class ReceiverEvent(StrEnum):
    """What the simulated receiver passes on for an account."""

    ALARM = "alarm"
    POLL = "poll"  # the panel's periodic test
    MAINS_LOST = "mains_lost"
    MAINS_RESTORED = "mains_restored"


# The data block after `#acct|`; codes as in docs/PROTOCOLS.md ("SIA DC-09").
_DATA: dict[Content, dict[ReceiverEvent, str]] = {
    "SIA-DCS": {
        ReceiverEvent.ALARM: "Nri1/MA001",  # medical alarm, group 1, zone 1
        ReceiverEvent.POLL: "Nri1/RP000",  # automatic test
        ReceiverEvent.MAINS_LOST: "Nri1/AT000",  # AC trouble
        ReceiverEvent.MAINS_RESTORED: "Nri1/AR000",  # AC restoral
    },
    "ADM-CID": {
        ReceiverEvent.ALARM: "1100 01 001",  # new medical alarm
        ReceiverEvent.POLL: "1602 00 000",  # periodic test
        ReceiverEvent.MAINS_LOST: "1301 00 000",  # AC loss
        ReceiverEvent.MAINS_RESTORED: "3301 00 000",  # AC loss restored
    },
}


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 9999 is followed by 0001 (0000 is never sent)."""
    return seq % 9999 + 1


@dataclass
class ReceiverTally:
    """What the receiver has done so far, by event where it says so."""

    sent: Counter[ReceiverEvent] = field(default_factory=Counter)  # frames begun
    answered: Counter[ReceiverEvent] = field(default_factory=Counter)  # ACKed
    duhs: int = 0  # frames the line understood and refused for good
    naks: int = 0  # NAK answers received
    timeouts: int = 0  # transmissions that got no answer in time
    transmissions: int = 0  # copies written, first ones and resends
    resends: int = 0  # of those, the repeats
    gave_up: int = 0  # frames given up after `max_resends`
    unpaired: int = 0  # answers that matched no waiting frame (late, or garbled)


class SimulatedReceiver:
    """An alarm receiver whose serial line is a pty; use `async with`.

    `clock` stamps the frames (default: the system clock); `content` chooses how events
    are written (`SIA-DCS` codes or Contact ID in `ADM-CID`); `first_seq` is the
    sequence number of the first frame. Reusable once closed, not re-entrant.
    """

    def __init__(self, *, clock: Clock | None = None, content: Content = "SIA-DCS",
                 answer_timeout_s: float = 5.0, max_resends: int = 3,
                 first_seq: int = 1, receiver: str = "0", prefix: str = "0") -> None:
        if content not in _DATA:
            raise ValueError(f"content must be one of {sorted(_DATA)}, not {content!r}")
        if not 1 <= first_seq <= 9999:
            raise ValueError("first_seq must be 1-9999")
        self.clock: Clock = clock or SystemClock()
        self.content: Content = content
        self.answer_timeout_s = answer_timeout_s
        self.max_resends = max_resends
        self.receiver = receiver
        self.prefix = prefix
        self.tally = ReceiverTally()
        self._seq = first_seq
        self._master = -1
        self._slave = -1
        self._slave_path: str | None = None
        self._framer = Framer()
        self._turn = asyncio.Lock()  # one frame on the line at a time
        self._waiting: tuple[str, str, asyncio.Future[dc09.Dc09Answer]] | None = None
        self._failed: OSError | None = None

    # -- the line --------------------------------------------------------------------

    @property
    def slave_path(self) -> str:
        """The device path the gateway opens, e.g. `/dev/pts/7`."""
        if self._slave_path is None:
            raise RuntimeError("the simulated receiver is not open; use `async with`")
        return self._slave_path

    async def __aenter__(self) -> SimulatedReceiver:
        if self._master >= 0:
            raise RuntimeError("the simulated receiver is already open")
        master, slave = os.openpty()
        try:
            # Raw until the gateway sets the line up itself: no echo of our frames back
            # at us, no CR turned into LF.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._slave_path = os.ttyname(slave)
            asyncio.get_running_loop().add_reader(master, self._readable)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave = master, slave
        self._framer = Framer()
        self._failed = None
        log.info("simulator.receiver.open", path=self._slave_path)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close both ends; the gateway's line then sees the receiver go away."""
        if self._master < 0:
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._fail_waiting(RuntimeError("the simulated receiver was closed"))
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self._slave_path = None

    # -- events ----------------------------------------------------------------------

    async def alarm(self, account: str) -> dc09.Dc09Answer:
        """The account's panel raised a medical alarm."""
        return await self.send(ReceiverEvent.ALARM, account)

    async def poll(self, account: str) -> dc09.Dc09Answer:
        """The account's panel reported its periodic test."""
        return await self.send(ReceiverEvent.POLL, account)

    async def mains_lost(self, account: str) -> dc09.Dc09Answer:
        return await self.send(ReceiverEvent.MAINS_LOST, account)

    async def mains_restored(self, account: str) -> dc09.Dc09Answer:
        return await self.send(ReceiverEvent.MAINS_RESTORED, account)

    async def send(self, event: ReceiverEvent, account: str) -> dc09.Dc09Answer:
        """Pass `event` on for `account` until it is ACKed or DUHed; return that answer.

        Raises `Unanswered` once `max_resends` resends got no ACK, and RuntimeError if
        the receiver is closed or its pty failed.
        """
        if not dc09.is_account(account):
            raise ValueError(f"account {account!r} is not 3-16 hex digits")
        async with self._turn:
            self._check_usable()
            seq = f"{self._seq:04d}"
            self._seq = next_seq(self._seq)
            data = f"#{account}|{_DATA[self.content][event]}"
            self.tally.sent[event] += 1
            bound = log.bind(account=account, seq=seq, event=str(event))
            return await self._until_answered(event, account, seq, data, bound)

    async def _until_answered(self, event: ReceiverEvent, account: str, seq: str,
                              data: str, bound: structlog.typing.FilteringBoundLogger,
                              ) -> dc09.Dc09Answer:
        frame = self._frame(seq, account, data)
        copy = 0
        while True:
            if copy:
                self.tally.resends += 1
                bound.info("simulator.receiver.resent", copy=copy)
            answer = await self._transmit(frame, account, seq)
            if answer is None:
                self.tally.timeouts += 1
            elif answer.token == _NAK:
                self.tally.naks += 1
                frame = self._frame(seq, account, data)  # not taken: stamp it anew
            elif answer.token == _DUH:
                self.tally.duhs += 1
                bound.warning("simulator.receiver.refused")
                return answer
            else:
                self.tally.answered[event] += 1
                bound.info("simulator.receiver.acked")
                return answer
            if copy >= self.max_resends:
                self.tally.gave_up += 1
                bound.error("simulator.receiver.gave_up", transmissions=copy + 1)
                raise Unanswered(account, seq, str(event), copy + 1)
            copy += 1

    def _frame(self, seq: str, account: str, data: str) -> bytes:
        return dc09.encode_frame(token=self.content, seq=seq, account=account, data=data,
                                 receiver=self.receiver, prefix=self.prefix,
                                 timestamp=self.clock.now())

    async def _transmit(self, frame: bytes, account: str, seq: str) -> dc09.Dc09Answer | None:
        """Write one copy and wait for its answer; None if none came in time."""
        self._check_usable()
        answer: asyncio.Future[dc09.Dc09Answer] = asyncio.get_running_loop().create_future()
        self._waiting = (account.upper(), seq, answer)
        try:
            self._write(frame)
            self.tally.transmissions += 1
            async with asyncio.timeout(self.answer_timeout_s):
                return await answer
        except TimeoutError:
            return None
        finally:
            self._waiting = None

    def _write(self, frame: bytes) -> None:
        """Write a frame, or as much as the line takes: with nobody reading the slave its
        buffer fills, and what does not fit is lost as on a real line (a cut-off frame
        is noise to the gateway's framer), to be resent."""
        try:
            written = os.write(self._master, frame)
        except (BlockingIOError, InterruptedError):
            written = 0
        if written < len(frame):
            log.warning("simulator.receiver.line_full", written=written, size=len(frame))

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise RuntimeError(f"the simulated receiver's pty failed: {self._failed}")
        if self._master < 0:
            raise RuntimeError("the simulated receiver is not open; use `async with`")

    # -- answers ---------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self._master, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # Only if the slave is closed under us (we hold it open): fail loudly.
            self._lost(exc)
            return
        if not data:
            self._lost(OSError(errno.EIO, "end of file on the pty"))
            return
        for frame in self._framer.feed(data):
            try:
                answer = dc09.decode_answer(frame)
            except Dc09Error as exc:
                self.tally.unpaired += 1
                log.warning("simulator.receiver.garbled_answer", reason=exc.reason)
                continue
            self._pair(answer)

    def _pair(self, answer: dc09.Dc09Answer) -> None:
        """Hand an answer to the frame waiting for it: a NAK names no frame, so it is
        the waiting one's; an ACK or DUH must name its seq and account."""
        waiting = self._waiting
        if waiting is not None and not waiting[2].done():
            account, seq, future = waiting
            if answer.token == _NAK or (answer.seq == seq
                                         and (answer.account or "").upper() == account):
                future.set_result(answer)
                return
        # A late answer to a copy already resent, or to a frame already given up on.
        self.tally.unpaired += 1
        log.debug("simulator.receiver.unpaired_answer", token=answer.token, seq=answer.seq)

    def _lost(self, exc: OSError) -> None:
        self._failed = exc
        asyncio.get_running_loop().remove_reader(self._master)
        log.error("simulator.receiver.failed", error=str(exc))
        self._fail_waiting(RuntimeError(f"the simulated receiver's pty failed: {exc}"))

    def _fail_waiting(self, exc: Exception) -> None:
        if self._waiting is not None and not self._waiting[2].done():
            self._waiting[2].set_exception(exc)


# -- demo traffic ----------------------------------------------------------------------


async def play_receiver_traffic(
    receiver: SimulatedReceiver,
    accounts: Sequence[str],
    *,
    poll_every_s: float = 300.0,
    first_poll_after_s: float = 5.0,
    alarm_mean_interval_s: float = 600.0,
    rng: random.Random | None = None,
) -> None:
    """Polls from every account every `poll_every_s`, and alarms from random accounts
    at a mean interval of `alarm_mean_interval_s` (all accounts together). Runs until
    cancelled. A frame given up on is logged and the traffic goes on; a receiver that
    fails (its pty gone) ends it with the error."""
    if not accounts:
        log.warning("simulator.receiver.no_accounts")
        return
    rng = rng or random.Random()
    async with asyncio.TaskGroup() as tg:
        for n, account in enumerate(accounts):
            tg.create_task(
                _polls(receiver, account, first_poll_after_s + n, poll_every_s),
                name=f"trygg.simulator.receiver.polls-{account}")
        tg.create_task(_alarms(receiver, accounts, alarm_mean_interval_s, rng),
                       name="trygg.simulator.receiver.alarms")


async def _polls(receiver: SimulatedReceiver, account: str, first_after_s: float,
                 every_s: float) -> None:
    loop = asyncio.get_running_loop()
    next_poll = loop.time() + first_after_s
    while True:
        await asyncio.sleep(max(0.0, next_poll - loop.time()))
        with contextlib.suppress(Unanswered):  # logged where it was given up
            await receiver.poll(account)
        next_poll += every_s
        while next_poll < loop.time():  # a poll that resent past its time: skip the beat
            next_poll += every_s


async def _alarms(receiver: SimulatedReceiver, accounts: Sequence[str], mean_interval_s: float,
                  rng: random.Random) -> None:
    while True:
        await asyncio.sleep(rng.expovariate(1 / mean_interval_s))
        with contextlib.suppress(Unanswered):
            await receiver.alarm(rng.choice(accounts))
