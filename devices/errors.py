"""Errors raised by codecs.

core.errors.TryggError
 └── FrameError            a frame could not be decoded; `reason` is a metric label
      ├── ContentError     well-formed, but its content is refused (e.g. it names another
      │                    device than the link it came on); `ref` and `cid` are known
      ├── ScaipError       carries the SCAIP `snu` status to answer with, and the `ref` if known
      └── Dc09Error        carries the DC-09 answer to give (NAK or DUH) and the seq, account,
                           receiver and line prefix if recovered
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


class Dc09Error(FrameError):
    """A SIA DC-09 frame (or plain Contact ID line) was rejected; `answer` says how.

    `answer` is "NAK" (the frame did not arrive intact or in time: CRC, length,
    timestamp; the sender resends) or "DUH" (it arrived intact, but we do not understand
    it: the sender should not resend the same thing). `seq`, `account`, `receiver` and
    `prefix` are what could be read from the frame (else None), so a DUH can echo them.
    `plain_line` marks a plain Contact ID line, answered with a single NAK byte.
    """

    ANSWERS = ("NAK", "DUH")

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        answer: str,
        seq: str | None = None,
        account: str | None = None,
        receiver: str | None = None,
        prefix: str | None = None,
        plain_line: bool = False,
    ) -> None:
        if answer not in self.ANSWERS:
            raise ValueError(f"answer must be NAK or DUH, got {answer!r}")
        super().__init__(reason, detail)
        self.answer = answer
        self.seq = seq
        self.account = account
        self.receiver = receiver
        self.prefix = prefix
        self.plain_line = plain_line

    @property
    def ref(self) -> str | None:
        """The message reference (the seq), named as on the other codecs' errors."""
        return self.seq

    @property
    def cid(self) -> str | None:
        """The device id (the account), named as on the other codecs' errors."""
        return self.account
