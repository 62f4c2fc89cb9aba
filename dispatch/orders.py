"""Install, extra-alarm, removal and provider-change orders, worked through their steps.

Each kind has its steps in order, each with an owner (the day provider, the night
organisation, TFH, the alarm centre) and a deadline rule from dispatch/workdays.py
(DOMAIN.md "Getting an alarm in place", "Ending an alarm", "Changing day provider").
Steps move only forward: a step is done once, after the steps it waits for, and never
undone; a step the order turned out not to need (a lock that stays) is marked as not
applying. Every change goes on the order's timeline. When every step is done (or does
not apply) the order is `done`; one never delivered ends `will_not_be_delivered`.

The registry follows the orders: `registered_with_centre` ties the unit's cid to the
site (the device is in the registry from then on), `unit_removed` takes the base units
out of it and `lock_removed` the locks.

TryggError
 ├── OrderNotFound       no order of that id
 ├── OrderRefused        the order cannot be made (409: an extra alarm before the install
 │                       order is confirmed; 422: a provider change too far ahead)
 └── StepRefused         the step cannot be done now (done already, waiting for another
                         step, missing details, the order ended)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import TryggError
from dispatch import audit, keys, workdays
from dispatch.models import (
    Customer,
    Device,
    Order,
    OrderNotice,
    OrderState,
    OrderStep,
    OrderTimelineEntry,
    Provider,
    Site,
)
from dispatch.notices import notices_for
from dispatch.registry import SqlTeamDirectory

DAY_PROVIDER, NIGHT, TFH, CENTRE = "day_provider", "night_organisation", "tfh", "alarm_centre"
OWNERS = (DAY_PROVIDER, NIGHT, TFH, CENTRE)


class OrderNotFound(TryggError):
    def __init__(self, order_id: int) -> None:
        super().__init__(f"no order {order_id}")
        self.order_id = order_id


class OrderRefused(TryggError):
    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict  # 409 (the state of things) rather than 422 (the request)


class StepRefused(TryggError):
    def __init__(self, message: str, *, conflict: bool = True) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True)
class Times:
    """What a step's deadline may count from."""

    received_at: datetime
    effective: date | None = None
    done: dict[str, datetime] = field(default_factory=dict)  # step -> when it was done


DueRule = Callable[[Times], datetime | None]


def _confirm(t: Times) -> datetime:
    return workdays.confirmation_due(t.received_at)


def _keys(t: Times) -> datetime:
    return workdays.keys_due(t.received_at)


def _install(t: Times) -> datetime | None:
    ready = t.done.get("ready_for_install")
    return workdays.installation_due(ready) if ready else None


def _change_start(t: Times) -> datetime | None:
    return workdays.provider_change_starts(t.effective) if t.effective else None


def _none(t: Times) -> None:
    return None


@dataclass(frozen=True)
class StepSpec:
    step: str
    owner: str
    due: DueRule = _none
    after: tuple[str, ...] = ()  # the steps it waits for
    needs: tuple[str, ...] = ()  # the details it must be given


