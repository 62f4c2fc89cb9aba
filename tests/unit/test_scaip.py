"""SCAIP codec: the TR 91102 examples, the status-code table, leniency and rejection."""

from __future__ import annotations

import pytest

from devices import scaip
from devices.errors import FrameError
from devices.events import EventKind
from devices.scaip import ScaipError, ScaipRequest, ScaipResponse, Snu


def mrq(*fields: tuple[str, str], root: str = "mrq") -> bytes:
    """A frame built by hand, not by the code under test; values are written raw."""
    body = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    return f"<{root}>{body}</{root}>".encode()


def alarm_frame(*extra: tuple[str, str]) -> bytes:
    return mrq(("ref", "A1"), ("cid", "678"), ("dty", "0003"), *extra)


def rejection(frame: bytes) -> ScaipError:
    with pytest.raises(ScaipError) as info:
        scaip.decode(frame)
    return info.value


# --- TR 91102 §4 worked examples ---------------------------------------------------

BATTERY_LOW_EXAMPLE = b"<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>"
HEARTBEAT_EXAMPLE = b"<mrq><ref>1244</ref><mty>PI</mty><cid>678</cid><dty>2</dty></mrq>"


def test_tr91102_battery_low_example_decodes_to_battery_low() -> None:
    event = scaip.decode(BATTERY_LOW_EXAMPLE)

    assert event.kind is EventKind.BATTERY_LOW
    assert (event.cid, event.ref, event.device_type, event.status_code) == (
        "678",
        "1242",
        "0027",
        "0016",
    )


def test_tr91102_battery_low_example_is_answered_as_in_the_guide() -> None:
    event = scaip.decode(BATTERY_LOW_EXAMPLE)

    answer = scaip.encode_response(ScaipResponse(ref=event.ref, snu=Snu.OK))

    assert answer == b"<mrs><ref>1242</ref><snu>0</snu></mrs>"


def test_tr91102_heartbeat_example_decodes_to_heartbeat() -> None:
    event = scaip.decode(HEARTBEAT_EXAMPLE)

    assert event.kind is EventKind.HEARTBEAT
    assert (event.ref, event.device_type) == ("1244", "0002")


def test_tr91102_heartbeat_example_is_answered_with_snu_0() -> None:
    event = scaip.decode(HEARTBEAT_EXAMPLE)

    answer = scaip.decode_response(scaip.encode_response(ScaipResponse(event.ref, Snu.OK)))

    assert answer == ScaipResponse(ref="1244", snu=0)


# --- the status-code table (docs/PROTOCOLS.md) -------------------------------------

STATUS_CODE_TABLE = [
    ("0009", EventKind.ALARM),
    ("0010", EventKind.ALARM),
    ("0088", EventKind.CHECK_IN),
    ("0111", EventKind.CHECK_OUT),
    ("0087", EventKind.PLANNED_PRESENCE),
    ("0085", EventKind.MAINS_LOST),
    ("0086", EventKind.MAINS_RESTORED),
    ("0016", EventKind.BATTERY_LOW),
    ("0014", EventKind.BATTERY_FAULT),
    ("0015", EventKind.BATTERY_OK),
    *((f"{code:04d}", EventKind.LINK_FAULT) for code in range(23, 28)),
    *((f"{code:04d}", EventKind.LINK_RESTORED) for code in range(112, 117)),
    ("0102", EventKind.TEST),
    ("0103", EventKind.TEST),
    ("0125", EventKind.TAMPER),
    ("0118", EventKind.LOCK_CLOSED),
    ("0127", EventKind.LOCK_OPENED),
    ("0019", EventKind.CANCELLED),
    ("0002", EventKind.CANCELLED),
]


@pytest.mark.parametrize(("stc", "kind"), STATUS_CODE_TABLE, ids=[s for s, _ in STATUS_CODE_TABLE])
def test_status_code_maps_to_its_event_kind(stc: str, kind: EventKind) -> None:
    event = scaip.decode(alarm_frame(("stc", stc)))

    assert event.kind is kind
    assert event.status_code == stc


def test_omitted_status_code_is_an_alarm() -> None:
    event = scaip.decode(alarm_frame())

    assert event.kind is EventKind.ALARM
    assert event.status_code is None


@pytest.mark.parametrize("stc", ["0001", "0067", "9999"])
def test_unmapped_status_code_is_other_and_keeps_its_code(stc: str) -> None:
    event = scaip.decode(alarm_frame(("stc", stc)))

    assert event.kind is EventKind.OTHER
    assert event.status_code == stc


