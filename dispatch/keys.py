"""The customers' key sets: collected when an alarm is granted, handed to a new provider
at a provider change, returned to the customer (against a receipt) when the alarm ends.

Every hand-over is kept (`KeyHolding`), so "who has the key to K-1004, since when, and
who had it before" is always answered. A live key number is unique per customer.

TryggError
 └── KeyRefused   a number live already, or not the customer's, or nothing to return
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.errors import TryggError
from dispatch.models import KeyHolding, KeySet

CUSTOMER = "customer"


class KeyRefused(TryggError):
    pass


def live_sets(session: Session, customer_id: int) -> list[KeySet]:
    return list(session.execute(
        select(KeySet).where(KeySet.customer_id == customer_id, KeySet.returned_at.is_(None))
        .options(selectinload(KeySet.history)).order_by(KeySet.number)).scalars())


def all_sets(session: Session, customer_id: int) -> list[KeySet]:
    """Live and returned, with every hand-over and receipt: the board's view."""
    return list(session.execute(
        select(KeySet).where(KeySet.customer_id == customer_id)
        .options(selectinload(KeySet.history)).order_by(KeySet.number, KeySet.id)).scalars())


def _hand(key_set: KeySet, holder: str, code: str | None, at: datetime,
          order_id: int | None, receipt: str | None = None,
          received_by: str | None = None) -> None:
    key_set.holder, key_set.holder_code = holder, code
    key_set.history.append(KeyHolding(holder=holder, holder_code=code, at=at,
                                      order_id=order_id, receipt=receipt,
                                      received_by=received_by))


def collect(session: Session, customer_id: int, holders: dict[str, tuple[str, str | None]],
            at: datetime, order_id: int) -> list[KeySet]:
    """New key sets, number -> (holder, code): the day provider's and the night patrol's."""
    live = {k.number for k in live_sets(session, customer_id)}
    taken = sorted(set(holders) & live)
    if taken:
        raise KeyRefused(f"key {', '.join(taken)} is registered for this customer already")
    sets = []
    for number, (holder, code) in holders.items():
        key_set = KeySet(customer_id=customer_id, number=number, holder=holder,
                         holder_code=code, created_at=at, history=[])
        _hand(key_set, holder, code, at, order_id)
        session.add(key_set)
        sets.append(key_set)
    return sets


def hand_over(session: Session, customer_id: int, numbers: Iterable[str], holder: str,
              code: str | None, at: datetime, order_id: int) -> list[KeySet]:
    """The named live sets go to a new holder (a new day provider)."""
    live = {k.number: k for k in live_sets(session, customer_id)}
    unknown = sorted(set(numbers) - set(live))
    if unknown:
        raise KeyRefused(f"no live key {', '.join(unknown)} for this customer")
    for number in numbers:
        _hand(live[number], holder, code, at, order_id)
    return [live[n] for n in numbers]


def return_all(session: Session, customer_id: int, received_by: str, receipt: str,
               at: datetime, order_id: int) -> list[KeySet]:
    """Every live set goes back to the customer's side against one receipt."""
    sets = live_sets(session, customer_id)
    for key_set in sets:
        _hand(key_set, CUSTOMER, None, at, order_id, receipt=receipt, received_by=received_by)
        key_set.returned_at = at
    return sets


def key_view(key_set: KeySet, *, with_receipts: bool = True) -> dict[str, Any]:
    """A set as the board shows it; the alarm's details show number and holder only."""
    view: dict[str, Any] = {"number": key_set.number, "holder": key_set.holder,
                            "holder_code": key_set.holder_code,
                            "returned_at": key_set.returned_at.isoformat()
                            if key_set.returned_at else None}
    if with_receipts:
        view["history"] = [{"holder": h.holder, "holder_code": h.holder_code,
                            "at": h.at.isoformat(), "order_id": h.order_id,
                            "receipt": h.receipt, "received_by": h.received_by}
                           for h in key_set.history]
    return view
