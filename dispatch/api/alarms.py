"""Alarm routes: the queue, one alarm with its audit trail, and the operator's actions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatch import audit, services
from dispatch.api.audit import note
from dispatch.api.deps import AppState, StateDep, client_address, known_id
from dispatch.api.roles import allow
from dispatch.keys import key_view, live_sets
from dispatch.lifecycle import InvalidTransition, MissingReason
from dispatch.metrics import REVEALS, TRANSITIONS
from dispatch.models import OPEN_STATES, Alarm, AlarmState, Site
from dispatch.services import AlarmNotFound
from dispatch.signin import Principal
from dispatch.views import alarm_view, masked, revealed, urgency_key

router = APIRouter(prefix="/api/alarms", tags=["alarms"])
# Who sees the queue: the alarm centre, the responders (their own team's alarms only) and
# the alarm manager, who follows answer and arrival times up.
Reader = Annotated[Principal, allow("operator", "responder", "alarm_manager")]
Operator = Annotated[Principal, allow("operator")]
Answerer = Annotated[Principal, allow("operator", "responder")]
# The responder's phone (/m/): what only the person on the way can say.
Responder = Annotated[Principal, allow("responder")]


def visible_to(alarm: Alarm, user: Principal) -> bool:
    """A responder sees their own team's alarms and nothing else."""
    return user.role != "responder" or (user.team is not None and alarm.team_code == user.team)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AcceptIn(BaseModel):
    responder: Text | None = Field(
        default=None, max_length=200,
        description="name of the person who answered the call-out; a responder accepting "
                    "from their phone is themselves, whatever is given")


class DeclineIn(BaseModel):
    responder: Text | None = Field(
        default=None, max_length=200,
        description="who declined (the operator records a decline by phone); a responder "
                    "declining from their phone is themselves")


class ReasonIn(BaseModel):
    reason: Text = Field(max_length=2000)


class FalseAlarmIn(BaseModel):
    reason: str = Field(default="", max_length=2000,
                        description="what happened (optional): pressed by mistake, say")


def _who(user: Principal, given: str | None) -> str:
    """Whom an answer is from: a responder is always themselves; the operator names them."""
    if user.role == "responder":
        return user.name
    if not given:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "responder: the name of the person who answered is required")
    return given


class PhoneKvitteringIn(BaseModel):
    reason: Text = Field(max_length=2000,
                         description="why the alarm was handled without kvittering on the unit")


# The queue scopes are never cut short: an open alarm that does not fit a page is an alarm
# nobody sees. History grows without end, so it is paged, newest first.
QUEUE_SCOPES: dict[str, tuple[str, ...]] = {
    "open": tuple(OPEN_STATES),
    "active": (*OPEN_STATES, AlarmState.COMPLETED),
}
HISTORY_SCOPES: dict[str, tuple[str, ...] | None] = {
    "closed": (AlarmState.CLOSED,),
    "all": None,
}
MAX_PAGE = 500
# A cursor is the id of the last alarm of the page before: positive, and small enough
# for any database's integer column.
_CURSOR = re.compile(r"[1-9][0-9]{0,17}")


def _cursor_id(cursor: str) -> int:
    if not _CURSOR.fullmatch(cursor):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "cursor is not one this API gave out: pass the next_cursor of the "
                            "previous page unchanged, or leave it out for the first page")
    return int(cursor)


