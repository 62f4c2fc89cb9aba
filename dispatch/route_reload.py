"""The route tree, read from its file and read again when the file changes.

A valid change routes the alarms that arrive from then on; running alarms keep the team
they were routed to (the decision is frozen on the row). A bad file is refused with the
file, the place and the reason, counted and logged, and the running rules stay, so an
editing mistake cannot leave the centre routing nothing at 03:00.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml
from pydantic import ValidationError

from core.errors import TryggError
from dispatch.config import Shifts
from dispatch.metrics import ROUTE_RELOADS
from dispatch.route_tree import RouteTree, tree_of

log = structlog.get_logger(__name__)


class RouteFileError(TryggError):
    """The route tree file cannot be read or does not validate; says where and why."""


def tree_from_file(path: Path, shifts: Shifts) -> RouteTree:
    """A file's route tree: its `routing` section (a municipality file) or the whole of
    it (a file of its own); a municipality file without one routes by `shifts`."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        # The problem and where, never the quoted line: a municipality file holds the
        # customers' names and addresses, and this message is logged.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RouteFileError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteFileError(f"{path}: cannot be read: {type(exc).__name__}") from None
    except RecursionError:
        raise RouteFileError(f"{path}: nested too deeply to be a route tree") from None
    if not isinstance(raw, dict):
        raise RouteFileError(f"{path}: (top): a route tree is a mapping with `routes`")
    # A municipality file: its `routing` section, or none (the day/night rule).
    in_section = "routing" in raw or bool(MUNICIPALITY_KEYS & raw.keys())
    section = raw.get("routing") if in_section else raw
    try:
        return tree_of(section, shifts) if in_section else RouteTree.model_validate(section)
    except ValidationError as exc:
        places = "; ".join(
            f"{'routing.' if in_section else ''}"
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False))
        raise RouteFileError(f"{path}: {places}") from exc


MUNICIPALITY_KEYS = frozenset({"municipality", "shifts", "areas", "providers", "customers"})


@dataclass
class _Stamp:
    mtime_ns: int
    size: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _Stamp(st.st_mtime_ns, st.st_size)


class RouteWatcher:
    """Looks at the route file when asked (`poll`) and hands back a new valid tree."""

    def __init__(self, path: Path, shifts: Shifts) -> None:
        self.path = path
        self.shifts = shifts
        self._seen = _stamp(path)
        self.last_error: str | None = None

    def poll(self) -> RouteTree | None:
        """The new tree if the file changed and is valid; None otherwise (unchanged, or
        refused: the error is logged, counted and kept in `last_error`)."""
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return None
        self._seen = stamp
        if stamp is None:
            self._refuse(f"{self.path}: the file is gone")
            return None
        try:
            tree = tree_from_file(self.path, self.shifts)
        except RouteFileError as exc:
            self._refuse(str(exc))
            return None
        except Exception as exc:  # whatever a file does, the rules in force stay
            self._refuse(f"{self.path}: cannot be used: {type(exc).__name__}")
            return None
        self.last_error = None
        ROUTE_RELOADS.labels("applied").inc()
        log.info("routes_reloaded", file=str(self.path), routes=len(tree.routes))
        return tree

    def _refuse(self, error: str) -> None:
        self.last_error = error
        ROUTE_RELOADS.labels("refused").inc()
        # The file's path and the place and reason: no personal data is in a route tree.
        log.error("routes_reload_refused_running_rules_stay", error=error)
        return None
