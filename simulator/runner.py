"""Run a scenario against a broker: many simulated units over one link, then a report.

`run_simulation` is the entry point behind `trygg simulate`. All randomness comes
from one `random.Random(seed)`, drawn in a fixed order (heartbeat offsets first, then
the seed of the steps' own generator, then each alarm's unit, fate and delays when it
happens), so a seeded run makes the same choices again; message timing still depends on
the network. The steps draw their spreads from their own generator, in step order, so
steps and random alarms never shift each other's choices.

Given responder accounts and the service's API, a scenario with `responders` is played
with simulated responders (simulator/responders.py) who answer the call-outs and check
in and out on these same units; they draw from a generator of their own, seeded from
the same seed, so playing them shifts none of the units' choices.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from devices.scaip import ScaipResponse
from simulator.errors import ScenarioError, Unanswered
from simulator.link import DEFAULT_ROOT, DeviceLink
from simulator.responders import ResponderAccount, SimulatedResponders
from simulator.scenario import AlarmTraffic, Scenario, Step
from simulator.unit import Action, SimulatedBaseUnit, UnitTally

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What the simulated units sent and got back. Counts are message sessions
    (one `ref` each) unless named otherwise; `sent`/`answered` are keyed by action."""

    sent: Mapping[str, int]
    answered: Mapping[str, int]
    refused: int  # final answers whose snu was not OK
    transmissions: int  # copies on the wire, first ones and resends
    resends: int
    holds: int
    publish_failures: int  # copies not published because the broker was away
    elapsed_s: float
    # What the simulated responders did, by kind (empty when none were played).
    responders: Mapping[str, int] = field(default_factory=dict)

    @property
    def alarms_sent(self) -> int:
        return self.sent.get(Action.PRESS, 0)

    @property
    def alarms_answered(self) -> int:
        return self.answered.get(Action.PRESS, 0)

    @property
    def alarms_unanswered(self) -> int:
        """Alarms that got no final answer: given up, or still resending at the end."""
        return self.alarms_sent - self.alarms_answered

    @property
    def messages_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def messages_unanswered(self) -> int:
        return self.messages_sent - sum(self.answered.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain values, e.g. for `json.dumps` in the command line."""
        return {
            "alarms_sent": self.alarms_sent,
            "alarms_answered": self.alarms_answered,
            "alarms_unanswered": self.alarms_unanswered,
            "messages_sent": self.messages_sent,
            "messages_unanswered": self.messages_unanswered,
            "sent": dict(self.sent),
            "answered": dict(self.answered),
            "refused": self.refused,
            "transmissions": self.transmissions,
            "resends": self.resends,
            "holds": self.holds,
            "publish_failures": self.publish_failures,
            "elapsed_s": round(self.elapsed_s, 3),
            "responders": dict(self.responders),
        }

    @classmethod
    def from_tallies(cls, tallies: list[UnitTally], elapsed_s: float,
                     responders: Mapping[str, int] | None = None) -> SimulationReport:
        sent: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        for t in tallies:
            sent.update({str(a): n for a, n in t.sent.items()})
            answered.update({str(a): n for a, n in t.answered.items()})
        return cls(
            sent=dict(sent),
            answered=dict(answered),
            refused=sum(t.refused for t in tallies),
            transmissions=sum(t.transmissions for t in tallies),
            resends=sum(t.resends for t in tallies),
            holds=sum(t.holds for t in tallies),
            publish_failures=sum(t.publish_failures for t in tallies),
            elapsed_s=elapsed_s,
            responders=dict(responders or {}),
        )


async def run_simulation(
    host: str,
    port: int,
    cids: list[str],
    scenario: Scenario,
    *,
    root: str = DEFAULT_ROOT,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
    areas: Mapping[str, str] | None = None,
    api_url: str | None = None,
    responders: Sequence[ResponderAccount] = (),
) -> SimulationReport:
    """Play `scenario` with one simulated unit per cid until it ends or `stop` is set.

    `areas` maps a cid to its area code, for the steps that name an area; a cid not in
    it belongs to no area. With `responders` (accounts of responder users) and the
    service's `api_url`, a scenario with a `responders` section is played with
    simulated responders too. Raises `ScenarioError` if the steps need more units than
    `cids` gives or name an area none of them is in, and `LinkDown` if the broker
    cannot be reached at the start.
    """
    areas = areas or {}
    _check_units_fit(scenario, cids, areas)
    loop = asyncio.get_running_loop()
    async with DeviceLink(host, port, root=root) as link:
        units = [
            SimulatedBaseUnit(
                cid,
                link,
                resend_after_s=scenario.unit.resend_after,
                give_up_after_s=scenario.unit.give_up_after,
            )
            for cid in cids
        ]
        async with _responders(host, port, root, scenario, units, seed, api_url,
                               responders) as crew:
            started = loop.time()
            log.info(
                "simulator.started", scenario=scenario.name, units=len(units),
                speed=scenario.speed, responders=len(crew.accounts) if crew else 0,
            )
            play = _Play(scenario, units, areas, random.Random(seed), crew)
            await play.run(stop or asyncio.Event())
            elapsed = loop.time() - started
    report = SimulationReport.from_tallies([u.tally for u in units], elapsed,
                                           crew.tally if crew else None)
    log.info("simulator.finished", scenario=scenario.name, **report.to_dict())
    return report


@asynccontextmanager
async def _responders(
    host: str,
    port: int,
    root: str,
    scenario: Scenario,
    units: list[SimulatedBaseUnit],
    seed: int | None,
    api_url: str | None,
    accounts: Sequence[ResponderAccount],
) -> AsyncIterator[SimulatedResponders | None]:
    """The scenario's simulated responders while the block runs, if it has any and
    there are accounts to play them with; else None."""
    if scenario.responders is None:
        yield None
        return
    if not accounts or api_url is None:
        # `trygg simulate` plays units only; `trygg run --simulate` makes the accounts.
        log.info("simulator.responders_not_played", reason="no responder accounts given")
        yield None
        return
    # A generator of their own: playing responders shifts none of the units' draws.
    rng = random.Random(None if seed is None else f"responders:{seed}")
    async with SimulatedResponders(
        host, port, api_url, accounts, scenario.responders,
        units={u.cid: u for u in units}, root=root, speed=scenario.speed, rng=rng,
    ) as crew:
        yield crew


def _check_units_fit(scenario: Scenario, cids: list[str], areas: Mapping[str, str]) -> None:
    """Refuse, with every reason at once, steps that the given units cannot play."""
    problems = []
    if len(cids) < scenario.units_needed:
        problems.append(
            f"the steps use {scenario.units_needed} unit(s) but {len(cids)} cid(s) were given"
        )
    present = sorted({areas[cid] for cid in cids if cid in areas})
    for area in sorted(scenario.areas_used.difference(present)):
        known = f"their areas: {', '.join(present)}" if present else "none of them has a known area"
        problems.append(
            f"the steps use area {area!r} but none of the {len(cids)} unit(s) is in it ({known})"
        )
    if problems:
        raise ScenarioError(scenario.name, problems)


class _Play:
    """One run of a scenario: spawns every activity into one task group, then ends it."""

    def __init__(
        self,
        scenario: Scenario,
        units: list[SimulatedBaseUnit],
        areas: Mapping[str, str],
        rng: random.Random,
        responders: SimulatedResponders | None = None,
    ):
        self._scenario = scenario
        self._units = units
        self._areas = areas
        self._rng = rng
        self._responders = responders
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: set[str] = set()  # cids with an alarm visit under way
        self._tg: asyncio.TaskGroup | None = None

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            steps = self._start_activities()
            await self._until_end(stop, steps)
            # Whatever is still going (heartbeats, visits, resending units) ends here;
            # the report counts its open sessions as unanswered.
            for task in list(self._tasks):
                task.cancel()

    def _start_activities(self) -> asyncio.Task[None] | None:
        s = self._scenario
        if s.heartbeat_every is not None:
            for unit in self._units:
                offset = self._rng.uniform(0, s.heartbeat_every)  # spread units over the period
                self._spawn(
                    self._heartbeats(unit, offset, s.heartbeat_every), f"heartbeat-{unit.cid}"
                )
        if s.alarms is not None:
            self._spawn(self._alarm_traffic(s.alarms), "alarm-traffic")
        if not s.steps:
            return None
        # Drawn here, before the alarm traffic task draws anything.
        steps_rng = random.Random(self._rng.getrandbits(64))
        return self._spawn(self._steps(s.steps, steps_rng), "steps")

    async def _until_end(self, stop: asyncio.Event, steps: asyncio.Task[None] | None) -> None:
        s = self._scenario
        stopped = asyncio.create_task(stop.wait(), name="trygg.simulator.stop")
        ends: set[asyncio.Task[Any]] = {stopped}
        if steps is not None and s.duration is None:
            ends.add(steps)
        timeout = s.real_seconds(s.duration) if s.duration is not None else None
        try:
            await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        assert self._tg is not None
        task = self._tg.create_task(coro, name=f"trygg.simulator.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sleep(self, scenario_seconds: float) -> None:
        await asyncio.sleep(self._scenario.real_seconds(scenario_seconds))

    async def _act(
        self, unit: SimulatedBaseUnit, action: Action, pendant: str = "1"
    ) -> ScaipResponse | None:
        """One message session; None if the unit gave up (already logged and counted)."""
        try:
            return await unit.perform(action, pendant=pendant)
        except Unanswered:
            return None

    async def _steps(self, steps: tuple[Step, ...], rng: random.Random) -> None:
        """Start each step at its time, and a repeating one again every `repeat_every`.

        Ends when every session of the steps is over, which never happens while a step
        repeats. Steps due at the same time start in the file's order.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = [(step.at, index) for index, step in enumerate(steps)]
        heapq.heapify(due)
        sessions: list[asyncio.Task[Any]] = []
        while due:
            at, index = heapq.heappop(due)
            step = steps[index]
            await asyncio.sleep(max(0.0, start + self._scenario.real_seconds(at) - loop.time()))
            started = self._start_step(step, rng)
            if step.repeat_every is None:
                sessions.extend(started)
            else:
                heapq.heappush(due, (at + step.repeat_every, index))
        await asyncio.gather(*sessions)

    def _start_step(self, step: Step, rng: random.Random) -> list[asyncio.Task[Any]]:
        """One occurrence of a step: a session per unit, each after its share of `spread`."""
        if step.unit is not None:
            units = [self._units[step.unit]]
        else:
            units = [u for u in self._units if self._areas.get(u.cid) == step.area]
            log.info(
                "simulator.area_step",
                area=step.area,
                action=str(step.action),
                units=len(units),
                spread_s=step.spread,
            )
        sessions = []
        for unit in units:
            delay = rng.uniform(0, step.spread) if step.spread else 0.0
            session = self._act_after(delay, unit, step.action, step.pendant or "1")
            sessions.append(self._spawn(session, f"step-{unit.cid}-{step.action}"))
        return sessions

    async def _act_after(
        self, delay: float, unit: SimulatedBaseUnit, action: Action, pendant: str
    ) -> ScaipResponse | None:
        """`_act` once `delay` scenario seconds have passed."""
        if delay:
            await self._sleep(delay)
        return await self._act(unit, action, pendant)

    async def _heartbeats(self, unit: SimulatedBaseUnit, offset: float, every: float) -> None:
        """Heartbeat on a fixed beat; a beat missed while one is still resending is skipped."""
        loop = asyncio.get_running_loop()
        await self._sleep(offset)
        period = self._scenario.real_seconds(every)
        next_beat = loop.time()
        while True:
            await self._act(unit, Action.HEARTBEAT)
            next_beat += period
            while next_beat < loop.time():
                next_beat += period
            await asyncio.sleep(next_beat - loop.time())

    async def _alarm_traffic(self, traffic: AlarmTraffic) -> None:
        """Alarms as a Poisson process over all units; a busy unit is not picked."""
        while True:
            await self._sleep(self._rng.expovariate(1 / traffic.mean_interval))
            busy = self._busy | (self._responders.busy_cids if self._responders else set())
            idle = [u for u in self._units if u.cid not in busy]
            if not idle:
                continue
            unit = self._rng.choice(idle)
            # Drawn now, in this one task, so a seed replays the same choices.
            visited = self._rng.random() >= traffic.never_checked_in
            check_in_after = self._rng.uniform(*traffic.check_in_after)
            check_out_after = self._rng.uniform(*traffic.check_out_after)
            self._busy.add(unit.cid)
            visit = self._alarm_visit(unit, visited, check_in_after, check_out_after)
            self._spawn(visit, f"alarm-{unit.cid}")

    async def _alarm_visit(
        self, unit: SimulatedBaseUnit, visited: bool, check_in_after: float, check_out_after: float
    ) -> None:
        """The customer presses; a responder arrives and checks in, later checks out."""
        try:
            press = self._spawn(self._act(unit, Action.PRESS), f"press-{unit.cid}")
            if self._responders is not None:
                # The simulated responders answer the call-out and visit the unit.
                await press
                return
            if not visited:
                log.info("simulator.alarm.never_checked_in", cid=unit.cid)
                await press
                return
            await self._sleep(check_in_after)
            if press.done() and press.result() is None:
                return  # the centre never got the alarm, so nobody was sent
            await self._act(unit, Action.CHECK_IN)
            await self._sleep(check_out_after)
            await self._act(unit, Action.CHECK_OUT)
        finally:
            self._busy.discard(unit.cid)
