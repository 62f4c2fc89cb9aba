"""Routing by local Swedish time: day provider 07:00-22:00, the area's night patrol otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from dispatch.config import Shifts
from dispatch.routing import RouteReason, Shift, TeamDirectory, TeamRef, route, shift_at

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SHIFTS = Shifts()  # Europe/Stockholm, day from 07:00, night from 22:00

SOLROSEN_KUNGSANGEN = TeamRef(1, "solrosen-kungsangen")
SOLROSEN_BRO = TeamRef(2, "solrosen-bro")
NIGHT_KUNGSANGEN = TeamRef(10, "nattpatrull-kungsangen")
NIGHT_BRO = TeamRef(11, "nattpatrull-bro")


class FakeTeams(TeamDirectory):
    """Solrosen has a team per area; each area has its own night patrol."""

    def day_team(self, provider_code: str, area_code: str) -> TeamRef | None:
        return {
            ("solrosen", "kungsangen"): SOLROSEN_KUNGSANGEN,
            ("solrosen", "bro"): SOLROSEN_BRO,
        }.get((provider_code, area_code))

    def night_team(self, area_code: str) -> TeamRef | None:
        return {"kungsangen": NIGHT_KUNGSANGEN, "bro": NIGHT_BRO}.get(area_code)


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=STOCKHOLM)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def route_at(at: datetime, *, area: str | None = "kungsangen",
             provider: str | None = "solrosen") -> TeamRef | None:
    return route(at=at, shifts=SHIFTS, area_code=area, day_provider=provider,
                 teams=FakeTeams()).team


# -- the shift boundaries, in winter (UTC+1) and summer (UTC+2) -----------------------


@pytest.mark.parametrize("month", [1, 7], ids=["winter", "summer"])
def test_alarm_at_065959_goes_to_the_night_patrol_of_the_area(month: int) -> None:
    decision = route(at=local(2026, month, 15, 6, 59, 59), shifts=SHIFTS,
                     area_code="kungsangen", day_provider="solrosen", teams=FakeTeams())

    assert decision.team == NIGHT_KUNGSANGEN
    assert decision.reason is RouteReason.NIGHT_PATROL
    assert decision.shift is Shift.NIGHT


@pytest.mark.parametrize("month", [1, 7], ids=["winter", "summer"])
def test_alarm_at_0700_goes_to_the_customers_day_provider(month: int) -> None:
    decision = route(at=local(2026, month, 15, 7, 0), shifts=SHIFTS,
                     area_code="kungsangen", day_provider="solrosen", teams=FakeTeams())

    assert decision.team == SOLROSEN_KUNGSANGEN
    assert decision.reason is RouteReason.DAY_PROVIDER
    assert decision.shift is Shift.DAY


@pytest.mark.parametrize("month", [1, 7], ids=["winter", "summer"])
def test_alarm_at_215959_still_goes_to_the_day_provider(month: int) -> None:
    team = route_at(local(2026, month, 15, 21, 59, 59))

    assert team == SOLROSEN_KUNGSANGEN


@pytest.mark.parametrize("month", [1, 7], ids=["winter", "summer"])
def test_alarm_at_2200_goes_to_the_night_patrol_of_the_area(month: int) -> None:
    team = route_at(local(2026, month, 15, 22, 0))

    assert team == NIGHT_KUNGSANGEN


def test_alarm_after_midnight_goes_to_the_night_patrol() -> None:
    team = route_at(local(2026, 1, 16, 0, 30))

    assert team == NIGHT_KUNGSANGEN


def test_utc_time_is_judged_in_stockholm_time_not_utc() -> None:
    # 06:30 UTC in winter is 07:30 in Stockholm: day, although 06:30 would be night.
    team = route_at(utc(2026, 1, 15, 6, 30))

    assert team == SOLROSEN_KUNGSANGEN


def test_summer_2030_utc_is_2230_in_stockholm_and_goes_to_the_night_patrol() -> None:
    team = route_at(utc(2026, 7, 15, 20, 30))

    assert team == NIGHT_KUNGSANGEN


# -- the two daylight-saving nights ----------------------------------------------------


def test_spring_forward_0459_utc_is_0659_local_and_goes_to_the_night_patrol() -> None:
    team = route_at(utc(2026, 3, 29, 4, 59, 59))

    assert team == NIGHT_KUNGSANGEN


def test_spring_forward_0500_utc_is_0700_local_and_goes_to_the_day_provider() -> None:
    # A naive "+1 hour" would make this 06:00 and call the night patrol.
    team = route_at(utc(2026, 3, 29, 5, 0))

    assert team == SOLROSEN_KUNGSANGEN


def test_spring_forward_0559_utc_is_0759_local_and_goes_to_the_day_provider() -> None:
    team = route_at(utc(2026, 3, 29, 5, 59))

    assert team == SOLROSEN_KUNGSANGEN


def test_spring_forward_evening_2000_utc_is_2200_local_and_goes_to_the_night_patrol() -> None:
    team = route_at(utc(2026, 3, 29, 20, 0))

    assert team == NIGHT_KUNGSANGEN


@pytest.mark.parametrize("at", [utc(2026, 3, 29, 0, 59, 59), utc(2026, 3, 29, 1, 0)],
                         ids=["0159_cet", "0300_cest"])
def test_around_the_skipped_hour_of_spring_forward_it_is_night(at: datetime) -> None:
    assert shift_at(at, SHIFTS) is Shift.NIGHT


def test_nonexistent_local_0230_on_spring_forward_is_night() -> None:
    assert shift_at(local(2026, 3, 29, 2, 30), SHIFTS) is Shift.NIGHT


def test_fall_back_0559_utc_is_0659_local_and_goes_to_the_night_patrol() -> None:
    # A naive "+2 hours" (summer time) would make this 07:59 and call the day provider.
    team = route_at(utc(2026, 10, 25, 5, 59))

    assert team == NIGHT_KUNGSANGEN


def test_fall_back_0600_utc_is_0700_local_and_goes_to_the_day_provider() -> None:
    team = route_at(utc(2026, 10, 25, 6, 0))

    assert team == SOLROSEN_KUNGSANGEN


def test_fall_back_evening_2059_utc_is_2159_local_and_goes_to_the_day_provider() -> None:
    team = route_at(utc(2026, 10, 25, 20, 59))

    assert team == SOLROSEN_KUNGSANGEN


@pytest.mark.parametrize("at", [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)],
                         ids=["first_0230_cest", "second_0230_cet"])
def test_both_passes_of_the_repeated_hour_of_fall_back_are_night(at: datetime) -> None:
    assert shift_at(at, SHIFTS) is Shift.NIGHT


# -- who, by the site ------------------------------------------------------------------


def test_summer_house_in_another_area_goes_to_the_same_day_provider_by_day() -> None:
    team = route_at(local(2026, 7, 15, 12, 0), area="bro")

    assert team == SOLROSEN_BRO


def test_summer_house_in_another_area_goes_to_the_night_patrol_of_its_own_area() -> None:
    team = route_at(local(2026, 7, 15, 23, 0), area="bro")

    assert team == NIGHT_BRO


def test_customer_without_day_provider_has_no_team_by_day() -> None:
    decision = route(at=local(2026, 1, 15, 12, 0), shifts=SHIFTS, area_code="kungsangen",
                     day_provider=None, teams=FakeTeams())

    assert decision.team is None
    assert decision.reason is RouteReason.NO_TEAM
    assert decision.shift is Shift.DAY


def test_customer_without_day_provider_still_gets_the_night_patrol_at_night() -> None:
    decision = route(at=local(2026, 1, 15, 23, 0), shifts=SHIFTS, area_code="kungsangen",
                     day_provider=None, teams=FakeTeams())

    assert decision.team == NIGHT_KUNGSANGEN
    assert decision.reason is RouteReason.NIGHT_PATROL


def test_day_provider_without_a_team_for_the_area_has_no_team() -> None:
    decision = route(at=local(2026, 1, 15, 12, 0), shifts=SHIFTS, area_code="brunna",
                     day_provider="solrosen", teams=FakeTeams())

    assert decision.team is None
    assert decision.reason is RouteReason.NO_TEAM


def test_area_without_a_night_patrol_has_no_team_at_night() -> None:
    decision = route(at=local(2026, 1, 15, 23, 0), shifts=SHIFTS, area_code="brunna",
                     day_provider="solrosen", teams=FakeTeams())

    assert decision.team is None
    assert decision.reason is RouteReason.NO_TEAM
    assert decision.shift is Shift.NIGHT


@pytest.mark.parametrize("hour", [12, 23], ids=["day", "night"])
def test_unknown_device_is_routed_to_nobody_and_says_so(hour: int) -> None:
    decision = route(at=local(2026, 1, 15, hour, 0), shifts=SHIFTS, area_code=None,
                     day_provider=None, teams=FakeTeams())

    assert decision.team is None
    assert decision.reason is RouteReason.UNKNOWN_DEVICE


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        route_at(datetime(2026, 1, 15, 12, 0))


# -- configured shifts -----------------------------------------------------------------


def test_configured_shift_times_are_used() -> None:
    shifts = Shifts(day_start=time(8, 0), night_start=time(21, 0))

    assert shift_at(local(2026, 1, 15, 7, 30), shifts) is Shift.NIGHT
    assert shift_at(local(2026, 1, 15, 21, 30), shifts) is Shift.NIGHT
    assert shift_at(local(2026, 1, 15, 8, 0), shifts) is Shift.DAY


def test_configured_timezone_is_used() -> None:
    # 06:30 UTC in January is 08:30 in Helsinki (UTC+2) but 07:30 in Stockholm.
    helsinki = Shifts(timezone="Europe/Helsinki", day_start=time(8, 0))

    assert shift_at(utc(2026, 1, 15, 6, 30), helsinki) is Shift.DAY
    assert shift_at(utc(2026, 1, 15, 6, 30), Shifts(day_start=time(8, 0))) is Shift.NIGHT


def test_day_window_that_crosses_midnight_is_honoured() -> None:
    # A late "day" (e.g. a provider covering evenings): 20:00-04:00 is day.
    shifts = Shifts(day_start=time(20, 0), night_start=time(4, 0))

    assert shift_at(local(2026, 1, 15, 23, 0), shifts) is Shift.DAY
    assert shift_at(local(2026, 1, 15, 3, 59), shifts) is Shift.DAY
    assert shift_at(local(2026, 1, 15, 4, 0), shifts) is Shift.NIGHT
    assert shift_at(local(2026, 1, 15, 19, 59), shifts) is Shift.NIGHT
