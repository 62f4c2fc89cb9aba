"""A simulated digital lock (nyckelfritt lås) that reports over SCAIP and obeys unlocks.

Staff open it with their work phone (`open(staff_id)`: `stc` 0127 unlocked, `dty` 0042,
their id in `ite`); it locks itself again after `relock_after_s` (`stc` 0118). While
entered (`async with lock:`) it listens on its `cmd` topic and obeys an unlock command
for itself that has not expired and that it has not obeyed before (QoS 1 may deliver one
twice), reporting the opening with `ite` "remote:<the command's ref>". Anything else is
refused, and noted in `refused` with the reason. docs/PROTOCOLS.md has the command.
`simulated_locks` keeps one per cid listening while its block runs: the demo's locks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol

import structlog

from devices.errors import FrameError
from devices.scaip import (
    DTY_LOCK,
    REMOTE_OPENING,
    UNLOCK,
    ScaipCommand,
    ScaipRequest,
    ScaipResponse,
    decode_command,
)
from simulator.link import DEFAULT_ROOT, DeviceLink
from simulator.unit import SimulatedDevice, Uplink

log = structlog.get_logger(__name__)


class LockAction(StrEnum):
    """What a simulated lock reports; the keys of its tally."""

    OPEN = "lock_open"
    CLOSE = "lock_close"
    BATTERY_LOW = "lock_battery_low"
    TAMPER = "lock_tamper"


_STATUS = {
    LockAction.OPEN: "0127",  # unlocked
    LockAction.CLOSE: "0118",  # locked
    LockAction.BATTERY_LOW: "0016",
    LockAction.TAMPER: "0125",
}


class LockLink(Uplink, Protocol):
    """A unit's uplink, and the lock's commands; `simulator.link.DeviceLink` provides it."""

    def commands(
        self, cid: str
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[bytes]]: ...


class SimulatedLock(SimulatedDevice):
    """One digital lock at a customer's door, as the alarm centre sees it over MQTT.

    `clock` is the lock's own clock, which judges a command's expiry (pass the service's
    in tests that run on a fake one); `relock_after_s` None leaves it open until closed.
    """

    def __init__(
        self,
        cid: str,
        link: LockLink,
        *,
        clock: Callable[[], datetime] | None = None,
        relock_after_s: float | None = 5.0,
        resend_after_s: float = 5.0,
        give_up_after_s: float = 1800.0,
    ) -> None:
        super().__init__(cid, link, resend_after_s=resend_after_s,
                         give_up_after_s=give_up_after_s)
        self._commands_link = link
        self._clock = clock or (lambda: datetime.now(UTC))
        self.relock_after_s = relock_after_s
        self.is_open = False
        self.obeyed: list[str] = []  # refs of the commands obeyed, in order
        self.refused: list[tuple[str | None, str]] = []  # (ref if read, reason)
        self._stack = contextlib.AsyncExitStack()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._relock: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> SimulatedLock:
        commands = await self._stack.enter_async_context(
            self._commands_link.commands(self.cid))
        self._spawn(self._obey(commands), f"trygg.simulator.lock.{self.cid}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stack.aclose()

    async def open(self, staff_id: str) -> ScaipResponse:
        """A staff member opened the door with their phone."""
        return await self._opened(staff_id)

    async def close(self, staff_id: str | None = None) -> ScaipResponse:
        """The door is locked again (by hand, or by the lock itself)."""
        if self._relock is not None and self._relock is not asyncio.current_task():
            self._relock.cancel()
        self.is_open = False
        return await self._report(LockAction.CLOSE, staff_id)

    async def battery_low(self) -> ScaipResponse:
        return await self._report(LockAction.BATTERY_LOW)

    async def tamper(self) -> ScaipResponse:
        return await self._report(LockAction.TAMPER)

    async def _opened(self, ite: str) -> ScaipResponse:
        self.is_open = True
        if self.relock_after_s is not None:
            if self._relock is not None:
                self._relock.cancel()
            self._relock = self._spawn(self._relock_later(self.relock_after_s),
                                       f"trygg.simulator.lock.{self.cid}.relock")
        return await self._report(LockAction.OPEN, ite)

    async def _relock_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # the lock's own latch, not one of Trygg's rules
        await self.close()

    async def _report(self, action: LockAction, ite: str | None = None) -> ScaipResponse:
        request = ScaipRequest(ref=self._next_ref(), cid=self.cid, dty=DTY_LOCK,
                               stc=_STATUS[action], ite=ite)
        return await self._session(action, request)

    async def _obey(self, commands: asyncio.Queue[bytes]) -> None:
        while True:
            frame = await commands.get()
            try:
                command = decode_command(frame)
            except FrameError as exc:
                self._refuse(None, exc.reason)
                continue
            if (reason := self._refusal(command)) is not None:
                self._refuse(command.ref, reason)
                continue
            self.obeyed.append(command.ref)
            log.info("simulator.lock.obeyed", cid=self.cid, ref=command.ref)
            # Reported in a task of its own: the lock goes on reading commands meanwhile.
            self._spawn(self._opened(f"{REMOTE_OPENING}{command.ref}"),
                        f"trygg.simulator.lock.{self.cid}.open")

    def _refusal(self, command: ScaipCommand) -> str | None:
        if command.cid != self.cid:
            return "not_this_lock"
        if command.act != UNLOCK:
            return "unknown_act"
        if command.ref in self.obeyed:
            return "already_obeyed"
        if command.exp is None:
            return "no_expiry"  # a command good for ever could open the door any time
        if self._clock() > command.exp:
            return "expired"
        return None

    def _refuse(self, ref: str | None, reason: str) -> None:
        self.refused.append((ref, reason))
        log.warning("simulator.lock.refused", cid=self.cid, ref=ref, reason=reason)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator.lock.task_failed", cid=self.cid, task=task.get_name(),
                      error=repr(exc))



@contextlib.asynccontextmanager
async def simulated_locks(host: str, port: int, cids: Sequence[str], *,
                          root: str = DEFAULT_ROOT) -> AsyncIterator[list[SimulatedLock]]:
    """One simulated lock per cid over one link, each listening for its unlocks (already
    subscribed) while the block runs. Raises `LinkDown` if the broker cannot be reached
    at the start."""
    async with DeviceLink(host, port, root=root) as link, contextlib.AsyncExitStack() as stack:
        locks = [await stack.enter_async_context(SimulatedLock(cid, link)) for cid in cids]
        log.info("simulator.locks.started", locks=len(locks))
        yield locks
