"""Decode SIA DC-09 frames and plain Contact ID lines into device events; encode answers.

SIA DC-09 frames (LF crc len "id" seq [Rrcvr] Lpref #acct [data][x-data] _timestamp CR)
carry SIA-DCS or Contact ID (`ADM-CID`) events, or nothing (`NULL`, supervision); an
alarm receiver's serial line may also hand over plain Contact ID lines (`ACCT MT Q EEE
GG CCC S` CR). docs/PROTOCOLS.md ("SIA DC-09") holds the grammar as we read it, where we
are lenient, and every choice; devices/dc09_codes.py holds the code tables. Pure: bytes
in, values out; no I/O, no clock (the receiving time comes in as `now`), no logging.

Every rejected frame raises `Dc09Error` (a `devices.errors.FrameError`) carrying the
answer to give and what could be read of the frame. NAK: it did not arrive intact or in
time, so the sender resends. DUH: it arrived intact and we do not understand it.

    reason             answer  when
    too_long           NAK     over MAX_FRAME_BYTES, checked before anything is read
    not_a_frame        NAK     not ASCII, no crc/length header, header fields unreadable
    bad_length         NAK     the length field disagrees (a cut-off frame), or a plain
                               line without its 16 digits
    bad_crc            NAK     the CRC-16/ARC disagrees
    bad_checksum       NAK     a plain Contact ID line whose checksum digit is wrong
    bad_timestamp      NAK     unreadable, or outside -past_s/+future_s of `now`
    missing_timestamp  NAK     an encrypted frame without one
    bad_decrypt        NAK     the encrypted block is no hex AES block, or does not
                               decrypt to text (a wrong key)
    unknown_token      DUH     an id we do not speak, e.g. "SIA-XYZ"
    bad_account        DUH     no account, or not 3-16 hex digits
    no_key             DUH     encrypted, and we hold no key for the account
    bad_data           DUH     the data block is not SIA-DCS / Contact ID as we read it

Plain Contact ID lines are answered with one byte: ACK 0x06, NAK 0x15.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from devices import dc09_codes
from devices.errors import ContentError, Dc09Error, FrameError
from devices.events import DeviceEvent, EventKind

PROTOCOL = "dc09"
# The length field has three significant hex digits (0LLL): 4095 characters, plus LF,
# the crc and length fields and CR. Anything longer is refused before it is read.
MAX_FRAME_BYTES = 4095 + 10
ACK_BYTE = b"\x06"
NAK_BYTE = b"\x15"
TOKENS = ("SIA-DCS", "ADM-CID", "NULL")
KEY_SIZES = (16, 24, 32)
DEFAULT_PAST_S = 40.0
DEFAULT_FUTURE_S = 20.0
ALARM_PRIORITY = 9
# reply_context of an event decoded from a plain Contact ID line: answered 0x06.
PLAIN_LINE_CONTEXT = "line"

NO_KEYS: Mapping[str, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Dc09Answer:
    """A receiver's answer to one frame, as `decode_answer` read it."""

    token: str  # "ACK", "NAK" or "DUH"
    seq: str | None  # None for a single-byte answer to a plain line
    account: str | None  # None for a NAK ("A0") and single-byte answers
    encrypted: bool


# --- CRC-16/ARC ---------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0): DC-09's CRC, over `"` up to CR."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# --- timestamps ---------------------------------------------------------------------

_TIMESTAMP = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2}),([0-9]{2})-([0-9]{2})-([0-9]{4})")


def format_timestamp(at: datetime) -> str:
    """`_HH:MM:SS,MM-DD-YYYY` in UTC; a naive datetime is taken to be UTC already."""
    at = at.astimezone(UTC) if at.tzinfo is not None else at
    return (f"_{at.hour:02d}:{at.minute:02d}:{at.second:02d},"
            f"{at.month:02d}-{at.day:02d}-{at.year:04d}")


