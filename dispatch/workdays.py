"""Working days, and the deadlines of install, removal and provider-change orders.

A working day is Monday to Friday unless it is a Swedish public holiday or a de facto
one (midsommarafton, julafton, nyårsafton): the `holidays` package's Sweden calendar with
the categories `public` and `de_facto` (its default, `public` alone, leaves the eves
out). Every rule is in Europe/Stockholm wall time and answers an aware UTC datetime.

The rules (DOMAIN.md "Time rules worth getting exactly right"; 004 §2.1, §2.4; 002):
- confirmation: an order received before 16:00 on a working day is confirmed by 17:00
  that day; any other (later, or on a weekend or holiday) by 17:00 on the next working
  day ("the day after", read as the next working day);
- keys: within 24 hours of the order;
- installation: by 17:00 on the third working day after the unit was ready for it;
- provider change: effective on a date at most 5 working days after the request, and
  routing follows it from 07:00 (the day shift's start) on that date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CATEGORIES = ("public", "de_facto")
CONFIRM_CUTOFF = time(16, 0)
END_OF_WORKING_DAY = time(17, 0)
DAY_SHIFT_START = time(7, 0)
KEYS_WITHIN = timedelta(hours=24)
INSTALL_WORKING_DAYS = 3
PROVIDER_CHANGE_WORKING_DAYS = 5


@lru_cache(maxsize=64)
def _holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("SE", years=year, categories=CATEGORIES)


def holiday_name(day: date) -> str | None:
    """The public or de facto holiday on `day`, or None (Sundays are not named here)."""
    name = _holidays(day.year).get(day)
    return str(name) if name and name != "Sunday" else None


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and holiday_name(day) is None


def next_working_day(day: date) -> date:
    """The first working day after `day`."""
    day += timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def add_working_days(day: date, n: int) -> date:
    """The n-th working day after `day` (`day` itself does not count)."""
    if n < 0:
        raise ValueError("n must not be negative")
    for _ in range(n):
        day = next_working_day(day)
    return day


def working_days_between(start: date, end: date) -> int:
    """How many working days lie after `start`, up to and including `end`."""
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        count += is_working_day(day)
    return count


def local(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return at.astimezone(STOCKHOLM)


def at_local(day: date, clock: time) -> datetime:
    """That wall-clock time in Stockholm on `day`, as UTC (DST handled by zoneinfo)."""
    return datetime.combine(day, clock, STOCKHOLM).astimezone(UTC)


def confirmation_due(received_at: datetime) -> datetime:
    """17:00 the same day for an order received before 16:00 on a working day, else
    17:00 on the next working day."""
    here = local(received_at)
    day = here.date()
    if not (is_working_day(day) and here.time() < CONFIRM_CUTOFF):
        day = next_working_day(day)
    return at_local(day, END_OF_WORKING_DAY)


def keys_due(received_at: datetime) -> datetime:
    return local(received_at).astimezone(UTC) + KEYS_WITHIN


def installation_due(ready_at: datetime) -> datetime:
    """17:00 on the third working day after the unit was ready for installation."""
    return at_local(add_working_days(local(ready_at).date(), INSTALL_WORKING_DAYS),
                    END_OF_WORKING_DAY)


def latest_provider_change(requested_at: datetime) -> date:
    """The last date a provider change asked for at `requested_at` may take effect."""
    return add_working_days(local(requested_at).date(), PROVIDER_CHANGE_WORKING_DAYS)


def provider_change_starts(effective: date) -> datetime:
    """The moment routing follows a provider change: the day shift's start that date."""
    return at_local(effective, DAY_SHIFT_START)
