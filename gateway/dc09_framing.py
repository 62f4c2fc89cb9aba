"""Cut the byte stream of a receiver's serial line or a DC-09 TCP connection into frames.

Pure: bytes in, frames out, no I/O. One `Framer` per line or connection, since a read
may end anywhere: in the middle of a frame, or after several.

- A DC-09 frame runs from LF (0x0A) to CR (0x0D) and is handed on with both.
- A CR-terminated chunk with no LF before it is a plain line (a receiver's Contact ID
  `1234181100010157` CR), handed on with its CR. The codec accepts both shapes.
- Bytes before an LF are noise (a cut-off frame, line garbage) and dropped.
- A frame or line longer than `max_frame` bytes is dropped whole: once the buffer holds
  more without a terminator it is emptied, and the rest up to the next LF or CR goes
  too. A line that lost its terminator must not grow the buffer forever.

Each drop is reported once to `on_discard(reason, size)`, `reason` being "garbage" or
"overflow", so the transport can count it; the Framer itself knows no metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable

LF = 0x0A
CR = 0x0D
# The longest frame DC-09 allows: the length field has three significant hex digits
# (4095 characters), plus LF, the crc and length fields and CR. Real frames stay well
# under a kilobyte; a buffer past this is a line that lost its terminator.
DEFAULT_MAX_FRAME = 4095 + 10

_TERMINATOR = re.compile(rb"[\n\r]")
# What a line may carry without being anything: a lone CR after a frame, padding.
_BLANK = b" \t\x00"

OnDiscard = Callable[[str, int], None]
# What a transport hands on: a frame, and the Reply that writes its answer to the line or
# connection it came on (raising gateway.errors.LineDown when it cannot). On the event
# loop; must not block. The runtime passes `lambda f, r: ingest.accept(f, codec, r)`.
Reply = Callable[[bytes], None]
OnFrame = Callable[[bytes, Reply], None]


class Framer:
    """A per-line buffer: `feed` what was read, get back every frame it completed."""

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME,
                 on_discard: OnDiscard | None = None) -> None:
        if max_frame < 3:
            raise ValueError("max_frame must leave room for LF, content and CR")
        self.max_frame = max_frame
        self.on_discard = on_discard
        self._buf = bytearray()
        self._skipping = False  # after an overflow: drop up to the next LF or CR

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for their terminator."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Take what was read; return the frames and plain lines it completed, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        while True:
            found = _TERMINATOR.search(buf, pos + 1 if self._in_frame(pos) else pos)
            if found is None:
                break
            end = found.start()
            if self._skipping:
                # The overlong thing ends at a CR; an LF is already the next frame.
                self._skipping = False
                pos = end + 1 if buf[end] == CR else end
            elif buf[end] == LF:
                # A new frame begins before this chunk ended: it was a cut-off frame or noise.
                self._discard("garbage", end - pos)
                pos = end
            else:
                self._take(bytes(buf[pos:end + 1]), frames)
                pos = end + 1
        del buf[:pos]
        if self._skipping:
            buf.clear()  # the rest of the overlong thing, already counted
        elif len(buf) > self.max_frame:
            self._discard("overflow", len(buf))
            buf.clear()
            self._skipping = True
        return frames

    def _in_frame(self, pos: int) -> bool:
        """At a frame's LF, the next terminator to look for is the one after it."""
        return not self._skipping and pos < len(self._buf) and self._buf[pos] == LF

    def _take(self, chunk: bytes, frames: list[bytes]) -> None:
        """A chunk ending in CR: a frame (from LF) or a plain line, unless empty or too long."""
        body = chunk[1:-1] if chunk[0] == LF else chunk[:-1]
        if not body.strip(_BLANK):
            self._discard("garbage", len(chunk))
        elif len(chunk) > self.max_frame:
            self._discard("overflow", len(chunk))
        else:
            frames.append(chunk)

    def _discard(self, reason: str, size: int) -> None:
        if size and self.on_discard is not None:
            self.on_discard(reason, size)
