"""Decode SCAIP <mrq> requests into device events and encode <mrs> responses.

SCAIP (SS 91100:2014, guide TR 91102:2016) is the Swedish XML protocol for IP social
alarms; here its XML rides on MQTT. docs/PROTOCOLS.md holds the field and status-code
tables this module implements and every place where we are more lenient than the
standard. Pure: bytes in, values out; no I/O, no clock, no logging.

Requests are read leniently (a real alarm must not bounce on a formality); responses
are read strictly, because only the simulator reads them, to check our own output.

Every rejected frame raises `ScaipError` (a `devices.errors.FrameError`) carrying the
`snu` to answer with and the `ref`/`cid` if they could be recovered:

    reason           snu                 when
    too_long         TOO_LONG (1)        frame over MAX_FRAME_BYTES, checked before parsing
    not_utf8         INVALID_FORMAT (2)  bytes are not UTF-8
    not_xml          INVALID_FORMAT (2)  not well-formed XML: empty, truncated, garbage
    forbidden_xml    INVALID_FORMAT (2)  a DTD, entity declaration or external reference
    wrong_root       INVALID_FORMAT (2)  root element is not <mrq> (<mrs> for responses)
    duplicate_field  INVALID_FORMAT (2)  a tag repeated with different values
    missing_ref      REF_MISSING (10)
    missing_cid      MANDATORY_MISSING (7)
    missing_snu      MANDATORY_MISSING (7)  responses only
    missing_act      MANDATORY_MISSING (7)  commands only
    invalid_field    WRONG_DATA (3)      a value outside its format

Commands (`<cmd>`, our extension: a lock told to open remotely) are encoded here for
dispatch and read strictly by the simulated lock, like responses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import IntEnum
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from devices.errors import FrameError
from devices.events import DeviceEvent, EventKind

PROTOCOL = "scaip"
MAX_FRAME_BYTES = 4096
DEFAULT_VERSION = "01.00"
DEFAULT_MESSAGE_TYPE = "ME"


class Snu(IntEnum):
    """The `snu` status number of an <mrs> response."""

    OK = 0
    TOO_LONG = 1
    INVALID_FORMAT = 2
    WRONG_DATA = 3
    HOLD = 4
    NOT_TREATED = 5
    BUSY = 6
    MANDATORY_MISSING = 7
    REF_MISSING = 10
    UNDEFINED = 99


class ScaipError(FrameError):
    """A SCAIP frame was rejected; `status` is the `snu` to answer it with.

    `ref` and `cid` are what could be recovered from the frame (else None), so the
    answer can carry the device's `ref` and the device stops resending.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        status: Snu,
        ref: str | None = None,
        cid: str | None = None,
    ) -> None:
        super().__init__(reason, detail)
        self.status = status
        self.ref = ref
        self.cid = cid


@dataclass(frozen=True, slots=True)
class ScaipRequest:
    """An <mrq> as on the wire; `parse_request` strips and normalizes the values."""

    ref: str
    cid: str
    dty: str | None = None
    ver: str | None = None
    mty: str | None = None
    hbo: str | None = None
    did: str | None = None
    dco: str | None = None
    dte: str | None = None
    crd: str | None = None
    stc: str | None = None
    stt: str | None = None
    pri: str | None = None
    lco: str | None = None
    lva: str | None = None
    lge: str | None = None
    lte: str | None = None
    ico: str | None = None
    ite: str | None = None


@dataclass(frozen=True, slots=True)
class ScaipResponse:
    """An <mrs>: the answer to the request with the same `ref`."""

    ref: str | None
    snu: int
    ste: str | None = None
    mre: int | None = None
    hbi: int | None = None


REQUEST_FIELDS = tuple(f.name for f in fields(ScaipRequest))
RESPONSE_FIELDS = tuple(f.name for f in fields(ScaipResponse))


# --- value formats -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Format:
    pattern: re.Pattern[str]
    rule: str  # for the error detail
    normalize: Callable[[str], str] = str


