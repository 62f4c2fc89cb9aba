"""Routing rules as configuration: a route tree in the spirit of Alertmanager's (issue 9).

```yaml
time_intervals:
  day: [{times: ["07:00-22:00"]}]
  night: [{times: ["22:00-07:00"]}]          # a range may cross midnight
  holiday_daytime: [{holidays: true, times: ["07:00-22:00"]}]
routes:
  - name: day
    when: [day]
    to: day_provider                         # or night_patrol
  - name: night
    when: [night]
    to: night_patrol
```

A route matches when every matcher it names matches the alarm (`area`, `provider` (the
customer's day provider), `site_kind` main or extra, `alarm_kind`, `priority_at_least`)
and the time is inside one of its `when` intervals (none: always). Its target is
`day_provider`, `night_patrol` or `team:<code>` (a named team, such as a response team
for high priorities). Routes are tried in order and the first that matches decides;
one that says `continue: true` has its team told of the alarm (`team/<code>/notice`),
not made responsible, and the search goes on. When only `continue` routes matched, the
first of them decides. Interval entries hold
`weekdays` (mon..sun), `times` ("HH:MM-HH:MM", Europe/Stockholm, crossing midnight when
the end is not after the start) and `holidays` (true: only on Swedish public and de facto
holidays; false: never on them); an interval holds when any of its entries does.

Pure: the caller passes the facts, the time and a team directory. Dispatch routes every
new alarm through it (the configuration's `routing` section, else the tree built from
`shifts`, which routes exactly as the day/night rule of dispatch/routing.py: tested), and
`trygg routes explain` asks the same tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dispatch.config import Shifts
from dispatch.routing import RouteReason, TeamDirectory, TeamRef
from dispatch.workdays import STOCKHOLM, holiday_name

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# HH:MM-HH:MM; the end may be 24:00 (midnight at the end of the day), nothing past it.
_RANGE = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$")
_TARGET = re.compile(r"^(day_provider|night_patrol|team:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IntervalEntry(_Strict):
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    times: list[str] | None = None
    holidays: bool | None = None

    @field_validator("times")
    @classmethod
    def _ranges(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            if not _RANGE.match(text):
                raise ValueError(f"{text!r} is not a time range HH:MM-HH:MM")
            # What validates must evaluate: a range that cannot is refused here, not at
            # the first alarm it would route.
            _in_range(text, time(0, 0))
        return value

    def holds(self, local: datetime) -> bool:
        if self.weekdays is not None and WEEKDAYS[local.weekday()] not in self.weekdays:
            return False
        if self.holidays is not None and (holiday_name(local.date()) is not None) \
                != self.holidays:
            return False
        return self.times is None or any(_in_range(r, local.time()) for r in self.times)


def _in_range(text: str, at: time) -> bool:
    start_s, end_s = text.split("-")
    start = time.fromisoformat(start_s)
    end = time(0, 0) if end_s == "24:00" else time.fromisoformat(end_s)
    if start < end:
        return start <= at < end
    return at >= start or at < end  # crosses midnight (or a whole day when equal)


class Matchers(_Strict):
    area: list[str] | None = None
    provider: list[str] | None = None
    site_kind: list[Literal["main", "extra"]] | None = None
    alarm_kind: list[str] | None = None
    priority_at_least: int | None = Field(default=None, ge=0, le=9)


class Route(_Strict):
    name: str = Field(min_length=1, max_length=64)
    match: Matchers = Matchers()
    when: list[str] | None = None
    to: str
    continue_: bool = Field(default=False, alias="continue")

    @field_validator("to")
    @classmethod
    def _target(cls, value: str) -> str:
        if not _TARGET.match(value):
            raise ValueError(f"{value!r} is not a target: day_provider, night_patrol or "
                             "team:<code>")
        return value


class RouteTree(_Strict):
    time_intervals: dict[str, list[IntervalEntry]] = {}
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_intervals(self) -> RouteTree:
        for i, route in enumerate(self.routes):
            for name in route.when or []:
                if name not in self.time_intervals:
                    raise ValueError(f"routes[{i}] ({route.name}): unknown time interval "
                                     f"{name!r}; defined are "
                                     f"{', '.join(sorted(self.time_intervals)) or 'none'}")
        if all(r.continue_ for r in self.routes):
            raise ValueError("every route says continue: no route would decide")
        return self


@lru_cache(maxsize=8)
def default_tree(shifts: Shifts) -> RouteTree:
    """Today's rule as a tree: the day provider in the day shift, the night patrol else."""
    day = f"{shifts.day_start:%H:%M}-{shifts.night_start:%H:%M}"
    night = f"{shifts.night_start:%H:%M}-{shifts.day_start:%H:%M}"
    return RouteTree.model_validate({
        "time_intervals": {"day": [{"times": [day]}], "night": [{"times": [night]}]},
        "routes": [{"name": "day", "when": ["day"], "to": "day_provider"},
                   {"name": "night", "when": ["night"], "to": "night_patrol"}]})


