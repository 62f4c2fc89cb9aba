"""Scenario files: what the simulated units do, validated into frozen models.

A scenario is YAML. Durations are written `500ms`, `2s`, `1.5m`, `1h`, `1m30s` or as a
bare number of seconds, and every scenario time is divided by `speed`:

    description: One alarm, answered and visited.
    speed: 1                    # 10 = ten times faster than real life
    duration: 35m               # optional; see "When a scenario ends" below
    heartbeat_every: 60s        # optional; every unit heartbeats (mty PI)
    unit:                       # optional; protocol behaviour, NOT scaled by speed
      resend_after: 5s
      give_up_after: 30m
    alarms:                     # optional: random alarms from random units
      mean_interval: 2m         # mean time between two alarms, all units together
      check_in_after: [20s, 90s]    # after the press, uniformly drawn
      check_out_after: [30s, 120s]  # after the check-in
      never_checked_in: 0.1     # share of alarms where staff never check in
    steps:                      # optional: explicit timed steps
      - {at: 2s, unit: 0, action: press}          # unit = index into the cids
      - {at: 40s, unit: 0, action: check_in}
      - {at: 2m, unit: 0, action: check_out}
      - {at: 1m, area: bro, action: mains_lost, spread: 20s, repeat_every: 10m}
    responders:                 # optional: the teams' people answer the call-outs
      accept: 0.8               # share of calls accepted after `answer_after`
      decline: 0.1              # share declined after it; the rest are never answered
      answer_after: [10s, 60s]
      travel: [2m, 8m]          # from "on my way" to the check-in
      visit: [3m, 12m]          # from the check-in to the check-out
      long_visit: 0.1           # share of visits that last `long_visit_length` instead
      long_visit_length: [16m, 25m]
      broken_unit: 0.05         # share of visits checked in and out by phone

A step names either one `unit` (an index into the cids) or an `area` (a registry area
code): every simulated unit of that area does the action. `spread` (area steps only)
starts each unit at its own time drawn uniformly from [at, at + spread], as a real power
cut reaches homes one by one. `repeat_every` does the step again at `at + repeat_every`,
`at + 2 * repeat_every` and so on until the scenario ends; it must be longer than
`spread`. Which area a cid is in is given to `run_simulation`, not written here.

Actions: press (with optional `pendant`), check_in, check_out, heartbeat, mains_lost,
mains_restored, battery_low.

`responders` is played only where the caller gives the simulator responder accounts
(`trygg run --simulate` makes one for each name of the teams' call orders): see
simulator/responders.py. Then the responders, not the `alarms` traffic, check in and
out on the units, and `alarms`' check_in_after, check_out_after and never_checked_in
are not used. Their times are divided by `speed` too.

When a scenario ends: at `duration` if given; otherwise, for a scenario with steps none
of which repeats, once every step's message session is over; otherwise (random traffic
or repeating steps) when the caller stops it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from simulator.errors import ScenarioError
from simulator.unit import Action

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds from `500ms`, `2s`, `1.5m`, `1h`, `1m30s`, or a plain number of seconds."""
    if isinstance(value, bool):  # YAML `yes` is a bool, and bool is an int
        raise ValueError("a duration must be a number of seconds or text like '2s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        parts = _DURATION_PART.findall(value.strip())
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    raise ValueError(f"{value!r} is not a duration; write e.g. 500ms, 2s, 1.5m, 1h or 1m30s")


def _ordered(window: tuple[float, float]) -> tuple[float, float]:
    if window[0] > window[1]:
        raise ValueError("the first bound of a window must not be after the second")
    return window


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Window = Annotated[tuple[Seconds, Seconds], AfterValidator(_ordered)]


class _Model(BaseModel):
    # Typos in a scenario file should fail loudly, not be silently ignored.
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnitSettings(_Model):
    """How every unit resends; a network matter, so not scaled by `speed`."""

    resend_after: PositiveSeconds = 5.0
    give_up_after: PositiveSeconds = 1800.0


class AlarmTraffic(_Model):
    """Random alarms from random units, with a responder visit for most of them."""

    mean_interval: PositiveSeconds
    check_in_after: Window = (20.0, 90.0)
    check_out_after: Window = (30.0, 120.0)
    never_checked_in: float = Field(default=0.0, ge=0.0, le=1.0)


class ResponderBehaviour(_Model):
    """How simulated responders answer a call-out addressed to them, and visit."""

    accept: float = Field(default=0.8, ge=0.0, le=1.0)
    decline: float = Field(default=0.1, ge=0.0, le=1.0)
    answer_after: Window = (10.0, 60.0)
    travel: Window = (120.0, 480.0)
    visit: Window = (180.0, 720.0)
    long_visit: float = Field(default=0.1, ge=0.0, le=1.0)
    # Over the 15 minutes a visit is paid as (004 §6.1): the responder gives a reason.
    long_visit_length: Window = (960.0, 1500.0)
    broken_unit: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _shares_fit(self) -> ResponderBehaviour:
        if self.accept + self.decline > 1.0 + 1e-9:
            raise ValueError("`accept` and `decline` are shares of the call-outs and "
                             "together at most 1 (the rest are never answered)")
        return self

    @property
    def never_answer(self) -> float:
        """The share of call-outs nobody answers: the call chain moves on."""
        return max(0.0, 1.0 - self.accept - self.decline)


class Step(_Model):
    """One explicit action at a time after the start, by one unit or by every unit of an
    area; an area step may be spread over time, and any step may repeat."""

    at: Seconds
    unit: int | None = Field(default=None, ge=0)
    area: str | None = Field(default=None, min_length=1)
    action: Action
    pendant: str | None = None
    spread: Seconds = 0.0
    repeat_every: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _fits_together(self) -> Step:
        if self.unit is not None and self.area is not None:
            raise ValueError("a step names `unit` or `area`, not both")
        if self.unit is None and self.area is None:
            raise ValueError("a step needs `unit` (an index into the cids) or `area`")
        if self.pendant is not None and self.action is not Action.PRESS:
            raise ValueError("`pendant` only goes with action `press`")
        if self.spread and self.area is None:
            raise ValueError("`spread` only goes with `area`")
        if self.repeat_every is not None and self.repeat_every <= self.spread:
            raise ValueError("`repeat_every` must be longer than `spread`")
        return self


class Scenario(_Model):
    """A validated scenario; times are in scenario seconds, before `speed` is applied."""

    name: str
    description: str = ""
    speed: float = Field(default=1.0, gt=0)
    duration: PositiveSeconds | None = None
    heartbeat_every: PositiveSeconds | None = None
    unit: UnitSettings = UnitSettings()
    alarms: AlarmTraffic | None = None
    steps: tuple[Step, ...] = ()
    responders: ResponderBehaviour | None = None

    @field_validator("steps")
    @classmethod
    def _in_time_order(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        # Stable: steps at the same time keep the file's order.
        return tuple(sorted(steps, key=lambda s: s.at))

    @model_validator(mode="after")
    def _does_something(self) -> Scenario:
        if not (self.steps or self.alarms or self.heartbeat_every):
            raise ValueError("a scenario needs `steps`, `alarms` or `heartbeat_every`")
        return self

    @property
    def units_needed(self) -> int:
        """How many cids the steps refer to by index (at least one)."""
        return max((s.unit for s in self.steps if s.unit is not None), default=0) + 1

    @property
    def areas_used(self) -> frozenset[str]:
        """The areas the steps name; each needs at least one unit in it."""
        return frozenset(s.area for s in self.steps if s.area is not None)

    def real_seconds(self, scenario_seconds: float) -> float:
        """Wall-clock seconds for a span of scenario time."""
        return scenario_seconds / self.speed

    def with_speed(self, speed: float) -> Scenario:
        """The same scenario at another speed (e.g. from a command-line option)."""
        return Scenario.model_validate({**self.model_dump(), "speed": speed})


def shipped_scenarios() -> list[str]:
    """Names of the scenarios that come with Trygg, for `load_scenario(name)`."""
    folder = resources.files("simulator") / "scenarios"
    return sorted(
        f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """Load a shipped scenario by name (e.g. "demo") or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists() or "/" in name_or_path:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(name_or_path, [f"cannot read the file: {exc.strerror}"]) from exc
        return parse_scenario(text, source=name_or_path, default_name=path.stem)
    resource = resources.files("simulator") / "scenarios" / f"{name_or_path}.yaml"
    if not resource.is_file():
        shipped = ", ".join(shipped_scenarios())
        raise ScenarioError(name_or_path, [f"no such shipped scenario; shipped: {shipped}"])
    return parse_scenario(
        resource.read_text("utf-8"), source=name_or_path, default_name=name_or_path
    )


def parse_scenario(text: str, *, source: str, default_name: str) -> Scenario:
    """Validate scenario YAML; `source` names it in errors, `default_name` if it has no name."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, Mapping):
        raise ScenarioError(source, ["the file must be a mapping of keys like `steps:`"])
    try:
        return Scenario.model_validate({"name": default_name, **data})
    except ValidationError as exc:
        raise ScenarioError(source, [_describe(e) for e in exc.errors()]) from exc


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    if error["type"] in {"missing", "value_error"} or isinstance(got, Mapping | list):
        return f"{where}: {message}"
    return f"{where}: {message} (got {got!r})"
