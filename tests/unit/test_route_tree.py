"""The route tree: today's rule as a tree routes exactly as today, ranges cross midnight,
holidays and weekdays hold, matchers and continue work, and a bad tree says where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dispatch.config import Shifts
from dispatch.route_tree import Facts, RouteTree, decide, default_tree
from dispatch.routing import RouteReason, TeamRef, route

SE = ZoneInfo("Europe/Stockholm")


class Teams:
    def day_team(self, provider_code: str, area_code: str) -> TeamRef | None:
        return None if provider_code == "gone" else TeamRef(1, f"{provider_code}-{area_code}")

    def night_team(self, area_code: str) -> TeamRef | None:
        return TeamRef(2, f"natt-{area_code}")

    def named_team(self, code: str) -> TeamRef | None:
        return None if code == "gone" else TeamRef(3, code)


FACTS = Facts(area="bro", provider="solrosen")


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31),
                    timezones=st.just(UTC)),
       st.sampled_from([FACTS, Facts(area="bro", provider="gone"),
                        Facts(area=None, provider=None)]))
def test_todays_rule_as_a_tree_routes_exactly_as_today(at: datetime, facts: Facts) -> None:
    shifts = Shifts()
    today = route(at=at, shifts=shifts, area_code=facts.area, day_provider=facts.provider,
                  teams=Teams())

    tree = decide(default_tree(shifts), facts, at, Teams())

    assert (tree.team, tree.reason) == (today.team, today.reason)


@pytest.mark.parametrize(("local", "team"), [
    (datetime(2026, 11, 30, 6, 59, 59), "natt-bro"),
    (datetime(2026, 11, 30, 7, 0), "solrosen-bro"),
    (datetime(2026, 11, 30, 21, 59, 59), "solrosen-bro"),
    (datetime(2026, 11, 30, 22, 0), "natt-bro"),
    (datetime(2026, 12, 1, 0, 30), "natt-bro"),  # after midnight, the same night
])
def test_a_range_crosses_midnight(local: datetime, team: str) -> None:
    explained = decide(default_tree(Shifts()), FACTS, local.replace(tzinfo=SE), Teams())

    assert explained.team is not None and explained.team.code == team


HOLIDAY_NIGHTS = RouteTree.model_validate({
    "time_intervals": {
        "holiday": [{"holidays": True}],
        "weekend_day": [{"weekdays": ["sat", "sun"], "times": ["07:00-22:00"]}],
        "day": [{"times": ["07:00-22:00"]}],
    },
    "routes": [
        {"name": "holidays to the night organisation", "when": ["holiday"],
         "to": "night_patrol"},
        {"name": "urgent noted", "match": {"priority_at_least": 8}, "to": "night_patrol",
         "continue": True},
        {"name": "extra sites by day", "match": {"site_kind": ["extra"]}, "when": ["day"],
         "to": "day_provider"},
        {"name": "weekend days", "when": ["weekend_day"], "to": "day_provider"},
        {"name": "bro by day", "match": {"area": ["bro"]}, "when": ["day"],
         "to": "day_provider"},
        {"name": "the rest", "to": "night_patrol"},
    ]})


def test_holidays_weekdays_matchers_and_continue() -> None:
    julafton = decide(HOLIDAY_NIGHTS, FACTS, datetime(2026, 12, 24, 12, tzinfo=SE), Teams())
    saturday = decide(HOLIDAY_NIGHTS, Facts(area="kungsangen", provider="solrosen"),
                      datetime(2026, 11, 28, 12, tzinfo=SE), Teams())
    urgent = decide(HOLIDAY_NIGHTS, Facts(area="bro", provider="solrosen", priority=9),
                    datetime(2026, 11, 30, 12, tzinfo=SE), Teams())
    elsewhere = decide(HOLIDAY_NIGHTS, Facts(area="kungsangen", provider="solrosen"),
                       datetime(2026, 11, 30, 12, tzinfo=SE), Teams())

    assert (julafton.route, julafton.reason) == (
        "holidays to the night organisation", RouteReason.NIGHT_PATROL)
    assert (saturday.route, saturday.team) == ("weekend days", TeamRef(1, "solrosen-kungsangen"))
    assert (urgent.route, urgent.also) == ("bro by day", ["urgent noted"])
    # The continue route's team is told; the deciding route's team is responsible.
    assert (urgent.team, urgent.also_teams) == (TeamRef(1, "solrosen-bro"),
                                                [TeamRef(2, "natt-bro")])
    assert elsewhere.route == "the rest"
    assert "route bro by day: no, area kungsangen is not one of bro" in elsewhere.why


@pytest.mark.parametrize(("tree", "says"), [
    ({"routes": [{"name": "a", "when": ["evening"], "to": "day_provider"}]},
     "routes[0] (a): unknown time interval 'evening'"),
    ({"time_intervals": {"x": [{"times": ["7-22"]}]},
      "routes": [{"name": "a", "to": "day_provider"}]}, "'7-22' is not a time range"),
    ({"time_intervals": {"x": [{"times": ["22:00-24:30"]}]},
      "routes": [{"name": "a", "to": "day_provider"}]}, "'22:00-24:30' is not a time range"),
    ({"routes": [{"name": "a", "to": "team:"}]}, "is not a target"),
    ({"routes": [{"name": "a", "to": "team:a/b"}]}, "is not a target"),
    ({"routes": [{"name": "a", "to": "patrol"}]}, "is not a target"),
    ({"routes": [{"name": "a", "to": "night_patrol", "continue": True}]},
     "no route would decide"),
    ({"routes": [{"name": "a", "to": "night_patrol", "colour": "red"}]}, "colour"),
])
def test_a_bad_tree_is_refused_saying_why(tree: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RouteTree.model_validate(tree)

    assert says in str(refused.value)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(default_tree(Shifts()), FACTS, datetime(2026, 11, 30, 12), Teams())


def test_the_clock_changes_do_not_move_the_shift_boundaries() -> None:
    spring = datetime(2026, 3, 29, 7, 0, tzinfo=SE)  # the morning after clocks go forward

    assert decide(default_tree(Shifts()), FACTS, spring, Teams()).reason == \
        RouteReason.DAY_PROVIDER
    assert decide(default_tree(Shifts()), FACTS, spring - timedelta(seconds=1),
                  Teams()).reason == RouteReason.NIGHT_PATROL


NAMED = RouteTree.model_validate({
    "routes": [
        {"name": "urgent to the response team", "match": {"priority_at_least": 8},
         "to": "team:insatsteam"},
        {"name": "copy the night organisation", "to": "night_patrol", "continue": True},
        {"name": "gone team", "match": {"area": ["gone"]}, "to": "team:gone"},
    ]})


def test_a_named_team_target_and_a_team_that_is_not_there() -> None:
    urgent = decide(NAMED, Facts(area="bro", provider="solrosen", priority=9),
                    datetime(2026, 11, 30, 12, tzinfo=SE), Teams())
    gone = decide(NAMED, Facts(area="gone", provider="solrosen"),
                  datetime(2026, 11, 30, 12, tzinfo=SE), Teams())

    assert (urgent.team, urgent.reason) == (TeamRef(3, "insatsteam"), RouteReason.NAMED_TEAM)
    assert (gone.team, gone.reason, gone.route) == (None, RouteReason.NO_TEAM, "gone team")
    # The night patrol matched with continue before: it is told, not responsible.
    assert gone.also_teams == [TeamRef(2, "natt-gone")]


def test_when_only_continue_routes_match_the_first_of_them_decides() -> None:
    calm = decide(NAMED, Facts(area="bro", provider="solrosen", priority=1),
                  datetime(2026, 11, 30, 12, tzinfo=SE), Teams())

    assert (calm.team, calm.route, calm.also_teams) == (
        TeamRef(2, "natt-bro"), "copy the night organisation", [])