STEPS: dict[str, tuple[StepSpec, ...]] = {
    "install": (
        StepSpec("provider_confirms", DAY_PROVIDER, _confirm),
        StepSpec("night_confirms", NIGHT, _confirm),
        StepSpec("keys_collected", DAY_PROVIDER, _keys, after=("provider_confirms",),
                 needs=("key_numbers",)),
        StepSpec("ready_for_install", DAY_PROVIDER, after=("keys_collected",)),
        StepSpec("registered_with_centre", TFH, after=("ready_for_install", "night_confirms"),
                 needs=("cid",)),
        StepSpec("installed", TFH, _install, after=("registered_with_centre",)),
        StepSpec("delivery_started", DAY_PROVIDER, after=("installed",)),
    ),
    "extra_alarm": (
        StepSpec("provider_confirms", DAY_PROVIDER, _confirm),
        StepSpec("ready_for_install", DAY_PROVIDER, after=("provider_confirms",)),
        StepSpec("registered_with_centre", TFH, after=("ready_for_install",), needs=("cid",)),
        StepSpec("installed", TFH, _install, after=("registered_with_centre",)),
        StepSpec("delivery_started", DAY_PROVIDER, after=("installed",)),
    ),
    "removal": (
        StepSpec("contact_agreed", DAY_PROVIDER, _confirm, needs=("lock_removed",)),
        StepSpec("unit_removed", TFH, after=("contact_agreed",)),
        StepSpec("lock_removed", TFH, after=("unit_removed",)),
        StepSpec("keys_returned", DAY_PROVIDER, after=("contact_agreed",),
                 needs=("to", "identity_checked", "receipt")),
        StepSpec("delivery_ended", DAY_PROVIDER,
                 after=("unit_removed", "lock_removed", "keys_returned")),
    ),
    "provider_change": (
        StepSpec("new_provider_confirms", DAY_PROVIDER, _confirm),
        StepSpec("keys_handed_over", DAY_PROVIDER, _change_start,
                 after=("new_provider_confirms",), needs=("key_numbers",)),
        StepSpec("centre_updated", TFH, _change_start, after=("new_provider_confirms",)),
    ),
}
KINDS = tuple(STEPS)


def spec_of(kind: str, step: str) -> StepSpec:
    for spec in STEPS[kind]:
        if spec.step == step:
            return spec
    raise StepRefused(f"an order of kind {kind} has no step {step!r}; its steps are "
                      f"{', '.join(s.step for s in STEPS[kind])}", conflict=False)


@dataclass(frozen=True)
class NewOrder:
    kind: str
    customer: str
    site: str | None = None
    received_at: datetime | None = None
    provider: str | None = None  # a provider change: the new day provider
    effective: date | None = None  # a provider change: from which date
    assessor: str | None = None  # the needs assessor who sent it: signs its notices


def _times(order: Order) -> Times:
    effective = order.details.get("effective_date")
    return Times(order.received_at, date.fromisoformat(effective) if effective else None,
                 {s.step: s.done_at for s in order.steps if s.done_at is not None})


def _note(order: Order, at: datetime, actor: str, action: str, step: str | None = None,
          note: str | None = None) -> None:
    order.timeline.append(OrderTimelineEntry(at=at, actor=actor, action=action, step=step,
                                             note=note))
    order.version += 1


def _customer(session: Session, code: str) -> Customer:
    customer = session.execute(select(Customer).where(Customer.code == code)
                               ).scalar_one_or_none()
    if customer is None:
        raise OrderRefused(f"no customer {code}")
    return customer


def _site(session: Session, customer: Customer, code: str | None, kind: str) -> Site | None:
    if code is None:
        return next((s for s in customer.sites if s.kind == "main"), None) \
            if kind != "extra_alarm" else None
    site = session.execute(select(Site).where(Site.code == code)).scalar_one_or_none()
    if site is None or site.customer_id != customer.id:
        raise OrderRefused(f"customer {customer.code} has no site {code}")
    return site


def _install_confirmed(session: Session, customer: Customer) -> bool:
    """Whether the customer's install order has been confirmed by the day provider (or
    the customer had an alarm before Trygg kept orders: a main site with a unit)."""
    confirmed = session.execute(
        select(OrderStep.id).join(Order).where(
            Order.customer_id == customer.id, Order.kind == "install",
            Order.state != OrderState.WILL_NOT_BE_DELIVERED,
            OrderStep.step == "provider_confirms", OrderStep.done_at.is_not(None))
        .limit(1)).first()
    if confirmed:
        return True
    open_install = session.execute(select(Order.id).where(
        Order.customer_id == customer.id, Order.kind == "install",
        Order.state == OrderState.OPEN).limit(1)).first()
    return open_install is None and any(
        d.kind == "base_unit" for s in customer.sites if s.kind == "main" for d in s.devices)