@dataclass(frozen=True)
class Facts:
    """What the matchers look at."""

    area: str | None
    provider: str | None
    site_kind: str | None = "main"
    alarm_kind: str = "alarm"
    priority: int = 0


@dataclass(frozen=True)
class Explained:
    team: TeamRef | None
    reason: RouteReason
    route: str | None
    why: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)  # routes that matched with continue
    also_teams: list[TeamRef] = field(default_factory=list)  # and their teams, to tell


def _matches(route: Route, facts: Facts) -> str | None:
    """None if the route's matchers hold; else why not."""
    m = route.match
    for name, allowed, value in (("area", m.area, facts.area),
                                 ("provider", m.provider, facts.provider),
                                 ("site_kind", m.site_kind, facts.site_kind),
                                 ("alarm_kind", m.alarm_kind, facts.alarm_kind)):
        if allowed is not None and value not in allowed:
            return f"{name} {value} is not one of {', '.join(allowed)}"
    if m.priority_at_least is not None and facts.priority < m.priority_at_least:
        return f"priority {facts.priority} is below {m.priority_at_least}"
    return None


def decide(tree: RouteTree, facts: Facts, at: datetime, teams: TeamDirectory) -> Explained:
    """The first route that matches `facts` at `at`, and the team it names."""
    if at.tzinfo is None:
        raise ValueError("routing needs an aware datetime")
    local = at.astimezone(STOCKHOLM)
    if facts.area is None:
        return Explained(None, RouteReason.UNKNOWN_DEVICE, None,
                         ["the unit is not in the registry"])
    why: list[str] = []
    also: list[str] = []
    told: list[tuple[TeamRef | None, RouteReason, str]] = []
    for route in tree.routes:
        refused = _matches(route, facts)
        if refused is None and route.when is not None and not any(
                entry.holds(local) for name in route.when
                for entry in tree.time_intervals[name]):
            refused = f"{local:%a %H:%M} is outside {', '.join(route.when)}"
        if refused is not None:
            why.append(f"route {route.name}: no, {refused}")
            continue
        team, reason = _target(route.to, facts, teams)
        if route.continue_:
            why.append(f"route {route.name}: matched, to {route.to} "
                       f"({team.code if team else 'nobody there'}), and continue")
            also.append(route.name)
            told.append((team, reason, route.name))
            continue
        why.append(f"route {route.name}: matched, to {route.to}")
        return Explained(team, reason, route.name, why, also,
                         _others(told, team))
    if told:  # only routes that continue matched: the first of them decides
        team, reason, name = told[0]
        return Explained(team, reason, name, [*why, f"only continue routes matched: "
                                                    f"{name} decides"], also,
                         _others(told[1:], team))
    return Explained(None, RouteReason.NO_TEAM, None, [*why, "no route matched"], also)


def _others(told: list[tuple[TeamRef | None, RouteReason, str]],
            team: TeamRef | None) -> list[TeamRef]:
    """The continue routes' teams, each once, without the responsible team."""
    out: list[TeamRef] = []
    for other, _, _ in told:
        if other is not None and other != team and other not in out:
            out.append(other)
    return out


def _target(to: str, facts: Facts, teams: TeamDirectory) -> tuple[TeamRef | None, RouteReason]:
    area = facts.area or ""
    if to == "day_provider":
        team = teams.day_team(facts.provider, area) if facts.provider else None
        return team, RouteReason.DAY_PROVIDER if team else RouteReason.NO_TEAM
    if to.startswith("team:"):
        team = teams.named_team(to.removeprefix("team:"))
        return team, RouteReason.NAMED_TEAM if team else RouteReason.NO_TEAM
    team = teams.night_team(area)
    return team, RouteReason.NIGHT_PATROL if team else RouteReason.NO_TEAM


def tree_of(raw: dict[str, object] | None, shifts: Shifts) -> RouteTree:
    """The configuration's `routing` section, or today's rule when it has none."""
    return RouteTree.model_validate(raw) if raw else default_tree(shifts)