@pytest.mark.parametrize(
    ("mty", "kind"),
    [("PI", EventKind.HEARTBEAT), ("RE", EventKind.RESET), ("IN", EventKind.INFO)],
)
def test_message_type_decides_the_kind_whatever_the_status_code(mty: str, kind: EventKind) -> None:
    event = scaip.decode(alarm_frame(("mty", mty), ("stc", "0009")))

    assert event.kind is kind


def test_message_type_me_uses_the_status_code() -> None:
    event = scaip.decode(alarm_frame(("mty", "ME"), ("stc", "0088")))

    assert event.kind is EventKind.CHECK_IN


@pytest.mark.parametrize("stc", ["0118", "0127"])
def test_lock_event_carries_the_staff_id_from_ite(stc: str) -> None:
    frame = mrq(("ref", "L1"), ("cid", "42"), ("dty", "0042"), ("stc", stc), ("ite", "S-1234"))

    event = scaip.decode(frame)

    assert event.staff_id == "S-1234"


def test_info_text_of_a_non_lock_event_is_not_a_staff_id() -> None:
    event = scaip.decode(alarm_frame(("ite", "S-1234")))

    assert event.staff_id is None


def test_device_fields_are_copied_onto_the_event() -> None:
    frame = alarm_frame(("did", "7"), ("dco", "002"), ("pri", "9"), ("lco", "031"))

    event = scaip.decode(frame)

    assert event.protocol == "scaip"
    assert (event.device_id, event.component, event.priority, event.location_code) == (
        "7",
        "002",
        9,
        "031",
    )


def test_omitted_priority_is_zero() -> None:
    event = scaip.decode(alarm_frame())

    assert event.priority == 0


def test_heartbeat_option_001_asks_for_an_interval() -> None:
    event = scaip.decode(alarm_frame(("hbo", "001")))

    assert event.wants_heartbeat_interval is True


def test_other_heartbeat_option_does_not_ask_for_an_interval() -> None:
    event = scaip.decode(alarm_frame(("hbo", "000")))

    assert event.wants_heartbeat_interval is False


def test_personal_text_fields_stay_out_of_the_event() -> None:
    personal = [
        ("stt", "Anna Svensson"),
        ("dte", "Sovrum hos Anna"),
        ("crd", "gsm:+46701445566"),
        ("lte", "Storgatan 1"),
        ("lva", "Storgatan"),
        ("lge", "59.3293,18.0686"),
    ]

    event = scaip.decode(alarm_frame(*personal))

    assert not any(value in repr(event) for _, value in personal)


def test_to_event_normalizes_a_request_built_by_hand() -> None:
    event = scaip.to_event(ScaipRequest(ref="R1", cid="5", dty="3", stc="16", mty="pi"))

    assert (event.kind, event.device_type, event.status_code) == (
        EventKind.HEARTBEAT,
        "0003",
        "0016",
    )


# --- leniency and normalization ----------------------------------------------------


@pytest.mark.parametrize(("sent", "normalized"), [("27", "0027"), ("2", "0002"), ("0027", "0027")])
def test_device_type_is_zero_padded_to_four_digits(sent: str, normalized: str) -> None:
    req = scaip.parse_request(mrq(("ref", "1"), ("cid", "1"), ("dty", sent)))

    assert req.dty == normalized


@pytest.mark.parametrize(
    ("sent", "kind"), [("16", EventKind.BATTERY_LOW), ("010", EventKind.ALARM)]
)
def test_short_status_code_is_zero_padded_before_mapping(sent: str, kind: EventKind) -> None:
    event = scaip.decode(alarm_frame(("stc", sent)))

    assert event.kind is kind


def test_heartbeat_option_is_zero_padded_to_three_digits() -> None:
    event = scaip.decode(alarm_frame(("hbo", "1")))

    assert event.wants_heartbeat_interval is True


def test_surrounding_whitespace_is_stripped() -> None:
    frame = b"<mrq>\n  <ref> 1242 </ref>\n  <cid>\t678\n</cid>\n  <stc> 16 </stc>\n</mrq>\n"

    req = scaip.parse_request(frame)

    assert (req.ref, req.cid, req.stc) == ("1242", "678", "0016")


