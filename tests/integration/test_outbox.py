"""The outbox to teams: each message once, in order, and one bad message never blocks the rest.

The Dispatcher publishes through a fake `publish` here (what it would hand the broker),
against a real SQLite file holding the shipped registry; the time is a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from core.clock import FakeClock
from core.db import Database
from core.inbox import Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.api.app import create_app
from dispatch.api.deps import AppState
from dispatch.config import load_config
from dispatch.live import LiveFeed
from dispatch.models import OutboxMessage, Team
from dispatch.services import DispatchRules
from dispatch.users import add_user
from dispatch.worker import Dispatcher
from gateway.errors import GatewayUnavailable

_CONFIG = load_config(SHIPPED_CONFIG)
RULES = DispatchRules(_CONFIG.shifts, _CONFIG.timers, topic_root="trygg/v1")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm: day
KUNGSANGEN = "trygg/v1/team/solrosen-kungsangen/callout"  # unit 100001's day team
_refs = count(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


class FakePublish:
    """Records what would reach the broker; `fail(topic, n)` may raise for the n-th call."""

    def __init__(self, fail: Callable[[str, int], BaseException | None] | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.calls = 0
        self.fail = fail

    async def __call__(self, topic: str, payload: str, *, retain: bool = False) -> None:
        self.calls += 1
        if self.fail is not None and (error := self.fail(topic, self.calls)) is not None:
            raise error
        self.sent.append((topic, json.loads(payload)))

    @property
    def ids(self) -> list[str]:
        return [payload["message_id"] for _, payload in self.sent]

    @property
    def alarms(self) -> list[int]:
        return [payload["alarm_id"] for _, payload in self.sent]


def press(db: Database, clock: FakeClock, *cids: str) -> None:
    """Presses on these units, stored and applied: one call-out each in the outbox."""
    now = clock.now()
    events = [DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid=cid,
                          ref=f"{next(_refs):04d}", priority=5) for cid in cids]
    db.transaction(lambda s: append_events(s, [Incoming(e, b"<mrq/>", now) for e in events]))
    db.transaction(lambda s: services.process_pending(s, now, RULES, budget_s=60.0))


def outbox(db: Database) -> list[OutboxMessage]:
    return db.transaction(lambda s: list(
        s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()))


def dispatcher(db: Database, clock: FakeClock, publish: FakePublish) -> Dispatcher:
    return Dispatcher(db, clock, RULES, LiveFeed(), publish=publish)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


# -- once --------------------------------------------------------------------------------


def test_every_message_carries_its_id_in_its_payload_and_its_row(
        db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001")

    (message,) = outbox(db)
    payload = json.loads(message.payload)

    assert payload["message_id"] == message.message_id
    assert str(uuid.UUID(message.message_id or "")) == message.message_id
    assert payload["kind"] == "callout"


async def test_a_stop_half_way_through_a_round_sends_none_of_the_sent_ones_again(
        db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001", "100002", "100003", "100004", "100005")
    written = [json.loads(m.payload)["alarm_id"] for m in outbox(db)]  # a call-out each
    # The process is stopped while the third message is being published.
    stopped = FakePublish(lambda topic, n: asyncio.CancelledError() if n == 3 else None)
    with pytest.raises(asyncio.CancelledError):
        await dispatcher(db, clock, stopped).send_outbox()

    restarted = FakePublish()
    await dispatcher(db, clock, restarted).send_outbox()

    assert stopped.alarms == written[:2]
    assert restarted.alarms == written[2:]


def test_marking_a_message_sent_twice_marks_it_once(db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001")
    (message,) = outbox(db)

    first = db.transaction(lambda s: services.mark_sent(s, [message.id], clock.now()))
    second = db.transaction(lambda s: services.mark_sent(s, [message.id], clock.now()))

    assert (first, second) == (1, 0)


def waiting(db: Database, clock: FakeClock, n: int, teams: tuple[str, ...] = ("a", "b"),
            ) -> list[str]:
    """`n` messages waiting in the outbox, to the teams in turn; their ids, in order."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    db.transaction(lambda s: s.add_all(
        OutboxMessage(topic=f"trygg/v1/team/{teams[k % len(teams)]}/callout",
                      message_id=message_id, created_at=clock.now(),
                      payload=json.dumps({"message_id": message_id, "alarm_id": k}))
        for k, message_id in enumerate(ids)))
    return ids


