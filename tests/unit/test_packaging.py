"""Every file the product serves or reads at run time is in the package's data: an
installed (not editable) Trygg must have its dashboard, phone page and migrations."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_static_file_is_in_the_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["dispatch"]
    static = ROOT / "dispatch" / "web" / "static"
    files = [p.relative_to(ROOT / "dispatch").as_posix() for p in static.rglob("*")
             if p.is_file()]

    # setuptools' "*" does not cross a "/": each directory needs its own pattern.
    missing = [f for f in files if not any(
        fnmatch.fnmatch(f, pattern) and f.count("/") == pattern.count("/")
        for pattern in patterns)]

    assert files
    assert missing == []
