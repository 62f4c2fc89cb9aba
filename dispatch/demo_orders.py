"""A few orders in different states for the demo's order board, on the shipped registry.

`trygg run --simulate` calls `seed_demo_orders` once at start: on a database with the
shipped customers (config/municipality.yaml) and no orders yet, it works these through
`dispatch.orders` as people would have, at times before `now`:

- K-1004: an install done two months ago (keys collected, one set to the night patrol),
  and now its removal, agreed with the provider, waiting for TFH and the keys' return;
- K-1005: an install in progress whose keys are overdue (24 hours from the order);
- K-1007: an install the customer no longer needs (will not be delivered);
- K-1001: a provider change from Solrosen to Trygga Händer, confirmed, taking effect
  three working days after it was asked for;
- K-1002: an extra alarm for the summer house, just received.

The registry does not change: the finished install registers the unit K-1004 has, and
no step that takes a unit out of the registry is done. A database with any order, or
without these customers, is left as it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import orders, workdays
from dispatch.models import Customer, Order

ASSESSOR = "Helena Beviljare"  # the needs assessor who signs the orders' notices
CENTRE = "demo"  # the demo's operator registers the orders
CUSTOMERS = ("K-1001", "K-1002", "K-1004", "K-1005", "K-1007")


def seed_demo_orders(session: Session, now: datetime) -> list[Order]:
    """Create the demo's orders; nothing if there are orders already (or no demo customers)."""
    if session.execute(select(Order.id).limit(1)).first() is not None:
        return []
    known = session.execute(select(func.count()).select_from(Customer).where(
        Customer.code.in_(CUSTOMERS))).scalar_one()
    if known != len(CUSTOMERS):
        return []
    return [
        *_installed_then_removal(session, now),
        _install_with_keys_overdue(session, now),
        _install_not_delivered(session, now),
        _provider_change(session, now),
        _extra_alarm_just_received(session, now),
    ]


def _order(session: Session, received: datetime, kind: str, customer: str,
           **fields: Any) -> Order:
    new = orders.NewOrder(kind=kind, customer=customer, received_at=received,
                          assessor=ASSESSOR, **fields)
    return orders.create(session, new, CENTRE, received + timedelta(minutes=12))


def _steps(session: Session, order: Order, start: datetime,
           steps: list[tuple[timedelta, str, str, dict[str, Any]]]) -> None:
    """Do each step at `start` plus its offset, as its actor."""
    for after, step, actor, details in steps:
        orders.complete_step(session, order.id, step, details, actor, start + after)


def _installed_then_removal(session: Session, now: datetime) -> list[Order]:
    received = now - timedelta(days=60, hours=3)
    install = _order(session, received, "install", "K-1004")
    _steps(session, install, received, [
        (timedelta(hours=1), "provider_confirms", "Petra Sjöberg", {}),
        (timedelta(hours=2), "night_confirms", "Nattpatrull Bro", {}),
        (timedelta(hours=20), "keys_collected", "Petra Sjöberg",
         {"key_numbers": ["TH-1004", "N-1004"], "night_key": "N-1004"}),
        (timedelta(days=1), "ready_for_install", "Petra Sjöberg", {}),
        (timedelta(days=2), "registered_with_centre", "Tove TFH",
         {"cid": "100004", "model": "Demo base unit"}),
        (timedelta(days=2, hours=2), "installed", "Tove TFH", {}),
        (timedelta(days=3), "delivery_started", "Petra Sjöberg", {}),
    ])
    received = now - timedelta(days=1, hours=2)
    removal = _order(session, received, "removal", "K-1004")
    _steps(session, removal, received, [
        (timedelta(hours=1), "contact_agreed", "Petra Sjöberg",
         {"lock_removed": False, "contact": "the customer's son"}),
    ])
    return [install, removal]


def _install_with_keys_overdue(session: Session, now: datetime) -> Order:
    received = now - timedelta(days=2, hours=1)
    order = _order(session, received, "install", "K-1005")
    _steps(session, order, received, [
        (timedelta(hours=1), "provider_confirms", "Eva Lund", {}),
        (timedelta(hours=3), "night_confirms", "Nattpatrull Bro", {}),
    ])
    return order


def _install_not_delivered(session: Session, now: datetime) -> Order:
    received = now - timedelta(days=5)
    order = _order(session, received, "install", "K-1007")
    _steps(session, order, received, [
        (timedelta(hours=2), "provider_confirms", "Oskar Lind", {}),
    ])
    return orders.will_not_be_delivered(session, order.id, "the customer moved to a care home",
                                        CENTRE, received + timedelta(days=1))


def _provider_change(session: Session, now: datetime) -> Order:
    received = now - timedelta(hours=3)
    effective = workdays.add_working_days(workdays.local(received).date(), 3)
    order = _order(session, received, "provider_change", "K-1001",
                   provider="trygga-hander", effective=effective)
    _steps(session, order, received, [
        (timedelta(hours=1), "new_provider_confirms", "Petra Sjöberg", {}),
    ])
    return order


def _extra_alarm_just_received(session: Session, now: datetime) -> Order:
    return _order(session, now - timedelta(minutes=40), "extra_alarm", "K-1002",
                  site="K-1002-2")
