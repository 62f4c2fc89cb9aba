"""The contract every registered codec keeps: bad frames raise FrameError, answers parse.

A new codec registers in devices.codecs.CODECS and adds one `Sample` here; it then
inherits every test below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from devices import dc09, scaip
from devices.codecs import CODECS, Codec
from devices.errors import ContentError, FrameError


@dataclass(frozen=True)
class Sample:
    frame: bytes  # a valid frame, as a real device sends it
    ref: str  # the message reference inside it
    # How the device reads our answer: (ref answered, accepted?). None: no answers.
    read_answer: Callable[[bytes], tuple[str | None, bool]] | None


def read_scaip_answer(answer: bytes) -> tuple[str | None, bool]:
    resp = scaip.decode_response(answer)
    return resp.ref, resp.snu == scaip.Snu.OK


def read_dc09_answer(answer: bytes) -> tuple[str | None, bool]:
    resp = dc09.decode_answer(answer)
    return resp.seq, resp.token == "ACK"


SAMPLES = {
    "scaip": Sample(
        frame=b"<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>",
        ref="1242",
        read_answer=read_scaip_answer,
    ),
    # The medical alarm of PROTOCOLS.md §2 without its CR: the codec accepts a frame
    # with or without LF and CR (a framer may strip them), so the CR-terminated frame
    # cut by one byte would still be whole. Every shorter cut fails its length field.
    "dc09": Sample(
        frame=b'\n7EFF003C"SIA-DCS"0001R0L0#1234[#1234|Nri1/MA001]_10:15:30,03-14-2025',
        ref="0001",
        read_answer=read_dc09_answer,
    ),
}

# The receiving clock handed to the codecs: a sample's own timestamp (if any) is this.
NOW = datetime(2025, 3, 14, 10, 15, 30, tzinfo=UTC)

GARBAGE = [b"", b"\x00", b"\xff\xfe\xfd", b"hello", b"<", b"<x/>", b"\n\r" * 50, b"A" * 100_000]

codecs = pytest.mark.parametrize("codec", list(CODECS.values()), ids=lambda c: c.name)
# Codecs whose devices read our answers (a receiver's ACK/NAK, a unit's <mrs>).
answered = pytest.mark.parametrize(
    "codec", [c for c in CODECS.values() if SAMPLES.get(c.name) is not None
              and SAMPLES[c.name].read_answer is not None], ids=lambda c: c.name)


def sample_of(codec: Codec) -> Sample:
    return SAMPLES[codec.name]


def test_every_registered_codec_has_a_contract_sample() -> None:
    assert set(CODECS) <= set(SAMPLES)


@codecs
def test_codec_is_registered_under_its_own_name(codec: Codec) -> None:
    assert CODECS[codec.name] is codec


@codecs
def test_sample_frame_decodes_to_an_event_of_this_protocol(codec: Codec) -> None:
    event = codec.decode(sample_of(codec).frame, now=NOW)

    assert (event.protocol, event.ref) == (codec.name, sample_of(codec).ref)


@codecs
def test_truncated_frame_raises_frame_error(codec: Codec) -> None:
    frame = sample_of(codec).frame

    for end in range(len(frame)):
        with pytest.raises(FrameError):
            codec.decode(frame[:end], now=NOW)


@codecs
@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda g: repr(g[:8]))
def test_garbage_raises_frame_error_with_a_reason(codec: Codec, garbage: bytes) -> None:
    with pytest.raises(FrameError) as info:
        codec.decode(garbage, now=NOW)

    assert info.value.reason


@answered
def test_ok_answer_is_read_by_the_device_as_accepted(codec: Codec) -> None:
    sample = sample_of(codec)
    assert sample.read_answer is not None

    event = codec.decode(sample.frame, now=NOW)

    assert sample.read_answer(codec.encode_ok(event, now=NOW)) == (sample.ref, True)


@answered
def test_error_answer_is_read_by_the_device_as_not_accepted(codec: Codec) -> None:
    sample = sample_of(codec)
    assert sample.read_answer is not None
    with pytest.raises(FrameError) as info:
        codec.decode(sample.frame[:-1], now=NOW)

    _, accepted = sample.read_answer(codec.encode_error(info.value, now=NOW))

    assert accepted is False


@answered
def test_error_answer_to_another_codecs_error_is_read_as_not_accepted(codec: Codec) -> None:
    sample = sample_of(codec)
    assert sample.read_answer is not None

    answer = codec.encode_error(FrameError("bad_crc", "CRC mismatch"), now=NOW)

    _, accepted = sample.read_answer(answer)

    assert accepted is False


@answered
def test_refused_content_is_answered_with_the_devices_own_ref(codec: Codec) -> None:
    sample = sample_of(codec)
    assert sample.read_answer is not None
    event = codec.decode(sample.frame, now=NOW)

    answer = codec.encode_error(ContentError("cid_mismatch", "another unit's topic",
                                             ref=event.ref, cid=event.cid), now=NOW)

    assert sample.read_answer(answer) == (sample.ref, False)