def _zero_padded(width: int) -> Callable[[str], str]:
    return lambda value: value.zfill(width)


_REF = _Format(re.compile(r"[A-Za-z0-9]{1,16}"), "1-16 letters or digits")
_CID = _Format(re.compile(r"[0-9]{1,32}"), "1-32 digits")

# Checked in this order, so the first error named is the most important one.
# The standard writes codes as four digits but its own examples send <dty>27</dty>
# and real units send "2" or "010": we zero-pad codes instead of rejecting them.
_REQUEST_FORMATS: dict[str, _Format] = {
    "ref": _REF,
    "cid": _CID,
    # re.ASCII: case folding stays ASCII, so a Turkish dotless "ı" never reads as "I".
    "mty": _Format(
        re.compile(r"ME|RE|IN|PI", re.ASCII | re.IGNORECASE), "ME, RE, IN or PI", str.upper
    ),
    "dty": _Format(re.compile(r"[0-9]{1,4}"), "1-4 digits", _zero_padded(4)),
    "stc": _Format(re.compile(r"[0-9]{1,4}"), "1-4 digits", _zero_padded(4)),
    "pri": _Format(re.compile(r"[0-9]"), "one digit 0-9"),
    "hbo": _Format(re.compile(r"[0-9]{1,3}"), "1-3 digits", _zero_padded(3)),
}

_CHECKED_AFTER_IDS = tuple(name for name in _REQUEST_FORMATS if name not in ("ref", "cid"))

_REPLACEMENT = "\ufffd"
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


# --- reading XML -------------------------------------------------------------------


def _error(reason: str, detail: str, status: Snu, ids: tuple[str | None, str | None]) -> ScaipError:
    ref, cid = ids
    return ScaipError(reason, detail, status=status, ref=ref, cid=cid)


_SCAN_REF = re.compile(rb"<ref>\s*([A-Za-z0-9]{1,16})\s*</ref>")
_SCAN_CID = re.compile(rb"<cid>\s*([0-9]{1,32})\s*</cid>")


def _scan_ids(frame: bytes) -> tuple[str | None, str | None]:
    """Best-effort ref and cid from a frame that cannot be parsed, to answer it by ref.

    Answering with the device's ref stops its resending, so it moves on to its next
    alarm route at once instead of after minutes of retries.
    """
    head = frame[:MAX_FRAME_BYTES]
    return (
        _only(m.decode() for m in _SCAN_REF.findall(head)),
        _only(m.decode() for m in _SCAN_CID.findall(head)),
    )


def _only(values: Iterable[str]) -> str | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _parse_xml(frame: bytes) -> Element:
    # Size first: nothing of an oversized frame is decoded or parsed.
    if len(frame) > MAX_FRAME_BYTES:
        raise _error(
            "too_long",
            f"{len(frame)} bytes, limit {MAX_FRAME_BYTES}",
            Snu.TOO_LONG,
            _scan_ids(frame),
        )
    try:
        # Parsing text, not bytes, makes UTF-8 the only encoding: an XML declaration
        # naming another encoding is then ignored rather than obeyed.
        text = frame.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(
            "not_utf8", f"invalid UTF-8 at byte {exc.start}", Snu.INVALID_FORMAT, _scan_ids(frame)
        ) from exc
    try:
        root: Element = fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise _error(
            "forbidden_xml",
            f"{type(exc).__name__}: DTDs and entities are refused",
            Snu.INVALID_FORMAT,
            _scan_ids(frame),
        ) from exc
    except ParseError as exc:
        raise _error(
            "not_xml", f"not well-formed XML ({exc})", Snu.INVALID_FORMAT, _scan_ids(frame)
        ) from exc
    return root


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]  # tolerate a namespace: "{urn:x}mrq" -> "mrq"


def _clean(value: str | None) -> str | None:
    """Strip surrounding whitespace; an empty element counts as an omitted one."""
    value = value.strip() if value is not None else None
    return value or None


