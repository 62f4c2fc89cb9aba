"""The codec registry: one shape for every device protocol, looked up by name.

The gateway holds a `Codec` and never a protocol module: it decodes a frame into a
`DeviceEvent`, stores it, and only then answers with `encode_ok`, or with
`encode_error` when decoding raised a `FrameError`. A new protocol (DC-09 next) is a
module plus one entry in `CODECS`, and tests/unit/test_codec_contract.py then runs
the shared contract against it.
"""

from __future__ import annotations

from typing import Protocol

from devices import scaip
from devices.errors import FrameError
from devices.events import DeviceEvent


class Codec(Protocol):
    """Decode a device's frames and encode the answers it waits for."""

    @property
    def name(self) -> str:
        """The protocol's name; also `DeviceEvent.protocol` and the key in CODECS."""
        ...

    def decode(self, frame: bytes) -> DeviceEvent:
        """One frame in, one event out; raises FrameError (or a subclass) only."""
        ...

    def encode_ok(self, ref: str) -> bytes:
        """The answer that tells the device its message `ref` was handled."""
        ...

    def encode_error(self, err: FrameError) -> bytes:
        """The answer to a frame that `decode` rejected with `err`."""
        ...


class ScaipCodec:
    """SCAIP <mrq> in, <mrs> out; see devices/scaip.py."""

    name = scaip.PROTOCOL

    def decode(self, frame: bytes) -> DeviceEvent:
        return scaip.decode(frame)

    def encode_ok(self, ref: str) -> bytes:
        return scaip.encode_response(scaip.ScaipResponse(ref=ref, snu=scaip.Snu.OK))

    def encode_error(self, err: FrameError) -> bytes:
        if isinstance(err, scaip.ScaipError):
            return scaip.encode_response(scaip.error_response(err))
        # Not ours, so no snu and no ref: "invalid format" is the closest answer.
        resp = scaip.ScaipResponse(ref=None, snu=scaip.Snu.INVALID_FORMAT, ste=err.reason)
        return scaip.encode_response(resp)


SCAIP: Codec = ScaipCodec()

CODECS: dict[str, Codec] = {codec.name: codec for codec in (SCAIP,)}
