"""What the review of the chains found racing or failing, each held down by a test: a
step that fails, an answer that meets the hand-over, an accept on a standby while the
leader's sweep calls the next, a late unit check-in, a reminder from before the chains.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from core.clock import FakeClock
from core.db import Database, Lane
from core.inbox import Incoming, append_events
from core.settings import Settings
from devices.events import DeviceEvent, EventKind
from dispatch import escalation, lifecycle, services, worker
from dispatch.api.app import create_app
from dispatch.api.deps import AppState
from dispatch.live import LiveFeed
from dispatch.models import Alarm, Deadline, OutboxMessage
from dispatch.registry import import_config
from dispatch.users import add_user
from dispatch.worker import Dispatcher
from tests.conftest import needs_postgres
from tests.integration.test_dispatch_services import (
    _CONFIG,
    RULES,
    T0,
    alarms,
    deliver,
    event,
    only_alarm,
    store,
)
from trygg.migrations import upgrade

SE_2150 = datetime(2026, 1, 15, 20, 50, tzinfo=UTC)  # 21:50 in Stockholm
SE_2200 = datetime(2026, 1, 15, 21, 0, tzinfo=UTC)


def apply(db: Database, clock: FakeClock, cid: str) -> None:
    store(db, clock, event(EventKind.ALARM, cid))
    now = clock.now()
    db.transaction(lambda s: services.process_pending(s, now, RULES, budget_s=60))


def test_a_step_that_fails_flags_its_alarm_and_every_other_chain_goes_on(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(SE_2150)
    apply(db, clock, "100001")
    clock.set(SE_2200 - timedelta(minutes=1))
    apply(db, clock, "100002")
    broken = {alarms(db)[0]["id"]}
    real = services._fire_handover

    def failing(session: Session, alarm: Alarm, *args: Any) -> None:
        if alarm.id in broken:
            raise RuntimeError("a hand-over that cannot be decided")
        real(session, alarm, *args)

    monkeypatch.setattr(services, "_fire_handover", failing)

    for seconds in range(0, 20 * 60, 30):  # the timer loop sweeps on, 22:00 to 22:20
        clock.set(SE_2200 + timedelta(seconds=seconds))
        now = clock.now()
        db.transaction(lambda s, now=now: services.fire_due(s, now, RULES))

    first, second = alarms(db)
    assert first["attention"] == ["no_answer"]
    assert [e["action"] for e in first["log"]].count("step_failed") == 1
    # The other alarm was handed over at 22:00 and its new chain ran its calls.
    assert second["team"]["code"] == "nattpatrull-bro"
    assert second["no_answer_at"] is not None  # bil 1 twice round: its chain went on


async def test_an_accept_that_meets_the_hand_over_is_refused_and_changes_nothing(
        db: Database) -> None:
    clock = FakeClock(SE_2150)
    apply(db, clock, "100001")
    token = db.transaction(lambda s: add_user(s, "Maria Holm", "responder", clock.now(),
                                              team="solrosen-kungsangen"))
    alarm_id = alarms(db)[0]["id"]

    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        return None

    app = create_app(AppState(
        db=db, clock=clock, rules=RULES, live=LiveFeed(),
        dispatcher=Dispatcher(db, clock, RULES, LiveFeed(), publish=publish),
        settings=Settings()))
    clock.set(SE_2200)
    real_write = db.write
    swept = False

    async def sweep_first(fn: Callable[[Session], Any], lane: Lane = Lane.OPERATOR) -> Any:
        # The sweep's job was ahead of the accept on the writer thread.
        nonlocal swept
        if not swept and "checked" in fn.__qualname__:
            swept = True
            now = clock.now()
            await real_write(lambda s: services.fire_due(s, now, RULES), Lane.BACKGROUND)
        return await real_write(fn, lane)

    db.write = sweep_first  # type: ignore[method-assign]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://trygg") as client:
            answer = await client.post(f"/api/alarms/{alarm_id}/accept", json={},
                                       headers={"Authorization": f"Bearer {token}"})
    finally:
        db.write = real_write  # type: ignore[method-assign]

    alarm = alarms(db)[0]
    assert swept
    assert answer.status_code == 404
    assert (alarm["team"]["code"], alarm["state"], alarm["accepted_by"]) == (
        "nattpatrull-kungsangen", "called_out", None)
    assert alarm["calling"]["name"] == "Nattpatrull Kungsängen bil 1"


@pytest.fixture
def pools(postgres_database_url: str) -> Iterator[tuple[Database, Database]]:
    db = Database(postgres_database_url)
    upgrade(db.engine)
    db.transaction(lambda s: import_config(s, _CONFIG))
    db.close()
    leader, standby = Database(postgres_database_url), Database(postgres_database_url)
    yield leader, standby
    leader.close()
    standby.close()


@needs_postgres
def test_an_accept_on_the_standby_during_the_leaders_call_step_calls_nobody_else(
        pools: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    leader, standby = pools
    press = DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid="100001", ref="0001",
                        priority=5)
    leader.transaction(lambda s: append_events(s, [Incoming(press, b"<mrq/>", T0)]))
    leader.transaction(lambda s: services.process_pending(s, T0, RULES, budget_s=60))
    alarm_id = leader.transaction(lambda s: s.execute(select(Alarm.id)).scalar_one())
    loaded, swept = threading.Event(), threading.Event()
    real_accept = lifecycle.accept

    def accept_then_pause(*args: Any, **kwargs: Any) -> None:
        loaded.set()  # the standby holds the alarm; the leader's sweep comes now
        swept.wait(3)
        real_accept(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "accept", accept_then_pause)
    at = T0 + timedelta(minutes=1, seconds=59)
    standby_accept = threading.Thread(target=lambda: standby.transaction(
        lambda s: services.accept(s, alarm_id, "Maria Holm", "Maria Holm", at, RULES)))
    standby_accept.start()
    assert loaded.wait(10)

    out = leader.transaction(lambda s: services.fire_due(s, T0 + timedelta(minutes=2),
                                                         RULES))
    swept.set()
    standby_accept.join(10)
    later = leader.transaction(lambda s: services.fire_due(s, T0 + timedelta(minutes=2),
                                                           RULES))

    def facts(s: Session) -> tuple[str, list[str]]:
        calls = [json.loads(m.payload)["responder"] for m in s.execute(
            select(OutboxMessage).where(OutboxMessage.topic.like("%/callout"))).scalars()]
        return s.get(Alarm, alarm_id).state, calls  # type: ignore[union-attr]

    assert out.fired.calls == 0  # the locked alarm was left for the next sweep
    assert later.fired.stale + later.fired.calls == 0  # and then there was nothing to do
    assert leader.transaction(facts) == ("accepted", ["Maria Holm"])


def _waits_for_a_lock(db: Database) -> bool:
    """Whether another session of this database waits for a row lock."""
    return bool(db.transaction(lambda s: s.execute(text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()")).scalar()))


def _press_on_the_leader_meanwhile(leader: Database, standby: Database,
                                   at: datetime) -> threading.Thread:
    """A press at unit 100001, applied by the leader in a thread of its own while the
    standby's transaction is open; returns once it was applied (as with the bug) or
    waits for a lock the standby holds."""
    leader.transaction(lambda s: append_events(s, [Incoming(event(EventKind.ALARM, "100001"),
                                                            b"<mrq/>", at)]))
    applying = threading.Thread(target=lambda: leader.transaction(
        lambda s: services.process_pending(s, at, RULES, budget_s=60)))
    applying.start()
    deadline = time.monotonic() + 10
    while applying.is_alive() and not _waits_for_a_lock(standby) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    return applying


@needs_postgres
def test_a_press_while_the_standby_closes_the_alarm_by_phone_raises_a_new_alarm(
        pools: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's phone kvittering on a standby and a new press on the leader: the
    press used to be read against the alarm as it was before the close (the event path
    took no row lock), became a "repeat" of an alarm then closed, and nobody was called."""
    leader, standby = pools
    leader.transaction(lambda s: append_events(s, [Incoming(event(EventKind.ALARM, "100001"),
                                                            b"<mrq/>", T0)]))
    leader.transaction(lambda s: services.process_pending(s, T0, RULES, budget_s=60))
    first = leader.transaction(lambda s: s.execute(select(Alarm.id)).scalar_one())
    closing, go_on = threading.Event(), threading.Event()
    real_close = lifecycle.close_by_phone

    def close_then_pause(*args: Any, **kwargs: Any) -> None:
        real_close(*args, **kwargs)
        closing.set()  # closed in the standby's transaction, not committed yet
        go_on.wait(10)

    monkeypatch.setattr(lifecycle, "close_by_phone", close_then_pause)
    at = T0 + timedelta(minutes=5)
    kvittering = threading.Thread(target=lambda: standby.transaction(
        lambda s: services.close_by_phone(s, first, "spoke to her: all well", "operator",
                                          at)))
    kvittering.start()
    assert closing.wait(10)
    applying = _press_on_the_leader_meanwhile(leader, standby, at)
    go_on.set()
    kvittering.join(10)
    applying.join(10)

    states = leader.transaction(lambda s: [(a.id, a.state, a.team_code) for a in s.execute(
        select(Alarm).order_by(Alarm.id)).scalars()])
    assert [state for _, state, _ in states] == ["closed", "called_out"]
    assert states[1][2] == "solrosen-kungsangen"


