"""One alarm receiver's serial line: open it, cut what it sends into DC-09 frames, answer
on it, and reopen it whenever it drops.

pyserial opens and configures the port (speed, parity, an exclusive lock so no second
process splits the stream); reading and writing then go straight to its file descriptor
from the event loop (`loop.add_reader` / `add_writer`, non-blocking). No thread: an
answer is written on the loop the moment its commit is done, a line that drops is seen
at once (EIO, or end of file on a hung-up tty), and closing is a cancellation with
nothing blocked in a read to wait for. The price is that the port must be a real file
descriptor (a tty, a pty), not a pyserial URL handler such as rfc2217://; terminal
servers are reached with the DC-09 TCP listener instead.

A dropped line (unplugged adapter, EIO, closed pty) is closed and reopened with
exponential backoff and jitter capped at a few seconds, as the MQTT link does: the
receiver keeps resending meanwhile, and once the line is back we must be too. Answers
go to the opening a frame came on; after a drop, its receiver resends and the resend
is answered from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import serial
import structlog

from core.logs import Throttle
from gateway.backoff import backoff
from gateway.dc09_framing import DEFAULT_MAX_FRAME, Framer, OnFrame
from gateway.errors import LineConfigError, LineDown
from gateway.serial_metrics import (
    FRAMING_DISCARDS,
    HANDLER_FAILURES,
    SERIAL_LINE_UP,
    SERIAL_RECONNECTS,
)

log = structlog.get_logger(__name__)

_READ_SIZE = 4096
# Answers not yet taken by the line: a receiver that stops reading (flow control held)
# must not grow this without bound; past it, answers fail and the receiver resends.
_MAX_UNSENT = 64 * 1024


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineSettings:
    """One serial line as configured; `name` labels metrics and logs instead of `path`."""

    path: str
    name: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


_SETTING_KEYS = {"baudrate", "bytesize", "parity", "stopbits"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_PARITIES = {"N": "N", "E": "E", "O": "O", "M": "M", "S": "S",
             "NONE": "N", "EVEN": "E", "ODD": "O", "MARK": "M", "SPACE": "S"}


def line_settings(paths: Sequence[str], config: Mapping[str, Any]) -> list[LineSettings]:
    """The settings of each serial line in `paths`, from `config["serial"]`.

    `config` is shaped like
    `{"serial": {"defaults": {"baudrate": 9600}, "lines": {"/dev/ttyUSB0": {"name": "rx1"}}}}`;
    a line's own values override the defaults, which override LineSettings' own. A line
    without a name is called `line<n>`, n its place in `paths`. Lines configured but not
    in `paths` are left alone (one file may describe several hosts). Raises
    LineConfigError naming the setting at fault.
    """
    section = _mapping(config.get("serial") or {}, "serial")
    _known_keys(section, {"defaults", "lines"}, "serial")
    defaults = _mapping(section.get("defaults") or {}, "serial.defaults")
    _known_keys(defaults, _SETTING_KEYS, "serial.defaults")
    lines = _mapping(section.get("lines") or {}, "serial.lines")
    found: list[LineSettings] = []
    for n, path in enumerate(paths, start=1):
        if not isinstance(path, str) or not path.strip():
            raise LineConfigError(f"line {n}", "the device path is empty")
        if "://" in path:
            raise LineConfigError(f"line {n}", "a device path is needed, not a URL")
        where = f"serial.lines[{path!r}]"
        own = _mapping(lines.get(path) or {}, where)
        _known_keys(own, {*_SETTING_KEYS, "name"}, where)
        values = {**defaults, **own}
        found.append(LineSettings(
            path=path,
            name=_name(values.get("name", f"line{n}"), where),
            baudrate=_int(values.get("baudrate", 9600), f"{where}.baudrate", 50, 4_000_000),
            bytesize=_choice(values.get("bytesize", 8), {5, 6, 7, 8}, f"{where}.bytesize"),
            parity=_parity(values.get("parity", "N"), f"{where}.parity"),
            stopbits=_choice(values.get("stopbits", 1), {1, 1.5, 2}, f"{where}.stopbits"),
        ))
    for attr in ("path", "name"):
        seen = [getattr(line, attr) for line in found]
        twice = sorted({v for v in seen if seen.count(v) > 1})
        if twice:
            raise LineConfigError("serial.lines", f"{attr} used by two lines: {twice}")
    return found


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise LineConfigError(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _known_keys(values: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise LineConfigError(where, f"unknown keys {unknown}; known are {sorted(known)}")


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise LineConfigError(f"{where}.name",
                              "a short label of a-z, 0-9, _ and - (at most 32) is needed")
    return value


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LineConfigError(where, f"{value!r} is not a whole number in {low}..{high}")
    return value


def _choice(value: object, allowed: set[Any], where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value not in allowed:
        raise LineConfigError(where, f"{value!r} is not one of {sorted(allowed)}")
    return value


def _parity(value: object, where: str) -> str:
    parity = _PARITIES.get(value.upper()) if isinstance(value, str) else None
    if parity is None:
        raise LineConfigError(where, f"{value!r} is not one of N, E, O, M, S")
    return parity


# -- the line ---------------------------------------------------------------------------


class LineState(StrEnum):
    STARTING = "starting"
    OPEN = "open"
    DOWN = "down"


class _Opening:
    """One opening of the port: its descriptor, its framer, the answers not yet written.

    `lost` resolves with a reason label once the line fails; answers handed to an
    opening that is gone raise LineDown, never reach the next one.
    """

    def __init__(self, port: serial.Serial, name: str, framer: Framer) -> None:
        self.port = port
        self.fd: int = port.fileno()
        self.name = name
        self.framer = framer
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[str] = self.loop.create_future()
        self._unsent = bytearray()

    def reply(self, answer: bytes) -> None:
        if self.lost.done():
            raise LineDown(self.name, "closed")
        if self._unsent:  # keep the order: behind what is already waiting
            if len(self._unsent) + len(answer) > _MAX_UNSENT:
                raise LineDown(self.name, "stalled")
            self._unsent += answer
            return
        try:
            written = os.write(self.fd, answer)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            self.lose("write_failed")
            raise LineDown(self.name, "write_failed") from exc
        if written < len(answer):
            self._unsent += answer[written:]
            self.loop.add_writer(self.fd, self._flush)

    def _flush(self) -> None:
        try:
            written = os.write(self.fd, self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.lose("write_failed")
            return
        del self._unsent[:written]
        if not self._unsent:
            self.loop.remove_writer(self.fd)

    def lose(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)

    def close(self) -> None:
        self.lose("closed")
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        with contextlib.suppress(OSError, serial.SerialException):
            self.port.close()


class SerialLine:
    """A self-healing serial line that hands each frame to `on_frame(frame, reply)`.

    `run()` never returns; cancel it to close the line, or use `async with line:` to
    run it in a task of its own. `state` (starting/open/down) is for /readyz, and the
    gauge trygg_serial_line_up{line=name} says the same to Prometheus.
    """

    def __init__(self, settings: LineSettings, on_frame: OnFrame, *,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 3.0,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.settings = settings
        self.name = settings.name
        self.on_frame = on_frame
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_frame = max_frame
        self.state = LineState.STARTING
        self._changed = asyncio.Condition()
        self._open_failures = Throttle()
        self._task: asyncio.Task[None] | None = None
        SERIAL_LINE_UP.labels(self.name).set(0)

    async def run(self) -> None:
        """Open, read, answer; on any loss close, wait and open again. Never returns."""
        waits = backoff(self.backoff_initial_s, self.backoff_max_s)
        try:
            while True:
                try:
                    opening = self._open()
                except (serial.SerialException, OSError, termios.error) as exc:
                    self._open_failed(exc)
                else:
                    waits = backoff(self.backoff_initial_s, self.backoff_max_s)
                    try:
                        await self._set_state(LineState.OPEN)
                        log.info("serial_line_open", line=self.name)
                        reason = await opening.lost
                    finally:
                        opening.close()
                    log.warning("serial_line_lost", line=self.name, reason=reason)
                await self._set_state(LineState.DOWN)
                SERIAL_RECONNECTS.labels(self.name).inc()
                await asyncio.sleep(next(waits))
        finally:
            self.state = LineState.DOWN
            SERIAL_LINE_UP.labels(self.name).set(0)

    async def __aenter__(self) -> SerialLine:
        if self._task is not None:
            raise RuntimeError(f"serial line {self.name} is already running")
        self._task = asyncio.create_task(self.run(), name=f"trygg.gateway.serial.{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_state(self, state: LineState, timeout_s: float | None = None) -> None:
        """Return once the line is in `state` (at once if it already is)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.state is state)

    @property
    def is_open(self) -> bool:
        return self.state is LineState.OPEN

    def _open(self) -> _Opening:
        s = self.settings
        port = serial.serial_for_url(
            s.path, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
            stopbits=s.stopbits, timeout=0, exclusive=True)
        try:
            # VMIN 1: an empty non-blocking read then says EAGAIN, and only a hung-up
            # line reads as end of file (pyserial leaves VMIN 0, where both read as b"").
            attrs = termios.tcgetattr(port.fileno())
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(port.fileno(), termios.TCSANOW, attrs)
            framer = Framer(max_frame=self.max_frame, on_discard=_count_discard)
            opening = _Opening(port, self.name, framer)
            asyncio.get_running_loop().add_reader(opening.fd, self._readable, opening)
        except BaseException:
            port.close()
            raise
        return opening

    def _readable(self, opening: _Opening) -> None:
        try:
            data = os.read(opening.fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # EIO: the adapter was unplugged or the other end of a pty closed.
            opening.lose("eio" if exc.errno == errno.EIO else "read_failed")
            opening.loop.remove_reader(opening.fd)
            return
        if not data:
            opening.lose("hung_up")
            opening.loop.remove_reader(opening.fd)
            return
        for frame in opening.framer.feed(data):
            try:
                self.on_frame(frame, opening.reply)
            except Exception as exc:  # a handler bug must not take the line down
                HANDLER_FAILURES.labels("serial").inc()
                log.error("frame_handler_failed", line=self.name, error=type(exc).__name__)

    def _open_failed(self, exc: BaseException) -> None:
        # The error's number only: pyserial's message quotes the device path.
        if (count := self._open_failures.hit()) is not None:
            log.warning("serial_line_open_failed", line=self.name, attempts=count,
                        error=type(exc).__name__, errno=getattr(exc, "errno", None))

    async def _set_state(self, state: LineState) -> None:
        async with self._changed:
            self.state = state
            SERIAL_LINE_UP.labels(self.name).set(1 if state is LineState.OPEN else 0)
            self._changed.notify_all()


def _count_discard(reason: str, size: int) -> None:
    FRAMING_DISCARDS.labels("serial", reason).inc()