def create(session: Session, new: NewOrder, actor: str, now: datetime) -> Order:
    if new.kind not in STEPS:
        raise OrderRefused(f"kind must be one of {', '.join(KINDS)}")
    customer = _customer(session, new.customer)
    site = _site(session, customer, new.site, new.kind)
    received = new.received_at or now
    if received > now:
        raise OrderRefused("received_at is in the future: an order is registered when it "
                           "has arrived")
    details: dict[str, Any] = {"assessor": new.assessor} if new.assessor else {}
    provider = customer.day_provider.code if customer.day_provider else None
    new_provider = None
    if new.kind == "extra_alarm":
        if site is None or site.kind != "extra":
            raise OrderRefused("an extra alarm needs the customer's extra site (`site`, a "
                               "site of kind extra)")
        if not _install_confirmed(session, customer):
            raise OrderRefused(
                f"customer {customer.code}'s install order is not confirmed by the day "
                "provider yet: the extra alarm is ordered only after that (000)",
                conflict=True)
    if new.kind == "provider_change":
        new_provider, change = _provider_change(session, customer, new, received)
        provider, details = new_provider.code, {**details, **change}
    order = Order(kind=new.kind, customer=customer, site=site, state=OrderState.OPEN,
                  received_at=received, created_at=now, created_by=actor,
                  provider_code=provider, details=details, version=0)
    times = Times(received, new.effective)
    order.steps = [OrderStep(position=i, step=s.step, owner=s.owner, due_at=s.due(times),
                             details={}) for i, s in enumerate(STEPS[new.kind], 1)]
    _note(order, now, actor, "created",
          note=f"received {workdays.local(received).isoformat(timespec='minutes')}")
    order.notices = [OrderNotice(recipient=n.recipient, created_at=now, text=n.text)
                     for n in notices_for(order, customer.day_provider, new_provider)]
    session.add(order)
    session.flush()
    return order


def _provider_change(session: Session, customer: Customer, new: NewOrder,
                     received: datetime) -> tuple[Provider, dict[str, Any]]:
    if not new.provider or new.effective is None:
        raise OrderRefused("a provider change needs `provider` (the new day provider's "
                           "code) and `effective_date`")
    provider = session.execute(select(Provider).where(
        Provider.code == new.provider, Provider.kind == "day")).scalar_one_or_none()
    if provider is None:
        raise OrderRefused(f"no day provider {new.provider}")
    if customer.day_provider_id == provider.id:
        raise OrderRefused(f"{new.provider} is the customer's day provider already",
                           conflict=True)
    latest = workdays.latest_provider_change(received)
    first = workdays.local(received).date()
    if not first < new.effective <= latest:
        raise OrderRefused(f"the change takes effect within 5 working days of the request: "
                           f"between {first.isoformat()} (exclusive) and "
                           f"{latest.isoformat()} (004 §2.4)")
    old = customer.day_provider.code if customer.day_provider else None
    return provider, {"effective_date": new.effective.isoformat(), "old_provider": old}


def get(session: Session, order_id: int) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


def complete_step(session: Session, order_id: int, step: str, details: dict[str, Any],
                  actor: str, now: datetime) -> Order:
    """Do one step with its details; refused if done, waiting, or missing details."""
    order = get(session, order_id)
    spec = spec_of(order.kind, step)
    if order.state != OrderState.OPEN:
        raise StepRefused(f"order {order.id} is {order.state}: its steps are closed")
    row = next(s for s in order.steps if s.step == step)
    if row.done_at is not None:
        raise StepRefused(f"{step} was done at {row.done_at.isoformat()} by {row.done_by}; "
                          "steps move only forward")
    done = {s.step for s in order.steps if s.done_at is not None}
    waiting = [a for a in spec.after if a not in done]
    if waiting:
        raise StepRefused(f"{step} waits for {', '.join(waiting)}")
    missing = [n for n in spec.needs if details.get(n) in (None, "", [])]
    if missing:
        raise StepRefused(f"{step} needs {', '.join(missing)}", conflict=False)
    _check_details(step, details)
    row.done_at, row.done_by, row.details = now, actor, dict(details)
    _note(order, now, actor, "step_done", step)
    _apply(session, order, step, details, actor, now)
    _reschedule(order)
    if all(s.done_at is not None for s in order.steps):
        order.state, order.closed_at = OrderState.DONE, now
        _note(order, now, actor, "done")
    return order


