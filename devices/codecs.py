"""The codec registry: one shape for every device protocol, looked up by name.

The gateway holds a `Codec` and never a protocol module: it decodes a frame into a
`DeviceEvent`, stores it (a heartbeat only updates last-seen), and only then answers
with `encode_ok`, or with `encode_error` when decoding raised a `FrameError`. A new
protocol is a module plus one entry in `CODECS`, and
tests/unit/test_codec_contract.py then runs the shared contract against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from devices import dc09, scaip
from devices.errors import ContentError, FrameError
from devices.events import DeviceEvent


class Codec(Protocol):
    """Decode a device's frames and encode the answers it waits for."""

    @property
    def name(self) -> str:
        """The protocol's name; also `DeviceEvent.protocol` and the key in CODECS."""
        ...

    def decode(self, frame: bytes, *, now: datetime) -> DeviceEvent:
        """One frame in, one event out; raises FrameError (or a subclass) only.

        `now` (aware UTC) is the receiving clock, for protocols whose frames carry a
        timestamp that must lie in a window; codecs have no clock of their own.
        """
        ...

    def encode_ok(self, event: DeviceEvent, *, now: datetime,
                  heartbeat_interval_min: int | None = None) -> bytes:
        """The answer that tells the device its message `event.ref` was handled.

        `heartbeat_interval_min` is handed to a device that asked for an interval.
        """
        ...

    def encode_error(self, err: FrameError, *, now: datetime) -> bytes:
        """The answer to a frame that `decode` rejected with `err`."""
        ...


class ScaipCodec:
    """SCAIP <mrq> in, <mrs> out; see devices/scaip.py."""

    name = scaip.PROTOCOL

    def decode(self, frame: bytes, *, now: datetime) -> DeviceEvent:
        return scaip.decode(frame)

    def encode_ok(self, event: DeviceEvent, *, now: datetime,
                  heartbeat_interval_min: int | None = None) -> bytes:
        hbi = heartbeat_interval_min if event.wants_heartbeat_interval else None
        return scaip.encode_response(scaip.ScaipResponse(ref=event.ref, snu=scaip.Snu.OK,
                                                         hbi=hbi))

    def encode_error(self, err: FrameError, *, now: datetime) -> bytes:
        if isinstance(err, scaip.ScaipError):
            return scaip.encode_response(scaip.error_response(err))
        if isinstance(err, ContentError):
            return scaip.encode_response(scaip.ScaipResponse(
                ref=err.ref, snu=scaip.Snu.WRONG_DATA, ste=err.reason))
        # Not ours, so no snu and no ref: "invalid format" is the closest answer.
        resp = scaip.ScaipResponse(ref=None, snu=scaip.Snu.INVALID_FORMAT, ste=err.reason)
        return scaip.encode_response(resp)


class Dc09Codec:
    """SIA DC-09 frames and plain Contact ID lines in, ACK/NAK/DUH out; see devices/dc09.py.

    `keys` maps an account to its AES key (16, 24 or 32 bytes) for encrypted frames;
    a frame's timestamp must lie within `past_s` before and `future_s` after `now`.
    """

    name = dc09.PROTOCOL

    def __init__(self, keys: Mapping[str, bytes] = dc09.NO_KEYS, past_s: float = 40,
                 future_s: float = 20) -> None:
        for account, key in keys.items():
            if not dc09.is_account(account):
                raise ValueError(f"account {account!r} is not 3-16 hex digits")
            if len(key) not in dc09.KEY_SIZES:
                raise ValueError(f"the key of account {account} is {len(key)} bytes, "
                                 "not 16, 24 or 32")
        if past_s < 0 or future_s < 0:
            raise ValueError("the timestamp window must not be negative")
        self.keys: Mapping[str, bytes] = {account.upper(): bytes(key)
                                          for account, key in keys.items()}
        self.past_s = past_s
        self.future_s = future_s

    def decode(self, frame: bytes, *, now: datetime) -> DeviceEvent:
        return dc09.decode(frame, now=now, keys=self.keys, past_s=self.past_s,
                           future_s=self.future_s)

    def encode_ok(self, event: DeviceEvent, *, now: datetime,
                  heartbeat_interval_min: int | None = None) -> bytes:
        return dc09.answer_ok(event, now=now, keys=self.keys)  # DC-09 sets no interval

    def encode_error(self, err: FrameError, *, now: datetime) -> bytes:
        return dc09.answer_error(err, now=now)


SCAIP: Codec = ScaipCodec()
DC09: Codec = Dc09Codec()

CODECS: dict[str, Codec] = {codec.name: codec for codec in (SCAIP, DC09)}
