"""Alarm routes: the queue, one alarm with its audit trail, and the operator's actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatch import services
from dispatch.api.deps import Principal, StateDep, UserDep
from dispatch.lifecycle import InvalidTransition, MissingReason
from dispatch.metrics import TRANSITIONS
from dispatch.models import OPEN_STATES, Alarm, AlarmState
from dispatch.services import AlarmNotFound
from dispatch.views import alarm_view, masked, urgency_key

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AcceptIn(BaseModel):
    responder: Text = Field(max_length=200,
                            description="name of the person who answered the call-out")


class PhoneKvitteringIn(BaseModel):
    reason: Text = Field(max_length=2000,
                         description="why the alarm was handled without kvittering on the unit")


@router.get("")
async def list_alarms(
    state: StateDep, user: UserDep,
    scope: Literal["open", "active", "all"] = "active", limit: int = 200,
) -> dict[str, Any]:
    """The queue, most urgent first. `active` = open plus completed (not yet closed)."""
    states: tuple[str, ...] | None = {
        "open": tuple(OPEN_STATES),
        "active": (*OPEN_STATES, AlarmState.COMPLETED),
        "all": None,
    }[scope]
    after = state.rules.timers.reminder_after

    def load(s: Session) -> list[dict[str, Any]]:
        q = select(Alarm).options(selectinload(Alarm.site), selectinload(Alarm.customer))
        if states is not None:
            q = q.where(Alarm.state.in_(states))
        q = q.order_by(Alarm.id.desc()).limit(max(1, min(limit, 1000)))
        return [alarm_view(a, after) for a in s.execute(q).scalars()]

    views = sorted(await state.db.read(load), key=urgency_key)
    return {
        "server_time": state.clock.now().isoformat(),
        "reminder_after_s": after.total_seconds(),
        "alarms": [masked(v, user.role) for v in views],
    }


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    def load(s: Session) -> dict[str, Any] | None:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None:
            return None
        return alarm_view(alarm, state.rules.timers.reminder_after, with_log=True)

    view = await state.db.read(load)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id}")
    return masked(view, user.role)


async def _act(state: Any, user: Principal, alarm_id: int, action: str,
               fn: Callable[[Session], Alarm]) -> dict[str, Any]:
    try:
        await state.db.write(fn)
    except AlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except MissingReason as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    TRANSITIONS.labels(action).inc()
    await state.dispatcher.changed([alarm_id])
    return await get_alarm(alarm_id, state, user)


@router.post("/{alarm_id}/call-out")
async def call_out(alarm_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Call out the responsible team (again): the next in the call order."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "call_out",
                      lambda s: services.call_out(s, alarm_id, user.name, now, state.rules))


@router.post("/{alarm_id}/accept")
async def accept(alarm_id: int, body: AcceptIn, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Record who answered the call-out."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "accept", lambda s: services.accept(
        s, alarm_id, body.responder, user.name, now, state.rules))


@router.post("/{alarm_id}/close")
async def close(alarm_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Close an alarm whose visit is completed (checked out on the unit)."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "close",
                      lambda s: services.close(s, alarm_id, user.name, now))


@router.post("/{alarm_id}/phone-kvittering")
async def phone_kvittering(alarm_id: int, body: PhoneKvitteringIn, state: StateDep,
                           user: UserDep) -> dict[str, Any]:
    """Close by kvittering over the phone; the reason is kept in the audit trail."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "phone_kvittering", lambda s: services.close_by_phone(
        s, alarm_id, body.reason, user.name, now))
