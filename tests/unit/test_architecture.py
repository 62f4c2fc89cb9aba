"""The package rules, checked on the imports themselves: a change that breaks one fails here.

- devices/ is pure: it imports only itself and the base error.
- The inbox contract and the shared plumbing live in core/, which imports neither role
  nor the package that composes them (trygg/), nor the simulator.
- dispatch/ never imports gateway/, and gateway/ never imports dispatch/.
- The gateway decodes through the codec registry, never a protocol module directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.db import Database
from core.errors import TryggError
from devices.errors import FrameError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "devices", "gateway", "dispatch", "simulator", "trygg")


def imports_of(package: str) -> dict[str, set[str]]:
    """Each module of the package -> the top-level-qualified modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[module] = names
    return found


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in PACKAGES}


@pytest.mark.parametrize(("package", "allowed"), [
    ("devices", ("devices", "core.errors")),
    ("core", ("core", "devices.events")),
    ("dispatch", ("dispatch", "core", "devices")),
    ("gateway", ("gateway", "core", "devices")),
])
def test_package_imports_only_what_its_layer_may(package: str,
                                                 allowed: tuple[str, ...]) -> None:
    def permitted(name: str) -> bool:
        return any(name == a or name.startswith(f"{a}.") for a in allowed)

    offending = {module: sorted(n for n in ours(names) if not permitted(n))
                 for module, names in imports_of(package).items()}

    assert {m: n for m, n in offending.items() if n} == {}


def test_the_gateway_decodes_through_the_codec_registry() -> None:
    direct = {module: sorted(n for n in names if n.startswith("devices.scaip"))
              for module, names in imports_of("gateway").items()}

    assert {m: n for m, n in direct.items() if n} == {}


def test_the_base_error_and_the_plumbing_live_in_core() -> None:
    assert TryggError.__module__ == "core.errors"
    assert Database.__module__ == "core.db"
    assert issubclass(FrameError, TryggError)
    assert not (ROOT / "trygg" / "db.py").exists()
    assert not (ROOT / "trygg" / "settings.py").exists()
