"""Scenario files: durations, validation messages, shipped scenarios."""

from __future__ import annotations

import pytest

from simulator import Action, ScenarioError, load_scenario, shipped_scenarios
from simulator.scenario import parse_duration, parse_scenario


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="test.yaml", default_name="test")
    return caught.value.problems


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0), ("1m30s", 90.0), (7, 7.0)],
)
def test_durations_are_read_as_seconds(written: object, seconds: float) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["soon", "2 s", "s", "-1s", True, None])
def test_unreadable_durations_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(written)


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_loads(name: str) -> None:
    assert load_scenario(name).name == name


def test_demo_and_never_check_in_are_shipped() -> None:
    assert {"demo", "never-check-in"} <= set(shipped_scenarios())


def test_unknown_shipped_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"shipped: .*demo"):
        load_scenario("nope")


def test_missing_file_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario("/nonexistent/x.yaml")


def test_steps_are_put_in_time_order_keeping_file_order_for_ties() -> None:
    scenario = parse_scenario(
        "steps:\n"
        "  - {at: 5s, unit: 0, action: check_out}\n"
        "  - {at: 1s, unit: 0, action: press}\n"
        "  - {at: 1s, unit: 1, action: press, pendant: '3'}\n",
        source="t",
        default_name="t",
    )

    assert [(s.at, s.unit, s.action) for s in scenario.steps] == [
        (1.0, 0, Action.PRESS),
        (1.0, 1, Action.PRESS),
        (5.0, 0, Action.CHECK_OUT),
    ]
    assert scenario.units_needed == 2


def test_speed_divides_scenario_time() -> None:
    scenario = load_scenario("demo").with_speed(4)

    assert scenario.real_seconds(60) == 15


def test_scenario_that_does_nothing_is_refused() -> None:
    assert problems_of("speed: 2") == [
        "(top level): a scenario needs `steps`, `alarms` or `heartbeat_every`"
    ]


def test_misspelled_key_is_refused() -> None:
    assert problems_of("heartbeat_evry: 60s") == [
        "heartbeat_evry: Extra inputs are not permitted (got '60s')"
    ]


def test_backwards_window_is_refused() -> None:
    [problem] = problems_of("alarms: {mean_interval: 1m, check_in_after: [90s, 20s]}")

    assert problem.startswith("alarms.check_in_after: the first bound")


def test_share_above_one_is_refused() -> None:
    [problem] = problems_of("alarms: {mean_interval: 1m, never_checked_in: 1.5}")

    assert problem.startswith("alarms.never_checked_in: Input should be less than or equal to 1")


def test_pendant_on_a_check_in_is_refused() -> None:
    [problem] = problems_of("steps: [{at: 1s, unit: 0, action: check_in, pendant: '2'}]")

    assert problem == "steps.0: `pendant` only goes with action `press`"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("steps: [1, 2", "not valid YAML"), ("- press", "must be a mapping")],
)
def test_file_that_is_not_a_mapping_is_refused(text: str, expected: str) -> None:
    [problem] = problems_of(text)

    assert expected in problem
