"""Errors raised by codecs.

core.errors.TryggError
 └── FrameError            a frame could not be decoded; `reason` is a metric label
      ├── ContentError     well-formed, but its content is refused (e.g. it names another
      │                    device than the link it came on); `ref` and `cid` are known
      └── ScaipError       carries the SCAIP `snu` status to answer with, and the `ref` if known
"""

from __future__ import annotations

from core.errors import TryggError


class FrameError(TryggError):
    """A device frame could not be decoded.

    `reason` is a short fixed label (e.g. "not_xml", "missing_ref") used as a metric
    label and in logs; `detail` is a human sentence for the log line.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ContentError(FrameError):
    """A frame that decoded, but whose content the gateway refuses.

    The device is told its data was wrong (with its own `ref`, so it stops resending
    the same thing) rather than that it spoke an unknown format.
    """

    def __init__(self, reason: str, detail: str, *, ref: str, cid: str) -> None:
        super().__init__(reason, detail)
        self.ref = ref
        self.cid = cid
