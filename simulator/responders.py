"""Simulated responders: the teams' call-order people, answering call-outs on their
phones and checking in on the customer's base unit.

They hear their teams' MQTT topics as a team app does (`{root}/team/+/callout`,
`/cancel`, `/withdrawn`) and act through the alarm API as responder users, each with
their own bearer token, as the phone page (/m/) would. For a call-out addressed to one
of them (the payload's `responder` is their name) they draw, by the scenario's
`responders` settings (`ResponderBehaviour`), whether to accept, decline or never
answer. One who accepts does so after `answer_after` (POST /api/alarms/{id}/accept),
says "on my way", travels, and checks in ON THE UNIT: the simulated base unit of the
alarm's cid sends its SCAIP presence, as when staff press yellow then green. Where the
unit is not simulated here (a DC-09 alarm), is "broken" (`broken_unit`) or does not
take the check-in, they check in and later out from the phone instead. After the visit
they check out the same way, and give a reason when the service counts the visit as
longer than the 15 minutes it pays (004 §6.1). A cancel (a false alarm) or a
withdrawal (handed over to the new shift's team) stops the team's responders for that
alarm; one who finds the alarm taken or closed (the API's 404 or 409) stops too.

Every delay is in scenario seconds divided by `speed`, waited through an injectable
`sleep`; the responders never read a clock. Logs carry alarm ids, cids, team codes and
a responder's place in the call order: never a name, a customer or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import structlog

from devices.scaip import Snu
from simulator.errors import LinkDown, Unanswered
from simulator.link import DEFAULT_ROOT
from simulator.scenario import ResponderBehaviour
from simulator.unit import SimulatedBaseUnit

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# The team topics a responder's phone listens to; `reminder` and `notice` change nothing
# for a simulated responder.
TEAM_KINDS = ("callout", "cancel", "withdrawn")

# What a responder writes when a visit took longer than the standard 15 minutes.
VISIT_REASONS = (
    "The customer had fallen and needed help up; stayed until they were steady.",
    "The customer was anxious and confused; stayed until they had calmed down.",
    "Helped the customer to the toilet and changed wet bed linen.",
    "The customer felt unwell; waited with them for the ambulance.",
    "The pendant had come loose; refitted it and tested it with the centre.",
)


class Fate(StrEnum):
    """What a called responder does with the call."""

    ACCEPT = "accept"
    DECLINE = "decline"
    NEVER_ANSWER = "never_answer"


@dataclass(frozen=True, slots=True)
class ResponderAccount:
    """A responder user the simulator plays: their name as in the call order, their
    team's code and place in its call order (1 is called first), and the API token they
    act with (out of `repr`, so out of any log line). `behaviour` None: the scenario's."""

    name: str
    team: str
    position: int
    token: str = field(repr=False)
    behaviour: ResponderBehaviour | None = None


@dataclass(frozen=True, slots=True)
class TeamMessage:
    """A message on a team's topic, as far as a responder needs it."""

    kind: str  # one of TEAM_KINDS
    team: str  # the team code, from the topic
    alarm_id: int
    cid: str | None
    responder: str | None  # whom a call-out calls
    message_id: str | None


