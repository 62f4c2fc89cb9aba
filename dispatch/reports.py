"""Response times and alarm visits, summed up for the alarm manager (004 §8.1.7, §6.1).

Pure figures over alarm rows (`Timing`, `Visit`); `load_timings` and `load_visits` are
the only reads. Every time is taken from the alarm's own transitions, as the lifecycle
stamped them.

The period. `from` and `to` are Europe/Stockholm dates: from 00:00 on `from` through the
whole of `to` (its last second included), however long those days are (a DST night
has 23 or 25 hours). An alarm belongs to the period by its call-out time
(`called_out_at`); only alarms that were called out and had a team count. An alarm
handed over at a shift change keeps its first call-out time and counts for the team
that had it last: the customer waited from the first call.

The measures, each in seconds:
- answer time: call-out to accepted (`called_out_at` -> `accepted_at`); an alarm the
  operator accepted for someone phoned directly has 0.
- arrival time: call-out to check-in (`called_out_at` -> `on_site_at`), whether the
  check-in came from the unit or from the responder's phone (the unit's counts first).
- visit length: check-in to check-out (`on_site_at` -> `completed_at`).
Each is measured over the alarms that have both ends; an alarm not yet accepted or not
checked in has no answer or arrival time (it shows in the share below instead).

Median: the usual one, the mean of the two middle values for an even count. 90th
percentile (p90): the nearest rank, the ceil(0.9·n)-th smallest value, so it is always
a time that really happened.

Share within 30 minutes: the alarms checked in at most 30 minutes (1800 s) after the
call-out, divided by the alarms that needed a visit: every alarm of the period except
those cancelled as false alarms (`kvittering == "false_alarm"`) and those closed by
phone kvittering without any check-in (`kvittering == "phone"`). An alarm never checked
in counts against once its 30 minutes have run out; one still waiting for its check-in
inside its 30 minutes is not decided yet and is left out until it is (`awaiting_check_in`
counts every alarm still waiting).

A row deviates, and the alarm manager follows it up, when its answer p90 or arrival p90
is over 30 minutes, its share within 30 minutes is below 0.9, or its arrival median is
more than 1.5 times the arrival median of the whole period; `deviations` says which,
in words.

Alarm visits (004 §6.1): a visit is an alarm with both a check-in and a check-out whose
check-in falls in the month (Stockholm time). Each is paid as a standard 15 minutes; a
visit over 15 minutes (900 s) is a long visit and needs a written reason. A visit of an
alarm without a provider (an unknown unit) is billed to nobody: it is counted apart.

Both reads find their alarms through `ix_alarms_received_at`: an alarm is called out or
checked in after it arrived, so a window of arrival times from `LOOKBACK` before the
period to its end holds every alarm of the period; one called out or checked in more
than `LOOKBACK` after it arrived is left out.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch.models import AWAITING_CHECK_IN, Alarm
from dispatch.workdays import at_local, local

WITHIN_S = 30 * 60  # the 30 minutes to arrive (and the answer limit), 004 §8.1.3
TARGET_SHARE = 0.9
ARRIVAL_MEDIAN_FACTOR = 1.5
STANDARD_VISIT_MINUTES = 15
STANDARD_VISIT_S = STANDARD_VISIT_MINUTES * 60
MAX_PERIOD_DAYS = 366
# Far enough either way for any alarm, and clear of date's own ends (a day after, a
# week before).
YEARS = range(1970, 9999)
LOOKBACK = timedelta(days=7)
NO_VISIT_NEEDED = frozenset({"false_alarm", "phone"})
# Arrival buckets in minutes, each (low, high]; the first includes 0. The 30-minute line
# is an edge, so the first three buckets are exactly the share within 30 minutes.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-10", 10), ("10-20", 20), ("20-30", 30), ("30-45", 45), ("45-60", 60),
    (">60", float("inf")))
NO_CHECK_IN = "no check-in"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class BadPeriod(TryggError):
    """A report was asked for a period or month that is malformed or too long."""


# -- the period ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """Stockholm dates `first` through `last`, both whole days."""

    first: date
    last: date

    @classmethod
    def parse(cls, first: str, last: str) -> Period:
        period = cls(_date(first, "from"), _date(last, "to"))
        if period.first > period.last:
            raise BadPeriod(f"from ({first}) is after to ({last})")
        if period.days > MAX_PERIOD_DAYS:
            raise BadPeriod(f"the period is {period.days} days; at most {MAX_PERIOD_DAYS}")
        return period

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def starts_at(self) -> datetime:
        return at_local(self.first, time(0))

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period: 00:00 the day after `last`."""
        return at_local(self.last + timedelta(days=1), time(0))

    def weeks(self) -> list[str]:
        """The ISO weeks the period touches, in order ("2026-W13")."""
        monday = self.first - timedelta(days=self.first.weekday())
        return [week_of(monday + timedelta(weeks=n))
                for n in range((self.last - monday).days // 7 + 1)]


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        found = _MONTH.fullmatch(text)
        if not found or not 1 <= int(found[2]) <= 12:
            raise BadPeriod(f"month must be YYYY-MM, e.g. 2026-11; got {text[:20]!r}")
        return cls(_year(int(found[1]), "month"), int(found[2]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def starts_at(self) -> datetime:
        return at_local(date(self.year, self.month, 1), time(0))

    @property
    def ends_at(self) -> datetime:
        following = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return at_local(following, time(0))


def _date(text: str, name: str) -> date:
    # date.fromisoformat alone would also take "20260301" and "2026-W13-1".
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            _year(day.year, name)
            return day
    except ValueError:
        pass
    raise BadPeriod(f"{name} must be a date YYYY-MM-DD, e.g. 2026-11-30; got {text[:20]!r}")


def _year(year: int, name: str) -> int:
    if year not in YEARS:
        raise BadPeriod(f"{name} must be in the years {YEARS.start}-{YEARS.stop - 1}; "
                        f"got {year}")
    return year


def week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


# -- the statistics --------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    """The middle value; the mean of the two middle ones for an even count; None if none."""
    return float(statistics.median(values)) if values else None


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank: the ceil(0.9·n)-th smallest; None if none."""
    if not values:
        return None
    rank = -(-9 * len(values) // 10)  # ceil(9n/10) in integers: 0.9·n in floats can miss
    return float(sorted(values)[rank - 1])


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- response times --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """One called-out alarm's times, as the report needs them."""

    alarm_id: int
    provider: str | None
    team: str
    called_out_at: datetime
    accepted_at: datetime | None = None
    on_site_at: datetime | None = None
    completed_at: datetime | None = None
    kvittering: str | None = None
    awaiting_check_in: bool = False
    # Still waiting, and its 30 minutes have not run out at the report's time: whether
    # it arrives in time is not known yet.
    undecided: bool = False

    @property
    def answer_s(self) -> float | None:
        return _seconds(self.called_out_at, self.accepted_at)

    @property
    def arrival_s(self) -> float | None:
        return _seconds(self.called_out_at, self.on_site_at)

    @property
    def visit_s(self) -> float | None:
        return _seconds(self.on_site_at, self.completed_at)

    @property
    def needs_visit(self) -> bool:
        return self.kvittering not in NO_VISIT_NEEDED and not self.undecided

    @property
    def within_30_min(self) -> bool:
        arrival = self.arrival_s
        return self.needs_visit and arrival is not None and arrival <= WITHIN_S


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def load_timings(session: Session, period: Period, now: datetime) -> list[Timing]:
    """The alarms called out in the period, with a team, as they stand at `now`."""
    starts, ends = period.starts_at, period.ends_at
    rows = session.execute(
        select(Alarm.id, Alarm.provider_code, Alarm.team_code, Alarm.called_out_at,
               Alarm.accepted_at, Alarm.on_site_at, Alarm.completed_at, Alarm.kvittering,
               Alarm.state)
        .where(Alarm.received_at >= starts - LOOKBACK, Alarm.received_at < ends,
               Alarm.called_out_at >= starts, Alarm.called_out_at < ends,
               Alarm.team_code.is_not(None))
        .order_by(Alarm.id))
    return [Timing(alarm_id=r.id, provider=r.provider_code, team=r.team_code,
                   called_out_at=r.called_out_at, accepted_at=r.accepted_at,
                   on_site_at=r.on_site_at, completed_at=r.completed_at,
                   kvittering=r.kvittering, awaiting_check_in=r.state in AWAITING_CHECK_IN,
                   undecided=r.state in AWAITING_CHECK_IN
                   and (now - r.called_out_at).total_seconds() <= WITHIN_S)
            for r in rows]


def figures(timings: Sequence[Timing]) -> dict[str, Any]:
    """Count, medians, p90s and the share within 30 minutes of some alarms."""
    answers = [t.answer_s for t in timings if t.answer_s is not None]
    arrivals = [t.arrival_s for t in timings if t.arrival_s is not None]
    visits = [t.visit_s for t in timings if t.visit_s is not None]
    needing = sum(t.needs_visit for t in timings)
    within = sum(t.within_30_min for t in timings)
    return {
        "alarms": len(timings),
        "answered": len(answers),
        "arrived": len(arrivals),
        "visits": len(visits),
        "needing_visit": needing,
        "within_30_min": within,
        "awaiting_check_in": sum(t.awaiting_check_in for t in timings),
        "answer_median_s": median(answers),
        "answer_p90_s": p90(answers),
        "arrival_median_s": median(arrivals),
        "arrival_p90_s": p90(arrivals),
        "within_30_min_share": share(within, needing),
        "visit_median_s": median(visits),
    }


def deviations(row: dict[str, Any], period_arrival_median_s: float | None) -> list[str]:
    """Why a row's times deviate, in words; empty when they do not."""
    found = []
    for key, what in (("answer_p90_s", "answer time p90"), ("arrival_p90_s", "arrival time p90")):
        if row[key] is not None and row[key] > WITHIN_S:
            found.append(f"{what} {_minutes(row[key])} is over 30 min")
    if row["within_30_min_share"] is not None and row["within_30_min_share"] < TARGET_SHARE:
        found.append(f"{percent(row['within_30_min_share'])} arrived within 30 min, "
                     f"below the target of {percent(TARGET_SHARE)}")
    arrival = row["arrival_median_s"]
    if arrival is not None and period_arrival_median_s is not None \
            and arrival > ARRIVAL_MEDIAN_FACTOR * period_arrival_median_s:
        found.append(f"arrival time median {_minutes(arrival)} is more than "
                     f"{ARRIVAL_MEDIAN_FACTOR}× the period's {_minutes(period_arrival_median_s)}")
    return found


def _minutes(seconds: float) -> str:
    # Rounded up: 1800.4 s is over 30 minutes, and must not read as "30 min".
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def percent(value: float) -> str:
    # Floored, so 89.95 % reads 89.9 % and not as the target it misses (the nudge keeps
    # 0.58 from reading 57.9 through the float's last bit).
    return f"{math.floor(value * 1000 + 1e-9) / 10:g} %"


def arrival_buckets(timings: Iterable[Timing]) -> list[dict[str, Any]]:
    """How the alarms that needed a visit arrived: a count per bucket of minutes, then
    those never checked in."""
    counts = dict.fromkeys([name for name, _ in BUCKETS] + [NO_CHECK_IN], 0)
    for t in timings:
        if not t.needs_visit:
            continue
        arrival = t.arrival_s
        if arrival is None:
            counts[NO_CHECK_IN] += 1
            continue
        counts[next(name for name, high in BUCKETS if arrival <= high * 60)] += 1
    return [{"bucket": name, "alarms": n} for name, n in counts.items()]


def response_times(timings: Sequence[Timing], period: Period) -> dict[str, Any]:
    """The report: a row per provider and team, a line per provider (with its arrival
    buckets, for the chart), the period as a whole, and per provider and ISO week the
    share within 30 minutes."""
    overall = figures(timings)
    reference = overall["arrival_median_s"]
    by_team: dict[tuple[str, str], list[Timing]] = defaultdict(list)
    by_provider: dict[str, list[Timing]] = defaultdict(list)
    by_week: dict[tuple[str, str], list[Timing]] = defaultdict(list)
    for t in timings:
        provider = t.provider or ""
        by_team[provider, t.team].append(t)
        by_provider[provider].append(t)
        by_week[provider, week_of(local(t.called_out_at).date())].append(t)

    def judged(head: dict[str, Any], group: list[Timing]) -> dict[str, Any]:
        row = {**head, **figures(group)}
        row["deviations"] = deviations(row, reference)
        row["deviates"] = bool(row["deviations"])
        return row

    rows = [judged({"provider": p or None, "team": team}, group)
            for (p, team), group in sorted(by_team.items())]
    providers = [{**judged({"provider": p or None}, group),
                  "arrival_buckets": arrival_buckets(group)}
                 for p, group in sorted(by_provider.items())]
    weekly = [{"provider": p or None, "week": week, **_weekly(group)}
              for (p, week), group in sorted(by_week.items())]
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "starts_at": local(period.starts_at).isoformat(),
        "ends_at": local(period.ends_at).isoformat(),
        "targets": {"within_30_min_share": TARGET_SHARE, "p90_limit_s": WITHIN_S,
                    "arrival_median_factor": ARRIVAL_MEDIAN_FACTOR},
        "rows": rows,
        "providers": providers,
        "overall": {**overall, "arrival_buckets": arrival_buckets(timings)},
        "weeks": period.weeks(),
        "weekly": weekly,
    }


def _weekly(group: Sequence[Timing]) -> dict[str, Any]:
    needing = sum(t.needs_visit for t in group)
    within = sum(t.within_30_min for t in group)
    return {"alarms": len(group), "needing_visit": needing, "within_30_min": within,
            "within_30_min_share": share(within, needing)}


# -- alarm visits ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """A checked-in and checked-out alarm, as the reimbursement needs it."""

    alarm_id: int
    provider: str | None
    team: str | None
    on_site_at: datetime
    completed_at: datetime
    reason: str | None = None

    @property
    def visit_s(self) -> float:
        return (self.completed_at - self.on_site_at).total_seconds()

    @property
    def long(self) -> bool:
        return self.visit_s > STANDARD_VISIT_S


def load_visits(session: Session, month: Month) -> list[Visit]:
    """The alarms checked in during the month and checked out."""
    starts, ends = month.starts_at, month.ends_at
    rows = session.execute(
        select(Alarm.id, Alarm.provider_code, Alarm.team_code, Alarm.on_site_at,
               Alarm.completed_at, Alarm.visit_reason)
        .where(Alarm.received_at >= starts - LOOKBACK, Alarm.received_at < ends,
               Alarm.on_site_at >= starts, Alarm.on_site_at < ends,
               Alarm.completed_at.is_not(None))
        .order_by(Alarm.on_site_at, Alarm.id))
    return [Visit(alarm_id=r.id, provider=r.provider_code, team=r.team_code,
                  on_site_at=r.on_site_at, completed_at=r.completed_at,
                  reason=r.visit_reason or None)
            for r in rows]


def alarm_visits(visits: Sequence[Visit], month: Month) -> dict[str, Any]:
    """A row per provider: its visits, the standard minutes they are paid, and the long
    visits (over 15 minutes) with their reasons, oldest first."""
    by_provider: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        if v.provider:
            by_provider[v.provider].append(v)
    rows = []
    for provider, group in sorted(by_provider.items()):
        long_visits = [{"alarm_id": v.alarm_id, "team": v.team, "visit_s": v.visit_s,
                        "checked_in_at": local(v.on_site_at).isoformat(),
                        "reason": v.reason} for v in group if v.long]
        rows.append({
            "provider": provider,
            "visits": len(group),
            "standard_minutes": STANDARD_VISIT_MINUTES * len(group),
            "long_visits": long_visits,
            "long_visits_without_reason": sum(lv["reason"] is None for lv in long_visits),
        })
    return {"month": str(month),
            "starts_at": local(month.starts_at).isoformat(),
            "ends_at": local(month.ends_at).isoformat(),
            "rows": rows,
            "visits_without_provider": sum(not v.provider for v in visits)}


# -- as CSV ----------------------------------------------------------------------------

RESPONSE_TIME_COLUMNS = (
    "provider", "team", "alarms", "answered", "arrived", "visits", "needing_visit",
    "within_30_min", "awaiting_check_in", "answer_median_s", "answer_p90_s",
    "arrival_median_s", "arrival_p90_s", "within_30_min_share", "visit_median_s",
    "deviates", "deviations")
# The long visits go in one line per provider as lists in step, separated by ";": the
# n-th id of `long_visit_alarm_ids` took the n-th length of `long_visit_s`. The reasons,
# free text, are in the JSON only; the ids still lacking one are listed apart.
ALARM_VISIT_COLUMNS = (
    "provider", "visits", "standard_minutes", "long_visits", "long_visits_without_reason",
    "long_visit_alarm_ids", "long_visit_s", "long_visit_alarm_ids_without_reason")


def response_times_csv(report: dict[str, Any]) -> str:
    """The rows of `response_times` as CSV: a header, then a line per provider and team.
    An empty cell is a figure with nothing to measure; `deviations` is joined by "; "."""
    def cells(row: dict[str, Any]) -> list[str]:
        return [_cell(row[c]) if c != "deviations" else _cell("; ".join(row[c]))
                for c in RESPONSE_TIME_COLUMNS]

    return _csv(RESPONSE_TIME_COLUMNS, (cells(r) for r in report["rows"]))


def alarm_visits_csv(report: dict[str, Any]) -> str:
    """The rows of `alarm_visits` as CSV: a header, then a line per provider."""
    def cells(row: dict[str, Any]) -> list[str]:
        long_visits = row["long_visits"]
        return [_cell(row["provider"]), _cell(row["visits"]), _cell(row["standard_minutes"]),
                _cell(len(long_visits)), _cell(row["long_visits_without_reason"]),
                ";".join(str(v["alarm_id"]) for v in long_visits),
                ";".join(_cell(v["visit_s"]) for v in long_visits),
                ";".join(str(v["alarm_id"]) for v in long_visits if v["reason"] is None)]

    return _csv(ALARM_VISIT_COLUMNS, (cells(r) for r in report["rows"]))


def _csv(header: Sequence[str], lines: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(lines)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # parses back to the JSON's number
    text = str(value)
    # A cell a spreadsheet would run as a formula (CSV injection) is quoted as text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
