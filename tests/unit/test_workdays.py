"""Prove the working-day calendar and the order deadlines, with hand-written expectations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.workdays import (
    add_working_days,
    confirmation_due,
    holiday_name,
    installation_due,
    is_working_day,
    keys_due,
    latest_provider_change,
    next_working_day,
    provider_change_starts,
    working_days_between,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CET = timedelta(hours=1)
CEST = timedelta(hours=2)


def sthlm(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock time in Stockholm, as an aware datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=STOCKHOLM)


# --- the calendar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "name"),
    [
        pytest.param(date(2026, 1, 1), "New Year's Day", id="nyarsdagen-2026"),
        pytest.param(date(2026, 1, 6), "Epiphany", id="trettondagen-2026"),
        pytest.param(date(2026, 4, 3), "Good Friday", id="langfredagen-2026"),
        pytest.param(date(2026, 4, 6), "Easter Monday", id="annandag-pask-2026"),
        pytest.param(date(2026, 5, 1), "May Day", id="forsta-maj-2026"),
        pytest.param(date(2026, 5, 14), "Ascension Day", id="kristi-himmelsfard-2026"),
        pytest.param(date(2026, 6, 19), "Midsummer Eve", id="midsommarafton-2026"),
        pytest.param(date(2026, 12, 24), "Christmas Eve", id="julafton-2026"),
        pytest.param(date(2026, 12, 25), "Christmas Day", id="juldagen-2026"),
        pytest.param(date(2026, 12, 31), "New Year's Eve", id="nyarsafton-2026"),
        pytest.param(date(2027, 1, 1), "New Year's Day", id="nyarsdagen-2027"),
        pytest.param(date(2027, 1, 6), "Epiphany", id="trettondagen-2027"),
        pytest.param(date(2027, 12, 24), "Christmas Eve", id="julafton-2027"),
        pytest.param(date(2027, 12, 31), "New Year's Eve", id="nyarsafton-2027"),
        pytest.param(date(2028, 1, 6), "Epiphany", id="trettondagen-2028"),
    ],
)
def test_weekday_holidays_and_eves_are_not_working_days(day: date, name: str) -> None:
    assert day.weekday() < 5
    assert holiday_name(day) == name
    assert not is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(date(2026, 12, 23), id="lillejulafton-2026"),
        pytest.param(date(2026, 12, 28), id="monday-after-christmas-2026"),
        pytest.param(date(2026, 12, 30), id="day-before-nyarsafton-2026"),
        pytest.param(date(2027, 1, 4), id="first-monday-of-2027"),
        pytest.param(date(2027, 1, 7), id="day-after-trettondagen-2027"),
        pytest.param(date(2027, 12, 27), id="monday-after-christmas-2027"),
        pytest.param(date(2026, 4, 7), id="tuesday-after-easter-2026"),
        pytest.param(date(2026, 5, 15), id="kladdag-after-ascension-2026"),
        pytest.param(date(2026, 6, 18), id="thursday-before-midsommar-2026"),
        pytest.param(date(2026, 4, 30), id="valborg-2026"),
        pytest.param(date(2026, 10, 30), id="friday-before-all-saints-2026"),
    ],
)
def test_ordinary_weekdays_around_holidays_are_working_days(day: date) -> None:
    assert holiday_name(day) is None
    assert is_working_day(day)


def test_weekends_are_not_working_days_and_plain_sundays_are_not_named() -> None:
    assert not is_working_day(date(2026, 11, 28))
    assert not is_working_day(date(2026, 11, 29))
    assert holiday_name(date(2026, 11, 29)) is None


def test_national_day_on_a_saturday_2026_costs_no_working_day() -> None:
    assert holiday_name(date(2026, 6, 6)) == "National Day"
    assert is_working_day(date(2026, 6, 5))
    assert is_working_day(date(2026, 6, 8))
    assert next_working_day(date(2026, 6, 5)) == date(2026, 6, 8)
    assert working_days_between(date(2026, 6, 1), date(2026, 6, 12)) == 9


def test_all_saints_day_on_a_saturday_2026_costs_no_working_day() -> None:
    assert holiday_name(date(2026, 10, 31)) == "All Saints' Day"
    assert next_working_day(date(2026, 10, 30)) == date(2026, 11, 2)
    assert working_days_between(date(2026, 10, 25), date(2026, 11, 1)) == 5


def test_christmas_week_2026_has_three_working_days_and_new_year_week_three() -> None:
    # Mon 21, Tue 22, Wed 23 Dec; julafton Thu 24 and juldagen Fri 25 are off.
    assert working_days_between(date(2026, 12, 20), date(2026, 12, 27)) == 3
    # Mon 28, Tue 29, Wed 30 Dec; nyårsafton Thu 31 and nyårsdagen Fri 1 Jan are off.
    assert working_days_between(date(2026, 12, 27), date(2027, 1, 3)) == 3


def test_next_working_day_crosses_christmas_and_new_year() -> None:
    assert next_working_day(date(2026, 12, 23)) == date(2026, 12, 28)
    assert next_working_day(date(2026, 12, 30)) == date(2027, 1, 4)
    assert next_working_day(date(2027, 1, 5)) == date(2027, 1, 7)
    assert next_working_day(date(2027, 12, 23)) == date(2027, 12, 27)
    assert next_working_day(date(2027, 12, 30)) == date(2028, 1, 3)


def test_add_working_days_does_not_count_the_start_day() -> None:
    assert add_working_days(date(2026, 11, 25), 0) == date(2026, 11, 25)
    assert add_working_days(date(2026, 11, 25), 1) == date(2026, 11, 26)
    assert add_working_days(date(2026, 11, 28), 1) == date(2026, 11, 30)


def test_add_working_days_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_days(date(2026, 11, 25), -1)


# --- confirmation: before 16:00 on a working day -> 17:00 that day, else the next one ----


@pytest.mark.parametrize(
    ("received", "due"),
    [
        pytest.param(sthlm(2026, 12, 23, 15, 59), sthlm(2026, 12, 23, 17), id="23-dec-2026-1559"),
        pytest.param(sthlm(2026, 12, 23, 16, 5), sthlm(2026, 12, 28, 17), id="23-dec-2026-1605"),
        pytest.param(sthlm(2026, 12, 24, 10), sthlm(2026, 12, 28, 17), id="julafton-2026"),
        pytest.param(sthlm(2026, 12, 25, 10), sthlm(2026, 12, 28, 17), id="juldagen-2026"),
        pytest.param(sthlm(2026, 12, 30, 16, 5), sthlm(2027, 1, 4, 17), id="30-dec-2026-1605"),
        pytest.param(sthlm(2026, 12, 31, 10), sthlm(2027, 1, 4, 17), id="nyarsafton-2026"),
        pytest.param(sthlm(2027, 1, 1, 10), sthlm(2027, 1, 4, 17), id="nyarsdagen-2027"),
        pytest.param(sthlm(2027, 1, 5, 16, 5), sthlm(2027, 1, 7, 17), id="eve-of-trettondagen"),
        pytest.param(sthlm(2027, 1, 6, 10), sthlm(2027, 1, 7, 17), id="trettondagen-2027"),
        pytest.param(sthlm(2027, 12, 23, 15, 59), sthlm(2027, 12, 23, 17), id="23-dec-2027-1559"),
        pytest.param(sthlm(2027, 12, 23, 16, 5), sthlm(2027, 12, 27, 17), id="23-dec-2027-1605"),
        pytest.param(sthlm(2027, 12, 24, 10), sthlm(2027, 12, 27, 17), id="julafton-2027"),
        pytest.param(sthlm(2027, 12, 31, 10), sthlm(2028, 1, 3, 17), id="nyarsafton-2027"),
        pytest.param(sthlm(2028, 1, 5, 16, 5), sthlm(2028, 1, 7, 17), id="eve-of-trettondagen-28"),
        # The longest wait in 2025-2030: Tue 23 Dec 2025, then julafton, juldagen and
        # annandag jul (Wed-Fri) and a weekend.
        pytest.param(sthlm(2025, 12, 23, 16, 5), sthlm(2025, 12, 29, 17), id="23-dec-2025-1605"),
    ],
)
def test_confirmation_due_across_christmas_and_new_year(received: datetime, due: datetime) -> None:
    assert confirmation_due(received) == due


@pytest.mark.parametrize(
    ("received", "due"),
    [
        pytest.param(sthlm(2026, 11, 27, 15, 59), sthlm(2026, 11, 27, 17), id="friday-1559"),
        pytest.param(sthlm(2026, 11, 27, 16, 5), sthlm(2026, 11, 30, 17), id="friday-1605"),
        pytest.param(sthlm(2026, 11, 28, 10), sthlm(2026, 11, 30, 17), id="saturday-1000"),
        pytest.param(sthlm(2026, 11, 29, 10), sthlm(2026, 11, 30, 17), id="sunday-1000"),
        pytest.param(sthlm(2026, 11, 25, 16), sthlm(2026, 11, 26, 17), id="wednesday-exactly-1600"),
        pytest.param(
            datetime(2026, 11, 25, 15, 59, 59, 999999, tzinfo=STOCKHOLM),
            sthlm(2026, 11, 25, 17),
            id="wednesday-last-microsecond-before-1600",
        ),
        pytest.param(sthlm(2026, 11, 25, 0, 1), sthlm(2026, 11, 25, 17), id="wednesday-0001"),
        pytest.param(sthlm(2026, 11, 25, 23, 59), sthlm(2026, 11, 26, 17), id="wednesday-2359"),
    ],
)
def test_confirmation_due_around_the_1600_cutoff_and_weekends(
    received: datetime, due: datetime
) -> None:
    assert confirmation_due(received) == due


@pytest.mark.parametrize(
    ("received", "due"),
    [
        pytest.param(sthlm(2026, 4, 2, 15, 59), sthlm(2026, 4, 2, 17), id="skartorsdag-1559"),
        pytest.param(sthlm(2026, 4, 2, 16, 5), sthlm(2026, 4, 7, 17), id="skartorsdag-1605"),
        pytest.param(sthlm(2026, 4, 3, 10), sthlm(2026, 4, 7, 17), id="langfredagen"),
        pytest.param(sthlm(2026, 4, 6, 10), sthlm(2026, 4, 7, 17), id="annandag-pask"),
        pytest.param(sthlm(2026, 5, 13, 16, 5), sthlm(2026, 5, 15, 17), id="eve-of-ascension"),
        pytest.param(sthlm(2026, 5, 14, 10), sthlm(2026, 5, 15, 17), id="ascension-day"),
        pytest.param(sthlm(2026, 6, 18, 15, 59), sthlm(2026, 6, 18, 17), id="pre-midsommar-1559"),
        pytest.param(sthlm(2026, 6, 18, 16, 5), sthlm(2026, 6, 22, 17), id="pre-midsommar-1605"),
        pytest.param(sthlm(2026, 6, 19, 10), sthlm(2026, 6, 22, 17), id="midsommarafton"),
        pytest.param(sthlm(2026, 6, 5, 16, 5), sthlm(2026, 6, 8, 17), id="pre-national-day-sat"),
        pytest.param(sthlm(2026, 10, 30, 16, 5), sthlm(2026, 11, 2, 17), id="pre-all-saints-sat"),
    ],
)
def test_confirmation_due_around_easter_ascension_midsommar_and_saturday_holidays(
    received: datetime, due: datetime
) -> None:
    assert confirmation_due(received) == due


def test_confirmation_reads_the_cutoff_in_stockholm_time_not_utc() -> None:
    # 14:30 UTC on Friday 27 Nov 2026 is 15:30 in Stockholm: before the cutoff.
    received = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)

    assert confirmation_due(received) == sthlm(2026, 11, 27, 17)
    assert confirmation_due(received) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)


def test_confirmation_reads_the_date_in_stockholm_time_not_utc() -> None:
    # 23:30 UTC on Sunday 29 Nov 2026 is 00:30 on Monday in Stockholm: a working day.
    received = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)

    assert confirmation_due(received) == sthlm(2026, 11, 30, 17)


# --- daylight saving: 17:00 and 07:00 stay wall-clock times -----------------------------


def test_confirmation_after_the_spring_change_is_1700_summer_time() -> None:
    # Clocks go forward on Sunday 29 Mar 2026; Friday is CET, Monday is CEST.
    before = confirmation_due(sthlm(2026, 3, 27, 10))
    after = confirmation_due(sthlm(2026, 3, 27, 16, 5))

    assert before == sthlm(2026, 3, 27, 17) == datetime(2026, 3, 27, 16, 0, tzinfo=UTC)
    assert after == sthlm(2026, 3, 30, 17) == datetime(2026, 3, 30, 15, 0, tzinfo=UTC)
    assert after.astimezone(STOCKHOLM).time() == time(17, 0)
    assert after.astimezone(STOCKHOLM).utcoffset() == CEST


def test_confirmation_after_the_autumn_change_is_1700_standard_time() -> None:
    # Clocks go back on Sunday 25 Oct 2026; Friday is CEST, Monday is CET.
    before = confirmation_due(sthlm(2026, 10, 23, 10))
    after = confirmation_due(sthlm(2026, 10, 23, 16, 5))

    assert before == sthlm(2026, 10, 23, 17) == datetime(2026, 10, 23, 15, 0, tzinfo=UTC)
    assert after == sthlm(2026, 10, 26, 17) == datetime(2026, 10, 26, 16, 0, tzinfo=UTC)
    assert after.astimezone(STOCKHOLM).utcoffset() == CET


def test_confirmation_received_on_the_night_of_a_change_is_due_monday_1700() -> None:
    spring = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, just after the jump
    autumn = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first of two

    assert confirmation_due(spring) == datetime(2026, 3, 30, 15, 0, tzinfo=UTC)
    assert confirmation_due(autumn) == datetime(2026, 10, 26, 16, 0, tzinfo=UTC)


def test_installation_due_across_the_spring_change_is_1700_summer_time() -> None:
    # Ready Thu 26 Mar 2026: Fri 27, Mon 30, Tue 31 Mar.
    assert installation_due(sthlm(2026, 3, 26, 9)) == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)


def test_installation_due_across_the_autumn_change_is_1700_standard_time() -> None:
    # Ready Thu 22 Oct 2026: Fri 23, Mon 26, Tue 27 Oct.
    assert installation_due(sthlm(2026, 10, 22, 9)) == datetime(2026, 10, 27, 16, 0, tzinfo=UTC)


def test_provider_change_starting_on_the_spring_change_day_starts_0700_summer_time() -> None:
    day_before = provider_change_starts(date(2026, 3, 28))
    change_day = provider_change_starts(date(2026, 3, 29))

    assert day_before == sthlm(2026, 3, 28, 7) == datetime(2026, 3, 28, 6, 0, tzinfo=UTC)
    assert change_day == sthlm(2026, 3, 29, 7) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    assert change_day - day_before == timedelta(hours=23)


def test_provider_change_starting_on_the_autumn_change_day_starts_0700_standard_time() -> None:
    day_before = provider_change_starts(date(2026, 10, 24))
    change_day = provider_change_starts(date(2026, 10, 25))

    assert day_before == sthlm(2026, 10, 24, 7) == datetime(2026, 10, 24, 5, 0, tzinfo=UTC)
    assert change_day == sthlm(2026, 10, 25, 7) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    assert change_day - day_before == timedelta(hours=25)


# --- keys: 24 hours, whatever the calendar ----------------------------------------------


@pytest.mark.parametrize(
    ("received", "due"),
    [
        pytest.param(sthlm(2026, 12, 23, 16, 5), sthlm(2026, 12, 24, 16, 5), id="into-julafton"),
        pytest.param(sthlm(2026, 12, 24, 10), sthlm(2026, 12, 25, 10), id="julafton-to-juldagen"),
        pytest.param(sthlm(2026, 12, 31, 15), sthlm(2027, 1, 1, 15), id="into-2027"),
        pytest.param(sthlm(2027, 12, 31, 15), sthlm(2028, 1, 1, 15), id="into-2028"),
        pytest.param(sthlm(2026, 11, 27, 16, 5), sthlm(2026, 11, 28, 16, 5), id="into-saturday"),
    ],
)
def test_keys_are_due_24_hours_after_the_order_even_on_holidays(
    received: datetime, due: datetime
) -> None:
    assert keys_due(received) == due


def test_keys_due_is_24_elapsed_hours_across_the_spring_change() -> None:
    # Sat 28 Mar 2026 10:00 CET plus 24 h is Sun 29 Mar 11:00 CEST (one hour was skipped).
    due = keys_due(sthlm(2026, 3, 28, 10))

    assert due == sthlm(2026, 3, 29, 11) == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)


def test_keys_due_is_24_elapsed_hours_across_the_autumn_change() -> None:
    # Sat 24 Oct 2026 10:00 CEST plus 24 h is Sun 25 Oct 09:00 CET (one hour was repeated).
    due = keys_due(sthlm(2026, 10, 24, 10))

    assert due == sthlm(2026, 10, 25, 9) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)


# --- installation: 17:00 on the third working day after ready ----------------------------


@pytest.mark.parametrize(
    ("ready", "due"),
    [
        # Wed 23, Mon 28, Tue 29 Dec.
        pytest.param(sthlm(2026, 12, 22, 10), sthlm(2026, 12, 29, 17), id="22-dec-2026"),
        # Mon 28, Tue 29, Wed 30 Dec.
        pytest.param(sthlm(2026, 12, 23, 10), sthlm(2026, 12, 30, 17), id="23-dec-2026"),
        # Mon 4, Tue 5, Thu 7 Jan (trettondagen Wed 6 Jan).
        pytest.param(sthlm(2026, 12, 30, 10), sthlm(2027, 1, 7, 17), id="30-dec-2026"),
        # Thu 23, Mon 27, Tue 28 Dec.
        pytest.param(sthlm(2027, 12, 22, 10), sthlm(2027, 12, 28, 17), id="22-dec-2027"),
        # Mon 3, Tue 4, Wed 5 Jan 2028.
        pytest.param(sthlm(2027, 12, 30, 10), sthlm(2028, 1, 5, 17), id="30-dec-2027"),
        # Thu 2 Apr, Tue 7, Wed 8 Apr (Good Friday and Easter Monday).
        pytest.param(sthlm(2026, 4, 1, 10), sthlm(2026, 4, 8, 17), id="before-easter-2026"),
        # Mon 22, Tue 23, Wed 24 Jun (midsommarafton Fri 19 Jun).
        pytest.param(sthlm(2026, 6, 18, 10), sthlm(2026, 6, 24, 17), id="before-midsommar-2026"),
        # Fri 15, Mon 18, Tue 19 May (Ascension Day Thu 14 May).
        pytest.param(sthlm(2026, 5, 13, 10), sthlm(2026, 5, 19, 17), id="before-ascension-2026"),
        # Ready on a Saturday: Mon 30 Nov, Tue 1, Wed 2 Dec.
        pytest.param(sthlm(2026, 11, 28, 10), sthlm(2026, 12, 2, 17), id="ready-on-saturday"),
    ],
)
def test_installation_is_due_1700_on_the_third_working_day_after_ready(
    ready: datetime, due: datetime
) -> None:
    assert installation_due(ready) == due


# --- provider change: at most 5 working days, routing from 07:00 --------------------------


@pytest.mark.parametrize(
    ("requested", "latest"),
    [
        # Tue 22, Wed 23, Mon 28, Tue 29, Wed 30 Dec.
        pytest.param(sthlm(2026, 12, 21, 10), date(2026, 12, 30), id="21-dec-2026"),
        # Mon 28, Tue 29, Wed 30 Dec, Mon 4, Tue 5 Jan.
        pytest.param(sthlm(2026, 12, 23, 10), date(2027, 1, 5), id="23-dec-2026"),
        # Tue 21, Wed 22, Thu 23, Mon 27, Tue 28 Dec.
        pytest.param(sthlm(2027, 12, 20, 10), date(2027, 12, 28), id="20-dec-2027"),
        # Across a weekend: Mon 23 ... Fri 27 Nov.
        pytest.param(sthlm(2026, 11, 20, 16), date(2026, 11, 27), id="friday-1600"),
        # Tue 7, Wed 8, Thu 9, Fri 10, Mon 13 Apr.
        pytest.param(sthlm(2026, 4, 2, 10), date(2026, 4, 13), id="skartorsdag-2026"),
    ],
)
def test_latest_provider_change_is_five_working_days_after_the_request(
    requested: datetime, latest: date
) -> None:
    assert latest_provider_change(requested) == latest


def test_provider_change_routing_starts_0700_local_on_the_effective_date() -> None:
    effective = latest_provider_change(sthlm(2026, 11, 20, 16))
    starts = provider_change_starts(effective)

    assert starts == sthlm(2026, 11, 27, 7) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert sthlm(2026, 11, 27, 6, 59, 59) < starts
    assert not sthlm(2026, 11, 27, 7, 0, 0) < starts
    assert sthlm(2026, 11, 27, 7, 0, 0) >= starts


def test_provider_change_over_christmas_2026_starts_0700_on_30_december() -> None:
    starts = provider_change_starts(latest_provider_change(sthlm(2026, 12, 21, 10)))

    assert starts == sthlm(2026, 12, 30, 7) == datetime(2026, 12, 30, 6, 0, tzinfo=UTC)


# --- naive datetimes are refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [confirmation_due, installation_due, latest_provider_change],
    ids=lambda f: f.__name__,
)
def test_a_naive_datetime_is_refused(rule: Callable[[datetime], object]) -> None:
    with pytest.raises(ValueError, match="aware"):
        rule(datetime(2026, 11, 27, 10, 0))


def test_keys_due_refuses_a_naive_datetime() -> None:
    # It read a naive datetime as the host's local time: deadlines moved with the server.
    with pytest.raises(ValueError, match="aware"):
        keys_due(datetime(2026, 11, 27, 10, 0))


# --- properties over 2025-2030 ------------------------------------------------------------

days = st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31))
instants = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2030, 12, 31, 23, 59, 59),
    timezones=st.sampled_from([UTC, STOCKHOLM]),
)


def is_utc(at: datetime) -> bool:
    return at.tzinfo is UTC


def is_1700_stockholm_on_a_working_day(at: datetime) -> bool:
    here = at.astimezone(STOCKHOLM)
    return here.time() == time(17, 0) and is_working_day(here.date())


@settings(deadline=None)
@given(days)
def test_next_working_day_is_the_first_later_working_day(day: date) -> None:
    following = next_working_day(day)
    skipped = [day + timedelta(days=i) for i in range(1, (following - day).days)]

    assert following > day
    assert is_working_day(following)
    assert not any(is_working_day(d) for d in skipped)


@settings(deadline=None)
@given(days, st.integers(min_value=0, max_value=40))
def test_working_days_between_counts_back_what_add_working_days_added(day: date, n: int) -> None:
    result = add_working_days(day, n)

    assert working_days_between(day, result) == n
    assert n == 0 or is_working_day(result)


@settings(deadline=None)
@given(instants)
def test_confirmation_is_due_1700_on_a_working_day_within_six_days(received: datetime) -> None:
    due = confirmation_due(received)
    received_day = received.astimezone(STOCKHOLM).date()

    assert is_utc(due)
    assert is_1700_stockholm_on_a_working_day(due)
    assert due > received
    # Six, not five: Tue 23 Dec 2025 16:05 waits for Mon 29 Dec (and 21 Dec 2029 likewise).
    assert (due.astimezone(STOCKHOLM).date() - received_day).days <= 6


@settings(deadline=None)
@given(instants)
def test_confirmation_is_the_same_day_exactly_when_received_before_1600_on_a_working_day(
    received: datetime,
) -> None:
    here = received.astimezone(STOCKHOLM)
    same_day = is_working_day(here.date()) and here.time() < time(16, 0)

    due_day = confirmation_due(received).astimezone(STOCKHOLM).date()

    assert (due_day == here.date()) == same_day
    assert due_day == (here.date() if same_day else next_working_day(here.date()))


@settings(deadline=None)
@given(instants)
def test_installation_is_due_1700_on_a_working_day_three_working_days_on(ready: datetime) -> None:
    due = installation_due(ready)
    ready_day = ready.astimezone(STOCKHOLM).date()

    assert is_utc(due)
    assert is_1700_stockholm_on_a_working_day(due)
    assert working_days_between(ready_day, due.astimezone(STOCKHOLM).date()) == 3


@settings(deadline=None)
@given(instants)
def test_keys_are_due_24_hours_later_in_utc(received: datetime) -> None:
    due = keys_due(received)

    assert is_utc(due)
    assert due - received == timedelta(hours=24)


@settings(deadline=None)
@given(instants)
def test_provider_change_latest_date_is_a_working_day_five_working_days_on(
    requested: datetime,
) -> None:
    latest = latest_provider_change(requested)
    starts = provider_change_starts(latest)

    assert is_working_day(latest)
    assert working_days_between(requested.astimezone(STOCKHOLM).date(), latest) == 5
    assert is_utc(starts)
    assert starts.astimezone(STOCKHOLM).time() == time(7, 0)
    assert starts.astimezone(STOCKHOLM).date() == latest