def parse_team_message(root: str, topic: str, payload: bytes) -> TeamMessage | None:
    """A team message from `{root}/team/{code}/{kind}`; None for anything else."""
    prefix = f"{root}/team/"
    if not topic.startswith(prefix):
        return None
    team, _, kind = topic[len(prefix):].partition("/")
    if not team or kind not in TEAM_KINDS:
        return None
    try:
        data = json.loads(payload)
        alarm_id = int(data["alarm_id"])
    except (ValueError, TypeError, KeyError):
        return None
    responder = data.get("responder")
    return TeamMessage(kind=kind, team=team, alarm_id=alarm_id,
                       cid=str(data["cid"]) if data.get("cid") else None,
                       responder=responder if isinstance(responder, str) else None,
                       message_id=data.get("message_id"))


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    status: int  # 0: no answer at all (the service is away)
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ResponderApi:
    """The alarm API as one responder's phone uses it: a bearer token, JSON in and out.

    The standard library's client in a worker thread: the simulator ships with the
    service, whose dependencies have no HTTP client.
    """

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s

    async def post(self, path: str, body: Mapping[str, Any] | None = None) -> ApiAnswer:
        return await asyncio.to_thread(self._request, "POST", path, dict(body or {}))

    async def get(self, path: str) -> ApiAnswer:
        return await asyncio.to_thread(self._request, "GET", path, None)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> ApiAnswer:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self._timeout_s)
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, self._prefix + path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            return ApiAnswer(0, None)
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return ApiAnswer(response.status, parsed)