@router.get("")
async def list_alarms(
    state: StateDep, user: Reader,
    scope: Literal["open", "active", "closed", "all"] = "active",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=(
        "page size of `closed` and `all`; the queue scopes are never cut short"))] = 200,
    cursor: Annotated[str | None, Query(description=(
        "`next_cursor` of the previous page of `closed` or `all`"))] = None,
) -> dict[str, Any]:
    """The queue, or a page of history.

    `open` and `active` (open plus completed, not yet closed) return every such alarm,
    most urgent first, however many there are. `closed` and `all` return the newest
    alarms first, `limit` at a time; `next_cursor` (null on the last page) fetches the
    next page. The cursor is keyed on the alarm id, so alarms added or closed meanwhile
    never shift a page: nothing is shown twice and nothing older is skipped.
    """
    after = state.rules.timers.reminder_after
    if scope in QUEUE_SCOPES:
        if cursor is not None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"scope={scope} is the whole queue and has no pages; "
                                "cursor applies to scope=closed and scope=all")
        states: tuple[str, ...] | None = QUEUE_SCOPES[scope]
        before, size = None, None
    else:
        states = HISTORY_SCOPES[scope]
        before, size = (None if cursor is None else _cursor_id(cursor)), limit

    def load(s: Session) -> tuple[list[dict[str, Any]], str | None]:
        # One query for the alarms, one per relation for their sites and customers (no
        # N+1); views are built, masked and sorted here, off the event loop.
        q = select(Alarm).options(selectinload(Alarm.site).selectinload(Site.customer),
                         selectinload(Alarm.customer))
        if states is not None:
            q = q.where(Alarm.state.in_(states))
        if user.role == "responder":
            q = q.where(Alarm.team_code == user.team)
        if size is None:
            views = sorted((alarm_view(a, after) for a in s.execute(q).scalars()),
                           key=urgency_key)
            return [masked(v) for v in views], None
        if before is not None:
            q = q.where(Alarm.id < before)
        rows = list(s.execute(q.order_by(Alarm.id.desc()).limit(size + 1)).scalars())
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = str(rows[-1].id) if more else None
        return [masked(alarm_view(a, after)) for a in rows], next_cursor

    alarms, next_cursor = await state.db.read(load)
    return {
        "server_time": state.clock.now().isoformat(),
        "reminder_after_s": after.total_seconds(),
        "scope": scope,
        "alarms": alarms,
        "next_cursor": next_cursor,
    }


async def _view(state: AppState, user: Principal, alarm_id: int) -> dict[str, Any]:
    """One alarm with its trail, unmasked: for the route to mask or reveal."""
    known_id(alarm_id, "alarm")

    def load(s: Session) -> dict[str, Any] | None:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None or not visible_to(alarm, user):
            return None
        view = alarm_view(alarm, state.rules.timers.reminder_after, with_log=True)
        # The key numbers a responder needs to get in, and who holds each set now.
        view["keys"] = [] if alarm.customer_id is None else [
            key_view(k, with_receipts=False) for k in live_sets(s, alarm.customer_id)]
        # The site's keyless locks: what POST /api/alarms/{id}/open-lock can open.
        view["locks"] = [] if alarm.site is None else [
            d.cid for d in alarm.site.devices if d.kind == "lock"]
        return view

    view = await state.db.read(load)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id}")
    return view


class RaiseIn(BaseModel):
    site: Text = Field(max_length=64, description="the site's code, e.g. K-1001-1")
    reason: Text = Field(max_length=2000,
                         description="why: the customer phoned, the unit is broken, ...")
    priority: int = Field(default=5, ge=0, le=9)


@router.post("", status_code=status.HTTP_201_CREATED)
async def raise_alarm(body: RaiseIn, state: StateDep, user: Operator) -> dict[str, Any]:
    """Raise an alarm by hand: the customer phoned the centre, or the unit is broken and
    could not. Routed and called out as a press at the site's base unit; the responder
    checks in and out from the phone. 409 if the site has an open alarm already."""
    now = state.clock.now()
    try:
        alarm_id = await state.db.write(lambda s: services.raise_by_phone(
            s, body.site, body.reason, user.name, now, state.rules, body.priority).id)
    except services.UnknownSite as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except services.AlreadyOpen as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    TRANSITIONS.labels("raise_by_phone").inc()
    await state.dispatcher.changed([alarm_id])
    return masked(await _view(state, user, alarm_id))


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: int, request: Request, state: StateDep,
                    user: Reader) -> dict[str, Any]:
    """One alarm with its trail; the view is in the audit log."""
    view = await _view(state, user, alarm_id)
    await note(state, user, "alarm.view", subject=("alarm", alarm_id), request=request)
    return masked(view)


@router.post("/{alarm_id}/reveal")
async def reveal(alarm_id: int, request: Request, state: StateDep,
                 user: Operator) -> dict[str, Any]:
    """Show a protected identity's name, address and door name in clear, to the operator
    handling this open alarm; who, when and which alarm go into the audit log."""
    view = await _view(state, user, alarm_id)
    customer = view["customer"]
    if customer is None or not customer["protected_identity"]:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"alarm {alarm_id}'s customer has no protected identity: "
                            "everything is shown already")
    if view["state"] not in OPEN_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"alarm {alarm_id} is {view['state']}: a protected identity is "
                            "revealed only while the alarm is open")
    now = state.clock.now()
    await state.db.write(lambda s: audit.record(
        s, user, "alarm.reveal", now, subject=("alarm", alarm_id),
        address=client_address(request), detail={"customer": customer["code"]}))
    REVEALS.inc()
    return {"alarm_id": alarm_id, "revealed_at": now.isoformat(), **revealed(view)}