def _check_details(step: str, details: dict[str, Any]) -> None:
    if step == "keys_returned" and details.get("identity_checked") is not True:
        raise StepRefused("keys are returned only against identity shown: "
                          "identity_checked must be true", conflict=False)
    if step == "contact_agreed" and not isinstance(details.get("lock_removed"), bool):
        raise StepRefused("contact_agreed needs lock_removed: true or false", conflict=False)
    if step == "registered_with_centre" and not str(details.get("cid", "")).isdigit():
        raise StepRefused("the unit's cid is digits", conflict=False)
    if step == "installed" and details.get("lock_cid") is not None \
            and not str(details["lock_cid"]).isdigit():
        raise StepRefused("the keyless lock's cid is digits", conflict=False)


def _apply(session: Session, order: Order, step: str, details: dict[str, Any], actor: str,
           now: datetime) -> None:
    """What a step changes beyond the order: the registry, steps that do not apply."""
    if step == "registered_with_centre":
        _register_unit(session, order, str(details["cid"]), details.get("model"))
    elif step == "installed" and details.get("lock_cid"):
        _register_unit(session, order, str(details["lock_cid"]), details.get("lock_model"),
                       kind="lock")
    elif step == "unit_removed":
        _remove_devices(session, order, "base_unit")
    elif step == "lock_removed":
        _remove_devices(session, order, "lock")
    elif step in ("keys_collected", "keys_handed_over", "keys_returned"):
        _move_keys(session, order, step, details, now)
    elif step == "contact_agreed" and details["lock_removed"] is False:
        lock = next(s for s in order.steps if s.step == "lock_removed")
        lock.done_at, lock.done_by, lock.details = now, actor, {"applies": False}
        _note(order, now, actor, "not_applicable", "lock_removed",
              "the lock stays (agreed with the customer)")


def _move_keys(session: Session, order: Order, step: str, details: dict[str, Any],
               now: datetime) -> None:
    """The key sets follow the order: collected, handed to a new provider, returned."""
    try:
        if step == "keys_collected":
            numbers = [str(n) for n in details["key_numbers"]]
            night_key = details.get("night_key")
            if night_key is not None and night_key not in numbers:
                raise StepRefused("night_key must be one of key_numbers", conflict=False)
            provider = session.execute(select(Provider).where(
                Provider.code == order.provider_code)).scalar_one_or_none()
            if provider is not None and not provider.municipal and (
                    len(numbers) < 2 or night_key is None):
                raise StepRefused(
                    f"{provider.name} is a private provider: two key sets are collected, "
                    "one of them for the night patrol (key_numbers with two numbers, and "
                    "night_key naming the night patrol's)", conflict=False)
            site = order.site or next((s for s in order.customer.sites if s.kind == "main"),
                                      None)
            night = SqlTeamDirectory(session).night_team(site.area_code) if site else None
            holders = {n: ((NIGHT, night.code if night else None) if n == night_key
                           else (DAY_PROVIDER, order.provider_code)) for n in numbers}
            keys.collect(session, order.customer_id, holders, now, order.id)
        elif step == "keys_handed_over":
            keys.hand_over(session, order.customer_id, [str(n) for n in details["key_numbers"]],
                           DAY_PROVIDER, order.provider_code, now, order.id)
        else:
            keys.return_all(session, order.customer_id, str(details["to"]),
                            str(details["receipt"]), now, order.id)
    except keys.KeyRefused as exc:
        raise StepRefused(str(exc)) from exc


def _register_unit(session: Session, order: Order, cid: str, model: str | None, *,
                   kind: str = "base_unit") -> None:
    site = order.site or next((s for s in order.customer.sites if s.kind == "main"), None)
    if site is None:
        raise StepRefused(f"customer {order.customer.code} has no site to install at")
    device = session.get(Device, cid)
    if device is not None and device.site_id not in (None, site.id):
        raise StepRefused(f"unit {cid} is registered at another site already")
    if device is None:
        session.add(Device(cid=cid, site_id=site.id, kind=kind, model=model))
    else:
        device.site_id = site.id


