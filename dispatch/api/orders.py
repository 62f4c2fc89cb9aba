"""Order routes: register an order, complete its steps, list and filter them (issue 8).

`POST /api/orders` answers the order with `id`, `kind`, `customer`, `state`, `steps`
(each `step`, `owner`, `due` as ISO 8601 with the Stockholm offset, `done_at`, `done_by`)
and `timeline`. Orders hold no personal data beyond codes, except what a step records
(whom keys went to), which is shown to the roles that work the orders only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatch import audit, keys, orders
from dispatch.api.deps import AppState, StateDep, client_address, known_id
from dispatch.api.roles import allow
from dispatch.models import Customer, Order, OrderState, OrderStep, Team
from dispatch.signin import Principal
from dispatch.views import MASK
from dispatch.workdays import local

router = APIRouter(prefix="/api/orders", tags=["orders"])
# TFH works the orders, the alarm centre registers and follows them, the alarm manager
# follows them up.
Worker = Annotated[Principal, allow("tfh", "operator", "alarm_manager")]
# A provider's or the night organisation's staff (a responder) see their organisation's
# orders and do its steps: confirm, collect and return keys.
Staff = Annotated[Principal, allow("tfh", "operator", "alarm_manager", "responder")]


@dataclass(frozen=True)
class Organisation:
    """A responder's organisation: their team's provider, day or night."""

    provider: str
    night: bool

    def sees(self, order: Order) -> bool:
        if self.night:  # the night organisation confirms installs and holds a key set
            return any(s.owner == orders.NIGHT for s in order.steps)
        return self.provider in (order.provider_code, order.details.get("old_provider"))

    def may_do(self, order: Order, step: str) -> bool:
        owner = next((s.owner for s in order.steps if s.step == step), None)
        if self.night:
            return owner == orders.NIGHT
        return owner == orders.DAY_PROVIDER and order.provider_code == self.provider


def organisation_of(session: Session, user: Principal) -> Organisation | None:
    """None for the roles that see every order; a responder's organisation otherwise
    (a responder whose team is gone has none, and sees nothing)."""
    if user.role != "responder":
        return None
    team = session.execute(select(Team).where(Team.code == user.team)).scalar_one_or_none()
    if team is None:
        return Organisation(provider="", night=False)
    return Organisation(provider=team.provider.code, night=team.provider.kind == "night")


class OrderIn(BaseModel):
    kind: Literal["install", "extra_alarm", "removal", "provider_change"]
    customer: str = Field(min_length=1, max_length=64, description="the customer's code")
    site: str | None = Field(default=None, max_length=64,
                             description="the site's code (default: the main site)")
    received_at: datetime | None = Field(
        default=None, description="when the order arrived (ISO 8601 with offset); "
                                  "default now")
    provider: str | None = Field(default=None, max_length=64,
                                 description="provider_change: the new day provider's code")
    effective_date: date | None = Field(default=None,
                                        description="provider_change: from which date")
    assessor: str | None = Field(default=None, max_length=200,
                                 description="the needs assessor who sent it (signs notices)")


class StepIn(BaseModel):
    model_config = {"extra": "allow"}  # the step's details: key numbers, the receipt, cid


class EndIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def _iso(at: datetime | None) -> str | None:
    return local(at).isoformat() if at else None


def order_view(session: Session, order: Order, now: datetime) -> dict[str, Any]:
    overdue = {s.step for s in orders.overdue_steps(order, now)}
    return {
        "id": order.id,
        "kind": order.kind,
        "customer": order.customer.code,
        "site": order.site.code if order.site else None,
        "site_label": site_label(order),
        "state": order.state,
        "provider": order.provider_code,
        "received_at": _iso(order.received_at),
        "details": order.details,
        "overdue": bool(overdue),
        "steps": [{"step": s.step, "owner": s.owner, "due": _iso(s.due_at),
                   "done_at": _iso(s.done_at), "done_by": s.done_by,
                   "applies": s.details.get("applies", True), "overdue": s.step in overdue,
                   "details": s.details} for s in order.steps],
        "timeline": [{"at": _iso(e.at), "actor": e.actor, "action": e.action,
                      "step": e.step, "note": e.note} for e in order.timeline],
        "notices": [{"recipient": n.recipient, "created_at": _iso(n.created_at),
                     "text": n.text} for n in order.notices],
        # The customer's key sets, live and returned, with every hand-over and receipt,
        # whichever order moved them.
        "keys": [keys.key_view(k) for k in keys.all_sets(session, order.customer_id)],
    }


def site_label(order: Order) -> str | None:
    """An extra site as the alarm centre keeps it (000): "Extra <address>", with the name
    on the door; masked for a customer with protected identity."""
    site = order.site
    if site is None:
        return None
    if order.customer.protected_identity:
        return f"Extra {MASK}" if site.kind == "extra" else MASK
    door = f" ({site.door_name})" if site.door_name else ""
    return f"{'Extra ' if site.kind == 'extra' else ''}{site.address}{door}"


class StaffRefused(Exception):
    """A responder asked for another organisation's step."""


