"""DC-09 codec under property tests: nothing but Dc09Error escapes, built frames round-trip."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from devices import dc09
from devices.codecs import Dc09Codec
from devices.dc09 import Dc09Answer, crc16_arc, decode_answer, encode_contact_id_line, encode_frame
from devices.dc09_codes import CID_CODES, SIA_CODES, cid_kind, sia_kind
from devices.errors import Dc09Error
from devices.events import DeviceEvent, EventKind
from tests.fuzzing import mutate

FAST = settings(max_examples=400, deadline=None)

NOW = datetime(2025, 3, 14, 10, 15, 30, tzinfo=UTC)
KEY = bytes(range(16))
CODEC = Dc09Codec({"1234": KEY, "BEEF": bytes(range(32))})

VALID_FRAMES = [
    b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r',
    b'\n7EFF003C"SIA-DCS"0001R0L0#1234[#1234|Nri1/MA001]_10:15:30,03-14-2025\r',
    b'\n8770003D"ADM-CID"0002R0L0#1234[#1234|1100 01 001]_10:15:30,03-14-2025\r',
    encode_frame(token="SIA-DCS", seq=9, account="1234", data="#1234|Nri1/MA001",
                 timestamp=NOW, key=KEY),
    encode_frame(token="NULL", seq=10, account="1234", timestamp=NOW, key=KEY),
    b"1234181100010157\r",
]


def decodes_or_raises_dc09_error(frame: bytes) -> None:
    """An event or a Dc09Error, and the error's answer is read as not accepted."""
    try:
        result = CODEC.decode(frame, now=NOW)
    except Dc09Error as err:
        assert err.reason
        assert err.answer in ("NAK", "DUH")
        assert decode_answer(CODEC.encode_error(err, now=NOW)).token != "ACK"
    else:
        assert isinstance(result, DeviceEvent)
        assert decode_answer(CODEC.encode_ok(result, now=NOW), key=KEY).token == "ACK"


def reframe(body: bytes) -> bytes:
    return b"\n" + f"{crc16_arc(body):04X}{len(body) & 0xFFFF:04X}".encode() + body + b"\r"


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_an_event_or_a_dc09_error(frame: bytes) -> None:
    decodes_or_raises_dc09_error(frame)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bodies_with_a_right_crc_give_an_event_or_a_dc09_error(body: bytes) -> None:
    decodes_or_raises_dc09_error(reframe(b'"' + body))


PIECES = st.sampled_from([
    '"', "*", "SIA-DCS", "ADM-CID", "NULL", "SIA-XYZ", "0001", "12", "R0", "RF3", "L0",
    "L77", "#", "#1234", "#beef", "#12G", "[", "]", "|", "N", "A", "ri1", "ti10:15", "id7",
    "/", "MA001", "RP", "ZX", "^", "^label^", "1100 01 001", "1466 00 000", "6", " ",
    "_10:15:30,03-14-2025", "_99:99:99,99-99-9999", "_", "00112233445566778899AABBCCDDEEFF",
    "\x00", "\x7f", "å",
])
DC09ISH = st.lists(PIECES, max_size=30).map("".join)


@FAST
@given(DC09ISH)
def test_dc09_like_text_with_a_right_crc_gives_an_event_or_a_dc09_error(text: str) -> None:
    body = text.encode("utf-8")
    decodes_or_raises_dc09_error(reframe(body))
    decodes_or_raises_dc09_error(body)


@FAST
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_mutated_valid_frames_give_an_event_or_a_dc09_error(frame: bytes,
                                                            data: st.DataObject) -> None:
    decodes_or_raises_dc09_error(mutate(frame, data))


@FAST
@given(st.sampled_from(VALID_FRAMES[:5]), st.data())
def test_mutated_bodies_reframed_give_an_event_or_a_dc09_error(frame: bytes,
                                                               data: st.DataObject) -> None:
    decodes_or_raises_dc09_error(reframe(mutate(frame[9:-1], data)))


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_an_answer_give_an_answer_or_a_dc09_error(frame: bytes) -> None:
    try:
        result = decode_answer(frame, key=KEY)
    except Dc09Error as err:
        assert err.reason
    else:
        assert isinstance(result, Dc09Answer)


# --- round trips -------------------------------------------------------------------


def hexdigits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text("0123456789ABCDEFabcdef", min_size=low, max_size=high)


def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=low, max_size=high)


accounts = hexdigits(3, 16)
sia_codes = st.sampled_from(sorted(SIA_CODES)) | st.text(string.ascii_uppercase,
                                                         min_size=2, max_size=2)
