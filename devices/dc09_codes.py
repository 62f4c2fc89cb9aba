"""The DC-09 code tables: SIA-DCS and Contact ID event codes onto the one event vocabulary.

Pure data plus three small look-ups. docs/PROTOCOLS.md ("SIA DC-09") explains each
choice; the standards (SIA DC-03 for SIA-DCS codes, SIA DC-05 for Contact ID, SIA DC-09
for the framing) are paid documents and not in this repository, so every table names
the public implementation its codes were checked against. A code in no table is kept
as `EventKind.OTHER` with its code in `status_code`: never dropped, always ACKed.
"""

from __future__ import annotations

from devices.events import EventKind

# --- SIA-DCS (SIA DC-03 event codes, two letters) ---------------------------------
# Source: the SIA DC-03 code list as published in pysiaalarm
# (eavanvalkenburg/pysiaalarm, src/pysiaalarm/data/sia_codes.json, which Home
# Assistant's `sia` integration uses); meanings quoted from there.
SIA_CODES: dict[str, EventKind] = {
    # A person calls for help.
    "MA": EventKind.ALARM,  # Medical Alarm: emergency assistance request
    "QA": EventKind.ALARM,  # Emergency Alarm: emergency assistance request
    "PA": EventKind.ALARM,  # Panic Alarm: emergency assistance request, manually activated
    "HA": EventKind.ALARM,  # Holdup Alarm: silent alarm, user under duress
    "FA": EventKind.ALARM,  # Fire Alarm: a smoke detector in a care recipient's home
    # Staff presence. DC-03 has no "service on premises" code (Contact ID's 466); JP is
    # the closest: a designated user's code was used to gain access to the premises.
    # There is no SIA-DCS check-out code; OP/CL (disarm/arm) are deliberately not used.
    "JP": EventKind.CHECK_IN,  # User On Premises
    # The sender cancelled its alarm (Contact ID 406 is OC in pysiaalarm's adm_mapping).
    "OC": EventKind.CANCELLED,  # Cancel Report: untyped zone cancel
    "FC": EventKind.CANCELLED,  # Fire Cancel: cancelled by an authorized person
    # Mains.
    "AT": EventKind.MAINS_LOST,  # AC Trouble: AC power has failed
    "AR": EventKind.MAINS_RESTORED,  # AC Restoral
    # Batteries: of the unit itself (Y*) and of a wireless transmitter, a pendant (X*).
    "YT": EventKind.BATTERY_LOW,  # System Battery Trouble: low battery in control
    "YM": EventKind.BATTERY_FAULT,  # System Battery Missing
    "YR": EventKind.BATTERY_OK,  # System Battery Restoral: low battery corrected
    "XT": EventKind.BATTERY_LOW,  # Transmitter Battery Trouble
    "XR": EventKind.BATTERY_OK,  # Transmitter Battery Restoral
    # The communication link.
    "YC": EventKind.LINK_FAULT,  # Communications Fail
    "YS": EventKind.LINK_FAULT,  # Communications Trouble
    "LT": EventKind.LINK_FAULT,  # Phone Line Trouble
    "NT": EventKind.LINK_FAULT,  # Network Failure
    "YK": EventKind.LINK_RESTORED,  # Communications Restoral
    "LR": EventKind.LINK_RESTORED,  # Phone Line Restoral
    "NR": EventKind.LINK_RESTORED,  # Network Restoral
    # Tamper.
    "TA": EventKind.TAMPER,  # Tamper Alarm: equipment enclosure opened
    "TT": EventKind.TAMPER,  # Tamper Trouble: enclosure opened in disarmed state
    "ES": EventKind.TAMPER,  # Expansion Device Tamper
    "XS": EventKind.TAMPER,  # RF Receiver Tamper
    # Tests. A DC-09 `NULL` frame (supervision) is the heartbeat, not a code.
    "RP": EventKind.TEST,  # Automatic Test
    "RX": EventKind.TEST,  # Manual Test
    "TX": EventKind.TEST,  # Test Report: unspecified (manual or automatic) test
}
# Not mapped on purpose, so they stay OTHER: the restores of the alarms above (MH, QH,
# PH, HH, FH, MR, QR, PR, FR): "alarm condition eliminated" says a pendant or zone went
# back to normal, not that anyone cancelled or handled the call.

