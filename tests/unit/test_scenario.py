"""Scenario files: durations, validation messages, shipped scenarios."""

from __future__ import annotations

import pytest

from simulator import Action, Scenario, ScenarioError, load_scenario, shipped_scenarios
from simulator.scenario import parse_duration, parse_scenario


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="test.yaml", default_name="test")
    return caught.value.problems


def parse(text: str) -> Scenario:
    return parse_scenario(text, source="t", default_name="t")


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


def test_area_step_is_read_with_its_spread_and_repeat() -> None:
    scenario = parse(
        "steps: [{at: 1m, area: bro, action: mains_lost, spread: 20s, repeat_every: 10m}]"
    )

    [step] = scenario.steps
    assert (step.at, step.unit, step.area, step.action) == (60.0, None, "bro", Action.MAINS_LOST)
    assert (step.spread, step.repeat_every) == (20.0, 600.0)
    assert scenario.areas_used == {"bro"}


def test_area_steps_need_no_unit_index() -> None:
    scenario = parse(
        "steps:\n"
        "  - {at: 1s, area: bro, action: mains_lost}\n"
        "  - {at: 2s, area: kungsangen, action: mains_lost}\n"
    )

    assert scenario.units_needed == 1
    assert scenario.areas_used == {"bro", "kungsangen"}


def test_unit_step_happens_once_and_at_once_by_default() -> None:
    [step] = parse("steps: [{at: 1s, unit: 0, action: press}]").steps

    assert (step.area, step.spread, step.repeat_every) == (None, 0.0, None)


def test_step_with_both_unit_and_area_is_refused() -> None:
    [problem] = problems_of("steps: [{at: 1s, unit: 0, area: bro, action: mains_lost}]")

    assert problem == "steps.0: a step names `unit` or `area`, not both"


def test_step_with_neither_unit_nor_area_is_refused() -> None:
    [problem] = problems_of("steps: [{at: 1s, action: mains_lost}]")

    assert problem == "steps.0: a step needs `unit` (an index into the cids) or `area`"


def test_spread_on_a_unit_step_is_refused() -> None:
    [problem] = problems_of("steps: [{at: 1s, unit: 0, action: mains_lost, spread: 5s}]")

    assert problem == "steps.0: `spread` only goes with `area`"


@pytest.mark.parametrize("repeat_every", ["20s", "10s"])
def test_repeat_not_longer_than_the_spread_is_refused(repeat_every: str) -> None:
    [problem] = problems_of(
        "steps: [{at: 1s, area: bro, action: mains_lost, spread: 20s, "
        f"repeat_every: {repeat_every}}}]"
    )

    assert problem == "steps.0: `repeat_every` must be longer than `spread`"


@pytest.mark.parametrize(
    ("field", "written", "expected"),
    [
        ("spread", "-5s", "steps.0.spread: '-5s' is not a duration"),
        ("spread", "soon", "steps.0.spread: 'soon' is not a duration"),
        ("repeat_every", "0s", "steps.0.repeat_every: Input should be greater than 0"),
        ("area", "''", "steps.0.area: String should have at least 1 character"),
    ],
)
def test_bad_area_step_fields_are_refused(field: str, written: str, expected: str) -> None:
    [problem] = problems_of(
        f"steps: [{{at: 1s, area: bro, action: mains_lost, {field}: {written}}}]"
    )

    assert problem.startswith(expected)


def test_area_steps_survive_a_change_of_speed() -> None:
    scenario = parse(
        "steps: [{at: 1m, area: bro, action: mains_lost, spread: 20s, repeat_every: 10m}]"
    )

    assert scenario.with_speed(10).steps == scenario.steps


def test_demo_cuts_mains_in_bro_after_a_minute_and_restores_them_every_ten_minutes() -> None:
    lost, restored = load_scenario("demo").steps

    assert (lost.at, lost.area, lost.action, lost.spread) == (60.0, "bro", Action.MAINS_LOST, 20.0)
    assert (restored.at, restored.area, restored.action, restored.spread) == (
        240.0,
        "bro",
        Action.MAINS_RESTORED,
        30.0,
    )
    assert lost.repeat_every == restored.repeat_every == 600.0


def test_demo_keeps_its_living_traffic() -> None:
    demo = load_scenario("demo")

    assert demo.heartbeat_every == 60.0
    assert demo.alarms is not None
    assert demo.duration is None
