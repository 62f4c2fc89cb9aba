"""The DC-09 keys file: read strictly, and a bad line never shows its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.dc09_keys import KeysFileError, load_keys

KEY = "00112233445566778899AABBCCDDEEFF"


def test_accounts_and_keys_are_read_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# receiver 1\n\n1234 {KEY}\nabc12 {KEY * 2}  # a panel\n")

    assert load_keys(path) == {"1234": bytes.fromhex(KEY), "ABC12": bytes.fromhex(KEY * 2)}


@pytest.mark.parametrize("line", [f"12 {KEY}", f"1234 {KEY[:-2]}", "1234", f"12x4 {KEY}",
                                  f"1234 {KEY[:-1]}Z"])
def test_a_bad_line_is_refused_by_its_number_without_the_key(tmp_path: Path,
                                                              line: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"5678 {KEY}\n{line}\n")

    with pytest.raises(KeysFileError) as info:
        load_keys(path)

    assert "line 2" in str(info.value)
    assert KEY[:16] not in str(info.value)


def test_an_account_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"1234 {KEY}\n1234 {KEY}\n")

    with pytest.raises(KeysFileError, match="twice"):
        load_keys(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read"):
        load_keys(tmp_path / "nope")
