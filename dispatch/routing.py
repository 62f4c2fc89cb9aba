"""Who responds to an alarm, decided from local Swedish time when the alarm arrives.

07:00-22:00 the customer's chosen day provider; 22:00-07:00 the night patrol of the
site's area (004 §8). Pure: the caller passes the time and a directory of teams.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from dispatch.config import Shifts


class Shift(StrEnum):
    DAY = "day"
    NIGHT = "night"


class RouteReason(StrEnum):
    DAY_PROVIDER = "day_provider"
    NIGHT_PATROL = "night_patrol"
    UNKNOWN_DEVICE = "unknown_device"  # nobody registered this cid
    NO_TEAM = "no_team"  # registered, but nobody is configured to respond now
    NAMED_TEAM = "named_team"  # a route's `team:<code>` target


@dataclass(frozen=True, slots=True)
class TeamRef:
    id: int
    code: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    team: TeamRef | None
    reason: RouteReason
    shift: Shift | None


class TeamDirectory(Protocol):
    def day_team(self, provider_code: str, area_code: str) -> TeamRef | None: ...
    def night_team(self, area_code: str) -> TeamRef | None: ...
    def named_team(self, code: str) -> TeamRef | None: ...


def shift_at(at: datetime, shifts: Shifts) -> Shift:
    if at.tzinfo is None:
        raise ValueError("routing needs an aware datetime")
    local = at.astimezone(ZoneInfo(shifts.timezone)).time()
    if shifts.day_start <= shifts.night_start:
        is_day = shifts.day_start <= local < shifts.night_start
    else:  # a day window that itself crosses midnight
        is_day = local >= shifts.day_start or local < shifts.night_start
    return Shift.DAY if is_day else Shift.NIGHT


def route(
    *,
    at: datetime,
    shifts: Shifts,
    area_code: str | None,
    day_provider: str | None,
    teams: TeamDirectory,
) -> RouteDecision:
    """Route an alarm from a registered site; `area_code` None means an unknown device."""
    shift = shift_at(at, shifts)
    if area_code is None:
        return RouteDecision(None, RouteReason.UNKNOWN_DEVICE, shift)
    if shift is Shift.DAY:
        team = teams.day_team(day_provider, area_code) if day_provider else None
        return RouteDecision(team, RouteReason.DAY_PROVIDER if team else RouteReason.NO_TEAM, shift)
    team = teams.night_team(area_code)
    return RouteDecision(team, RouteReason.NIGHT_PATROL if team else RouteReason.NO_TEAM, shift)


def next_shift_change(at: datetime, shifts: Shifts) -> datetime:
    """The first 07:00 or 22:00 (the shifts' local times) after `at`, in UTC.

    Reckoned on the local calendar, so a daylight-saving night (23 or 25 hours long)
    still gives 07:00 local, not 07:00 plus or minus an hour.
    """
    if at.tzinfo is None:
        raise ValueError("routing needs an aware datetime")
    zone = ZoneInfo(shifts.timezone)
    day = at.astimezone(zone).date()
    candidates = (
        datetime.combine(day + timedelta(days=offset), moment, tzinfo=zone)
        for offset in range(3) for moment in (shifts.day_start, shifts.night_start))
    return min(c for c in candidates if c > at).astimezone(UTC)