def _remove_devices(session: Session, order: Order, kind: str) -> None:
    site = order.site or next((s for s in order.customer.sites if s.kind == "main"), None)
    if site is None:
        return
    for device in list(site.devices):
        if device.kind == kind:
            session.delete(device)


def _reschedule(order: Order) -> None:
    """Deadlines that count from a step (installation from ready_for_install)."""
    times = _times(order)
    for row in order.steps:
        if row.done_at is None and row.due_at is None:
            row.due_at = spec_of(order.kind, row.step).due(times)


def will_not_be_delivered(session: Session, order_id: int, reason: str, actor: str,
                          now: datetime) -> Order:
    """End an order that will never be delivered (before delivery started)."""
    order = get(session, order_id)
    if order.state != OrderState.OPEN:
        raise StepRefused(f"order {order.id} is {order.state} already")
    if any(s.step == "delivery_started" and s.done_at for s in order.steps):
        raise StepRefused("delivery has started: end it with a removal order instead")
    order.state, order.closed_at = OrderState.WILL_NOT_BE_DELIVERED, now
    _note(order, now, actor, "will_not_be_delivered", note=reason)
    return order


def overdue_steps(order: Order, now: datetime) -> list[OrderStep]:
    return [s for s in order.steps if s.done_at is None and s.due_at is not None
            and s.due_at < now and order.state == OrderState.OPEN]


def day_provider_at(session: Session, customer: Customer, at: datetime) -> str | None:
    """The customer's day provider for a routing decision at `at`: that of the latest
    provider change that has started by then (07:00 on its date), else the registry's.

    Asked at decision time, so an alarm at 07:00:00 on the date goes to the new provider
    however late a sweep would run; an alarm routed before keeps its team (frozen)."""
    changes = session.execute(
        select(Order.provider_code, Order.details).where(
            Order.customer_id == customer.id, Order.kind == "provider_change",
            Order.state != OrderState.WILL_NOT_BE_DELIVERED)).all()
    started = [(date.fromisoformat(d["effective_date"]), code) for code, d in changes
               if workdays.provider_change_starts(date.fromisoformat(d["effective_date"]))
               <= at]
    if started:
        return max(started)[1]
    return customer.day_provider.code if customer.day_provider else None


def apply_started_provider_changes(session: Session, now: datetime) -> int:
    """Make the registry say what routing already does: a provider change that has
    started becomes the customer's day provider (once, on the order's timeline and in the
    audit log). Routing does not wait for this (`day_provider_at`)."""
    applied = 0
    for order in session.execute(select(Order).where(
            Order.kind == "provider_change",
            Order.state != OrderState.WILL_NOT_BE_DELIVERED)).scalars():
        effective = date.fromisoformat(order.details["effective_date"])
        if order.details.get("applied_at") or workdays.provider_change_starts(effective) > now:
            continue
        provider = session.execute(select(Provider).where(
            Provider.code == order.provider_code)).scalar_one_or_none()
        if provider is None:
            continue
        before = order.customer.day_provider.code if order.customer.day_provider else None
        order.customer.day_provider_id = provider.id
        order.details = {**order.details, "applied_at": now.isoformat()}
        _note(order, now, "system", "provider_changed",
              note=f"day provider {before} -> {provider.code}")
        audit.record(session, audit.System("system"), "registry.update", now,
                     subject=("customers", order.customer.code),
                     detail={"changes": {"day_provider_id": {
                         "before": before, "after": provider.code}}, "order": order.id})
        applied += 1
    return applied


def customers_changing_provider(session: Session) -> set[int]:
    """Customers with a provider change not yet written into the registry."""
    return {cid for cid, details in session.execute(
        select(Order.customer_id, Order.details).where(
            Order.kind == "provider_change",
            Order.state != OrderState.WILL_NOT_BE_DELIVERED)).all()
        if not details.get("applied_at")}