async def _act(state: AppState, user: Principal, alarm_id: int, action: str,
               fn: Callable[[Session], Alarm]) -> dict[str, Any]:
    await _view(state, user, alarm_id)  # a responder acts on their own team's alarms only

    def checked(s: Session) -> Alarm:
        # Again inside the write, on the locked row: the alarm may have been handed to
        # another team between the read above and this write (the 22:00 hand-over).
        alarm = services.lock_alarm(s, alarm_id)
        if not visible_to(alarm, user):
            raise AlarmNotFound(alarm_id)
        return fn(s)

    try:
        await state.db.write(checked)
    except AlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except MissingReason as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    TRANSITIONS.labels(action).inc()
    await state.dispatcher.changed([alarm_id])
    return masked(await _view(state, user, alarm_id))


@router.post("/{alarm_id}/call-out")
async def call_out(alarm_id: int, state: StateDep, user: Operator) -> dict[str, Any]:
    """Call out the responsible team (again): the next in the call order."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "call_out",
                      lambda s: services.call_out(s, alarm_id, user.name, now, state.rules))


@router.post("/{alarm_id}/accept")
async def accept(alarm_id: int, body: AcceptIn, state: StateDep, user: Answerer) -> dict[str, Any]:
    """Record who answered the call-out: the call chain stops."""
    now = state.clock.now()
    responder = _who(user, body.responder)
    return await _act(state, user, alarm_id, "accept", lambda s: services.accept(
        s, alarm_id, responder, user.name, now, state.rules))


@router.post("/{alarm_id}/decline")
async def decline(alarm_id: int, body: DeclineIn, state: StateDep,
                  user: Answerer) -> dict[str, Any]:
    """A called responder cannot go: the next of the call order is called at once."""
    now = state.clock.now()
    responder = _who(user, body.responder)
    return await _act(state, user, alarm_id, "decline", lambda s: services.decline(
        s, alarm_id, responder, user.name, now, state.rules))


@router.post("/{alarm_id}/on-my-way")
async def on_my_way(alarm_id: int, state: StateDep, user: Responder) -> dict[str, Any]:
    """The responder who accepted is on the way."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "on_my_way",
                      lambda s: services.on_my_way(s, alarm_id, user.name, now))


@router.post("/{alarm_id}/check-in")
async def check_in(alarm_id: int, state: StateDep, user: Responder) -> dict[str, Any]:
    """On site, from the responder's phone, when the unit cannot (a broken unit). A later
    check-in on the unit counts first: its time becomes the arrival."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "check_in",
                      lambda s: services.check_in_by_responder(s, alarm_id, user.name, now))


@router.post("/{alarm_id}/check-out")
async def check_out(alarm_id: int, state: StateDep, user: Responder) -> dict[str, Any]:
    """The visit is over, from the responder's phone."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "check_out",
                      lambda s: services.check_out_by_responder(s, alarm_id, user.name, now))


@router.post("/{alarm_id}/false-alarm")
async def false_alarm(alarm_id: int, body: FalseAlarmIn, state: StateDep,
                      user: Operator) -> dict[str, Any]:
    """Cancel as a false alarm: closed, the chains stop, the team is told to stand down."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "false_alarm", lambda s: services.false_alarm(
        s, alarm_id, body.reason, user.name, now, state.rules))


@router.post("/{alarm_id}/visit-reason")
async def visit_reason(alarm_id: int, body: ReasonIn, state: StateDep,
                       user: Answerer) -> dict[str, Any]:
    """Why a visit took longer than the standard 15 minutes (004 §6.1); 409 for a visit
    of 15 minutes or less, or one not checked in and out."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "visit_reason",
                      lambda s: services.give_visit_reason(s, alarm_id, body.reason,
                                                           user.name, now))


@router.post("/{alarm_id}/close")
async def close(alarm_id: int, state: StateDep, user: Operator) -> dict[str, Any]:
    """Close an alarm whose visit is completed (checked out on the unit)."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "close",
                      lambda s: services.close(s, alarm_id, user.name, now))


@router.post("/{alarm_id}/phone-kvittering")
async def phone_kvittering(alarm_id: int, body: PhoneKvitteringIn, state: StateDep,
                           user: Operator) -> dict[str, Any]:
    """Close by kvittering over the phone; the reason is kept in the audit trail."""
    now = state.clock.now()
    return await _act(state, user, alarm_id, "phone_kvittering", lambda s: services.close_by_phone(
        s, alarm_id, body.reason, user.name, now))
