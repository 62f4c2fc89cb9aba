"""The one event vocabulary every device protocol is decoded into.

A codec turns a frame into a `DeviceEvent`; nothing downstream of the codec knows which
protocol or which status code a device used. The mapping tables live in the codecs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from enum import StrEnum


class EventKind(StrEnum):
    """What happened at the device, in the domain's words."""

    ALARM = "alarm"
    CHECK_IN = "check_in"  # presence upon alarm: staff pressed yellow then green
    CHECK_OUT = "check_out"  # intervention completed: the unit says "check out"
    PLANNED_PRESENCE = "planned_presence"
    HEARTBEAT = "heartbeat"
    TEST = "test"
    MAINS_LOST = "mains_lost"
    MAINS_RESTORED = "mains_restored"
    BATTERY_LOW = "battery_low"
    BATTERY_FAULT = "battery_fault"
    BATTERY_OK = "battery_ok"
    LINK_FAULT = "link_fault"
    LINK_RESTORED = "link_restored"
    TAMPER = "tamper"
    LOCK_OPENED = "lock_opened"
    LOCK_CLOSED = "lock_closed"
    CANCELLED = "cancelled"  # the sender cancelled or aborted its alarm
    RESET = "reset"  # SCAIP mty RE: abort the message session with the same ref
    INFO = "info"  # SCAIP mty IN: an information update on an earlier request
    OTHER = "other"  # a well-formed message whose status code we do not map


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One decoded device message. Field values are normalized by the codec."""

    kind: EventKind
    protocol: str  # codec name, e.g. "scaip"
    cid: str  # controller (base unit or lock) id; with `ref` the idempotency key
    ref: str  # the device's own message reference
    device_type: str | None = None  # SCAIP dty, four digits
    device_id: str | None = None  # which pendant or sensor (did)
    component: str | None = None  # which button or part (dco)
    status_code: str | None = None  # the protocol's own code, for the audit trail
    priority: int = 0  # 0-9, 9 highest
    location_code: str | None = None  # e.g. "031" summer house
    staff_id: str | None = None  # a lock's "who opened": a staff id, never a name
    wants_heartbeat_interval: bool = False  # SCAIP hbo 001
    # The device's own timestamp as sent (DC-09 `_HH:MM:SS,MM-DD-YYYY`), if any: part of
    # the content, so a panel that restarted its counter is not taken for a resend.
    sent_at: str | None = None
    # What the answer must echo, opaque to all but the codec (DC-09: receiver, line
    # prefix and whether the frame was encrypted). Never stored.
    reply_context: str | None = None

    @property
    def fingerprint(self) -> str:
        """A short digest of the content: a byte-for-byte resend has the same one.

        A reset or an information update reuses the `ref` of the request it refers to
        but says something else, so the idempotency key is cid + ref + fingerprint.
        """
        text = "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def idempotency_key(self) -> str:
        return f"{self.protocol}:{self.cid}:{self.ref}:{self.fingerprint}"
