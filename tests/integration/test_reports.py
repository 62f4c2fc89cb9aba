"""The response-time and alarm-visit reports, from alarms the product itself moved.

Every alarm here is pressed on a unit of the shipped registry, accepted, checked in and
out through the real services on a fake clock; the figures are then asked of the API (as
the alarm manager) and checked against arithmetic done by hand in the comments.

The registry's units: 100001 is Solrosen Kungsängen by day (provider solrosen), 100002
Solrosen Bro, 100003 and 100005 Kommunens hemtjänst, 100004 Trygga Händer; by night
Nattpatrull Kungsängen or Bro (provider nattorganisationen).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.clock import FakeClock
from core.db import Database
from devices.events import EventKind
from dispatch import reports, services
from dispatch.models import Alarm
from dispatch.users import add_user
from tests.integration.test_access import make_app
from tests.integration.test_dispatch_services import RULES, deliver, event

DAY = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm, a Thursday
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DAY)


@pytest.fixture
async def manager(db: Database, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The API as the alarm manager sees it."""
    token = db.transaction(lambda s: add_user(s, "larmansvarig", "alarm_manager", clock.now()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(db, clock)),
                                 base_url="http://trygg",
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def press(db: Database, clock: FakeClock, cid: str, at: datetime, *,
          answer: float | None = None, arrive: float | None = None,
          leave: float | None = None, false_alarm: float | None = None,
          phone: float | None = None, reason: str | None = None) -> int:
    """An alarm's life on the unit `cid`, pressed (and so called out) at `at`; the other
    times are seconds after the call-out, in the order they happen: accepted, cancelled
    as a false alarm, checked in (unit), checked out (unit), closed by phone kvittering,
    and a visit reason given at the end. Returns the alarm's id."""
    clock.set(at)
    deliver(db, clock, event(EventKind.ALARM, cid))
    alarm_id: int = db.transaction(lambda s: s.execute(select(func.max(Alarm.id))).scalar_one())

    def at_(seconds: float) -> datetime:
        assert at + s(seconds) >= clock.now(), "the steps go forward in time"
        clock.set(at + s(seconds))
        return clock.now()

    if answer is not None:
        now = at_(answer)
        db.transaction(lambda s: services.accept(s, alarm_id, "Maria Holm", "operator-1", now,
                                                 RULES))
    if false_alarm is not None:
        now = at_(false_alarm)
        db.transaction(lambda s: services.false_alarm(s, alarm_id, "pressed by mistake",
                                                      "operator-1", now, RULES))
    if arrive is not None:
        at_(arrive)
        deliver(db, clock, event(EventKind.CHECK_IN, cid))
    if leave is not None:
        at_(leave)
        deliver(db, clock, event(EventKind.CHECK_OUT, cid))
    if phone is not None:
        now = at_(phone)
        db.transaction(lambda s: services.close_by_phone(s, alarm_id, "no visit needed",
                                                         "operator-1", now))
    if reason is not None:
        now = clock.now()
        db.transaction(lambda s: services.give_visit_reason(s, alarm_id, reason,
                                                            "operator-1", now))
    return alarm_id


def at(hour: int, minute: int = 0, day: int = 15) -> datetime:
    """A UTC time on a January day of 2026 (Stockholm is UTC+1 then)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def two_teams(db: Database, clock: FakeClock) -> dict[str, int]:
    """Seven alarms of Solrosen Kungsängen and three of Kommunens hemtjänst, by day."""
    ids = {
        # Solrosen Kungsängen (unit 100001), one after the other.
        "A1": press(db, clock, "100001", at(8), answer=60, arrive=600, leave=900),
        "A2": press(db, clock, "100001", at(9), answer=120, arrive=900, leave=2100),
        "A3": press(db, clock, "100001", at(10), answer=180, arrive=1500, leave=2100),
        "A4": press(db, clock, "100001", at(11), answer=240, arrive=2400, leave=3300),
        # Never checked in: checked out at the door an hour on (counts against).
        "A5": press(db, clock, "100001", at(12), answer=300, leave=3600),
        "A6": press(db, clock, "100001", at(13), false_alarm=120),
        "A7": press(db, clock, "100001", at(14), answer=60, phone=600),
        # Kommunens hemtjänst (units 100003 and 100005, one team).
        "B1": press(db, clock, "100003", at(14, 30), answer=30, arrive=300, leave=900),
        "B2": press(db, clock, "100005", at(15), answer=90, arrive=600, leave=1400),
        "B3": press(db, clock, "100003", at(15, 30), answer=60, arrive=1800, leave=2800,
                    reason="the customer had fallen; waited for the ambulance"),
    }
    return ids


async def response_times(client: httpx.AsyncClient, first: str = "2026-01-15",
                         last: str = "2026-01-15", **params: str) -> httpx.Response:
    return await client.get("/api/reports/response-times",
                            params={"from": first, "to": last, **params})


def row_of(report: dict[str, Any], team: str) -> dict[str, Any]:
    (row,) = [r for r in report["rows"] if r["team"] == team]
    return row


# -- response times ----------------------------------------------------------------------


async def test_rows_hold_the_figures_of_each_provider_and_team(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)

    response = await response_times(manager)

    assert response.status_code == 200
    report = response.json()
    assert (report["from"], report["to"]) == ("2026-01-15", "2026-01-15")
    assert [(r["provider"], r["team"]) for r in report["rows"]] == [
        ("kommunens-hemtjanst", "kommunens-hemtjanst"), ("solrosen", "solrosen-kungsangen")]
    solrosen = row_of(report, "solrosen-kungsangen")
    # Answers (A6 was never accepted): 60 120 180 240 300 60 -> sorted 60 60 120 180 240
    # 300; six, so the median is (120 + 180) / 2 = 150; p90 is the ceil(5.4) = 6th: 300.
    # Arrivals (A1-A4): 600 900 1500 2400; median (900 + 1500) / 2 = 1200; p90 the
    # ceil(3.6) = 4th: 2400. Visits: 300 1200 600 900 -> median (600 + 900) / 2 = 750.
    # Within 30 minutes: A1 A2 A3 of A1-A5 (A6 false alarm, A7 phone left out) = 3/5.
    assert {k: solrosen[k] for k in (
        "alarms", "answered", "arrived", "needing_visit", "within_30_min", "answer_median_s",
        "answer_p90_s", "arrival_median_s", "arrival_p90_s", "within_30_min_share",
        "visit_median_s")} == {
        "alarms": 7, "answered": 6, "arrived": 4, "needing_visit": 5, "within_30_min": 3,
        "answer_median_s": 150, "answer_p90_s": 300, "arrival_median_s": 1200,
        "arrival_p90_s": 2400, "within_30_min_share": 0.6, "visit_median_s": 750}
    kommunen = row_of(report, "kommunens-hemtjanst")
    # Answers 30 90 60 -> median 60, p90 the ceil(2.7) = 3rd: 90. Arrivals 300 600 1800
    # -> median 600, p90 1800 (exactly 30 minutes: within). Visits 600 800 1000 -> 800.
    assert {k: kommunen[k] for k in (
        "alarms", "answer_median_s", "answer_p90_s", "arrival_median_s", "arrival_p90_s",
        "within_30_min_share", "visit_median_s")} == {
        "alarms": 3, "answer_median_s": 60, "answer_p90_s": 90, "arrival_median_s": 600,
        "arrival_p90_s": 1800, "within_30_min_share": 1.0, "visit_median_s": 800}


async def test_the_period_as_a_whole_and_per_provider(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)

    report = (await response_times(manager)).json()

    overall = report["overall"]
    # Arrivals 600 900 1500 2400 300 600 1800 -> sorted 300 600 600 900 1500 1800 2400:
    # median 900, p90 the ceil(6.3) = 7th: 2400. Within: 3 + 3 of 5 + 3 = 6/8.
    assert (overall["alarms"], overall["arrival_median_s"], overall["arrival_p90_s"],
            overall["within_30_min_share"]) == (10, 900, 2400, 0.75)
    assert [p["provider"] for p in report["providers"]] == ["kommunens-hemtjanst", "solrosen"]
    assert report["providers"][1]["arrival_buckets"] == [
        {"bucket": "0-10", "alarms": 1}, {"bucket": "10-20", "alarms": 1},
        {"bucket": "20-30", "alarms": 1}, {"bucket": "30-45", "alarms": 1},
        {"bucket": "45-60", "alarms": 0}, {"bucket": ">60", "alarms": 0},
        {"bucket": "no check-in", "alarms": 1}]


async def test_a_row_with_slow_arrivals_is_marked_deviating_and_says_why(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)

    report = (await response_times(manager)).json()

    solrosen = row_of(report, "solrosen-kungsangen")
    assert solrosen["deviates"] is True
    # Arrival p90 2400 s = 40 min; 3/5 = 60 %; median 1200 is not over 1.5 x 900 = 1350.
    assert solrosen["deviations"] == ["arrival time p90 40 min is over 30 min",
                                      "60 % arrived within 30 min, below the target of 90 %"]
    assert row_of(report, "kommunens-hemtjanst")["deviates"] is False
    assert row_of(report, "kommunens-hemtjanst")["deviations"] == []
    assert [p["deviates"] for p in report["providers"]] == [False, True]


async def test_an_arrival_median_over_one_and_a_half_times_the_periods_deviates(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    for n, start in enumerate((at(8), at(9), at(10))):
        press(db, clock, "100001", start, answer=30, arrive=300, leave=600 + n)
    press(db, clock, "100004", at(11), answer=30, arrive=1200, leave=1500)

    report = (await response_times(manager)).json()

    # Arrivals 300 300 300 1200: the period's median is 300, and 1.5 x 300 = 450 < 1200,
    # though Trygga Händer's p90 (1200) and share (1/1) are within their limits.
    assert row_of(report, "trygga-hander")["deviations"] == [
        "arrival time median 20 min is more than 1.5× the period's 5 min"]
    assert row_of(report, "solrosen-kungsangen")["deviates"] is False


async def test_an_answer_p90_over_30_minutes_deviates(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "100003", at(8), answer=1801, arrive=1900, leave=2000)

    report = (await response_times(manager)).json()

    assert row_of(report, "kommunens-hemtjanst")["deviations"][0] == \
        "answer time p90 30 min 1 s is over 30 min"


async def test_an_odd_and_an_even_count_of_one_team(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    arrivals = (420, 60, 1200, 180, 900)
    for n, arrival in enumerate(arrivals):
        press(db, clock, "100002", at(8 + n), answer=10 * (n + 1), arrive=arrival,
              leave=arrival + 60)
    odd = row_of((await response_times(manager)).json(), "solrosen-bro")
    press(db, clock, "100002", at(14), answer=60, arrive=2000, leave=2100)

    even = row_of((await response_times(manager)).json(), "solrosen-bro")

    # Five: 60 180 420 900 1200 -> median 420, p90 the ceil(4.5) = 5th: 1200.
    assert (odd["arrival_median_s"], odd["arrival_p90_s"]) == (420, 1200)
    # Six: 60 180 420 900 1200 2000 -> median (420 + 900) / 2 = 660, p90 ceil(5.4) = 6th.
    assert (even["arrival_median_s"], even["arrival_p90_s"]) == (660, 2000)
    # Answers 10 20 30 40 50 then 60: medians 30 and (30 + 40) / 2 = 35.
    assert (odd["answer_median_s"], even["answer_median_s"]) == (30, 35)


async def test_an_alarm_never_checked_in_counts_against_the_share(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "100003", at(8), answer=60, arrive=600, leave=900)
    press(db, clock, "100005", at(9), answer=60)  # still waiting for its check-in
    clock.set(at(9) + s(1801))  # its 30 minutes have run out

    row = row_of((await response_times(manager)).json(), "kommunens-hemtjanst")

    # 1 of 2 needed a visit and was checked in within 30 minutes.
    assert (row["within_30_min_share"], row["awaiting_check_in"], row["arrived"]) == (0.5, 1, 1)
    assert row["arrival_median_s"] == 600


async def test_an_alarm_still_inside_its_30_minutes_is_not_counted_yet(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "100003", at(8), answer=60, arrive=600, leave=900)
    press(db, clock, "100005", at(9), answer=60)
    clock.set(at(9) + s(1800))  # exactly 30 minutes: it may still arrive in time

    row = row_of((await response_times(manager)).json(), "kommunens-hemtjanst")

    # Only the alarm that was decided counts: 1 of 1 in time; the other is still waiting.
    assert (row["within_30_min_share"], row["needing_visit"], row["awaiting_check_in"]) == (
        1.0, 1, 1)


async def test_false_alarms_and_phone_kvittering_are_left_out_of_the_share(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "100003", at(8), answer=60, arrive=600, leave=900)
    press(db, clock, "100003", at(9), false_alarm=60)
    press(db, clock, "100003", at(10), answer=60, phone=300)
    press(db, clock, "100005", at(11), phone=120)

    row = row_of((await response_times(manager)).json(), "kommunens-hemtjanst")

    # Four alarms; only the first needed a visit, and it came in 10 minutes: 1/1.
    assert (row["alarms"], row["needing_visit"], row["within_30_min_share"]) == (4, 1, 1.0)


async def test_a_team_with_nothing_to_measure_has_nulls(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "100004", at(8), false_alarm=30)

    row = row_of((await response_times(manager)).json(), "trygga-hander")

    assert row["alarms"] == 1
    assert [row[k] for k in ("answer_median_s", "answer_p90_s", "arrival_median_s",
                             "arrival_p90_s", "within_30_min_share", "visit_median_s")] == \
        [None] * 6
    assert row["deviates"] is False


async def test_only_alarms_called_out_to_a_team_count(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    press(db, clock, "999999", at(8))  # an unknown unit: no team, no call-out
    clock.set(at(9))
    deliver(db, clock, event(EventKind.ALARM, "100004"), event(EventKind.CHECK_IN, "100004"))

    report = (await response_times(manager)).json()

    assert report["rows"] == []
    assert report["overall"]["alarms"] == 0


async def test_an_alarm_belongs_to_the_period_of_its_call_out_in_stockholm_time(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    # 14 January 23:59:59 and 16 January 00:00:00 in Stockholm fall outside the 15th.
    press(db, clock, "100001", datetime(2026, 1, 14, 22, 59, 59, tzinfo=UTC), answer=1)
    press(db, clock, "100002", datetime(2026, 1, 14, 23, 0, tzinfo=UTC), answer=2)
    press(db, clock, "100003", datetime(2026, 1, 15, 22, 59, 59, tzinfo=UTC), answer=3)
    press(db, clock, "100004", datetime(2026, 1, 15, 23, 0, tzinfo=UTC), answer=4)

    report = (await response_times(manager)).json()

    # Of the answers 1 2 3 4 s, the two inside: median (2 + 3) / 2, p90 the larger.
    overall = report["overall"]
    assert (overall["alarms"], overall["answer_median_s"], overall["answer_p90_s"]) == (
        2, 2.5, 3)
    assert (report["starts_at"], report["ends_at"]) == ("2026-01-15T00:00:00+01:00",
                                                        "2026-01-16T00:00:00+01:00")


@pytest.mark.parametrize(("day", "inside", "outside"), [
    # Spring forward: 29 March runs 23:00 UTC the 28th to 22:00 UTC the 29th (23 hours).
    ("2026-03-29", ["2026-03-28T23:00:00", "2026-03-29T21:59:59"],
     ["2026-03-28T22:59:59", "2026-03-29T22:00:00"]),
    # Fall back: 25 October runs 22:00 UTC the 24th to 23:00 UTC the 25th (25 hours).
    ("2026-10-25", ["2026-10-24T22:00:00", "2026-10-25T22:59:59"],
     ["2026-10-24T21:59:59", "2026-10-25T23:00:00"]),
], ids=["spring forward", "fall back"])
async def test_a_dst_night_is_a_whole_local_day(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient, day: str,
        inside: list[str], outside: list[str]) -> None:
    times = sorted((datetime.fromisoformat(t).replace(tzinfo=UTC), t in inside)
                   for t in inside + outside)
    expected = []
    for (when, counted), cid, answer in zip(times, ("100001", "100002", "100003", "100004"),
                                            (1, 2, 4, 8), strict=True):
        press(db, clock, cid, when, answer=answer)
        if counted:
            expected.append(answer)

    report = (await response_times(manager, day, day)).json()

    # Answers 1 2 4 8 s, the 2nd and 3rd inside: median (2 + 4) / 2 = 3, p90 the 4.
    overall = report["overall"]
    assert expected == [2, 4]
    assert (overall["alarms"], overall["answer_median_s"], overall["answer_p90_s"]) == (
        2, 3, 4)


async def test_weekly_share_is_per_provider_and_iso_week_of_the_local_date(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    # Sunday 29 March 23:30 CEST (21:30 UTC) is week 13; 00:30 on Monday the 30th
    # (22:30 UTC on the 29th) is week 14.
    press(db, clock, "100001", datetime(2026, 3, 29, 21, 30, tzinfo=UTC), arrive=600,
          leave=900)
    press(db, clock, "100002", datetime(2026, 3, 29, 22, 30, tzinfo=UTC), arrive=2400,
          leave=2500)
    press(db, clock, "100001", datetime(2026, 3, 30, 8, 0, tzinfo=UTC), arrive=600,
          leave=700)

    report = (await response_times(manager, "2026-03-23", "2026-04-05")).json()

    assert report["weeks"] == ["2026-W13", "2026-W14"]
    assert [(w["provider"], w["week"], w["alarms"], w["within_30_min_share"])
            for w in report["weekly"]] == [
        ("nattorganisationen", "2026-W13", 1, 1.0),
        ("nattorganisationen", "2026-W14", 1, 0.0),
        ("solrosen", "2026-W14", 1, 1.0)]


async def test_the_csv_holds_the_same_rows_as_the_json(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)
    press(db, clock, "100004", at(18), false_alarm=10)  # a row of nulls

    as_json = (await response_times(manager)).json()
    response = await response_times(manager, format="csv")

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert list(lines[0]) == list(reports.RESPONSE_TIME_COLUMNS)
    assert len(lines) == len(as_json["rows"]) == 3
    for line, row in zip(lines, as_json["rows"], strict=True):
        for column, cell in line.items():
            expected = row[column]
            if column == "deviations":
                assert cell == "; ".join(expected)
            elif column == "deviates":
                assert cell == ("true" if expected else "false")
            elif isinstance(expected, int | float):
                assert float(cell) == expected, column
            else:
                assert (cell or None) == expected, column


@pytest.mark.parametrize(("first", "last", "says"), [
    ("2026-01-16", "2026-01-15", "from (2026-01-16) is after to (2026-01-15)"),
    ("2025-01-01", "2026-01-02", "the period is 367 days; at most 366"),
    ("2026-13-01", "2026-12-31", "from must be a date YYYY-MM-DD"),
    ("2026-01-01", "2026/01/31", "to must be a date YYYY-MM-DD"),
    ("20260101", "2026-01-31", "from must be a date YYYY-MM-DD"),
    ("2026-02-30", "2026-03-01", "from must be a date YYYY-MM-DD"),
])
async def test_a_bad_period_is_refused_with_the_reason(
        manager: httpx.AsyncClient, first: str, last: str, says: str) -> None:
    answers = [await manager.get(path, params={"from": first, "to": last}) for path in (
        "/api/reports/response-times", "/api/reports/charts/response-times.svg",
        "/api/reports/charts/within-30-min.svg")]

    assert [a.status_code for a in answers] == [422] * 3
    assert all(says in a.json()["detail"] for a in answers)


async def test_a_leap_year_of_366_days_is_a_period(manager: httpx.AsyncClient) -> None:
    response = await response_times(manager, "2028-01-01", "2028-12-31")

    assert response.status_code == 200
    assert response.json()["rows"] == []


# -- alarm visits ------------------------------------------------------------------------


async def alarm_visits(client: httpx.AsyncClient, month: str = "2026-01",
                       **params: str) -> httpx.Response:
    return await client.get("/api/reports/alarm-visits", params={"month": month, **params})


async def test_alarm_visits_per_provider_with_the_long_ones_and_their_reasons(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    ids = two_teams(db, clock)

    response = await alarm_visits(manager)

    assert response.status_code == 200
    report = response.json()
    assert report["month"] == "2026-01"
    # Solrosen: A1-A4 checked in and out (A5 never checked in, A6 and A7 no visit):
    # 4 visits x 15 = 60 minutes; A2 took 2100 - 900 = 1200 s, over 900; A4 took
    # exactly 900, not over. Kommunen: B1-B3, 45 minutes; B3 took 2800 - 1800 = 1000 s.
    assert report["rows"] == [
        {"provider": "kommunens-hemtjanst", "visits": 3, "standard_minutes": 45,
         "long_visits": [{"alarm_id": ids["B3"], "team": "kommunens-hemtjanst",
                          "visit_s": 1000, "checked_in_at": "2026-01-15T17:00:00+01:00",
                          "reason": "the customer had fallen; waited for the ambulance"}],
         "long_visits_without_reason": 0},
        {"provider": "solrosen", "visits": 4, "standard_minutes": 60,
         "long_visits": [{"alarm_id": ids["A2"], "team": "solrosen-kungsangen",
                          "visit_s": 1200, "checked_in_at": "2026-01-15T10:15:00+01:00",
                          "reason": None}],
         "long_visits_without_reason": 1}]


async def test_a_visit_belongs_to_the_month_of_its_check_in_in_stockholm_time(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    # Two night alarms called out at 23:45 on 31 January in Stockholm: one checked in at
    # 23:59:59 (January), the other at 00:00:00 on 1 February.
    steps = [((22, 45, 0), EventKind.ALARM, "100001"), ((22, 45, 1), EventKind.ALARM, "100002"),
             ((22, 59, 59), EventKind.CHECK_IN, "100001"),
             ((23, 0, 0), EventKind.CHECK_IN, "100002"),
             ((23, 5, 0), EventKind.CHECK_OUT, "100002"),  # 300 s
             ((23, 25, 0), EventKind.CHECK_OUT, "100001")]  # 1501 s: long
    for (hour, minute, second), kind, cid in steps:
        clock.set(datetime(2026, 1, 31, hour, minute, second, tzinfo=UTC))
        deliver(db, clock, event(kind, cid))

    january = (await alarm_visits(manager, "2026-01")).json()
    february = (await alarm_visits(manager, "2026-02")).json()

    assert [(r["provider"], r["visits"]) for r in january["rows"]] == [
        ("nattorganisationen", 1)]
    assert [lv["visit_s"] for lv in january["rows"][0]["long_visits"]] == [1501]
    assert [(r["provider"], r["visits"], r["long_visits"])
            for r in february["rows"]] == [("nattorganisationen", 1, [])]


async def test_the_alarm_visits_csv_lists_the_long_visits_in_step(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    ids = two_teams(db, clock)
    late = press(db, clock, "100001", at(18), answer=60, arrive=300, leave=1300)  # 1000 s

    response = await alarm_visits(manager, format="csv")

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert lines == [
        {"provider": "kommunens-hemtjanst", "visits": "3", "standard_minutes": "45",
         "long_visits": "1", "long_visits_without_reason": "0",
         "long_visit_alarm_ids": str(ids["B3"]), "long_visit_s": "1000.0",
         "long_visit_alarm_ids_without_reason": ""},
        {"provider": "solrosen", "visits": "5", "standard_minutes": "75",
         "long_visits": "2", "long_visits_without_reason": "2",
         "long_visit_alarm_ids": f"{ids['A2']};{late}",
         "long_visit_s": "1200.0;1000.0",
         "long_visit_alarm_ids_without_reason": f"{ids['A2']};{late}"}]


async def test_reading_the_visit_reasons_is_kept_in_the_audit_log(
        manager: httpx.AsyncClient) -> None:
    await alarm_visits(manager, "2026-01", format="csv")

    entries = (await manager.get("/api/audit",
                                 params={"action": "report.alarm_visits"})).json()["entries"]

    assert [(e["actor"], e["detail"]) for e in entries] == [
        ("larmansvarig", {"month": "2026-01", "format": "csv"})]


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-01", "2026-01-01", "", "januari"])
async def test_a_bad_month_is_refused_with_the_reason(
        manager: httpx.AsyncClient, month: str) -> None:
    response = await alarm_visits(manager, month)

    assert response.status_code == 422
    assert "month must be YYYY-MM" in response.json()["detail"]


# -- the charts --------------------------------------------------------------------------


async def chart(client: httpx.AsyncClient, name: str, first: str = "2026-01-15",
                last: str = "2026-01-15") -> ET.Element:
    response = await client.get(f"/api/reports/charts/{name}",
                                params={"from": first, "to": last})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    return ET.fromstring(response.content)


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def assert_self_contained(root: ET.Element) -> None:
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    tags = {e.tag.removeprefix(SVG) for e in root.iter()}
    assert not tags & {"script", "image", "use", "a", "foreignObject", "style"}
    attributes = {name for e in root.iter() for name in e.attrib}
    assert not {a for a in attributes if a.startswith("on") or a.endswith("href")}


@pytest.mark.parametrize("name", ["response-times.svg", "within-30-min.svg"])
async def test_a_chart_is_self_contained_svg_with_a_title(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient, name: str) -> None:
    two_teams(db, clock)

    root = await chart(manager, name)

    assert_self_contained(root)
    assert "2026-01-15" in (root.findtext(f"{SVG}title") or "")


async def test_the_arrival_chart_labels_the_deviating_provider_in_words(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)

    root = await chart(manager, "response-times.svg")

    rows = {texts(g)[0]: g for g in root.iter(f"{SVG}g")
            if "provider" in g.get("class", "").split()}
    assert set(rows) == {"solrosen", "kommunens-hemtjanst"}
    assert "⚠ DEVIATES" in texts(rows["solrosen"])
    assert "⚠ DEVIATES" not in texts(rows["kommunens-hemtjanst"])
    assert "arrival time p90 40 min is over 30 min" in (
        rows["solrosen"].findtext(f"{SVG}title") or "")
    assert "DEVIATES" in (root.findtext(f"{SVG}desc") or "")


async def test_the_weekly_chart_draws_the_target_and_marks_the_deviating_provider(
        db: Database, clock: FakeClock, manager: httpx.AsyncClient) -> None:
    two_teams(db, clock)

    root = await chart(manager, "within-30-min.svg", "2026-01-05", "2026-01-25")

    assert "target 90 %" in texts(root)
    series = {texts(g)[0]: g for g in root.iter(f"{SVG}g")
              if "series" in g.get("class", "").split()}
    assert set(series) == {"solrosen", "kommunens-hemtjanst"}
    assert "⚠ DEVIATES" in texts(series["solrosen"])
    assert "⚠ DEVIATES" not in texts(series["kommunens-hemtjanst"])
    assert [t for t in texts(root) if re.fullmatch(r"W\d\d", t)] == ["W02", "W03", "W04"]


@pytest.mark.parametrize("name", ["response-times.svg", "within-30-min.svg"])
async def test_an_empty_period_draws_a_chart_that_says_so(
        manager: httpx.AsyncClient, name: str) -> None:
    root = await chart(manager, name)

    assert_self_contained(root)
    assert "no alarms in the period" in texts(root)