def _collect(root: Element, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The text of every known direct child, by tag; unknown tags are ignored."""
    found: dict[str, list[str]] = {}
    for child in root:
        name = _local_name(child.tag) if isinstance(child.tag, str) else ""
        if name not in names:
            continue
        value = _clean("".join(child.itertext()))  # nested markup is flattened to text
        if value is not None:
            found.setdefault(name, []).append(value)
    return found


def _recover_ids(found: Mapping[str, list[str]]) -> tuple[str | None, str | None]:
    ref = _only(found.get("ref", []))
    cid = _only(found.get("cid", []))
    return (
        ref if ref is not None and _REF.pattern.fullmatch(ref) else None,
        cid if cid is not None and _CID.pattern.fullmatch(cid) else None,
    )


# A flat frame: the root element holding only simple elements, no attributes, no
# namespaces, no declaration, and text without markup, entities or characters the XML
# parser would refuse or rewrite (control characters, CR). Nearly every real frame is
# one, heartbeats above all; it is read with two regular expressions instead of an XML
# parser, which cost more than half the gateway's time at 4,200 heartbeats a second.
# Anything else takes the parser's way, so the outcome is the same either way (a
# property test holds the two to that).
_FLAT_TEXT = "[^<>&\x00-\x08\x0b-\x1f\ufffe\uffff]*"
_FLAT_NAME = "[A-Za-z][A-Za-z0-9]{0,31}"
_FLAT_FRAME = re.compile(
    f"\\s*<({_FLAT_NAME})>((?:\\s*<{_FLAT_NAME}>{_FLAT_TEXT}</{_FLAT_NAME}>)*)\\s*</\\1>\\s*")
_FLAT_ELEMENT = re.compile(f"<({_FLAT_NAME})>({_FLAT_TEXT})</({_FLAT_NAME})>")


def _flat_fields(frame: bytes, root_name: str,
                 names: tuple[str, ...]) -> dict[str, list[str]] | None:
    """The known fields of a flat frame with the right root; None for any other frame."""
    if len(frame) > MAX_FRAME_BYTES:
        return None
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        return None
    whole = _FLAT_FRAME.fullmatch(text)
    if whole is None or whole[1] != root_name:
        return None
    found: dict[str, list[str]] = {}
    for name, value, closing in _FLAT_ELEMENT.findall(whole[2]):
        if closing != name:
            return None  # not well-formed: the parser says how
        if name in names and (cleaned := _clean(value)) is not None:
            found.setdefault(name, []).append(cleaned)
    return found


def _read_fields(frame: bytes, root_name: str, names: tuple[str, ...]) -> dict[str, str]:
    """Parse `frame` safely and return its known fields, one stripped value each."""
    flat = _flat_fields(frame, root_name, names)
    if flat is not None:
        found, ids = flat, _recover_ids(flat)
    else:
        root = _parse_xml(frame)
        found = _collect(root, names)
        ids = _recover_ids(found)
        if not isinstance(root.tag, str) or _local_name(root.tag) != root_name:
            raise _error("wrong_root", f"root element is not <{root_name}>",
                         Snu.INVALID_FORMAT, ids)
    values: dict[str, str] = {}
    for name, seen in found.items():
        # A repeat that agrees is harmless; one that disagrees (two different <stc>)
        # cannot be read safely either way, so the device hears it was not accepted.
        if len(set(seen)) > 1:
            raise _error(
                "duplicate_field",
                f"<{name}> appears {len(seen)} times, differing",
                Snu.INVALID_FORMAT,
                ids,
            )
        values[name] = seen[0]
    return values


# --- requests ----------------------------------------------------------------------


def parse_request(frame: bytes) -> ScaipRequest:
    """Read an <mrq> frame into a normalized request. Raises ScaipError only."""
    return _normalized(_read_fields(frame, "mrq", REQUEST_FIELDS))


def _normalized(raw: Mapping[str, str | None]) -> ScaipRequest:
    """Validate and normalize request values; the one place the format rules live."""
    values: dict[str, str | None] = dict.fromkeys(REQUEST_FIELDS)
    for name, value in raw.items():
        if name in values:
            values[name] = _clean(value)
    ids = _recover_ids({k: [v] for k in ("ref", "cid") if (v := values[k]) is not None})
    ref, cid = values.pop("ref"), values.pop("cid")
    if ref is None:
        raise _error("missing_ref", "<ref> is required", Snu.REF_MISSING, ids)
    if cid is None:
        raise _error("missing_cid", "<cid> is required", Snu.MANDATORY_MISSING, ids)
    ref, cid = _checked("ref", ref, ids), _checked("cid", cid, ids)
    for name in _CHECKED_AFTER_IDS:
        value = values[name]
        values[name] = _checked(name, value, ids) if value is not None else None
    # <dty> is required by the standard but real units leave it out: accepted as None.
    values["mty"] = values["mty"] or DEFAULT_MESSAGE_TYPE
    values["ver"] = values["ver"] or DEFAULT_VERSION
    return ScaipRequest(ref, cid, **values)


def _checked(name: str, value: str, ids: tuple[str | None, str | None]) -> str:
    fmt = _REQUEST_FORMATS[name]
    if not fmt.pattern.fullmatch(value):
        # The value itself stays out of the detail: the detail is logged, and a
        # confused device may put anything in any field.
        raise _error(
            "invalid_field",
            f"<{name}> must be {fmt.rule} ({len(value)} chars sent)",
            Snu.WRONG_DATA,
            ids,
        )
    return fmt.normalize(value)


def encode_request(req: ScaipRequest) -> bytes:
    """Serialize a request as a base unit would send it (for the simulator).

    Values are written as given, not validated, so the simulator can play a broken
    unit; characters XML cannot carry are replaced by U+FFFD.
    """
    body = "".join(
        _element(name, value)
        for name in REQUEST_FIELDS
        if (value := getattr(req, name)) is not None
    )
    return f"<mrq>{body}</mrq>".encode()


def _element(name: str, value: str) -> str:
    # "\r" as a character reference survives XML's line-end normalization.
    text = escape(_XML_ILLEGAL.sub(_REPLACEMENT, value), {"\r": "&#13;"})
    return f"<{name}>{text}</{name}>"


# --- events ------------------------------------------------------------------------

_KIND_BY_MESSAGE_TYPE = {
    "PI": EventKind.HEARTBEAT,
    "RE": EventKind.RESET,
    "IN": EventKind.INFO,
}

_KIND_BY_STATUS_CODE: dict[str, EventKind] = {
    "0009": EventKind.ALARM,
    "0010": EventKind.ALARM,
    "0088": EventKind.CHECK_IN,
    "0111": EventKind.CHECK_OUT,
    "0087": EventKind.PLANNED_PRESENCE,
    "0085": EventKind.MAINS_LOST,
    "0086": EventKind.MAINS_RESTORED,
    "0016": EventKind.BATTERY_LOW,
    "0014": EventKind.BATTERY_FAULT,
    "0015": EventKind.BATTERY_OK,
    **{f"{code:04d}": EventKind.LINK_FAULT for code in range(23, 28)},
    **{f"{code:04d}": EventKind.LINK_RESTORED for code in range(112, 117)},
    "0102": EventKind.TEST,
    "0103": EventKind.TEST,
    "0125": EventKind.TAMPER,
    "0118": EventKind.LOCK_CLOSED,
    "0127": EventKind.LOCK_OPENED,
    "0019": EventKind.CANCELLED,
    "0002": EventKind.CANCELLED,
}

_LOCK_EVENTS = frozenset({EventKind.LOCK_OPENED, EventKind.LOCK_CLOSED})


def decode(frame: bytes) -> DeviceEvent:
    """Decode an <mrq> frame into a device event. Raises ScaipError only."""
    return _event(parse_request(frame))


def to_event(req: ScaipRequest) -> DeviceEvent:
    """Map a request (parsed, or built by hand and then normalized) onto an event."""
    return _event(_normalized({name: getattr(req, name) for name in REQUEST_FIELDS}))


def _kind(req: ScaipRequest) -> EventKind:
    if req.mty in _KIND_BY_MESSAGE_TYPE:  # a heartbeat is a heartbeat whatever its stc
        return _KIND_BY_MESSAGE_TYPE[req.mty]
    if req.stc is None:  # the standard: an omitted status code means alarm
        return EventKind.ALARM
    return _KIND_BY_STATUS_CODE.get(req.stc, EventKind.OTHER)


def _event(req: ScaipRequest) -> DeviceEvent:
    kind = _kind(req)
    # stt, dte, crd, lte, lva and lge are left behind: they may hold personal data.
    return DeviceEvent(
        kind=kind,
        protocol=PROTOCOL,
        cid=req.cid,
        ref=req.ref,
        device_type=req.dty,
        device_id=req.did,
        component=req.dco,
        status_code=req.stc,
        priority=int(req.pri or 0),
        location_code=req.lco,
        staff_id=req.ite if kind in _LOCK_EVENTS else None,
        wants_heartbeat_interval=req.hbo == "001",
    )


# --- responses ---------------------------------------------------------------------


def error_response(err: ScaipError) -> ScaipResponse:
    """The answer to a rejected frame: its ref if known, its snu, the reason as ste."""
    return ScaipResponse(ref=err.ref, snu=err.status, ste=err.reason)


def encode_response(resp: ScaipResponse) -> bytes:
    """Serialize an <mrs>; `ste` is reduced to printable ASCII as the standard asks.

    Raises ValueError for a response no device should receive (an out-of-range
    snu, mre or hbi): that is a bug on our side, not a bad frame.
    """
    _check_range("snu", resp.snu, 0, 99)
    _check_range("mre", resp.mre, 0, 3)
    _check_range("hbi", resp.hbi, 1, 1440)
    parts = [_element("ref", resp.ref)] if resp.ref is not None else []
    parts.append(f"<snu>{int(resp.snu)}</snu>")
    if resp.ste:
        parts.append(_element("ste", _NOT_PRINTABLE_ASCII.sub("?", resp.ste)))
    if resp.mre is not None:
        parts.append(f"<mre>{resp.mre}</mre>")
    if resp.hbi is not None:
        parts.append(f"<hbi>{resp.hbi}</hbi>")
    return f"<mrs>{''.join(parts)}</mrs>".encode()


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name} must be {low}-{high}, got {value}")


_RESPONSE_FORMATS: dict[str, _Format] = {
    "ref": _REF,
    "snu": _Format(re.compile(r"[0-9]{1,2}"), "0-99"),
    "ste": _Format(re.compile(r"[\x20-\x7e]+"), "printable ASCII"),
    "mre": _Format(re.compile(r"[0-3]"), "0-3"),
    "hbi": _Format(re.compile(r"[1-9][0-9]{0,3}"), "1-1440 minutes"),
}


def decode_response(frame: bytes) -> ScaipResponse:
    """Read an <mrs> frame strictly (used by the simulator). Raises ScaipError only."""
    values = _read_fields(frame, "mrs", RESPONSE_FIELDS)
    ids = _recover_ids({"ref": [values["ref"]]} if "ref" in values else {})
    for name, value in values.items():
        if not _RESPONSE_FORMATS[name].pattern.fullmatch(value) or (
            name == "hbi" and int(value) > 1440
        ):
            raise _error(
                "invalid_field",
                f"<{name}> must be {_RESPONSE_FORMATS[name].rule}",
                Snu.WRONG_DATA,
                ids,
            )
    if "snu" not in values:
        raise _error("missing_snu", "<snu> is required", Snu.MANDATORY_MISSING, ids)
    return ScaipResponse(
        ref=values.get("ref"),
        snu=int(values["snu"]),
        ste=values.get("ste"),
        mre=_int_or_none(values.get("mre")),
        hbi=_int_or_none(values.get("hbi")),
    )


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None else None


# --- commands (our extension: a downlink to a device) -----------------------------------

UNLOCK = "unlock"
COMMAND_ACTIONS = frozenset({UNLOCK})
# The `ite` of a lock's opening report when it opened on a command: "remote:<its ref>",
# where an opening by staff carries the staff member's id.
REMOTE_OPENING = "remote:"
DTY_LOCK = "0042"  # Annex A: electric lock
_EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_EXPIRY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass(frozen=True, slots=True)
class ScaipCommand:
    """A `<cmd>` to one device: do `act` (only "unlock" so far), not after `exp`.

    SCAIP has no downlink but the `<mrs>` answer, so this is ours, shaped like SCAIP:
    `ref` is fresh per command (the device obeys a ref once, however often it is
    delivered), `exp` an aware UTC time after which the device must ignore it.
    """

    ref: str
    cid: str
    act: str
    exp: datetime | None = None


COMMAND_FIELDS = ("ref", "cid", "act", "exp")


def encode_command(cmd: ScaipCommand) -> bytes:
    """Serialize a `<cmd>`. Raises ValueError for one no device should receive (a bad
    ref or cid, an unknown act, a naive expiry): that is our bug, not the device's."""
    if not _REF.pattern.fullmatch(cmd.ref):
        raise ValueError(f"ref must be {_REF.rule}")
    if not _CID.pattern.fullmatch(cmd.cid):
        raise ValueError(f"cid must be {_CID.rule}")
    if cmd.act not in COMMAND_ACTIONS:
        raise ValueError(f"act must be one of {sorted(COMMAND_ACTIONS)}, got {cmd.act!r}")
    parts = [_element("ref", cmd.ref), _element("cid", cmd.cid), _element("act", cmd.act)]
    if cmd.exp is not None:
        if cmd.exp.tzinfo is None:
            raise ValueError("exp must be an aware datetime")
        parts.append(_element("exp", cmd.exp.astimezone(UTC).strftime(_EXPIRY_FORMAT)))
    return f"<cmd>{''.join(parts)}</cmd>".encode()


def decode_command(frame: bytes) -> ScaipCommand:
    """Read a `<cmd>` strictly (the simulated lock does). Raises ScaipError only."""
    values = _read_fields(frame, "cmd", COMMAND_FIELDS)
    ids = _recover_ids({k: [v] for k in ("ref", "cid") if (v := values.get(k)) is not None})
    for name, missing in (("ref", ("missing_ref", Snu.REF_MISSING)),
                          ("cid", ("missing_cid", Snu.MANDATORY_MISSING)),
                          ("act", ("missing_act", Snu.MANDATORY_MISSING))):
        if name not in values:
            raise _error(missing[0], f"<{name}> is required", missing[1], ids)
    rules = {"ref": _REF, "cid": _CID}
    for name, fmt in rules.items():
        if not fmt.pattern.fullmatch(values[name]):
            raise _error("invalid_field", f"<{name}> must be {fmt.rule}", Snu.WRONG_DATA, ids)
    if values["act"] not in COMMAND_ACTIONS:
        raise _error("invalid_field", f"<act> must be one of {sorted(COMMAND_ACTIONS)}",
                     Snu.WRONG_DATA, ids)
    exp = values.get("exp")
    return ScaipCommand(ref=values["ref"], cid=values["cid"], act=values["act"],
                        exp=None if exp is None else _expiry(exp, ids))


def _expiry(value: str, ids: tuple[str | None, str | None]) -> datetime:
    try:
        if not _EXPIRY.fullmatch(value):
            raise ValueError(value)
        return datetime.strptime(value, _EXPIRY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _error("invalid_field", "<exp> must be UTC as YYYY-MM-DDTHH:MM:SSZ",
                     Snu.WRONG_DATA, ids) from None