# --- Contact ID (SIA DC-05 / Ademco Contact ID event codes) -----------------------
# Source: the Ademco Contact ID event-code table as given in public panel manuals and
# receiver software (Honeywell VISTA and NFW-100X manuals, the "Contact ID codes with
# explanation" list), cross-checked with pysiaalarm's Contact ID -> SIA mapping
# (src/pysiaalarm/data/adm_mapping.json). Qualifier 1 is a new event, 3 a restore.
# code -> (kind for qualifier 1, kind for qualifier 3); None: OTHER.
CID_CODES: dict[str, tuple[EventKind | None, EventKind | None]] = {
    "100": (EventKind.ALARM, None),  # Medical
    "101": (EventKind.ALARM, None),  # Personal emergency (pendant)
    "110": (EventKind.ALARM, None),  # Fire
    "111": (EventKind.ALARM, None),  # Smoke
    "120": (EventKind.ALARM, None),  # Panic
    "121": (EventKind.ALARM, None),  # Duress
    "122": (EventKind.ALARM, None),  # Silent panic
    "123": (EventKind.ALARM, None),  # Audible panic
    "137": (EventKind.TAMPER, None),  # Tamper
    "144": (EventKind.TAMPER, None),  # Sensor tamper
    "145": (EventKind.TAMPER, None),  # Expansion module tamper
    "383": (EventKind.TAMPER, None),  # Sensor tamper (RF)
    "301": (EventKind.MAINS_LOST, EventKind.MAINS_RESTORED),  # AC loss
    "302": (EventKind.BATTERY_LOW, EventKind.BATTERY_OK),  # Low system battery
    "309": (EventKind.BATTERY_FAULT, EventKind.BATTERY_OK),  # Battery test failure
    "311": (EventKind.BATTERY_FAULT, EventKind.BATTERY_OK),  # Battery missing/dead
    "384": (EventKind.BATTERY_LOW, EventKind.BATTERY_OK),  # RF transmitter low battery
    "350": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Communication trouble
    "351": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Telco 1 fault
    "352": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Telco 2 fault
    "353": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Long range radio trouble
    "355": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Loss of radio supervision
    "356": (EventKind.LINK_FAULT, EventKind.LINK_RESTORED),  # Loss of central polling
    "406": (EventKind.CANCELLED, None),  # Cancel: the user cancelled the alarm
    "466": (EventKind.CHECK_IN, EventKind.CHECK_OUT),  # Service on/off premises
    "601": (EventKind.TEST, EventKind.TEST),  # Manual trigger test
    "602": (EventKind.TEST, EventKind.TEST),  # Periodic test
    "603": (EventKind.TEST, EventKind.TEST),  # Periodic RF transmission
    "608": (EventKind.TEST, EventKind.TEST),  # Periodic test, system trouble present
}
# Qualifier 6 ("status: previously reported condition still present") and any other
# qualifier gives OTHER, except for the test codes, which are tests whatever it says.
_TEST_CODES = frozenset(code for code, (new, _) in CID_CODES.items() if new is EventKind.TEST)

# --- several codes in one SIA-DCS block ----------------------------------------------
# One frame is one event: when a block carries several codes, the first code of the
# most urgent kind decides (its code, zone and group go on the event); the others stay
# in the stored raw frame. A help call first, then what changes a call's life, then
# faults before their restores, tests last and unknown codes after everything.
URGENCY: tuple[EventKind, ...] = (
    EventKind.ALARM,
    EventKind.CHECK_IN,
    EventKind.CHECK_OUT,
    EventKind.CANCELLED,
    EventKind.TAMPER,
    EventKind.LINK_FAULT,
    EventKind.MAINS_LOST,
    EventKind.BATTERY_FAULT,
    EventKind.BATTERY_LOW,
    EventKind.LINK_RESTORED,
    EventKind.MAINS_RESTORED,
    EventKind.BATTERY_OK,
    EventKind.TEST,
    EventKind.OTHER,
)
_RANK = {kind: rank for rank, kind in enumerate(URGENCY)}


def sia_kind(code: str) -> EventKind:
    """The event kind of a two-letter SIA-DCS code; OTHER for codes we do not map."""
    return SIA_CODES.get(code.upper(), EventKind.OTHER)


def cid_kind(qualifier: str, code: str) -> EventKind:
    """The event kind of a Contact ID qualifier (1 new, 3 restore) and 3-digit code."""
    code = code.upper()
    if code in _TEST_CODES:
        return EventKind.TEST
    new, restore = CID_CODES.get(code, (None, None))
    kind = new if qualifier == "1" else restore if qualifier == "3" else None
    return kind if kind is not None else EventKind.OTHER


def urgency(kind: EventKind) -> int:
    """Lower is more urgent; kinds not in URGENCY rank with OTHER."""
    return _RANK.get(kind, _RANK[EventKind.OTHER])