class CountingWrites:
    """Counts the writes a dispatcher makes (each a transaction on the single writer)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._write = db.write

        async def write(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await self._write(*args, **kwargs)

        db.write = write  # type: ignore[method-assign]


async def test_a_burst_longer_than_a_round_goes_out_in_one_pass_a_write_per_round(
        db: Database, clock: FakeClock) -> None:
    ids = waiting(db, clock, 250)
    publish = FakePublish()
    writes = CountingWrites(db)

    sent = await dispatcher(db, clock, publish).send_outbox()

    # Before: a hundred a pass (the rest waited for the next poll), a write per message.
    assert sent == 250
    assert publish.ids == ids
    assert writes.count == 3  # 100 + 100 + 50
    assert db.transaction(services.pending_outbox) == []


async def test_a_stop_in_a_later_round_marks_what_the_broker_took(
        db: Database, clock: FakeClock) -> None:
    ids = waiting(db, clock, 150)
    stopped = FakePublish(lambda topic, n: asyncio.CancelledError() if n == 121 else None)
    with pytest.raises(asyncio.CancelledError):
        await dispatcher(db, clock, stopped).send_outbox()

    restarted = FakePublish()
    await dispatcher(db, clock, restarted).send_outbox()

    assert stopped.ids == ids[:120]
    assert restarted.ids == ids[120:]


async def test_a_failure_ends_the_pass_and_its_team_is_tried_again_first(
        db: Database, clock: FakeClock) -> None:
    ids = waiting(db, clock, 150)  # to teams a and b in turn
    publish = FakePublish(lambda topic, n: OSError("refused") if n == 1 else None)
    worker = dispatcher(db, clock, publish)

    await worker.send_outbox()  # a's first fails: b's go, a's wait, and the pass ends
    first_pass = list(publish.ids)
    await worker.send_outbox()

    # The failed one goes first of the rest, not behind the whole backlog.
    assert first_pass == ids[1:100:2]
    assert publish.ids == ids[1:100:2] + ids[0:100:2] + ids[100:]
    assert publish.calls == 1 + 150  # a's first tried twice, the others once


class LosesTheCancel(FakePublish):
    """A publish during which the stop comes and is lost, as on Python 3.11 when the
    broker's acknowledgement arrives at that moment (wait_for returns the result)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    async def __call__(self, topic: str, payload: str, *, retain: bool = False) -> None:
        await super().__call__(topic, payload, retain=retain)
        if self.calls == self.at:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)


async def test_a_stop_that_a_publish_lost_ends_the_pass_at_the_next_message(
        db: Database, clock: FakeClock) -> None:
    ids = waiting(db, clock, 250)
    stopped = LosesTheCancel(at=5)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(dispatcher(db, clock, stopped).send_outbox())

    restarted = FakePublish()
    await dispatcher(db, clock, restarted).send_outbox()

    # Before: the pass went on over all 250, while a new leader would send them too.
    assert stopped.ids == ids[:5]
    assert restarted.ids == ids[5:]