keys = st.none() | st.sampled_from([16, 24, 32]).map(lambda n: bytes(range(n)))
offsets = st.integers(-40, 20).map(lambda s: NOW + timedelta(seconds=s))


@dataclass(frozen=True)
class Built:
    """encode_frame's arguments, and the code, group and zone the frame carries."""

    token: str
    seq: int
    account: str
    data: str
    receiver: str | None
    prefix: str
    timestamp: datetime | None
    key: bytes | None
    status: str
    group: str | None
    zone: str | None

    def frame(self) -> bytes:
        return encode_frame(token=self.token, seq=self.seq, account=self.account,
                            data=self.data, receiver=self.receiver, prefix=self.prefix,
                            timestamp=self.timestamp, key=self.key)

    def codec(self) -> Dc09Codec:
        return Dc09Codec({self.account: self.key} if self.key else {})

    def kind(self) -> EventKind:
        if len(self.status) == 2:
            return sia_kind(self.status)
        return cid_kind(self.status[0], self.status[1:])


@st.composite
def frames(draw: st.DrawFn) -> Built:
    """A SIA-DCS or ADM-CID frame as a sender might build it, encrypted or not."""
    key = draw(keys)
    timestamp = draw(offsets) if key is not None else draw(st.none() | offsets)
    if draw(st.booleans()):
        code = draw(sia_codes)
        group = draw(st.none() | digits(1, 3))
        zone = draw(st.none() | digits(1, 4))
        data = f"N{f'ri{group}/' if group else ''}{code}{zone or ''}"
        token, status = "SIA-DCS", code
    else:
        q = draw(st.sampled_from("136"))
        code = draw(st.sampled_from(sorted(CID_CODES)) | digits(3, 3))
        group = draw(digits(2, 2))
        zone = draw(digits(3, 3))
        data = f"{q}{code} {group} {zone}"
        token, status = "ADM-CID", q + code
    account = draw(accounts)
    if draw(st.booleans()):
        data = f"#{account}|{data}"
    return Built(token=token, seq=draw(st.integers(0, 9999)), account=account, data=data,
                 receiver=draw(st.none() | hexdigits(1, 6)), prefix=draw(hexdigits(1, 6)),
                 timestamp=timestamp, key=key, status=status, group=group, zone=zone)


@FAST
@given(frames())
def test_built_frames_decode_to_what_they_were_built_from(built: Built) -> None:
    event = built.codec().decode(built.frame(), now=NOW)

    assert (event.cid, event.ref) == (built.account.upper(), f"{built.seq:04d}")
    assert (event.kind, event.status_code) == (built.kind(), built.status)
    assert (event.device_id, event.component) == (built.group, built.zone)
    assert event.sent_at == (built.timestamp.isoformat() if built.timestamp else None)
    assert event.priority == (9 if event.kind is EventKind.ALARM else 0)


@FAST
@given(frames())
def test_built_frames_are_acked_with_their_own_seq_account_and_encryption(
        built: Built) -> None:
    codec = built.codec()
    event = codec.decode(built.frame(), now=NOW)

    answer = decode_answer(codec.encode_ok(event, now=NOW), key=built.key)

    assert answer == Dc09Answer("ACK", f"{built.seq:04d}", built.account,
                                encrypted=built.key is not None)


@FAST
@given(accounts, st.integers(0, 9999), keys)
def test_built_null_frames_are_heartbeats(account: str, seq: int, key: bytes | None) -> None:
    codec = Dc09Codec({account: key} if key else {})
    frame = encode_frame(token="NULL", seq=seq, account=account, timestamp=NOW, key=key)

    event = codec.decode(frame, now=NOW)

    assert (event.kind, event.cid, event.ref) == (EventKind.HEARTBEAT, account.upper(),
                                                  f"{seq:04d}")


@FAST
@given(hexdigits(4, 4), st.sampled_from([1, 3, 6]), st.integers(0, 999), st.integers(0, 99),
       st.integers(0, 999), st.sampled_from(["18", "98"]))
def test_built_contact_id_lines_decode_to_what_they_were_built_from(
        account: str, qualifier: int, code: int, group: int, zone: int, mt: str) -> None:
    line = encode_contact_id_line(account, qualifier, code, group, zone, mt=mt)

    event = CODEC.decode(line, now=NOW)

    assert (event.cid, event.status_code) == (account.upper(), f"{qualifier}{code:03d}")
    assert (event.device_id, event.component) == (f"{group:02d}", f"{zone:03d}")
    assert event.kind is cid_kind(str(qualifier), f"{code:03d}")
    assert CODEC.encode_ok(event, now=NOW) == dc09.ACK_BYTE
