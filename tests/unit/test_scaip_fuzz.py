"""SCAIP codec under property tests: nothing but ScaipError escapes, and encodings round-trip."""

from __future__ import annotations

import string
from typing import TypeVar
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from devices import scaip
from devices.events import DeviceEvent
from devices.scaip import ScaipError, ScaipRequest, ScaipResponse
from tests.fuzzing import mutate

FAST = settings(max_examples=400, deadline=None)

VALID_FRAMES = [
    b"<mrq><ref>1242</ref><cid>678</cid><dty>27</dty><stc>16</stc></mrq>",
    b"<mrq><ref>1244</ref><mty>PI</mty><cid>678</cid><dty>2</dty></mrq>",
    b"<mrq><ref>L7</ref><cid>42</cid><dty>0042</dty><stc>0127</stc><ite>S-1</ite></mrq>",
    b'<?xml version="1.0"?>\n<mrq>\n <ref>Zz9</ref>\n <cid>1</cid>\n <stt>a &amp; b</stt>\n</mrq>',
]


def decodes_or_raises_scaip_error(frame: bytes) -> None:
    try:
        result = scaip.decode(frame)
    except ScaipError as err:
        assert err.reason
        assert isinstance(err.status, scaip.Snu)
    else:
        assert isinstance(result, DeviceEvent)


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_an_event_or_a_scaip_error(frame: bytes) -> None:
    decodes_or_raises_scaip_error(frame)


XMLISH = st.lists(
    st.sampled_from(
        [
            "<mrq>",
            "</mrq>",
            "<ref>",
            "</ref>",
            "<cid>",
            "</cid>",
            "<stc>",
            "</stc>",
            "<mty>",
            "</mty>",
            "<!DOCTYPE mrq>",
            "&amp;",
            "&",
            "<",
            "]]>",
            "<![CDATA[",
            "1",
            "PI",
            " ",
            "\x00",
            "å",
            "\ud800",
        ]
    ),
    max_size=30,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))


@FAST
@given(XMLISH)
def test_xml_like_bytes_give_an_event_or_a_scaip_error(frame: bytes) -> None:
    decodes_or_raises_scaip_error(frame)


@FAST
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_mutated_valid_frames_give_an_event_or_a_scaip_error(
    frame: bytes, data: st.DataObject
) -> None:
    decodes_or_raises_scaip_error(mutate(frame, data))


# --- round trips -------------------------------------------------------------------


def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=low, max_size=high)


def code(width: int) -> st.SearchStrategy[str]:
    return digits(1, width).map(lambda value: value.zfill(width))


# Free text as parse_request leaves it: XML-carriable, no surrounding whitespace.
free_text = (
    st.text(
        st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\ufffe\uffff"),
        min_size=1,
        max_size=24,
    )
    .map(str.strip)
    .filter(bool)
)


T = TypeVar("T")


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


requests = st.builds(
    ScaipRequest,
    ref=st.text(string.ascii_letters + string.digits, min_size=1, max_size=16),
    cid=digits(1, 32),
    dty=optional(code(4)),
    ver=st.sampled_from(["01.00", "02.00"]),
    mty=st.sampled_from(["ME", "RE", "IN", "PI"]),
    hbo=optional(code(3)),
    did=optional(free_text),
    dco=optional(free_text),
    dte=optional(free_text),
    crd=optional(free_text),
    stc=optional(code(4)),
    stt=optional(free_text),
    pri=optional(st.sampled_from(string.digits)),
    lco=optional(free_text),
    lva=optional(free_text),
    lge=optional(free_text),
    lte=optional(free_text),
    ico=optional(free_text),
    ite=optional(free_text),
)


@FAST
@given(requests)
def test_encoded_request_parses_back_to_the_same_request(req: ScaipRequest) -> None:
    assert scaip.parse_request(scaip.encode_request(req)) == req


@FAST
@given(requests)
def test_encoded_request_decodes_to_the_event_of_the_request(req: ScaipRequest) -> None:
    event = scaip.decode(scaip.encode_request(req))

    assert event == scaip.to_event(req)
    assert (event.cid, event.ref, event.device_type, event.status_code) == (
        req.cid,
        req.ref,
        req.dty,
        req.stc,
    )


responses = st.builds(
    ScaipResponse,
    ref=optional(st.text(string.ascii_letters + string.digits, min_size=1, max_size=16)),
    snu=st.sampled_from(list(scaip.Snu)) | st.integers(0, 99),
    ste=optional(
        st.text(string.printable.strip(string.whitespace) + " ", max_size=40)
        .map(str.strip)
        .filter(bool)
    ),
    mre=optional(st.integers(0, 3)),
    hbi=optional(st.integers(1, 1440)),
)


@FAST
@given(responses)
def test_encoded_response_decodes_to_the_same_response(resp: ScaipResponse) -> None:
    assert scaip.decode_response(scaip.encode_response(resp)) == resp


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_response_give_a_response_or_a_scaip_error(frame: bytes) -> None:
    try:
        result = scaip.decode_response(frame)
    except ScaipError as err:
        assert err.reason
    else:
        assert isinstance(result, ScaipResponse)


# -- the flat-frame fast path reads exactly what the XML parser reads ---------------------

TAGS = st.sampled_from([*scaip.REQUEST_FIELDS, "mrq", "mrs", "x", "Ref", "snu"])
TEXT = st.lists(st.sampled_from(
    [*"0123456789AZaz -_./", "<", ">", "&", "&amp;", "\r", "\n", "\t", "\x00", "\x1f", "å",
     "\u2028", "]]>", "\ufffe"]), max_size=8).map("".join)


@st.composite
def flat_frames(draw: st.DrawFn) -> bytes:
    """Frames shaped like the fast path's, with now and then something it must refuse."""
    def element() -> str:
        name = draw(TAGS)
        closing = name if draw(st.integers(0, 9)) else draw(TAGS)
        return f"<{name}>{draw(TEXT)}</{closing}>"

    root = draw(st.sampled_from(["mrq", "mrq", "mrq", "mrs", "Mrq"]))
    space = draw(st.sampled_from(["", " ", "\n", "\r\n"]))
    body = space.join(element() for _ in range(draw(st.integers(0, 8))))
    return f"{space}<{root}>{space}{body}{space}</{root}>{space}".encode()


def outcome(frame: bytes) -> object:
    try:
        return scaip.parse_request(frame)
    except ScaipError as err:
        return (err.reason, err.status, err.ref, err.cid)


@settings(max_examples=1500, deadline=None)
@given(flat_frames())
def test_flat_frames_read_the_same_with_and_without_the_xml_parser(frame: bytes) -> None:
    fast = outcome(frame)
    with patch.object(scaip, "_flat_fields", lambda *_: None):
        by_parser = outcome(frame)

    assert fast == by_parser


def test_the_fast_path_takes_a_typical_heartbeat_and_leaves_a_declaration_to_the_parser(
        ) -> None:
    heartbeat = b"<mrq><ref>H1</ref><cid>2000001</cid><dty>0002</dty><mty>PI</mty></mrq>"

    assert scaip._flat_fields(heartbeat, "mrq", scaip.REQUEST_FIELDS) == {
        "ref": ["H1"], "cid": ["2000001"], "dty": ["0002"], "mty": ["PI"]}
    assert scaip._flat_fields(VALID_FRAMES[3], "mrq", scaip.REQUEST_FIELDS) is None
