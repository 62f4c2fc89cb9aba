"""The per-account AES keys of encrypted DC-09, read from a file kept apart from the
configuration (a secret: never logged, never in an error message).

One account per line, `ACCOUNT HEXKEY`, the key 32, 48 or 64 hex digits (AES-128, -192,
-256); blank lines and `#` comments are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import GatewayError

_LINE = re.compile(r"(?P<account>[0-9A-Fa-f]{3,16})\s+(?P<key>[0-9A-Fa-f]+)")


class KeysFileError(GatewayError):
    """The keys file cannot be used; says where, never what the key was."""


def load_keys(path: Path) -> dict[str, bytes]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read the DC-09 keys file {path}: "
                            f"{type(exc).__name__}") from None
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if match is None or len(match["key"]) not in (32, 48, 64):
            raise KeysFileError(f"{path} line {number}: expected `ACCOUNT HEXKEY` with an "
                                "account of 3-16 hex digits and a key of 32, 48 or 64")
        account = match["account"].upper()
        if account in keys:
            raise KeysFileError(f"{path} line {number}: account {account} is listed twice")
        keys[account] = bytes.fromhex(match["key"])
    return keys