def test_unknown_tags_are_ignored() -> None:
    event = scaip.decode(alarm_frame(("cha", "0"), ("vendor", "<x>1</x>")))

    assert event.kind is EventKind.ALARM


def test_lowercase_message_type_is_stored_uppercase() -> None:
    req = scaip.parse_request(alarm_frame(("mty", "pi")))

    assert req.mty == "PI"


def test_omitted_message_type_means_me() -> None:
    req = scaip.parse_request(alarm_frame())

    assert req.mty == "ME"


def test_omitted_version_means_01_00() -> None:
    req = scaip.parse_request(alarm_frame())

    assert req.ver == "01.00"


def test_sent_version_is_kept() -> None:
    req = scaip.parse_request(alarm_frame(("ver", "02.00")))

    assert req.ver == "02.00"


def test_omitted_device_type_is_accepted_because_real_units_omit_it() -> None:
    event = scaip.decode(mrq(("ref", "1"), ("cid", "1"), ("stc", "0009")))

    assert event.kind is EventKind.ALARM
    assert event.device_type is None


def test_empty_element_counts_as_omitted() -> None:
    event = scaip.decode(alarm_frame(("stc", " ")))

    assert event.kind is EventKind.ALARM


def test_repeated_tag_with_the_same_value_is_accepted() -> None:
    event = scaip.decode(alarm_frame(("stc", "0016"), ("stc", " 0016 ")))

    assert event.kind is EventKind.BATTERY_LOW


def test_xml_declaration_and_byte_order_mark_are_accepted() -> None:
    frame = b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>' + alarm_frame()

    assert scaip.decode(frame).kind is EventKind.ALARM


def test_declared_non_utf8_encoding_is_ignored_and_utf8_is_read() -> None:
    frame = b'<?xml version="1.0" encoding="ISO-8859-1"?>' + alarm_frame(("stt", "Åsa"))

    assert scaip.parse_request(frame).stt == "Åsa"


def test_namespaced_elements_are_read_by_local_name() -> None:
    frame = b'<s:mrq xmlns:s="urn:x"><s:ref>1</s:ref><s:cid>2</s:cid></s:mrq>'

    assert scaip.parse_request(frame).cid == "2"


def test_cdata_and_comments_inside_a_field_are_read_as_text() -> None:
    frame = b"<mrq><ref>1</ref><cid>2</cid><stt><![CDATA[a<b]]><!-- c --></stt></mrq>"

    assert scaip.parse_request(frame).stt == "a<b"


def test_frame_of_exactly_max_size_is_accepted() -> None:
    frame = alarm_frame()
    padded = frame[:-6] + b" " * (scaip.MAX_FRAME_BYTES - len(frame)) + frame[-6:]

    assert len(padded) == scaip.MAX_FRAME_BYTES
    assert scaip.decode(padded).kind is EventKind.ALARM


# --- rejection: malformed frames ---------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<mrq><ref>1</ref><cid>2</cid><stt>&lol4;</stt></mrq>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE mrq [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<mrq><ref>1</ref><cid>2</cid><stt>&xxe;</stt></mrq>"""

EXTERNAL_DTD = b'<!DOCTYPE mrq SYSTEM "http://example.invalid/scaip.dtd"><mrq><ref>1</ref></mrq>'

PARAMETER_ENTITY = b"""<!DOCTYPE mrq [<!ENTITY % p SYSTEM "http://example.invalid/p"> %p;]>
<mrq><ref>1</ref><cid>2</cid></mrq>"""

