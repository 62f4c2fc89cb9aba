"""The lock's downlink `<cmd>`: encoded for dispatch, read strictly by the simulated lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices import scaip
from devices.events import EventKind
from devices.scaip import ScaipCommand, ScaipError, Snu

EXP = datetime(2026, 11, 23, 9, 2, tzinfo=UTC)
UNLOCK = ScaipCommand(ref="9f2c4a1b7e3d5f60", cid="300001", act="unlock", exp=EXP)


def cmd(*fields: tuple[str, str], root: str = "cmd") -> bytes:
    """A frame built by hand, not by the code under test."""
    body = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    return f"<{root}>{body}</{root}>".encode()


def refusal(frame: bytes) -> ScaipError:
    with pytest.raises(ScaipError) as info:
        scaip.decode_command(frame)
    return info.value


def test_an_unlock_is_encoded_as_documented() -> None:
    frame = scaip.encode_command(UNLOCK)

    assert frame == (b"<cmd><ref>9f2c4a1b7e3d5f60</ref><cid>300001</cid><act>unlock</act>"
                     b"<exp>2026-11-23T09:02:00Z</exp></cmd>")


def test_an_encoded_command_reads_back_the_same() -> None:
    assert scaip.decode_command(scaip.encode_command(UNLOCK)) == UNLOCK


def test_the_expiry_is_written_in_utc_whatever_zone_it_was_given_in() -> None:
    local = EXP.astimezone(timezone(timedelta(hours=1)))

    frame = scaip.encode_command(ScaipCommand("R1", "300001", "unlock", exp=local))

    assert b"<exp>2026-11-23T09:02:00Z</exp>" in frame


@pytest.mark.parametrize(("command", "problem"), [
    (ScaipCommand("not-a-ref!", "300001", "unlock", EXP), "ref"),
    (ScaipCommand("R1", "30A001", "unlock", EXP), "cid"),
    (ScaipCommand("R1", "300001", "explode", EXP), "act"),
    (ScaipCommand("R1", "300001", "unlock", EXP.replace(tzinfo=None)), "exp"),
])
def test_a_command_no_device_should_get_is_our_bug_and_raises(
        command: ScaipCommand, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        scaip.encode_command(command)


@pytest.mark.parametrize(("frame", "reason", "snu"), [
    (cmd(("cid", "300001"), ("act", "unlock")), "missing_ref", Snu.REF_MISSING),
    (cmd(("ref", "R1"), ("act", "unlock")), "missing_cid", Snu.MANDATORY_MISSING),
    (cmd(("ref", "R1"), ("cid", "300001")), "missing_act", Snu.MANDATORY_MISSING),
    (cmd(("ref", "R1"), ("cid", "300001"), ("act", "lock-all")), "invalid_field",
     Snu.WRONG_DATA),
    (cmd(("ref", "R1"), ("cid", "300001"), ("act", "unlock"), ("exp", "tomorrow")),
     "invalid_field", Snu.WRONG_DATA),
    (cmd(("ref", "R1"), ("cid", "300001"), ("act", "unlock"), ("exp", "2026-02-30T09:00:00Z")),
     "invalid_field", Snu.WRONG_DATA),
    (cmd(("ref", "R1"), ("cid", "300001"), ("act", "unlock"), root="mrs"), "wrong_root",
     Snu.INVALID_FORMAT),
    (b"<cmd><ref>R1</ref>", "not_xml", Snu.INVALID_FORMAT),
])
def test_a_command_that_is_not_exactly_right_is_refused(
        frame: bytes, reason: str, snu: Snu) -> None:
    err = refusal(frame)

    assert (err.reason, err.status) == (reason, snu)


def test_a_command_with_a_dtd_is_refused() -> None:
    frame = (b'<!DOCTYPE cmd [<!ENTITY x "unlock">]><cmd><ref>R1</ref><cid>300001</cid>'
             b"<act>&x;</act></cmd>")

    assert refusal(frame).reason == "forbidden_xml"


def test_a_lock_opened_remotely_reports_the_commands_ref_as_its_staff_id() -> None:
    frame = scaip.encode_request(scaip.ScaipRequest(
        ref="L1", cid="300001", dty=scaip.DTY_LOCK, stc="0127",
        ite=f"{scaip.REMOTE_OPENING}9f2c4a1b7e3d5f60"))

    event = scaip.decode(frame)

    assert event.kind is EventKind.LOCK_OPENED
    assert (event.device_type, event.staff_id) == ("0042", "remote:9f2c4a1b7e3d5f60")
