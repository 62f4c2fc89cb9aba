"""The receiver's end of a real pseudo-terminal, for tests of serial DC-09 lines.

The gateway opens a symlink to the pty's slave by name, as it would /dev/ttyUSB0; the
test plays the alarm receiver on the master.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from devices import dc09
from gateway.dc09_framing import Framer


class Pty:
    """The receiver's end of a pseudo-terminal whose slave the line opens through `link`."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self._framer = Framer()
        self._answers: list[bytes] = []
        self.plug_in()

    def plug_in(self) -> None:
        """A new pty pair behind the link, as a receiver plugged back in."""
        self.master, slave = os.openpty()
        slave_path = os.ttyname(slave)
        os.close(slave)  # the line opens it by name
        os.set_blocking(self.master, False)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(slave_path)
        self._framer = Framer()

    def unplug(self) -> None:
        """The receiver goes away: its end closes and its device path disappears."""
        os.close(self.master)
        self.master = -1
        self.link.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def read(self, timeout_s: float = 5.0) -> bytes:
        """Whatever the line wrote, waiting for the first byte."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self.master, ready.set)
        try:
            async with asyncio.timeout(timeout_s):
                await ready.wait()
        finally:
            loop.remove_reader(self.master)
        return os.read(self.master, 4096)

    async def frame(self, timeout_s: float = 5.0) -> bytes:
        """The next DC-09 frame the line wrote, as written."""
        async with asyncio.timeout(timeout_s):
            while not self._answers:
                self._answers += self._framer.feed(await self.read(timeout_s))
        return self._answers.pop(0)

    async def answer(self, timeout_s: float = 5.0) -> dc09.Dc09Answer:
        """The next DC-09 answer the line wrote, read."""
        return dc09.decode_answer(await self.frame(timeout_s))

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