MALFORMED = [
    pytest.param(b"", "not_xml", Snu.INVALID_FORMAT, id="empty"),
    pytest.param(b"  \n", "not_xml", Snu.INVALID_FORMAT, id="whitespace"),
    pytest.param(b"hello", "not_xml", Snu.INVALID_FORMAT, id="text"),
    pytest.param(b'{"ref": "1"}', "not_xml", Snu.INVALID_FORMAT, id="json"),
    pytest.param(BATTERY_LOW_EXAMPLE[:-3], "not_xml", Snu.INVALID_FORMAT, id="truncated"),
    pytest.param(
        b"<mrq><ref>1</ref>&undefined;</mrq>", "not_xml", Snu.INVALID_FORMAT, id="undefined-entity"
    ),
    pytest.param(b"<mrq><ref>\xff</ref></mrq>", "not_utf8", Snu.INVALID_FORMAT, id="latin1"),
    pytest.param(BILLION_LAUGHS, "forbidden_xml", Snu.INVALID_FORMAT, id="billion-laughs"),
    pytest.param(XXE, "forbidden_xml", Snu.INVALID_FORMAT, id="xxe"),
    pytest.param(EXTERNAL_DTD, "forbidden_xml", Snu.INVALID_FORMAT, id="external-dtd"),
    pytest.param(PARAMETER_ENTITY, "forbidden_xml", Snu.INVALID_FORMAT, id="parameter-entity"),
    pytest.param(
        b"<mrs><ref>1</ref><cid>2</cid></mrs>", "wrong_root", Snu.INVALID_FORMAT, id="wrong-root"
    ),
    pytest.param(b"<mrq><cid>2</cid></mrq>", "missing_ref", Snu.REF_MISSING, id="no-ref"),
    pytest.param(
        b"<mrq><ref></ref><cid>2</cid></mrq>", "missing_ref", Snu.REF_MISSING, id="empty-ref"
    ),
    pytest.param(b"<mrq><ref>1</ref></mrq>", "missing_cid", Snu.MANDATORY_MISSING, id="no-cid"),
    pytest.param(
        alarm_frame(("stc", "0016"), ("stc", "0009")),
        "duplicate_field",
        Snu.INVALID_FORMAT,
        id="conflicting-stc",
    ),
    pytest.param(b"x" * (scaip.MAX_FRAME_BYTES + 1), "too_long", Snu.TOO_LONG, id="huge"),
]


@pytest.mark.parametrize(("frame", "reason", "status"), MALFORMED)
def test_malformed_frame_is_rejected_with_reason_and_status(
    frame: bytes, reason: str, status: Snu
) -> None:
    err = rejection(frame)

    assert (err.reason, err.status) == (reason, status)


INVALID_VALUES = [
    ("ref", "ABCDEFGHIJ1234567"),  # 17 characters
    ("ref", "12-34"),
    ("ref", "12345å"),
    ("cid", "67a"),
    ("cid", "1" * 33),
    ("cid", "-1"),
    ("cid", "٦٧٨"),  # Arabic-Indic digits are digits to Python, not to SCAIP
    ("dty", "00003"),
    ("dty", "x3"),
    ("stc", "16a"),
    ("stc", "12345"),
    ("pri", "10"),
    ("pri", "high"),
    ("mty", "XX"),
    ("mty", "ıN"),  # dotless i upper-cases to "IN" in Python; not in SCAIP
    ("hbo", "abc"),
    ("hbo", "0001"),
]


@pytest.mark.parametrize(("field", "value"), INVALID_VALUES)
def test_invalid_value_is_wrong_data(field: str, value: str) -> None:
    values = {"ref": "R9", "cid": "678", field: value}

    err = rejection(mrq(*values.items()))

    assert (err.reason, err.status) == ("invalid_field", Snu.WRONG_DATA)


def test_invalid_value_names_the_field_but_not_the_value() -> None:
    err = rejection(alarm_frame(("pri", "Anna")))

    assert "<pri>" in err.detail
    assert "Anna" not in str(err)


def test_invalid_value_error_carries_the_recovered_ref_and_cid() -> None:
    err = rejection(mrq(("ref", "R9"), ("cid", "678"), ("stc", "alarm")))

    assert (err.ref, err.cid) == ("R9", "678")


def test_missing_cid_error_carries_the_recovered_ref() -> None:
    err = rejection(mrq(("ref", "R9"), ("stc", "0009")))

    assert err.ref == "R9"


def test_invalid_ref_is_not_recovered() -> None:
    err = rejection(mrq(("ref", "R-9"), ("cid", "678")))

    assert (err.ref, err.cid) == (None, "678")


def test_wrong_root_error_carries_the_recovered_ref() -> None:
    err = rejection(mrq(("ref", "R9"), ("cid", "678"), root="request"))

    assert err.ref == "R9"


def test_oversized_frame_error_carries_a_ref_found_near_the_start() -> None:
    frame = alarm_frame(("stt", "x" * scaip.MAX_FRAME_BYTES))

    err = rejection(frame)

    assert (err.reason, err.ref, err.cid) == ("too_long", "A1", "678")


def test_truncated_frame_error_carries_a_ref_found_in_the_text() -> None:
    err = rejection(BATTERY_LOW_EXAMPLE[:30])

    assert (err.reason, err.ref) == ("not_xml", "1242")


