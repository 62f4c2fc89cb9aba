"""The route tree file is read again when it changes: a valid change is handed back, a
bad one is refused with the file, the place and the reason, and the rules stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from dispatch.config import Shifts
from dispatch.route_reload import RouteFileError, RouteWatcher, tree_from_file
from dispatch.route_tree import default_tree

NIGHT_ONLY = """
routes:
  - {name: all to the night patrol, to: night_patrol}
"""
BAD = """
time_intervals:
  evening: [{times: ["18:00-7"]}]
routes:
  - {name: evening, when: [evening], to: night_patrol}
"""


def write(path: Path, text: str, tick: int) -> None:
    path.write_text(text, encoding="utf-8")
    # A change within the file system's time resolution must still be seen.
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))


def refused() -> float:
    return REGISTRY.get_sample_value("trygg_route_reloads_total",
                                     {"outcome": "refused"}) or 0.0


def test_an_unchanged_file_gives_nothing(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, NIGHT_ONLY, 1)
    watcher = RouteWatcher(path, Shifts())

    assert watcher.poll() is None


def test_a_valid_change_is_handed_back(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, "routes: [{name: day, to: day_provider}]", 1)
    watcher = RouteWatcher(path, Shifts())
    write(path, NIGHT_ONLY, 2)

    tree = watcher.poll()

    assert tree is not None and [r.name for r in tree.routes] == ["all to the night patrol"]
    assert watcher.poll() is None  # once


def test_a_bad_change_is_refused_saying_where_and_the_next_good_one_applies(
        tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, NIGHT_ONLY, 1)
    watcher = RouteWatcher(path, Shifts())
    before = refused()
    write(path, BAD, 2)

    bad = watcher.poll()
    error = watcher.last_error or ""
    write(path, NIGHT_ONLY, 3)
    good = watcher.poll()

    assert bad is None
    assert refused() == before + 1
    assert str(path) in error
    assert "time_intervals.evening.0.times" in error
    assert "'18:00-7' is not a time range" in error
    assert good is not None and watcher.last_error is None


def test_a_file_that_is_not_yaml_or_is_gone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, NIGHT_ONLY, 1)
    watcher = RouteWatcher(path, Shifts())
    write(path, "routes: [unclosed", 2)

    assert watcher.poll() is None
    assert "not valid YAML at line 1" in (watcher.last_error or "")
    path.unlink()
    assert watcher.poll() is None
    assert "the file is gone" in (watcher.last_error or "")


def test_a_municipality_file_without_routing_routes_by_its_shifts(tmp_path: Path) -> None:
    path = tmp_path / "municipality.yaml"
    path.write_text("municipality: Demo\nareas: []\n", encoding="utf-8")

    assert tree_from_file(path, Shifts()) == default_tree(Shifts())


def test_a_municipality_files_routing_section_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "municipality.yaml"
    path.write_text("municipality: Demo\nrouting:\n  routes: []\n", encoding="utf-8")

    with pytest.raises(RouteFileError, match=r"routing\.routes: List should have at least"):
        tree_from_file(path, Shifts())


def test_a_yaml_error_in_the_municipality_file_never_quotes_its_line(tmp_path: Path) -> None:
    # The municipality file holds names and addresses; the refusal is logged.
    path = tmp_path / "municipality.yaml"
    write(path, "municipality: Demo\nareas: []\n", 1)
    watcher = RouteWatcher(path, Shifts())
    write(path, "municipality: Demo\ncustomers:\n  - address: Tibblevägen 12: uppgång B\n", 2)

    assert watcher.poll() is None
    assert "line 3" in (watcher.last_error or "")
    assert "Tibblevägen" not in (watcher.last_error or "")


def test_a_file_nested_too_deeply_is_refused_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    write(path, NIGHT_ONLY, 1)
    watcher = RouteWatcher(path, Shifts())
    write(path, "routes: " + "[" * 5000 + "]" * 5000 + "\n", 2)

    assert watcher.poll() is None
    assert watcher.last_error is not None
