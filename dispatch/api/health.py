"""Device health routes: technical alarms, incidents (mass events) and one row per device."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.orm import Session

from dispatch import health, technical
from dispatch.api.alarms import MAX_PAGE, _cursor_id
from dispatch.api.deps import StateDep, known_id
from dispatch.api.roles import allow
from dispatch.signin import Principal
from dispatch.technical import HealthChange

router = APIRouter(prefix="/api", tags=["device health"])
# Device faults are the alarm centre's to see, the install team's to fix and the alarm
# manager's to follow up; the links of the gateway also the admin's.
Health = Annotated[Principal, allow("operator", "tfh", "alarm_manager")]
Links = Annotated[Principal, allow("operator", "tfh", "alarm_manager", "admin")]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ClearIn(BaseModel):
    note: Text = Field(max_length=2000, description="what was done or found (kept in the trail)")


@router.get("/technical-alarms")
async def list_technical_alarms(
    state: StateDep, user: Health,
    scope: Literal["open", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=(
        "page size of scope=all; the open ones are never cut short"))] = 200,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    outside_incidents: Annotated[bool, Query(description=(
        "scope=open only: leave out those gathered into an open incident"))] = False,
) -> dict[str, Any]:
    """Open technical alarms, oldest first (all of them); or every one, newest first, paged."""
    if scope == "open" and cursor is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "scope=open is every open technical alarm and has no pages")
    before = None if cursor is None else _cursor_id(cursor)

    def load(s: Session) -> tuple[list[dict[str, Any]], str | None]:
        if scope == "open":
            rows = health.technical_alarms(s, open_only=True, limit=0,
                                           outside_incidents=outside_incidents)
            return [health.technical_view(a) for a in rows], None
        rows = health.technical_alarms(s, open_only=False, limit=limit + 1,
                                       before_id=before)
        more = len(rows) > limit
        rows = rows[:limit]
        return ([health.technical_view(a) for a in rows],
                str(rows[-1].id) if more else None)

    items, next_cursor = await state.db.read(load)
    return {"server_time": state.clock.now().isoformat(), "scope": scope,
            "technical_alarms": items, "next_cursor": next_cursor}


@router.get("/technical-alarms/{technical_id}")
async def get_technical_alarm(technical_id: int, state: StateDep,
                              user: Health) -> dict[str, Any]:
    known_id(technical_id, "technical alarm")

    def load(s: Session) -> dict[str, Any] | None:
        alarm = health.technical_alarm(s, technical_id)
        return None if alarm is None else health.technical_view(alarm, with_log=True)

    view = await state.db.read(load)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no technical alarm {technical_id}")
    return view


@router.post("/technical-alarms/{technical_id}/clear")
async def clear_technical_alarm(technical_id: int, body: ClearIn, state: StateDep,
                                user: Health) -> dict[str, Any]:
    """Clear a fault by hand (a tamper checked, a unit replaced); the note is kept."""
    known_id(technical_id, "technical alarm")
    now = state.clock.now()
    change = HealthChange()

    def clear(s: Session) -> None:
        alarm = technical.clear_by_hand(s, technical_id, actor=user.name, note=body.note,
                                        now=now)
        change.touched += 1
        if alarm.incident_id is not None:
            change.incident_ids.append(alarm.incident_id)

    try:
        await state.db.write(clear)
    except technical.TechnicalAlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except technical.AlreadyCleared as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    state.dispatcher.health_changed(change)
    return await get_technical_alarm(technical_id, state, user)


@router.get("/incidents")
async def list_incidents(state: StateDep, user: Health,
                         scope: Literal["open", "all"] = "all") -> dict[str, Any]:
    """Mass events: open ones first, then the most recent (up to 200)."""
    items = await state.db.read(lambda s: [
        health.incident_view(i) for i in health.incidents(s, open_only=scope == "open")])
    return {"server_time": state.clock.now().isoformat(), "scope": scope, "incidents": items}


@router.get("/devices/health")
async def devices_health(
    state: StateDep, user: Health,
    status_: Annotated[list[health.Status] | None, Query(
        alias="status", description="only devices with this status (repeatable)")] = None,
    outside_incidents: Annotated[bool, Query(description=(
        "leave out devices whose every open fault is part of an open incident"))] = False,
) -> dict[str, Any]:
    """One row per registered device: its status, last-seen and open faults, the worst
    first; quiet devices by how long they are overdue."""
    now = state.clock.now()
    wanted: set[str] | None = set(status_) if status_ else None
    rows = await state.db.read(
        lambda s: health.device_health(s, now, state.supervision, wanted,
                                       outside_incidents))
    return {"server_time": now.isoformat(), "devices": rows}


# The gateway writes its links' state every few seconds: older than this, it has stopped.
LINKS_STALE_S = 30.0


@router.get("/links")
async def list_links(state: StateDep, user: Links) -> dict[str, Any]:
    """The gateway's links to devices (broker, serial lines, DC-09 listener) and their
    state as the gateway last wrote it; `stale` when it has not written for a while."""
    now = state.clock.now()
    rows = await state.db.read(lambda s: health.links(s))
    links = []
    for row in rows:
        updated = row.pop("_updated")
        links.append({**row, "stale": (now - updated).total_seconds() > LINKS_STALE_S})
    return {"server_time": now.isoformat(), "links": links}