def test_scaip_error_is_a_frame_error() -> None:
    err = rejection(b"")

    assert isinstance(err, FrameError)


def test_deeply_nested_markup_inside_a_field_is_flattened_to_its_text() -> None:
    nested = b"<a>" * 570 + b"x" + b"</a>" * 570
    frame = b"<mrq><ref>1</ref><cid>2</cid><stt>" + nested + b"</stt></mrq>"

    assert scaip.parse_request(frame).stt == "x"


# --- responses ---------------------------------------------------------------------


def test_error_response_answers_with_ref_status_and_reason() -> None:
    err = rejection(mrq(("ref", "R9"), ("stc", "0009")))

    resp = scaip.error_response(err)

    assert resp == ScaipResponse(ref="R9", snu=Snu.MANDATORY_MISSING, ste="missing_cid")


def test_error_response_without_a_ref_omits_the_ref_element() -> None:
    err = rejection(b"garbage")

    assert scaip.encode_response(scaip.error_response(err)) == (
        b"<mrs><snu>2</snu><ste>not_xml</ste></mrs>"
    )


def test_response_with_every_field_is_encoded_in_order() -> None:
    resp = ScaipResponse(ref="R9", snu=Snu.HOLD, ste="wait", mre=1, hbi=60)

    assert scaip.encode_response(resp) == (
        b"<mrs><ref>R9</ref><snu>4</snu><ste>wait</ste><mre>1</mre><hbi>60</hbi></mrs>"
    )


def test_response_status_text_is_reduced_to_ascii() -> None:
    encoded = scaip.encode_response(ScaipResponse(ref="R9", snu=0, ste="Larm mottaget på €"))

    assert b"<ste>Larm mottaget p? ?</ste>" in encoded


def test_response_text_is_escaped() -> None:
    encoded = scaip.encode_response(ScaipResponse(ref="R9", snu=0, ste="a<b & c"))

    assert scaip.decode_response(encoded).ste == "a<b & c"


@pytest.mark.parametrize("hbi", [0, 1441, -5])
def test_heartbeat_interval_outside_1_to_1440_is_refused(hbi: int) -> None:
    with pytest.raises(ValueError, match="hbi"):
        scaip.encode_response(ScaipResponse(ref="R9", snu=0, hbi=hbi))


@pytest.mark.parametrize("hbi", [1, 1440])
def test_heartbeat_interval_at_the_limits_is_encoded(hbi: int) -> None:
    encoded = scaip.encode_response(ScaipResponse(ref="R9", snu=0, hbi=hbi))

    assert scaip.decode_response(encoded).hbi == hbi


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"<mrs><ref>R9</ref></mrs>", "missing_snu"),
        (b"<mrs><ref>R9</ref><snu>OK</snu></mrs>", "invalid_field"),
        (b"<mrs><ref>R9</ref><snu>0</snu><hbi>1441</hbi></mrs>", "invalid_field"),
        (b"<mrs><ref>R9</ref><snu>0</snu><mre>4</mre></mrs>", "invalid_field"),
        ("<mrs><snu>0</snu><ste>på</ste></mrs>".encode(), "invalid_field"),
        (b"<mrq><ref>R9</ref><snu>0</snu></mrq>", "wrong_root"),
        (b"<mrs><ref>R9</ref><snu>0", "not_xml"),
    ],
)
def test_bad_response_is_rejected(frame: bytes, reason: str) -> None:
    with pytest.raises(ScaipError) as info:
        scaip.decode_response(frame)

    assert info.value.reason == reason


# --- requests, as the simulator sends them -----------------------------------------


def test_encoded_request_is_plain_mrq_xml_in_field_order() -> None:
    req = ScaipRequest(ref="1242", cid="678", dty="0027", stc="0016")

    assert scaip.encode_request(req) == (
        b"<mrq><ref>1242</ref><cid>678</cid><dty>0027</dty><stc>0016</stc></mrq>"
    )


def test_encoded_request_text_survives_markup_and_carriage_returns() -> None:
    req = ScaipRequest(ref="1", cid="2", stt="a & <b>\r\nc")

    assert scaip.parse_request(scaip.encode_request(req)).stt == "a & <b>\r\nc"


def test_encoded_request_replaces_characters_xml_cannot_carry() -> None:
    req = ScaipRequest(ref="1", cid="2", stt="a\x00b")

    assert scaip.parse_request(scaip.encode_request(req)).stt == "a\ufffdb"