def _parse_timestamp(text: str) -> datetime | None:
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return None
    hour, minute, second, month, day, year = (int(part) for part in m.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


# --- AES-CBC, zero IV ---------------------------------------------------------------

_HEX = re.compile(r"[0-9A-Fa-f]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(bytes(16)))


def _encrypt(key: bytes, text: str) -> str:
    """Hex of AES-CBC(pad | text): the pad fills the plaintext to whole 16-byte blocks.

    DC-09 wants pad characters other than `|`, `[` and `]`. Ours are hex digits drawn
    from a digest of the text, so equal texts (and only those) encrypt alike, and the
    codec stays free of randomness.
    """
    size = 16 - (len(text) + 1) % 16  # 1-16: never an empty pad
    pad = hashlib.sha256(text.encode("ascii")).hexdigest()[:size]
    encryptor = _cipher(key).encryptor()
    raw = encryptor.update(f"{pad}|{text}".encode("ascii")) + encryptor.finalize()
    return raw.hex().upper()


def _decrypt(key: bytes, hex_text: str) -> str | None:
    """The plaintext of an encrypted block, or None if it is no block or no text."""
    if not hex_text or len(hex_text) % 32 or not _HEX.fullmatch(hex_text):
        return None
    decryptor = _cipher(key).decryptor()
    raw = decryptor.update(bytes.fromhex(hex_text)) + decryptor.finalize()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _PRINTABLE.fullmatch(text) else None


def _unpad(plain: str) -> str:
    """Drop the pad: what precedes the first `|` before the data block closes.

    A block with no `|` before its `]` has empty data (a NULL or an ACK); senders differ
    in whether they write `pad|]` or `pad]` there, and both read the same.
    """
    head, bracket, tail = plain.partition("]")
    _, bar, data = head.partition("|")
    return (data if bar else "") + bracket + tail


# --- frames -------------------------------------------------------------------------

_HEADER = re.compile(r"(?P<crc>[0-9A-Fa-f]{4})(?P<len>[0-9A-Fa-f]{4})(?P<body>\".*)", re.DOTALL)
_BODY = re.compile(
    r'"(?P<star>\*?)(?P<mtype>[!#-~]{1,32})"'
    r"(?P<seq>[0-9A-Fa-f]{1,4})"
    r"(?P<receiver>R[0-9A-Fa-f]{1,6})?"
    r"(?P<prefix>L[0-9A-Fa-f]{1,6})"
    r"(?:#(?P<account>[0-9A-Za-z]*))?"
    r"\[(?P<rest>.*)",
    re.DOTALL,
)
# After `[`: the data block's content, `]`, any x-data blocks, the optional timestamp.
_REST = re.compile(r"(?P<data>[^\[\]]*)\](?:\[[^\[\]]*\])*(?:_(?P<ts>.*))?", re.DOTALL)
_ACCOUNT = re.compile(r"[0-9A-Fa-f]{3,16}")


def is_account(text: str) -> bool:
    """Whether `text` is a DC-09 account: 3-16 hex digits, either case."""
    return _ACCOUNT.fullmatch(text) is not None


# The data block may open with the account (`#1234|`) or a bare `|`.
_DATA_ACCOUNT = re.compile(r"(?:#(?P<account>[0-9A-Za-z]*))?\|")


@dataclass(frozen=True, slots=True)
class _Header:
    """What could be read of a frame up to its `[`, for the event and for a DUH."""

    encrypted: bool
    message_type: str  # the id token: "SIA-DCS", "ADM-CID", "NULL", ...
    seq: str  # zero-padded to 4
    receiver: str | None  # with its marker: "R0"; None if the frame had none
    prefix: str  # with its marker: "L0"
    account: str | None  # as sent, without "#"

    def error(self, reason: str, detail: str, answer: str) -> Dc09Error:
        account = self.account.upper() if self.account and is_account(self.account) else None
        return Dc09Error(reason, detail, answer=answer, seq=self.seq, account=account,
                         receiver=self.receiver, prefix=self.prefix)


def _nak(reason: str, detail: str, *, plain_line: bool = False) -> Dc09Error:
    return Dc09Error(reason, detail, answer="NAK", plain_line=plain_line)


def decode(
    frame: bytes,
    *,
    now: datetime,
    keys: Mapping[str, bytes] = NO_KEYS,
    past_s: float = DEFAULT_PAST_S,
    future_s: float = DEFAULT_FUTURE_S,
) -> DeviceEvent:
    """Decode one DC-09 frame or plain Contact ID line. Raises Dc09Error only.

    `keys` maps an upper-case account to its AES key; `now` (aware UTC) is the receiving
    time, against which a frame's timestamp must lie within -past_s/+future_s.
    """
    if len(frame) > MAX_FRAME_BYTES:
        raise _nak("too_long", f"{len(frame)} bytes, limit {MAX_FRAME_BYTES}")
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _nak("not_a_frame", f"not ASCII at byte {exc.start}") from exc
    # The framer may or may not have stripped the LF and CR; some senders end with CRLF.
    text = text.strip("\r\n")
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if '"' not in text and _PLAIN_SHAPE.fullmatch(text):
        return _decode_line(text, now)
    return _decode_frame(text, now, keys, timedelta(seconds=past_s),
                         timedelta(seconds=future_s))


def _decode_frame(text: str, now: datetime, keys: Mapping[str, bytes], past: timedelta,
                  future: timedelta) -> DeviceEvent:
    m = _HEADER.fullmatch(text)
    if m is None:
        raise _nak("not_a_frame", "no crc and length fields before the id")
    body = m["body"]
    if int(m["len"], 16) != len(body):
        raise _nak("bad_length", f"length field {int(m['len'], 16)}, frame {len(body)}")
    if int(m["crc"], 16) != crc16_arc(body.encode("ascii")):
        raise _nak("bad_crc", "CRC-16 does not match")
    fields = _BODY.fullmatch(body)
    if fields is None:
        raise _nak("not_a_frame", "id, seq, receiver, prefix or account unreadable")
    header = _Header(
        encrypted=bool(fields["star"]),
        message_type=fields["mtype"],
        seq=fields["seq"].zfill(4),
        receiver=fields["receiver"],
        prefix=fields["prefix"],
        account=fields["account"],
    )
    if header.account is not None and not is_account(header.account):
        raise header.error("bad_account", "the account must be 3-16 hex digits", "DUH")
    if header.message_type not in TOKENS:
        raise header.error("unknown_token", f"id {header.message_type!r} not spoken", "DUH")
    rest = fields["rest"]
    if header.encrypted:
        rest = _decrypted(header, rest, keys)
    parts = _REST.fullmatch(rest)
    if parts is None:
        raise header.error("bad_data", "no data block, or text after it", "DUH")
    sent_at = _checked_time(header, parts["ts"], now, past, future)
    data = parts["data"]
    cid, data = _account_of(header, data)
    kind, status_code, group, zone = _payload(header, data)
    return DeviceEvent(
        kind=kind,
        protocol=PROTOCOL,
        cid=cid,
        ref=header.seq,
        device_id=group,
        component=zone,
        status_code=status_code,
        priority=ALARM_PRIORITY if kind is EventKind.ALARM else 0,
        sent_at=sent_at,
        reply_context=_reply_context(header, cid),
    )


def _decrypted(header: _Header, rest: str, keys: Mapping[str, bytes]) -> str:
    key = keys.get(header.account.upper()) if header.account else None
    if key is None:
        raise header.error("no_key", "encrypted, and no key for the account", "DUH")
    plain = _decrypt(key, rest)
    if plain is None:
        raise header.error("bad_decrypt", "the block does not decrypt to text", "NAK")
    return _unpad(plain)


def _checked_time(header: _Header, ts: str | None, now: datetime, past: timedelta,
                  future: timedelta) -> str | None:
    if ts is None:
        if header.encrypted:
            raise header.error("missing_timestamp", "an encrypted frame needs one", "NAK")
        return None
    at = _parse_timestamp(ts)
    if at is None:
        raise header.error("bad_timestamp", "not _HH:MM:SS,MM-DD-YYYY", "NAK")
    if not now - past <= at <= now + future:
        raise header.error("bad_timestamp",
                           f"{(at - now).total_seconds():+.0f} s off the receiver", "NAK")
    return at.isoformat()


def _account_of(header: _Header, data: str) -> tuple[str, str]:
    """The account (upper case) and the data block without its leading `#acct|`.

    The header's account wins; the data block's is used only when the header has none.
    """
    m = _DATA_ACCOUNT.match(data)
    inner = m["account"] if m else None
    data = data[m.end():] if m else data
    account = header.account if header.account is not None else inner
    if account is None or not is_account(account):
        raise header.error("bad_account", "no account of 3-16 hex digits", "DUH")
    return account.upper(), data


def _payload(header: _Header, data: str) -> tuple[EventKind, str | None, str | None,
                                                   str | None]:
    """(kind, status code, group, zone) of the data block."""
    if header.message_type == "NULL":
        return EventKind.HEARTBEAT, None, None, None
    if header.message_type == "ADM-CID":
        m = _CID_DATA.fullmatch(data)
        if m is None:
            raise header.error("bad_data", "not Contact ID `Q EEE GG CCC`", "DUH")
        return _contact_id(m)
    events = _sia_events(data)
    if events is None:
        raise header.error("bad_data", "no SIA-DCS event block read", "DUH")
    code, group, zone = min(
        events, key=lambda e: dc09_codes.urgency(dc09_codes.sia_kind(e[0])))
    return dc09_codes.sia_kind(code), code, group, zone


# --- SIA-DCS data -------------------------------------------------------------------

# Inside an `N` (new event) block: separators, modifiers (`ri` group, `id` user, `ti`
# time, ...), codes with their address, and `^labels^`, which are skipped (free text,
# possibly a name). Values are bounded so that no field outgrows its database column.
_SIA_PART = re.compile(
    r"(?P<sep>[/ ])"
    r"|(?P<mod>[a-z]{2})(?P<value>[0-9:]{0,8})"
    r"|(?P<code>[A-Z]{2})(?P<addr>[0-9]{0,8})"
    r"|\^[^^\[\]|]*\^"
)


def _sia_events(data: str) -> list[tuple[str, str | None, str | None]] | None:
    """Every (code, group, zone) of the data's event blocks; None if it has none.

    Blocks are separated by `|`; event blocks open with `N`, all others (`A` text, ...)
    are skipped. None also when an event block holds something we cannot read.
    """
    found: list[tuple[str, str | None, str | None]] = []
    for block in data.split("|"):
        if not block.startswith("N"):
            continue
        group: str | None = None
        pos = 1
        while pos < len(block):
            m = _SIA_PART.match(block, pos)
            if m is None:
                return None
            pos = m.end()
            if m["mod"] == "ri":
                group = m["value"] or None
            elif m["code"]:
                found.append((m["code"], group, m["addr"] or None))
    return found or None


# --- Contact ID ---------------------------------------------------------------------

_CID_DATA = re.compile(
    r"(?P<q>[0-9])(?P<code>[0-9A-Fa-f]{3}) ?(?P<group>[0-9A-Fa-f]{2}) ?(?P<zone>[0-9A-Fa-f]{3})")
_PLAIN_SHAPE = re.compile(r"[0-9A-Fa-f ]+")
_PLAIN_LINE = re.compile(
    r"(?P<account>[0-9A-Fa-f]{4})(?P<mt>[0-9A-Fa-f]{2})(?P<q>[0-9A-Fa-f])(?P<code>[0-9A-Fa-f]{3})"
    r"(?P<group>[0-9A-Fa-f]{2})(?P<zone>[0-9A-Fa-f]{3})[0-9A-Fa-f]")
MESSAGE_TYPES = ("18", "98")


def _contact_id(m: re.Match[str]) -> tuple[EventKind, str, str, str]:
    qualifier, code = m["q"].upper(), m["code"].upper()
    return (dc09_codes.cid_kind(qualifier, code), qualifier + code, m["group"].upper(),
            m["zone"].upper())


def _digit_value(digit: str) -> int:
    """A Contact ID digit's value: 0 counts as 10 (DTMF), B-F as 11-15."""
    return int(digit, 16) or 10


def checksum_digit(digits: str) -> str:
    """The digit that makes the sum of all, 0 counted as 10, a multiple of 15."""
    value = 15 - sum(_digit_value(d) for d in digits) % 15
    return "0" if value == 10 else f"{value:X}"


def _decode_line(text: str, now: datetime) -> DeviceEvent:
    """A plain Contact ID line, e.g. `1234181100010157`; spaces between fields are ok.

    There is no sequence number, so the ref is the line without its account plus the
    receiving minute (HHMM, UTC): a resend a few seconds later is the same message,
    while the same button pressed again in a later minute is a new one.
    """
    line = text.replace(" ", "")
    m = _PLAIN_LINE.fullmatch(line)
    if m is None:
        raise _nak("bad_length", f"{len(line)} digits, a Contact ID line has 16",
                   plain_line=True)
    if sum(_digit_value(d) for d in line) % 15:
        raise _nak("bad_checksum", "Contact ID checksum does not match", plain_line=True)
    if m["mt"] not in MESSAGE_TYPES:
        raise _nak("not_a_frame", "message type is not 18 or 98", plain_line=True)
    kind, status_code, group, zone = _contact_id(m)
    return DeviceEvent(
        kind=kind,
        protocol=PROTOCOL,
        cid=m["account"].upper(),
        ref=f"{line[4:].upper()}{now.astimezone(UTC):%H%M}",
        device_id=group,
        component=zone,
        status_code=status_code,
        priority=ALARM_PRIORITY if kind is EventKind.ALARM else 0,
        reply_context=PLAIN_LINE_CONTEXT,
    )


_PLAIN_REF = re.compile(r"[0-9A-F]{16}")


# --- answers ------------------------------------------------------------------------

_CONTEXT = re.compile(r"(?P<star>\*?)(?P<receiver>R[0-9A-Fa-f]{1,6})?(?P<prefix>L[0-9A-Fa-f]{1,6})"
                      r"(?:#(?P<account>[0-9A-Fa-f]{3,16}))?")


def _reply_context(header: _Header, cid: str) -> str:
    """What the ACK echoes: `*` if encrypted, receiver, prefix, and the account as sent
    when its case differs from the cid (e.g. "R0L0", "*RF3L77", "R0L0#12ab")."""
    echo = f"#{header.account}" if header.account and header.account != cid else ""
    return f"{'*' if header.encrypted else ''}{header.receiver or ''}{header.prefix}{echo}"


def answer_ok(event: DeviceEvent, *, now: datetime,
              keys: Mapping[str, bytes] = NO_KEYS) -> bytes:
    """The ACK for a decoded event: the same seq, receiver, prefix and account.

    An encrypted frame is answered `*ACK` with an encrypted `[]` block and timestamp; if
    its key has gone meanwhile, with a plain ACK (the sender then resends, and the
    resend is answered DUH `no_key`).
    """
    if event.reply_context == PLAIN_LINE_CONTEXT:
        return ACK_BYTE
    m = _CONTEXT.fullmatch(event.reply_context or "R0L0") or _CONTEXT.fullmatch("R0L0")
    assert m is not None
    key = keys.get(event.cid) if m["star"] else None
    return encode_ack(event.ref, m["account"] or event.cid, receiver=m["receiver"],
                      prefix=m["prefix"], now=now, key=key)


def answer_error(err: FrameError, *, now: datetime) -> bytes:
    """The answer to a frame `decode` rejected (or the gateway refused) with `err`."""
    if isinstance(err, Dc09Error):
        if err.plain_line:
            return NAK_BYTE
        if err.answer == "DUH":
            return encode_duh(err.seq or "0000", err.account, receiver=err.receiver,
                              prefix=err.prefix or "L0")
        return encode_nak(now=now, receiver=err.receiver or "R0", prefix=err.prefix or "L0")
    if isinstance(err, ContentError):
        # Well-formed but refused: DUH with the sender's own seq and account, so it
        # stops resending. A plain line (its ref is 16 hex digits) gets a NAK byte.
        if _PLAIN_REF.fullmatch(err.ref):
            return NAK_BYTE
        return encode_duh(err.ref, err.cid)
    return encode_nak(now=now)


def _wrap(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"\n" + f"{crc16_arc(raw):04X}{len(raw):04X}".encode("ascii") + raw + b"\r"


def encode_ack(seq: str, account: str | None, *, receiver: str | None = "R0",
               prefix: str = "L0", now: datetime, key: bytes | None = None) -> bytes:
    """`"ACK"seq Rrcvr Lpref #acct[]`; with a key `"*ACK"` and `[` encrypted `]_time`."""
    head = f"{receiver or ''}{prefix}{f'#{account}' if account else ''}"
    if key is None:
        return _wrap(f'"ACK"{seq}{head}[]')
    return _wrap(f'"*ACK"{seq}{head}[{_encrypt(key, "]" + format_timestamp(now))}')


def encode_nak(*, now: datetime, receiver: str = "R0", prefix: str = "L0") -> bytes:
    """`"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY`: the receiver's time, so a sender whose
    clock is off can set it."""
    return _wrap(f'"NAK"0000{receiver}{prefix}A0[]{format_timestamp(now)}')


def encode_duh(seq: str, account: str | None, *, receiver: str | None = "R0",
               prefix: str = "L0") -> bytes:
    """`"DUH"seq Rrcvr Lpref #acct[]`: understood as a frame, not as a message."""
    return _wrap(f'"DUH"{seq}{receiver or "R0"}{prefix}{f"#{account}" if account else ""}[]')


# --- building frames (for the simulator and tests) ----------------------------------


def encode_frame(*, token: str, seq: int | str, account: str, data: str = "",
                 receiver: str | None = "0", prefix: str = "0",
                 timestamp: datetime | None = None, key: bytes | None = None) -> bytes:
    """A DC-09 frame as a sender writes it, LF to CR, CRC and length computed.

    `data` is the inside of the data block, e.g. "#1234|Nri1/MA001"; `seq` an int is
    written as four digits, a string as given. Values are not validated, so a test can
    play a sloppy sender. With `key` the frame is encrypted (`"*SIA-DCS"`) and needs a
    `timestamp`.
    """
    seq_text = f"{seq:04d}" if isinstance(seq, int) else seq
    star = "*" if key is not None else ""
    head = (f'"{star}{token}"{seq_text}{f"R{receiver}" if receiver is not None else ""}'
            f"L{prefix}{f'#{account}' if account else ''}[")
    stamp = format_timestamp(timestamp) if timestamp is not None else ""
    if key is None:
        return _wrap(f"{head}{data}]{stamp}")
    if timestamp is None:
        raise ValueError("an encrypted frame needs a timestamp")
    return _wrap(head + _encrypt(key, f"{data}]{stamp}"))


def encode_contact_id_line(account: str, qualifier: int, code: int, group: int, zone: int,
                           mt: str = "18") -> bytes:
    """A plain Contact ID line `ACCT MT Q EEE GG CCC S`, with its checksum, CR-terminated."""
    if not (0 <= qualifier <= 9 and 0 <= code <= 999 and 0 <= group <= 99
            and 0 <= zone <= 999):
        raise ValueError("qualifier 0-9, code 0-999, group 0-99, zone 0-999")
    digits = f"{account}{mt}{qualifier}{code:03d}{group:02d}{zone:03d}"
    if not _HEX.fullmatch(digits):
        raise ValueError("a Contact ID line is made of hex digits only")
    return f"{digits}{checksum_digit(digits)}\r".encode("ascii")


# --- reading answers (strictly: only the simulator reads them, to check ours) -------

_ANSWER = re.compile(
    r'"(?P<star>\*?)(?P<answer>ACK|NAK|DUH)"(?P<seq>[0-9A-Fa-f]{4})'
    # Lazy prefix: in a NAK's `L0A0` the `A0` (no account) is hex too.
    r"(?P<receiver>R[0-9A-Fa-f]{1,6})?(?P<prefix>L[0-9A-Fa-f]{1,6}?)"
    r"(?:#(?P<account>[0-9A-Fa-f]{3,16})|(?P<no_account>A0))?"
    r"\[(?P<rest>.*)",
    re.DOTALL,
)
_ANSWER_REST = re.compile(r"\](?:_(?P<ts>.*))?", re.DOTALL)


def decode_answer(frame: bytes, *, key: bytes | None = None) -> Dc09Answer:
    """Read an ACK, NAK or DUH frame, or a single ACK/NAK byte. Raises Dc09Error only.

    The frame may come with or without its LF and CR. An encrypted answer is decrypted
    and checked when `key` is given; without it only its shape is checked.
    """
    if frame == ACK_BYTE:
        return Dc09Answer("ACK", None, None, encrypted=False)
    if frame == NAK_BYTE:
        return Dc09Answer("NAK", None, None, encrypted=False)
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _nak("not_a_frame", "not ASCII") from exc
    text = text.removeprefix("\n").removesuffix("\r")
    m = _HEADER.fullmatch(text)
    if m is None:
        raise _nak("not_a_frame", "no crc and length fields")
    body = m["body"]
    if int(m["len"], 16) != len(body):
        raise _nak("bad_length", "length field does not match")
    if int(m["crc"], 16) != crc16_arc(body.encode("ascii")):
        raise _nak("bad_crc", "CRC-16 does not match")
    a = _ANSWER.fullmatch(body)
    if a is None or (a["answer"] == "NAK") != (a["no_account"] is not None):
        raise _nak("not_a_frame", "not an ACK, NAK or DUH as we send them")
    encrypted = bool(a["star"])
    rest = a["rest"]
    if encrypted:
        if key is None:
            if not rest or len(rest) % 32 or not _HEX.fullmatch(rest):
                raise _nak("bad_decrypt", "the encrypted block is no AES block")
            rest = "]"  # its content is unchecked without the key
        else:
            plain = _decrypt(key, rest)
            if plain is None:
                raise _nak("bad_decrypt", "the block does not decrypt to text")
            rest = _unpad(plain)
    r = _ANSWER_REST.fullmatch(rest)
    if r is None:
        raise _nak("not_a_frame", "the data block of an answer is empty")
    ts = r["ts"]
    if ts is not None and _parse_timestamp(ts) is None:
        raise _nak("bad_timestamp", "not _HH:MM:SS,MM-DD-YYYY")
    if ts is None and (a["answer"] == "NAK" or (encrypted and key is not None)):
        raise _nak("missing_timestamp", "a NAK and an encrypted ACK carry the time")
    return Dc09Answer(a["answer"], a["seq"], a["account"], encrypted=encrypted)
