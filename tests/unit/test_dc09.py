"""SIA DC-09 codec: the worked examples, public vectors, code tables, leniency, rejection.

Vectors used, each with its CRC and length recomputed (test_vectors_have_right_crc_and_length):
- the five frames of /work/shared/PROTOCOLS.md §2 (and its plain Contact ID line);
- pysiaalarm's encrypted NULL frame (eavanvalkenburg/pysiaalarm,
  tests/test_sia_package_cases.py `case_null`, key "AAAAAAAAAAAAAAAA" from
  tests/test_utils.py): CRC and length right, decrypts to `ppppppppppp]_18:24:52,07-05-2020`.
pysiaalarm's other frames have a wrong CRC, or a right CRC and a wrong length field (its
test helper writes `int(str(len(line)), 16)` there); only `case_cl` is used, once as it
is (NAKed bad_length) and once re-framed with its length put right.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices import dc09
from devices.codecs import CODECS, Dc09Codec
from devices.dc09 import Dc09Answer, crc16_arc, decode_answer, encode_contact_id_line, encode_frame
from devices.errors import ContentError, Dc09Error, FrameError
from devices.events import EventKind

NOW = datetime(2025, 3, 14, 10, 15, 30, tzinfo=UTC)
CODEC = Dc09Codec()

POWER_UP = b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r'
MEDICAL_SIA = b'\n7EFF003C"SIA-DCS"0001R0L0#1234[#1234|Nri1/MA001]_10:15:30,03-14-2025\r'
MEDICAL_ACK = b'\nDBE70014"ACK"0001R0L0#1234[]\r'
MEDICAL_CID = b'\n8770003D"ADM-CID"0002R0L0#1234[#1234|1100 01 001]_10:15:30,03-14-2025\r'
NAK_EXAMPLE = b'\nE4410025"NAK"0000R0L0A0[]_16:20:01,09-24-2025\r'
PLAIN_LINE = b"1234181100010157\r"

PYSIA_KEY = b"AAAAAAAAAAAAAAAA"
PYSIA_NULL = (b'\n76D80055"*NULL"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB9'
              b'6D476A3E557CAD64D9\r')
PYSIA_NULL_AT = datetime(2020, 7, 5, 18, 24, 52, tzinfo=UTC)
PYSIA_CL = b'E5D50078"SIA-DCS"6002L0#AAA[|Nri1/CL501]_14:12:04,09-25-2019'
PYSIA_CL_AT = datetime(2019, 9, 25, 14, 12, 4, tzinfo=UTC)


def reframe(body: bytes) -> bytes:
    """`body` (from the first `"` on) with a right CRC and length, LF to CR."""
    return b"\n" + f"{crc16_arc(body):04X}{len(body):04X}".encode() + body + b"\r"


def rejected(frame: bytes, codec: Dc09Codec = CODEC, now: datetime = NOW) -> Dc09Error:
    with pytest.raises(Dc09Error) as info:
        codec.decode(frame, now=now)
    return info.value


# --- the worked examples -------------------------------------------------------------


@pytest.mark.parametrize("frame", [POWER_UP, MEDICAL_SIA, MEDICAL_ACK, MEDICAL_CID,
                                   NAK_EXAMPLE, PYSIA_NULL], ids=lambda f: f[10:19].decode())
def test_vectors_have_right_crc_and_length(frame: bytes) -> None:
    body = frame[9:-1]

    assert frame[1:9] == f"{crc16_arc(body):04X}{len(body):04X}".encode()


def test_crc16_arc_has_the_catalogued_check_value() -> None:
    assert crc16_arc(b"123456789") == 0xBB3D


def test_the_sia_medical_alarm_is_an_alarm_from_zone_1_of_group_1() -> None:
    event = CODEC.decode(MEDICAL_SIA, now=NOW)

    assert (event.kind, event.protocol, event.cid, event.ref) == (
        EventKind.ALARM, "dc09", "1234", "0001")
    assert (event.status_code, event.component, event.device_id) == ("MA", "001", "1")
    assert event.priority == 9
    assert event.sent_at == "2025-03-14T10:15:30+00:00"


def test_the_sia_medical_alarm_is_acked_byte_for_byte_as_in_the_example() -> None:
    event = CODEC.decode(MEDICAL_SIA, now=NOW)

    assert CODEC.encode_ok(event, now=NOW) == MEDICAL_ACK


def test_the_contact_id_medical_alarm_is_an_alarm_with_qualifier_and_code() -> None:
    event = CODEC.decode(MEDICAL_CID, now=NOW)

    assert (event.kind, event.ref, event.status_code) == (EventKind.ALARM, "0002", "1100")
    assert (event.device_id, event.component) == ("01", "001")
    assert CODEC.encode_ok(event, now=NOW) == reframe(b'"ACK"0002R0L0#1234[]')


def test_the_untimed_frame_echoes_its_receiver_and_prefix() -> None:
    event = CODEC.decode(POWER_UP, now=NOW)

    assert (event.kind, event.status_code, event.sent_at) == (EventKind.OTHER, "RR", None)
    assert CODEC.encode_ok(event, now=NOW) == reframe(b'"ACK"0001RF3L77#1234[]')


def test_a_nak_carries_the_receivers_time_as_in_the_example() -> None:
    at = datetime(2025, 9, 24, 16, 20, 1, tzinfo=UTC)

    assert CODEC.encode_error(FrameError("bad_crc", "CRC mismatch"), now=at) == NAK_EXAMPLE


def test_the_plain_contact_id_line_is_an_alarm_answered_with_an_ack_byte() -> None:
    event = CODEC.decode(PLAIN_LINE, now=NOW)

    assert (event.kind, event.cid, event.status_code) == (EventKind.ALARM, "1234", "1100")
    assert (event.device_id, event.component) == ("01", "015")
    assert CODEC.encode_ok(event, now=NOW) == dc09.ACK_BYTE


def test_the_dc09_codec_is_registered_after_scaip() -> None:
    assert list(CODECS)[:2] == ["scaip", "dc09"]


# --- public vectors ----------------------------------------------------------------


def test_pysiaalarms_encrypted_null_frame_is_a_heartbeat() -> None:
    codec = Dc09Codec({"AAAB": PYSIA_KEY})

    event = codec.decode(PYSIA_NULL, now=PYSIA_NULL_AT)

    assert (event.kind, event.cid, event.ref, event.reply_context) == (
        EventKind.HEARTBEAT, "AAAB", "0000", "*R0L0")


def test_pysiaalarms_null_frame_is_answered_with_an_encrypted_ack_carrying_the_time() -> None:
    codec = Dc09Codec({"AAAB": PYSIA_KEY})
    event = codec.decode(PYSIA_NULL, now=PYSIA_NULL_AT)

    answer = codec.encode_ok(event, now=PYSIA_NULL_AT)

    assert decode_answer(answer, key=PYSIA_KEY) == Dc09Answer("ACK", "0000", "AAAB", True)
    assert answer.startswith(b"\n") and b'"*ACK"0000R0L0#AAAB[' in answer


def test_pysiaalarms_frame_with_its_length_bug_is_naked_for_its_length() -> None:
    err = rejected(PYSIA_CL, now=PYSIA_CL_AT)

    assert (err.reason, err.answer) == ("bad_length", "NAK")


def test_pysiaalarms_frame_reframed_is_a_closing_report_kept_as_other() -> None:
    event = CODEC.decode(reframe(PYSIA_CL[8:]), now=PYSIA_CL_AT)

    assert (event.kind, event.cid, event.status_code, event.component) == (
        EventKind.OTHER, "AAA", "CL", "501")


# --- leniency ----------------------------------------------------------------------


@pytest.mark.parametrize("frame", [
    MEDICAL_SIA.strip(b"\n\r"), MEDICAL_SIA[:-1], MEDICAL_SIA[1:], MEDICAL_SIA + b"\n",
    MEDICAL_SIA.replace(b"7EFF003C", b"7eff003c"),
], ids=["bare", "no-CR", "no-LF", "CRLF", "lowercase-hex"])
def test_framing_variants_decode_to_the_same_event(frame: bytes) -> None:
    assert CODEC.decode(frame, now=NOW) == CODEC.decode(MEDICAL_SIA, now=NOW)


def test_a_lowercase_account_is_the_upper_case_cid_and_echoed_as_sent() -> None:
    frame = encode_frame(token="SIA-DCS", seq=5, account="12ab", data="Nri1/MA001")

    event = CODEC.decode(frame, now=NOW)

    assert event.cid == "12AB"
    assert CODEC.encode_ok(event, now=NOW) == reframe(b'"ACK"0005R0L0#12ab[]')


def test_a_frame_without_receiver_is_acked_without_one() -> None:
    frame = encode_frame(token="SIA-DCS", seq=5, account="1234", data="Nri1/MA001",
                         receiver=None)

    event = CODEC.decode(frame, now=NOW)

    assert CODEC.encode_ok(event, now=NOW) == reframe(b'"ACK"0005L0#1234[]')


def test_a_short_seq_is_zero_padded() -> None:
    frame = encode_frame(token="SIA-DCS", seq="7", account="1234", data="NMA001")

    event = CODEC.decode(frame, now=NOW)

    assert event.ref == "0007"
    assert decode_answer(CODEC.encode_ok(event, now=NOW)).seq == "0007"


def test_the_account_is_taken_from_the_data_block_when_the_header_has_none() -> None:
    frame = reframe(b'"SIA-DCS"4738R0001L0001[#006969|Nri04/OP001]')

    event = CODEC.decode(frame, now=NOW)

    assert (event.cid, event.status_code, event.device_id) == ("006969", "OP", "04")


def test_the_headers_account_wins_over_the_data_blocks() -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234", data="#9999|NMA001")

    assert CODEC.decode(frame, now=NOW).cid == "1234"


@pytest.mark.parametrize("data", ["NMA001", "|NMA001", "#1234|NMA001"])
def test_the_data_blocks_account_is_optional(data: str) -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234", data=data)

    assert CODEC.decode(frame, now=NOW).status_code == "MA"


def test_labels_and_text_blocks_are_skipped_and_not_kept() -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234",
                         data="#1234|Nri1ti10:15/MA001^Anna Svensson^|AKitchen")

    event = CODEC.decode(frame, now=NOW)

    assert (event.kind, event.component, event.device_id) == (EventKind.ALARM, "001", "1")
    assert "Anna" not in repr(event) and "Kitchen" not in repr(event)


def test_x_data_blocks_are_accepted_and_ignored() -> None:
    frame = reframe(b'"SIA-DCS"0003R0L0#1234[#1234|NMA001][X18.07][Y59.33]'
                    b"_10:15:30,03-14-2025")

    assert CODEC.decode(frame, now=NOW).kind is EventKind.ALARM


@pytest.mark.parametrize("line", [
    b"1234181100010157", b"1234181100010157\r\n", b"\n1234181100010157\r",
    b"1234 18 1 100 01 015 7\r",
])
def test_plain_line_variants_decode(line: bytes) -> None:
    assert CODEC.decode(line, now=NOW).status_code == "1100"


def test_a_plain_line_with_message_type_98_decodes() -> None:
    line = encode_contact_id_line("1234", 1, 602, 0, 0, mt="98")

    assert CODEC.decode(line, now=NOW).kind is EventKind.TEST


# --- timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(("offset_s", "accepted"), [
    (-40, True), (-41, False), (20, True), (21, False), (0, True), (-3600, False),
])
def test_the_timestamp_must_lie_within_40_s_before_and_20_s_after_now(
        offset_s: int, accepted: bool) -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234", data="NMA001",
                         timestamp=NOW + timedelta(seconds=offset_s))

    if accepted:
        assert CODEC.decode(frame, now=NOW).kind is EventKind.ALARM
    else:
        assert (rejected(frame).reason, rejected(frame).answer) == ("bad_timestamp", "NAK")


def test_the_window_is_the_codecs_to_set() -> None:
    codec = Dc09Codec(past_s=3600, future_s=0)
    late = encode_frame(token="SIA-DCS", seq=1, account="1234", data="NMA001",
                        timestamp=NOW - timedelta(minutes=59))
    early = encode_frame(token="SIA-DCS", seq=1, account="1234", data="NMA001",
                         timestamp=NOW + timedelta(seconds=1))

    assert codec.decode(late, now=NOW).kind is EventKind.ALARM
    assert rejected(early, codec).reason == "bad_timestamp"


@pytest.mark.parametrize("stamp", [b"_25:00:00,03-14-2025", b"_10:15:30,02-30-2025",
                                   b"_10:15,03-14-2025", b"_"])
def test_an_unreadable_timestamp_is_naked(stamp: bytes) -> None:
    frame = reframe(b'"SIA-DCS"0001R0L0#1234[#1234|NMA001]' + stamp)

    assert (rejected(frame).reason, rejected(frame).answer) == ("bad_timestamp", "NAK")


def test_a_bad_timestamp_is_naked_with_the_receivers_time_and_line() -> None:
    frame = encode_frame(token="SIA-DCS", seq=9, account="1234", data="NMA001",
                         receiver="F3", prefix="77", timestamp=NOW - timedelta(hours=1))

    answer = CODEC.encode_error(rejected(frame), now=NOW)

    assert answer == reframe(b'"NAK"0000RF3L77A0[]_10:15:30,03-14-2025')


def test_an_encrypted_frame_without_timestamp_is_naked() -> None:
    key = bytes(range(16))
    codec = Dc09Codec({"1234": key})
    plain = encode_frame(token="SIA-DCS", seq=1, account="1234", data="NMA001",
                         timestamp=NOW, key=key)
    # Rebuild it with the timestamp cut from the plaintext.
    head, _, _ = plain[9:-1].partition(b"[")
    body = head + b"[" + dc09._encrypt(key, "NMA001]").encode()

    assert (rejected(reframe(body), codec).reason) == "missing_timestamp"


# --- rejections --------------------------------------------------------------------

MA = b"[#1234|NMA001]"


@pytest.mark.parametrize(("frame", "reason", "answer"), [
    (b"", "not_a_frame", "NAK"),
    (b"\xff" * 20, "not_a_frame", "NAK"),
    (b"hello", "not_a_frame", "NAK"),
    (b"\n" + b"1" * 5000 + b"\r", "too_long", "NAK"),
    (MEDICAL_SIA.replace(b"7EFF", b"7EFE"), "bad_crc", "NAK"),
    (MEDICAL_SIA.replace(b"[#1234|Nri1", b"[#1234|Nri2"), "bad_crc", "NAK"),
    (MEDICAL_SIA.replace(b"003C", b"003D"), "bad_length", "NAK"),
    (MEDICAL_SIA[:-10], "bad_length", "NAK"),
    (reframe(b'"SIA-DCS"0001R0#1234' + MA), "not_a_frame", "NAK"),
    (reframe(b'"SIA-DCS"00001R0L0#1234' + MA), "not_a_frame", "NAK"),
    (reframe(b'"SIA-XYZ"0001R0L0#1234' + MA), "unknown_token", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#12' + MA), "bad_account", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#12G4' + MA), "bad_account", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#12345678901234567' + MA), "bad_account", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0[|NMA001]'), "bad_account", "DUH"),
    (reframe(b'"*SIA-DCS"0001R0L0#1234[00112233445566778899AABBCCDDEEFF'), "no_key", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#1234[#1234|Atext only]'), "bad_data", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#1234[#1234|NMA001!]'), "bad_data", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#1234[#1234|NMA001]junk'), "bad_data", "DUH"),
    (reframe(b'"SIA-DCS"0001R0L0#1234[#1234|NMA001'), "bad_data", "DUH"),
    (reframe(b'"ADM-CID"0001R0L0#1234[#1234|1100 01]'), "bad_data", "DUH"),
    (b"1234181100010158\r", "bad_checksum", "NAK"),
    (b"123418110001015\r", "bad_length", "NAK"),
    (b"1234171100010158\r", "not_a_frame", "NAK"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_rejected_frames_carry_their_reason_and_answer(frame: bytes, reason: str,
                                                       answer: str) -> None:
    err = rejected(frame)

    assert (err.reason, err.answer) == (reason, answer)


def test_an_unknown_token_is_answered_duh_echoing_seq_receiver_prefix_and_account() -> None:
    err = rejected(reframe(b'"SIA-XYZ"0042RF3L77#12ab' + MA))

    assert (err.seq, err.account, err.receiver, err.prefix) == ("0042", "12AB", "RF3", "L77")
    assert CODEC.encode_error(err, now=NOW) == reframe(b'"DUH"0042RF3L77#12AB[]')


def test_a_wrong_key_is_naked() -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234", data="NMA001",
                         timestamp=NOW, key=b"k" * 16)

    err = rejected(frame, Dc09Codec({"1234": b"K" * 16}))

    assert (err.reason, err.answer) == ("bad_decrypt", "NAK")


def test_a_bad_plain_line_is_answered_with_a_nak_byte() -> None:
    assert CODEC.encode_error(rejected(b"1234181100010158\r"), now=NOW) == dc09.NAK_BYTE


def test_a_frame_error_of_another_kind_is_answered_nak() -> None:
    answer = CODEC.encode_error(FrameError("internal_error", "KeyError"), now=NOW)

    assert decode_answer(answer) == Dc09Answer("NAK", "0000", None, False)


def test_refused_content_is_answered_duh_with_the_senders_seq_and_account() -> None:
    event = CODEC.decode(MEDICAL_SIA, now=NOW)

    answer = CODEC.encode_error(ContentError("cid_mismatch", "x", ref=event.ref,
                                             cid=event.cid), now=NOW)

    assert answer == reframe(b'"DUH"0001R0L0#1234[]')


def test_refused_content_of_a_plain_line_is_answered_with_a_nak_byte() -> None:
    event = CODEC.decode(PLAIN_LINE, now=NOW)

    answer = CODEC.encode_error(ContentError("cid_mismatch", "x", ref=event.ref,
                                             cid=event.cid), now=NOW)

    assert answer == dc09.NAK_BYTE


def test_dc09_error_is_a_frame_error_that_answers_nak_or_duh() -> None:
    assert issubclass(Dc09Error, FrameError)
    with pytest.raises(ValueError):
        Dc09Error("x", "y", answer="ACK")


# --- the code tables ---------------------------------------------------------------


def sia(code: str) -> bytes:
    return encode_frame(token="SIA-DCS", seq=1, account="1234", data=f"#1234|Nri1/{code}001")


def cid(qualifier_and_code: str) -> bytes:
    q, code = qualifier_and_code[0], qualifier_and_code[1:]
    return encode_frame(token="ADM-CID", seq=1, account="1234", data=f"#1234|{q}{code} 01 001")


@pytest.mark.parametrize(("code", "kind"), [
    ("MA", EventKind.ALARM), ("QA", EventKind.ALARM), ("PA", EventKind.ALARM),
    ("JP", EventKind.CHECK_IN), ("OC", EventKind.CANCELLED),
    ("AT", EventKind.MAINS_LOST), ("AR", EventKind.MAINS_RESTORED),
    ("YT", EventKind.BATTERY_LOW), ("YR", EventKind.BATTERY_OK),
    ("YM", EventKind.BATTERY_FAULT), ("XT", EventKind.BATTERY_LOW),
    ("TA", EventKind.TAMPER), ("RP", EventKind.TEST),
    ("YC", EventKind.LINK_FAULT), ("YK", EventKind.LINK_RESTORED),
    ("MH", EventKind.OTHER), ("OP", EventKind.OTHER), ("CL", EventKind.OTHER),
])
def test_sia_codes_map_onto_the_event_vocabulary(code: str, kind: EventKind) -> None:
    event = CODEC.decode(sia(code), now=NOW)

    assert (event.kind, event.status_code) == (kind, code)


@pytest.mark.parametrize(("code", "kind"), [
    ("1100", EventKind.ALARM), ("1101", EventKind.ALARM),
    ("3100", EventKind.OTHER), ("3101", EventKind.OTHER), ("6100", EventKind.OTHER),
    ("1466", EventKind.CHECK_IN), ("3466", EventKind.CHECK_OUT),
    ("1301", EventKind.MAINS_LOST), ("3301", EventKind.MAINS_RESTORED),
    ("1302", EventKind.BATTERY_LOW), ("3302", EventKind.BATTERY_OK),
    ("1311", EventKind.BATTERY_FAULT),
    ("1137", EventKind.TAMPER), ("1383", EventKind.TAMPER),
    ("1602", EventKind.TEST), ("6602", EventKind.TEST),
    ("1356", EventKind.LINK_FAULT), ("3356", EventKind.LINK_RESTORED),
    ("1406", EventKind.CANCELLED),
])
def test_contact_id_codes_map_onto_the_event_vocabulary(code: str, kind: EventKind) -> None:
    event = CODEC.decode(cid(code), now=NOW)

    assert (event.kind, event.status_code) == (kind, code)


def test_a_null_frame_is_a_heartbeat() -> None:
    frame = encode_frame(token="NULL", seq=3, account="1234", timestamp=NOW)

    event = CODEC.decode(frame, now=NOW)

    assert (event.kind, event.ref, event.status_code) == (EventKind.HEARTBEAT, "0003", None)
    assert CODEC.encode_ok(event, now=NOW) == reframe(b'"ACK"0003R0L0#1234[]')


def test_an_unknown_sia_code_is_kept_as_other_and_acked() -> None:
    event = CODEC.decode(sia("ZX"), now=NOW)

    assert (event.kind, event.status_code, event.component) == (EventKind.OTHER, "ZX", "001")
    assert decode_answer(CODEC.encode_ok(event, now=NOW)).token == "ACK"


def test_an_unknown_contact_id_code_is_kept_as_other_and_acked() -> None:
    event = CODEC.decode(cid("1999"), now=NOW)

    assert (event.kind, event.status_code) == (EventKind.OTHER, "1999")
    assert decode_answer(CODEC.encode_ok(event, now=NOW)).token == "ACK"


@pytest.mark.parametrize(("data", "code", "zone"), [
    ("Nri1/RP000/MA002", "MA", "002"),
    ("NYT/AT", "AT", None),
    ("NRP000|NMA003", "MA", "003"),
    ("NMA001/MA002", "MA", "001"),
    ("NZX/RP", "RP", None),
])
def test_of_several_codes_the_most_urgent_decides(data: str, code: str,
                                                  zone: str | None) -> None:
    frame = encode_frame(token="SIA-DCS", seq=1, account="1234", data=data)

    event = CODEC.decode(frame, now=NOW)

    assert (event.status_code, event.component) == (code, zone)


# --- encryption --------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 24, 32])
def test_an_encrypted_contact_id_alarm_decodes_and_is_acked_encrypted(size: int) -> None:
    key = bytes(range(size))
    codec = Dc09Codec({"beef": key})
    frame = encode_frame(token="ADM-CID", seq=12, account="BEEF", data="#BEEF|1101 02 003",
                         timestamp=NOW - timedelta(seconds=5), key=key)

    event = codec.decode(frame, now=NOW)
    answer = codec.encode_ok(event, now=NOW)

    assert (event.kind, event.cid, event.ref, event.reply_context) == (
        EventKind.ALARM, "BEEF", "0012", "*R0L0")
    assert decode_answer(answer, key=key) == Dc09Answer("ACK", "0012", "BEEF", True)


def test_the_encrypted_ack_carries_the_receivers_time() -> None:
    key = bytes(range(16))
    codec = Dc09Codec({"BEEF": key})
    event = codec.decode(encode_frame(token="NULL", seq=1, account="BEEF", timestamp=NOW,
                                      key=key), now=NOW)

    answer = codec.encode_ok(event, now=NOW)

    plain = dc09._decrypt(key, answer[:-1].partition(b"[")[2].decode())
    assert plain is not None and plain.endswith("]_10:15:30,03-14-2025")


def test_encode_frame_refuses_an_encrypted_frame_without_timestamp() -> None:
    with pytest.raises(ValueError):
        encode_frame(token="NULL", seq=1, account="1234", key=bytes(16))


@pytest.mark.parametrize("keys", [{"1234": b"short"}, {"12": bytes(16)}, {"12G4": bytes(16)}])
def test_the_codec_refuses_a_key_of_the_wrong_size_or_for_no_account(
        keys: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        Dc09Codec(keys)


# --- resends and new messages --------------------------------------------------------


def test_a_resent_frame_has_the_same_idempotency_key() -> None:
    first = CODEC.decode(MEDICAL_SIA, now=NOW)
    again = CODEC.decode(MEDICAL_SIA, now=NOW + timedelta(seconds=5))

    assert first.idempotency_key == again.idempotency_key


def test_a_restarted_panels_new_alarm_with_the_same_seq_is_a_new_message() -> None:
    later = NOW + timedelta(hours=1)
    first = CODEC.decode(MEDICAL_SIA, now=NOW)
    new = CODEC.decode(encode_frame(token="SIA-DCS", seq=1, account="1234",
                                    data="#1234|Nri1/MA001", timestamp=later), now=later)

    assert first.idempotency_key != new.idempotency_key


def test_a_plain_line_resent_within_its_minute_is_the_same_message() -> None:
    first = CODEC.decode(PLAIN_LINE, now=NOW)
    again = CODEC.decode(PLAIN_LINE, now=NOW + timedelta(seconds=4))

    assert first.idempotency_key == again.idempotency_key
    assert first.ref == "1811000101571015"


def test_the_same_plain_line_in_a_later_minute_is_a_new_message() -> None:
    first = CODEC.decode(PLAIN_LINE, now=NOW)
    later = CODEC.decode(PLAIN_LINE, now=NOW + timedelta(minutes=5))

    assert first.idempotency_key != later.idempotency_key


# --- helpers for the simulator and transports ----------------------------------------


def test_encode_contact_id_line_writes_the_example_line() -> None:
    assert encode_contact_id_line("1234", 1, 100, 1, 15) == PLAIN_LINE


@pytest.mark.parametrize("digits", ["123418160200000", "000018160200000", "FFFF18110001001"])
def test_the_checksum_digit_makes_the_sum_a_multiple_of_15(digits: str) -> None:
    line = digits + dc09.checksum_digit(digits)

    assert sum(int(d, 16) or 10 for d in line) % 15 == 0


@pytest.mark.parametrize(("answer", "read"), [
    (MEDICAL_ACK, Dc09Answer("ACK", "0001", "1234", False)),
    (MEDICAL_ACK[1:-1], Dc09Answer("ACK", "0001", "1234", False)),
    (NAK_EXAMPLE, Dc09Answer("NAK", "0000", None, False)),
    (reframe(b'"DUH"0042RF3L77#12AB[]'), Dc09Answer("DUH", "0042", "12AB", False)),
    (dc09.ACK_BYTE, Dc09Answer("ACK", None, None, False)),
    (dc09.NAK_BYTE, Dc09Answer("NAK", None, None, False)),
])
def test_decode_answer_reads_acks_naks_and_duhs(answer: bytes, read: Dc09Answer) -> None:
    assert decode_answer(answer) == read


@pytest.mark.parametrize("answer", [
    MEDICAL_ACK.replace(b"DBE7", b"DBE8"),
    MEDICAL_ACK[:-3] + b"\r",
    reframe(b'"ACK"0001R0L0#1234[x]'),
    reframe(b'"NAK"0000R0L0A0[]'),
    reframe(b'"NAK"0000R0L0#1234[]_16:20:01,09-24-2025'),
    reframe(b'"OK"0001R0L0#1234[]'),
    MEDICAL_SIA,
    b"\x07",
])
def test_decode_answer_is_strict(answer: bytes) -> None:
    with pytest.raises(Dc09Error):
        decode_answer(answer)


def test_decode_answer_checks_an_encrypted_ack_only_in_shape_without_the_key() -> None:
    key = bytes(range(16))
    ack = dc09.encode_ack("0001", "1234", now=NOW, key=key)

    assert decode_answer(ack) == Dc09Answer("ACK", "0001", "1234", True)
    with pytest.raises(Dc09Error):
        decode_answer(ack, key=bytes(range(1, 17)))
