"""Response-time and alarm-visit reports for the alarm manager (issue 9, items 7-8).

`GET /api/reports/response-times?from=DATE&to=DATE` answers `from`, `to` and `rows`, one
per provider and team (`provider`, `team`, `alarms`, `answer_median_s`, `answer_p90_s`,
`arrival_median_s`, `arrival_p90_s`, `within_30_min_share`, `visit_median_s`, with
`deviates` and `deviations`), plus `providers`, `overall` and `weekly`;
`GET /api/reports/alarm-visits?month=YYYY-MM` answers `month` and `rows`, one per
provider (`provider`, `visits`, `standard_minutes`, `long_visits`). Both take
`format=csv`. The two charts are SVG drawn here. How each figure is computed:
dispatch/reports.py and docs/REPORTS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlalchemy.orm import Session

from dispatch import charts, reports
from dispatch.api.audit import note
from dispatch.api.deps import AppState, StateDep
from dispatch.api.roles import allow
from dispatch.signin import Principal

router = APIRouter(prefix="/api/reports", tags=["reports"])
# The alarm manager follows up the times (004 §8.1.7); an admin may read them too.
Manager = Annotated[Principal, allow("alarm_manager", "admin")]
From = Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD (Stockholm)")]
To = Annotated[str, Query(description="last day, YYYY-MM-DD (Stockholm), included")]
Format = Literal["json", "csv"]
SVG = "image/svg+xml"


def _period(first: str, last: str) -> reports.Period:
    try:
        return reports.Period.parse(first, last)
    except reports.BadPeriod as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def _csv(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/response-times", response_model=None)
async def response_times(state: StateDep, user: Manager, first: From, to: To,
                         format: Format = "json") -> dict[str, Any] | Response:
    """Answer, arrival and visit times per provider and team over the period, and which
    of them deviate."""
    period = _period(first, to)
    now = state.clock.now()
    # Read and computed on a worker thread: a year of alarms never holds up the loop.
    report = await state.db.read(
        lambda s: reports.response_times(reports.load_timings(s, period, now), period))
    if format == "csv":
        return _csv(reports.response_times_csv(report),
                    f"trygg-response-times-{period.first}-{period.last}.csv")
    return report


@router.get("/alarm-visits", response_model=None)
async def alarm_visits(
    request: Request, state: StateDep, user: Manager,
    month: Annotated[str, Query(description="YYYY-MM (Stockholm)")],
    format: Format = "json",
) -> dict[str, Any] | Response:
    """The month's alarm visits per provider, paid 15 minutes each, and the long ones
    (over 15 minutes) with their reasons."""
    try:
        which = reports.Month.parse(month)
    except reports.BadPeriod as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    # The reasons are free text about a visit to someone's home: who read them is kept.
    await note(state, user, "report.alarm_visits", request=request,
               detail={"month": str(which), "format": format})
    report = await state.db.read(
        lambda s: reports.alarm_visits(reports.load_visits(s, which), which))
    if format == "csv":
        return _csv(reports.alarm_visits_csv(report), f"trygg-alarm-visits-{which}.csv")
    return report


async def _chart(state: AppState, first: str, last: str,
                 draw: Callable[[dict[str, Any]], str]) -> Response:
    period = _period(first, last)
    now = state.clock.now()

    def drawn(s: Session) -> str:
        return draw(reports.response_times(reports.load_timings(s, period, now), period))

    return Response(await state.db.read(drawn), media_type=SVG)


@router.get("/charts/response-times.svg", response_class=Response,
            responses={200: {"content": {SVG: {}}}})
async def response_times_chart(state: StateDep, user: Manager, first: From,
                               to: To) -> Response:
    """The distribution of arrival times per provider; deviating providers marked."""
    return await _chart(state, first, to, charts.response_times_svg)


@router.get("/charts/within-30-min.svg", response_class=Response,
            responses={200: {"content": {SVG: {}}}})
async def within_30_chart(state: StateDep, user: Manager, first: From, to: To) -> Response:
    """The weekly share checked in within 30 minutes per provider, with the 90 % target."""
    return await _chart(state, first, to, charts.within_30_svg)
