"""The DC-09 framer: whatever the reads look like, exactly the frames come out."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.dc09_framing import Framer

# Frames from docs (CRC and length recomputed there), and a plain Contact ID line.
NULL = b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r'
MEDICAL = b'\n7EFF003C"SIA-DCS"0001R0L0#1234[#1234|Nri1/MA001]_10:15:30,03-14-2025\r'
CID = b'\n8770003D"ADM-CID"0002R0L0#1234[#1234|1100 01 001]_10:15:30,03-14-2025\r'
PLAIN = b"1234181100010157\r"


class Discards:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, reason: str, size: int) -> None:
        self.seen.append((reason, size))

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.seen]


def feed_all(framer: Framer, *chunks: bytes) -> list[bytes]:
    return [frame for chunk in chunks for frame in framer.feed(chunk)]


def test_a_whole_frame_comes_out_with_its_lf_and_cr() -> None:
    assert Framer().feed(MEDICAL) == [MEDICAL]


def test_a_frame_split_over_three_reads_comes_out_once_complete() -> None:
    framer = Framer()

    first = framer.feed(MEDICAL[:5])
    second = framer.feed(MEDICAL[5:40])
    third = framer.feed(MEDICAL[40:])

    assert (first, second) == ([], [])
    assert third == [MEDICAL]
    assert framer.buffered == 0


def test_two_frames_in_one_read_both_come_out_in_order() -> None:
    assert Framer().feed(MEDICAL + CID) == [MEDICAL, CID]


def test_garbage_before_a_frame_is_dropped_and_reported() -> None:
    discards = Discards()

    frames = Framer(on_discard=discards).feed(b"\x00\xffnoise" + MEDICAL + b"junk" + CID)

    assert frames == [MEDICAL, CID]
    assert discards.seen == [("garbage", 7), ("garbage", 4)]


def test_a_cut_off_frame_is_dropped_when_the_next_frame_begins() -> None:
    discards = Discards()

    frames = feed_all(Framer(on_discard=discards), MEDICAL[:30], CID)

    assert frames == [CID]
    assert discards.reasons == ["garbage"]


def test_a_cr_terminated_line_without_lf_is_a_plain_line() -> None:
    assert Framer().feed(PLAIN + MEDICAL + PLAIN) == [PLAIN, MEDICAL, PLAIN]


def test_a_plain_line_split_across_reads_comes_out_once() -> None:
    assert feed_all(Framer(), PLAIN[:4], PLAIN[4:]) == [PLAIN]


def test_empty_lines_and_frames_are_dropped_not_handed_on() -> None:
    discards = Discards()

    frames = Framer(on_discard=discards).feed(b"\r" + MEDICAL + b"\r\n\r \r")

    assert frames == [MEDICAL]
    assert discards.reasons == ["garbage", "garbage", "garbage", "garbage"]


def test_a_line_without_terminator_is_discarded_past_the_cap_and_counted_once() -> None:
    discards = Discards()
    framer = Framer(max_frame=64, on_discard=discards)

    frames = feed_all(framer, b"\n" + b"x" * 50, b"x" * 50, b"x" * 500, b"x" * 10 + b"\r")

    assert frames == []
    assert discards.reasons == ["overflow"]
    assert framer.buffered == 0


def test_after_an_overflow_the_next_frame_is_found_again() -> None:
    framer = Framer(max_frame=100)

    frames = feed_all(framer, b"\n" + b"x" * 150, b"x" * 20 + MEDICAL, PLAIN)

    assert frames == [MEDICAL, PLAIN]


def test_after_an_overflow_the_next_plain_line_begins_after_its_cr() -> None:
    framer = Framer(max_frame=32)

    frames = feed_all(framer, b"y" * 40, b"y" * 5 + b"\r" + PLAIN)

    assert frames == [PLAIN]


def test_a_complete_frame_over_the_cap_is_dropped_as_when_it_came_in_pieces() -> None:
    discards = Discards()
    framer = Framer(max_frame=len(MEDICAL) - 1, on_discard=discards)

    frames = framer.feed(MEDICAL + PLAIN)

    assert frames == [PLAIN]
    assert discards.reasons == ["overflow"]


def test_a_frame_exactly_at_the_cap_comes_out_however_it_is_split() -> None:
    framer = Framer(max_frame=len(MEDICAL))

    frames = feed_all(framer, MEDICAL[:-1], MEDICAL[-1:])

    assert frames == [MEDICAL]


# -- any split of any stream ---------------------------------------------------------------

_text = st.binary(min_size=1, max_size=120).map(
    lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
_body = _text.filter(lambda b: bool(b.strip(b" \t\x00")))
_garbage = st.one_of(st.just(b""), _text)
# Garbage goes only before a DC-09 frame: glued to the front of a plain line it would be
# part of that line (it is a line's content, for the codec to refuse), not garbage.
_dc09 = st.tuples(_garbage, _body.map(lambda b: b"\n" + b + b"\r"))
_plain = st.tuples(st.just(b""), _body.map(lambda b: b + b"\r"))
_streams = st.lists(st.one_of(_dc09, _plain), max_size=12)


@given(items=_streams, trailing=_garbage, data=st.data())
def test_any_split_of_frames_with_garbage_between_yields_exactly_the_frames(
        items: list[tuple[bytes, bytes]], trailing: bytes, data: st.DataObject) -> None:
    stream = b"".join(garbage + frame for garbage, frame in items) + trailing
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    bounds = [0, *cuts, len(stream)]
    framer = Framer(max_frame=200)

    frames = feed_all(framer, *(stream[a:b] for a, b in itertools.pairwise(bounds)))

    assert frames == [frame for _, frame in items]


@given(items=_streams, data=st.data())
def test_frames_come_out_the_same_fed_at_once_or_byte_by_byte(
        items: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    stream = b"".join(garbage + frame for garbage, frame in items)
    noise = data.draw(st.binary(max_size=300))
    whole = Framer(max_frame=100).feed(noise + stream)
    bytewise = Framer(max_frame=100)

    pieces = feed_all(bytewise, *(bytes([b]) for b in noise + stream))

    assert pieces == whole