@needs_postgres
def test_a_full_batch_of_steps_on_alarms_being_changed_elsewhere_is_not_spun_on(
        pools: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    leader, standby = pools
    leader.transaction(lambda s: append_events(s, [Incoming(event(EventKind.ALARM, "100001"),
                                                            b"<mrq/>", T0)]))
    leader.transaction(lambda s: services.process_pending(s, T0, RULES, budget_s=60))
    alarm_id = leader.transaction(lambda s: s.execute(select(Alarm.id)).scalar_one())
    monkeypatch.setattr(services, "FIRE_BATCH", 1)
    with Session(standby.engine) as held:  # an operator's change, not committed yet
        services.lock_alarm(held, alarm_id)
        out = leader.transaction(lambda s: services.fire_due(
            s, T0 + timedelta(minutes=2), RULES))
        held.rollback()
    later = leader.transaction(lambda s: services.fire_due(s, T0 + timedelta(minutes=2),
                                                           RULES))

    assert out.fired.calls == 0 and not out.more  # before: "more", and a sweep at 0 s
    assert later.fired.calls == 1  # taken once the change is done


@needs_postgres
def test_a_press_while_the_standby_raises_an_alarm_by_phone_leaves_one_open_alarm(
        pools: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    """The customer phones the centre and presses the pendant: the operator's alarm by
    phone (on a standby) and the press (applied by the leader) each found no alarm open
    and opened one, so the unit had two, each called out."""
    leader, standby = pools
    raising, go_on = threading.Event(), threading.Event()
    real_note = lifecycle.note

    def note_then_pause(alarm: Alarm, action: str, *args: Any, **kwargs: Any) -> None:
        real_note(alarm, action, *args, **kwargs)
        if action == "raised_by_phone":
            raising.set()  # opened in the standby's transaction, not committed yet
            go_on.wait(10)

    monkeypatch.setattr(lifecycle, "note", note_then_pause)
    by_phone = threading.Thread(target=lambda: standby.transaction(
        lambda s: services.raise_by_phone(s, "K-1001-1", "she phoned: she has fallen",
                                          "operator", T0, RULES)))
    by_phone.start()
    assert raising.wait(10)
    applying = _press_on_the_leader_meanwhile(leader, standby, T0)
    go_on.set()
    by_phone.join(10)
    applying.join(10)

    def alarms_of_the_unit(s: Session) -> list[tuple[str, int]]:
        return [(a.state, a.repeat_count) for a in s.execute(
            select(Alarm).where(Alarm.cid == "100001").order_by(Alarm.id)).scalars()]

    assert leader.transaction(alarms_of_the_unit) == [("called_out", 1)]  # the press: a repeat


def test_a_unit_check_in_long_after_the_phones_does_not_become_the_arrival(
        db: Database) -> None:
    clock = FakeClock(T0)
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    clock.advance(timedelta(minutes=10))
    now = clock.now()
    db.transaction(lambda s: services.check_in_by_responder(s, alarm_id, "Maria Holm", now))
    clock.advance(timedelta(hours=3))  # a planned visit; nobody checked out of the alarm

    deliver(db, clock, event(EventKind.CHECK_IN))

    alarm = only_alarm(db)
    assert (alarm["kvittering"], alarm["arrival_seconds"]) == ("responder", 600)


def test_a_reminder_from_before_the_chains_keeps_the_45_and_60_minute_steps(
        db: Database) -> None:
    clock = FakeClock(T0)
    deliver(db, clock, event(EventKind.ALARM))
    alarm_id = only_alarm(db)["id"]
    db.transaction(lambda s: services.accept(s, alarm_id, "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))

    def as_migrated(s: Session) -> None:
        # What 0008 makes of an alarm 0007 left: no chain, its reminder as step 0.
        s.execute(update(Deadline).values(cancelled_at=T0))
        s.execute(update(Alarm).values(chain=None, escalation_token=None))
        s.add(Deadline(alarm_id=alarm_id, kind=escalation.ESCALATION, step=0, token=None,
                       due_at=T0 + timedelta(minutes=30)))

    db.transaction(as_migrated)
    for minute in range(30, 61):
        clock.set(T0 + timedelta(minutes=minute))
        now = clock.now()
        db.transaction(lambda s, now=now: services.fire_due(s, now, RULES))

    alarm = only_alarm(db)
    assert (alarm["coordinator_at"], alarm["red_flag_at"]) == (
        (T0 + timedelta(minutes=45)).isoformat(), (T0 + timedelta(minutes=60)).isoformat())




async def test_the_operator_raises_an_alarm_by_phone_through_the_api(db: Database) -> None:
    clock = FakeClock(T0)
    token = db.transaction(lambda s: add_user(s, "operator-1", "operator", clock.now()))

    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        return None

    app = create_app(AppState(
        db=db, clock=clock, rules=RULES, live=LiveFeed(),
        dispatcher=Dispatcher(db, clock, RULES, LiveFeed(), publish=publish),
        settings=Settings()))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://trygg", headers=headers) as client:
        raised = await client.post("/api/alarms", json={
            "site": "K-1002-1", "reason": "the unit is broken; the customer phoned"})
        again = await client.post("/api/alarms", json={"site": "K-1002-1", "reason": "x"})
        unknown = await client.post("/api/alarms", json={"site": "nowhere", "reason": "x"})
        blank = await client.post("/api/alarms", json={"site": "K-1002-1", "reason": " "})

    assert raised.status_code == 201
    assert (raised.json()["state"], raised.json()["team"]["code"]) == (
        "called_out", "solrosen-bro")
    assert (again.status_code, unknown.status_code, blank.status_code) == (409, 404, 422)


async def test_the_sweep_sleeps_until_the_next_step_not_a_whole_interval(
        db: Database) -> None:
    clock = FakeClock(T0)
    dispatcher = Dispatcher(db, clock, RULES, LiveFeed())
    idle = await dispatcher._until_next_due(1.0)
    deliver(db, clock, event(EventKind.ALARM))  # the next call in 2 minutes
    far = await dispatcher._until_next_due(1.0)
    clock.advance(timedelta(minutes=1, seconds=59.75))

    near = await dispatcher._until_next_due(1.0)
    clock.advance(timedelta(seconds=0.2))
    nearer = await dispatcher._until_next_due(1.0)
    clock.advance(timedelta(seconds=5))  # due, but left (its alarm locked meanwhile)
    overdue = await dispatcher._until_next_due(1.0)

    assert (idle, far, near) == (1.0, 1.0, 0.25)
    # Steps due within a tenth of a second fire together; one left due is not spun on.
    assert nearer == overdue == worker.TIMER_GATHER_S == 0.1