async def test_a_database_that_cannot_mark_them_sent_is_retried_less_and_less_often(
        db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk, or a read-only PostgreSQL after a failover: the messages can be read
    and published but not marked sent, so each pass publishes its round again."""
    from dispatch import worker as worker_module

    waiting(db, clock, 150)

    def read_only(*args: Any, **kwargs: Any) -> int:
        raise OSError("the disk is full")

    monkeypatch.setattr(services, "mark_sent", read_only)
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 7:
            raise asyncio.CancelledError  # enough seen: the loop stops here

    monkeypatch.setattr(worker_module, "_pause", record)
    publish = FakePublish()

    with pytest.raises(asyncio.CancelledError):
        await dispatcher(db, clock, publish).run_outbox(poll_s=0.001, max_backoff_s=0.016)

    # Before: a pass at every wake or poll, each publishing the round again.
    assert pauses == [0.001, 0.002, 0.004, 0.008, 0.016, 0.016, 0.016]
    assert publish.calls == 7 * 100  # a round a pass; the pass ends where the mark failed


# -- never blocked -------------------------------------------------------------------------


async def test_a_message_that_always_fails_is_set_aside_and_the_rest_go_out_at_once(
        db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001", "100002", "100003")
    bad, *rest = outbox(db)
    assert bad.topic == KUNGSANGEN
    publish = FakePublish(lambda topic, n: ValueError("bad topic") if topic == KUNGSANGEN
                          else None)
    worker = dispatcher(db, clock, publish)
    set_aside_before = counter("trygg_outbox_set_aside_total")

    await worker.send_outbox()
    sent_in_the_first_round = list(publish.ids)
    for _ in range(services.MAX_PUBLISH_ATTEMPTS + 2):
        await worker.send_outbox()
    after = {m.id: m for m in outbox(db)}

    assert sent_in_the_first_round == [m.message_id for m in rest]
    assert publish.ids == [m.message_id for m in rest]  # each once
    assert after[bad.id].failed_at == T0
    assert after[bad.id].sent_at is None
    assert after[bad.id].attempts == services.MAX_PUBLISH_ATTEMPTS
    assert "ValueError" in (after[bad.id].last_error or "")
    assert all(after[m.id].sent_at == T0 for m in rest)
    assert publish.calls == len(rest) + services.MAX_PUBLISH_ATTEMPTS  # then left alone
    assert counter("trygg_outbox_set_aside_total") == set_aside_before + 1
    assert db.transaction(services.pending_outbox) == []


async def test_a_message_behind_a_failing_one_to_its_team_keeps_its_order(
        db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001")
    # Answered at once, so the call chain calls nobody else before the reminder.
    db.transaction(lambda s: services.accept(s, 1, "Maria Holm", "Maria Holm",
                                             clock.now(), RULES))
    clock.advance(RULES.timers.reminder_after)
    db.transaction(lambda s: services.fire_due(s, clock.now(), RULES))
    callout, reminder = outbox(db)
    publish = FakePublish(lambda topic, n: OSError("refused") if n == 1 else None)
    worker = dispatcher(db, clock, publish)

    await worker.send_outbox()  # the call-out fails once: the reminder waits behind it
    held = list(publish.ids)
    await worker.send_outbox()

    assert held == []
    assert publish.ids == [callout.message_id, reminder.message_id]
    assert [m.attempts for m in outbox(db)] == [1, 0]


async def test_while_the_broker_is_down_the_round_stops_and_no_tries_are_counted(
        db: Database, clock: FakeClock) -> None:
    press(db, clock, "100001", "100002")
    down = FakePublish(lambda topic, n: GatewayUnavailable("127.0.0.1", 1883))
    for _ in range(services.MAX_PUBLISH_ATTEMPTS * 2):
        await dispatcher(db, clock, down).send_outbox()
    up = FakePublish()

    await dispatcher(db, clock, up).send_outbox()

    assert down.calls == services.MAX_PUBLISH_ATTEMPTS * 2  # one try a round, then it stops
    assert [(m.attempts, m.failed_at) for m in outbox(db)] == [(0, None), (0, None)]
    assert up.ids == [m.message_id for m in outbox(db)]


# -- codes that become topic levels are refused at the API --------------------------------


@pytest.fixture
async def admin(db: Database, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(AppState(db=db, clock=clock, rules=RULES, live=LiveFeed(),
                              dispatcher=dispatcher(db, clock, FakePublish())))
    token = db.transaction(lambda s: add_user(s, "admin-1", "admin", clock.now()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://trygg",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.mark.parametrize("code", ["nattpatrull+bro", "a/b", "natt#", "natt bro", ""])
async def test_the_api_refuses_a_team_code_that_is_no_topic_level(
        admin: httpx.AsyncClient, db: Database, code: str) -> None:
    document = {"providers": [{
        "code": "nattorganisationen", "name": "Nattorganisationen", "kind": "night",
        "teams": [{"code": code, "name": "Nattpatrull", "area": "bro"}]}]}

    response = await admin.post("/api/registry", json=document)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["providers", 0, "teams", 0, "code"]
    assert "not a valid code" in error["msg"]
    assert db.transaction(lambda s: s.execute(
        select(Team.id).where(Team.code == code)).first()) is None


async def test_the_api_takes_a_team_code_that_is_a_topic_level(
        admin: httpx.AsyncClient) -> None:
    document = {"providers": [{
        "code": "nattorganisationen", "name": "Nattorganisationen", "kind": "night",
        "teams": [{"code": "nattpatrull-bro.2", "name": "Nattpatrull 2", "area": "bro"}]}]}

    response = await admin.post("/api/registry", json=document)

    assert response.status_code == 200
    assert response.json()["created"] == 1