class TeamFeed:
    """Every team's call-outs, cancels and withdrawals over one MQTT connection that
    reconnects by itself; each message is handed to `on_message` once (a message the
    outbox published again after a crash has the same `message_id`).

    Entering waits for the first connection and subscription (at most
    `connect_timeout_s`, else `LinkDown`).
    """

    def __init__(self, host: str, port: int, on_message: Callable[[TeamMessage], None], *,
                 root: str = DEFAULT_ROOT, retry_min_s: float = 0.5, retry_max_s: float = 10.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.root = root
        self._on_message = on_message
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._connect_timeout_s = connect_timeout_s
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seen: deque[str] = deque(maxlen=1000)

    async def __aenter__(self) -> TeamFeed:
        if self._task is not None:
            raise RuntimeError("TeamFeed is already open")
        self._task = asyncio.create_task(self._stay_connected(),
                                         name="trygg.simulator.responders.feed")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._up.wait()
        except TimeoutError:
            await self._close()
            raise LinkDown(self.host, self.port) from None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def _stay_connected(self) -> None:
        """Connect, subscribe, hand messages on; on any MQTT failure wait and start over."""
        delay = self._retry_min_s
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port) as client:
                    for kind in TEAM_KINDS:
                        await client.subscribe(f"{self.root}/team/+/{kind}", qos=1)
                    self._up.set()
                    delay = self._retry_min_s
                    async for message in client.messages:
                        self._route(message)
            except aiomqtt.MqttError as exc:
                log.warning("simulator.responders.link_lost", error=str(exc),
                            retry_in_s=delay)
            finally:
                self._up.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    def _route(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return
        parsed = parse_team_message(self.root, message.topic.value, bytes(payload))
        if parsed is None:
            log.debug("simulator.responders.unreadable", topic_kind=message.topic.value
                      .rpartition("/")[2])
            return
        if parsed.message_id is not None:
            if parsed.message_id in self._seen:
                return
            self._seen.append(parsed.message_id)
        self._on_message(parsed)

    async def _close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything one answer to one call will do, drawn when the call comes."""

    fate: Fate
    answer_after: float
    travel: float
    visit: float
    broken_unit: bool


class _Stop(Exception):
    """The API said no (taken by someone else, closed) or did not answer: stop here."""


@dataclass(slots=True)
class _Job:
    task: asyncio.Task[None]
    team: str
    cid: str | None


class SimulatedResponders:
    """The responders of `accounts`, answering their call-outs while the block runs.

    `units` are the simulated base units by cid, for the check-in on the unit; `api_url`
    is the service's (e.g. http://127.0.0.1:8080). `tally` counts what they did.
    """

    def __init__(self, host: str, port: int, api_url: str,
                 accounts: Sequence[ResponderAccount], behaviour: ResponderBehaviour, *,
                 units: Mapping[str, SimulatedBaseUnit] | None = None,
                 root: str = DEFAULT_ROOT, speed: float = 1.0,
                 rng: random.Random | None = None, sleep: Sleep = asyncio.sleep,
                 settle_s: float = 5.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.accounts = {a.name: a for a in accounts}
        self.behaviour = behaviour
        self.tally: Counter[str] = Counter()
        self._apis = {a.name: ResponderApi(api_url, a.token) for a in accounts}
        self._units = units or {}
        self._speed = speed
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._settle_s = settle_s
        self._feed = TeamFeed(host, port, self._heard, root=root)
        self._jobs: dict[tuple[int, str], _Job] = {}

    async def __aenter__(self) -> SimulatedResponders:
        await self._feed.__aenter__()
        log.info("simulator.responders.started", responders=len(self.accounts),
                 teams=len({a.team for a in self.accounts.values()}))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._feed.__aexit__(exc_type, exc, tb)  # first: no new calls come in
        jobs = [job.task for job in self._jobs.values()]
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    @property
    def busy_cids(self) -> set[str]:
        """The units a responder is answering, travelling to or visiting."""
        return {job.cid for job in self._jobs.values() if job.cid is not None}

    # -- hearing the team topics -------------------------------------------------------

    def _heard(self, message: TeamMessage) -> None:
        if message.kind == "callout":
            self._called(message)
        else:
            self._stand_down(message)

    def _called(self, call: TeamMessage) -> None:
        who = self.accounts.get(call.responder or "")
        if who is None or who.team != call.team:
            return  # someone not played here, or a name shared with another team
        key = (call.alarm_id, who.name)
        if key in self._jobs:
            return  # called again (the next round) while still answering the first call
        self.tally["callouts"] += 1
        plan = self._plan(who.behaviour or self.behaviour)
        bound = log.bind(alarm_id=call.alarm_id, cid=call.cid, team=who.team,
                         position=who.position)
        if plan.fate is Fate.NEVER_ANSWER:
            self.tally["never_answered"] += 1
            bound.info("simulator.responder.never_answers")
            return
        task = asyncio.create_task(self._answer(who, call, plan, bound),
                                   name=f"trygg.simulator.responder.{call.alarm_id}")
        self._jobs[key] = _Job(task, who.team, call.cid)
        task.add_done_callback(lambda done: self._finished(key, done, bound))

    def _stand_down(self, message: TeamMessage) -> None:
        """A cancel or a withdrawal: the team's responders drop the alarm."""
        for (alarm_id, _), job in list(self._jobs.items()):
            if alarm_id == message.alarm_id and job.team == message.team:
                job.task.cancel()
                self.tally["stood_down"] += 1
                log.info("simulator.responder.stood_down", alarm_id=alarm_id,
                         team=job.team, why=message.kind)

    def _finished(self, key: tuple[int, str], task: asyncio.Task[None],
                  bound: structlog.typing.FilteringBoundLogger) -> None:
        if (job := self._jobs.get(key)) is not None and job.task is task:
            del self._jobs[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            bound.error("simulator.responder.failed", error=repr(exc))

    def _plan(self, b: ResponderBehaviour) -> _Plan:
        """Draw the whole answer at once, in a fixed order, so a seed replays it."""
        roll = self._rng.random()
        fate = Fate.ACCEPT if roll < b.accept else (
            Fate.DECLINE if roll < b.accept + b.decline else Fate.NEVER_ANSWER)
        answer_after = self._rng.uniform(*b.answer_after)
        travel = self._rng.uniform(*b.travel)
        long = self._rng.random() < b.long_visit
        visit = self._rng.uniform(*(b.long_visit_length if long else b.visit))
        broken = self._rng.random() < b.broken_unit
        return _Plan(fate, answer_after, travel, visit, broken)

    # -- one answer to one call ----------------------------------------------------------

    async def _answer(self, who: ResponderAccount, call: TeamMessage, plan: _Plan,
                      bound: structlog.typing.FilteringBoundLogger) -> None:
        api = self._apis[who.name]
        alarm = f"/api/alarms/{call.alarm_id}"
        try:
            await self._wait(plan.answer_after)
            if plan.fate is Fate.DECLINE:
                await self._call(api, f"{alarm}/decline", "declined", bound)
                return
            await self._call(api, f"{alarm}/accept", "accepted", bound)
            await self._call(api, f"{alarm}/on-my-way", "on_my_way", bound)
            await self._wait(plan.travel)
            unit = None if plan.broken_unit or call.cid is None else self._units.get(call.cid)
            on_unit = await self._check_in(api, alarm, unit, bound)
            await self._wait(plan.visit)
            await self._check_out(api, alarm, unit if on_unit else None, bound)
            await self._give_reason_if_needed(api, call.alarm_id, bound)
        except _Stop:
            return

    async def _check_in(self, api: ResponderApi, alarm: str, unit: SimulatedBaseUnit | None,
                        bound: structlog.typing.FilteringBoundLogger) -> bool:
        """Yellow then green on the unit; by phone where there is no working unit.
        True if the unit took the check-in."""
        if unit is not None and await self._on_unit(unit.check_in, "check_in", bound):
            self.tally["unit_check_ins"] += 1
            return True
        await self._call(api, f"{alarm}/check-in", "phone_check_ins", bound)
        return False

    async def _check_out(self, api: ResponderApi, alarm: str, unit: SimulatedBaseUnit | None,
                         bound: structlog.typing.FilteringBoundLogger) -> None:
        if unit is not None and await self._on_unit(unit.check_out, "check_out", bound):
            self.tally["unit_check_outs"] += 1
            return
        await self._call(api, f"{alarm}/check-out", "phone_check_outs", bound)

    async def _on_unit(self, press: Callable[[], Coroutine[Any, Any, Any]], action: str,
                       bound: structlog.typing.FilteringBoundLogger) -> bool:
        try:
            answer = await press()
        except Unanswered:
            answer = None
        if answer is not None and answer.snu == Snu.OK:
            return True
        bound.warning("simulator.responder.unit_failed", action=action)
        return False

    async def _give_reason_if_needed(self, api: ResponderApi, alarm_id: int,
                                     bound: structlog.typing.FilteringBoundLogger) -> None:
        """A visit the service counts as over 15 minutes gets a reason. The service's
        count, not the plan's: its clock measured the visit."""
        view = await self._completed(api, alarm_id)
        if view is None or not view.get("needs_visit_reason"):
            return
        reason = self._rng.choice(VISIT_REASONS)
        await self._call(api, f"/api/alarms/{alarm_id}/visit-reason", "visit_reasons", bound,
                         {"reason": reason})

    async def _completed(self, api: ResponderApi, alarm_id: int) -> dict[str, Any] | None:
        """The alarm once the service has its check-out (the unit's takes a moment to go
        through the gateway); None if it never shows within `settle_s`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._settle_s
        while True:
            answer = await api.get("/api/alarms?scope=active")
            alarms = answer.body.get("alarms", []) if answer.ok and answer.body else []
            view = next((a for a in alarms if a.get("id") == alarm_id), None)
            if view is not None and view.get("completed_at"):
                return dict(view)
            if loop.time() >= until:
                return None
            await asyncio.sleep(0.1)  # waiting for the service, not a scenario time

    async def _call(self, api: ResponderApi, path: str, counted: str,
                    bound: structlog.typing.FilteringBoundLogger,
                    body: Mapping[str, Any] | None = None) -> None:
        answer = await api.post(path, body)
        action = path.rpartition("/")[2]
        if not answer.ok:
            self.tally["refused" if answer.status else "api_unreachable"] += 1
            bound.info("simulator.responder.refused", action=action, status=answer.status)
            raise _Stop
        self.tally[counted] += 1
        bound.info("simulator.responder.did", action=action)

    async def _wait(self, scenario_seconds: float) -> None:
        await self._sleep(scenario_seconds / self._speed)