def _refused(exc: Exception) -> HTTPException:
    if isinstance(exc, orders.OrderNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    conflict = getattr(exc, "conflict", False)
    return HTTPException(status.HTTP_409_CONFLICT if conflict
                         else status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


async def _change(state: AppState, user: Principal, request: Request, action: str,
                  fn: Callable[[Session], Order]) -> dict[str, Any]:
    now = state.clock.now()

    def run(s: Session) -> dict[str, Any]:
        order = fn(s)
        audit.record(s, user, action, now, subject=("order", order.id),
                     address=client_address(request),
                     detail={"kind": order.kind, "state": order.state})
        return order_view(s, order, now)

    try:
        return await state.db.write(run)
    except (orders.OrderNotFound, orders.OrderRefused, orders.StepRefused) as exc:
        raise _refused(exc) from exc


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_order(body: OrderIn, request: Request, state: StateDep,
                       user: Worker) -> dict[str, Any]:
    """Register an order, with the time it arrived; its steps get their deadlines."""
    if body.received_at is not None and body.received_at.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "received_at needs a UTC offset, e.g. 2026-11-27T16:05:00+01:00")
    new = orders.NewOrder(kind=body.kind, customer=body.customer, site=body.site,
                          received_at=body.received_at, provider=body.provider,
                          effective=body.effective_date, assessor=body.assessor)
    now = state.clock.now()
    return await _change(state, user, request, "order.create",
                         lambda s: orders.create(s, new, user.name, now))


@router.post("/{order_id}/steps/{step}")
async def complete_step(order_id: int, step: str, body: StepIn, request: Request,
                        state: StateDep, user: Staff) -> dict[str, Any]:
    """Do a step, with its details (key numbers, the receipt, the unit's cid). A
    responder does their own organisation's steps of its orders only."""
    known_id(order_id, "order")
    details = body.model_dump()
    now = state.clock.now()

    def do(s: Session) -> Order:
        org = organisation_of(s, user)
        if org is not None:
            order = orders.get(s, order_id)
            if not org.sees(order):
                raise orders.OrderNotFound(order_id)
            if not org.may_do(order, step):
                raise StaffRefused(f"{step} is not your organisation's step")
        return orders.complete_step(s, order_id, step, details, user.name, now)

    try:
        return await _change(state, user, request, "order.step", do)
    except StaffRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc


@router.post("/{order_id}/will-not-be-delivered")
async def will_not_be_delivered(order_id: int, body: EndIn, request: Request,
                                state: StateDep, user: Worker) -> dict[str, Any]:
    known_id(order_id, "order")
    now = state.clock.now()
    return await _change(state, user, request, "order.will_not_be_delivered",
                         lambda s: orders.will_not_be_delivered(s, order_id, body.reason,
                                                                user.name, now))


@router.get("/{order_id}")
async def get_order(order_id: int, state: StateDep, user: Staff) -> dict[str, Any]:
    known_id(order_id, "order")
    now = state.clock.now()

    def load(s: Session) -> dict[str, Any]:
        order = orders.get(s, order_id)
        org = organisation_of(s, user)
        if org is not None and not org.sees(order):
            raise orders.OrderNotFound(order_id)
        return order_view(s, order, now)

    try:
        return await state.db.read(load)
    except orders.OrderNotFound as exc:
        raise _refused(exc) from exc


@router.get("")
async def list_orders(
    state: StateDep, user: Staff,
    order_state: Annotated[Literal["open", "done", "will_not_be_delivered"] | None,
                           Query(alias="state")] = None,
    kind: Literal["install", "extra_alarm", "removal", "provider_change"] | None = None,
    owner: Annotated[Literal["day_provider", "night_organisation", "tfh", "alarm_centre"]
                     | None, Query(description="orders with an open step of this owner")
                     ] = None,
    overdue: Annotated[bool | None, Query(description="only orders with a step past due")
                       ] = None,
    customer: str | None = None,
) -> dict[str, Any]:
    """Orders, the most urgent open step first (then newest)."""
    now = state.clock.now()

    def load(s: Session) -> list[dict[str, Any]]:
        q = select(Order).options(selectinload(Order.steps), selectinload(Order.timeline),
                                  selectinload(Order.customer), selectinload(Order.site))
        if order_state is not None:
            q = q.where(Order.state == order_state)
        if kind is not None:
            q = q.where(Order.kind == kind)
        if customer is not None:
            q = q.where(Order.customer.has(Customer.code == customer))
        if owner is not None:
            q = q.where(Order.steps.any((OrderStep.owner == owner)
                                        & OrderStep.done_at.is_(None)))
        if overdue:
            q = q.where(Order.state == OrderState.OPEN, Order.steps.any(
                OrderStep.done_at.is_(None) & (OrderStep.due_at < now)))
        org = organisation_of(s, user)
        views = [order_view(s, o, now) for o in s.execute(q.order_by(Order.id.desc())).scalars()
                 if org is None or org.sees(o)]
        return sorted(views, key=_urgency)

    return {"server_time": now.isoformat(), "orders": await state.db.read(load)}


def _urgency(view: dict[str, Any]) -> tuple[int, str, int]:
    dues = [s["due"] for s in view["steps"] if s["done_at"] is None and s["due"]]
    # ISO strings with the same offset compare in time order only within one offset:
    # the UTC instant decides.
    first = min((datetime.fromisoformat(d).timestamp() for d in dues), default=float("inf"))
    return (0 if view["state"] == "open" else 1, f"{first:020.3f}", -view["id"])
