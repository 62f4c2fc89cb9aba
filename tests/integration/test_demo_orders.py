"""The demo's orders on the shipped registry: one in each state the board shows, made
once, whatever the day the demo starts, and the registry left as it was."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import FakeClock
from core.db import Database
from dispatch import orders
from dispatch.demo_orders import seed_demo_orders
from dispatch.models import Device, KeySet, Order

SE = ZoneInfo("Europe/Stockholm")

Summary = list[tuple[str, str, str, list[str]]]  # customer, kind, state, overdue steps


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 30, 10, 0, tzinfo=SE))  # a Monday morning


def seed(db: Database, now: datetime) -> Summary:
    def run(s: Session) -> Summary:
        return [(o.customer.code, o.kind, str(o.state),
                 [step.step for step in orders.overdue_steps(o, now)])
                for o in seed_demo_orders(s, now)]

    return db.transaction(run)


def devices(db: Database) -> list[tuple[str, int | None]]:
    return db.transaction(lambda s: [(cid, site) for cid, site in s.execute(
        select(Device.cid, Device.site_id).order_by(Device.cid))])


def test_the_demo_has_orders_of_every_kind_in_every_state(db: Database,
                                                          clock: FakeClock) -> None:
    made = seed(db, clock.now())

    assert [(customer, kind, state) for customer, kind, state, _ in made] == [
        ("K-1004", "install", "done"),
        ("K-1004", "removal", "open"),
        ("K-1005", "install", "open"),
        ("K-1007", "install", "will_not_be_delivered"),
        ("K-1001", "provider_change", "open"),
        ("K-1002", "extra_alarm", "open"),
    ]


def test_only_the_install_in_progress_is_overdue_with_its_keys(db: Database,
                                                               clock: FakeClock) -> None:
    made = seed(db, clock.now())

    assert [(customer, kind, late) for customer, kind, _, late in made if late] == [
        ("K-1005", "install", ["keys_collected"])]


def test_the_removal_shows_the_key_sets_the_install_collected(db: Database,
                                                              clock: FakeClock) -> None:
    seed(db, clock.now())
    held = db.transaction(lambda s: [(k.number, k.holder, k.holder_code) for k in s.execute(
        select(KeySet).order_by(KeySet.number)).scalars()])

    assert held == [("N-1004", "night_organisation", "nattpatrull-bro"),
                    ("TH-1004", "day_provider", "trygga-hander")]


def test_the_demo_leaves_the_registry_as_it_was(db: Database, clock: FakeClock) -> None:
    before = devices(db)

    seed(db, clock.now())

    assert devices(db) == before


def test_seeding_again_adds_nothing(db: Database, clock: FakeClock) -> None:
    seed(db, clock.now())
    clock.set(datetime(2026, 12, 1, 8, 0, tzinfo=SE))

    again = seed(db, clock.now())

    assert again == []
    assert db.transaction(lambda s: len(s.execute(select(Order.id)).all())) == 6


def test_a_database_without_the_demo_customers_gets_no_orders(empty_db: Database,
                                                              clock: FakeClock) -> None:
    assert seed(empty_db, clock.now()) == []


@pytest.mark.parametrize("now", [
    datetime(2026, 11, 28, 3, 15, tzinfo=SE),  # a Saturday night
    datetime(2026, 12, 24, 16, 30, tzinfo=SE),  # julafton
    datetime(2027, 3, 28, 3, 30, tzinfo=SE),  # the night the clocks go forward
    datetime(2027, 6, 7, 7, 0, tzinfo=SE),  # a Monday after a long weekend
], ids=["saturday-night", "julafton", "dst-start", "monday-07"])
def test_the_demo_starts_on_any_day(db: Database, now: datetime) -> None:
    made = seed(db, now)

    assert [state for _, _, state, _ in made] == [
        "done", "open", "open", "will_not_be_delivered", "open", "open"]
    assert [late for _, kind, _, late in made if late] == [["keys_collected"]]
