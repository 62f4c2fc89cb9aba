"""A simulated base unit (larmdosa): builds SCAIP requests and resends them until answered.

Each method is one message session: a fresh `ref`, the request published at QoS 1, and
the identical bytes published again every `resend_after_s` until an `<mrs>` with that
ref arrives or `give_up_after_s` has passed. A HOLD answer (snu 4) means "being
processed, ask again": the unit keeps resending, as SCAIP requires. `SimulatedDevice`
holds these sessions for every simulated device, the lock (simulator/lock.py) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import structlog

from devices.scaip import ScaipRequest, ScaipResponse, Snu, encode_request
from simulator.errors import LinkDown, Unanswered

log = structlog.get_logger(__name__)

# SCAIP codes (SS 91100 Annexes A-C); see docs PROTOCOLS.md section 1.
DTY_UNIT = "0002"  # local unit & controller
DTY_PENDANT = "0003"  # personal trigger
DCO_BUTTON_1 = "002"


class Action(StrEnum):
    """What a simulated unit can report; the scenario files use these names."""

    PRESS = "press"
    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"
    HEARTBEAT = "heartbeat"
    MAINS_LOST = "mains_lost"
    MAINS_RESTORED = "mains_restored"
    BATTERY_LOW = "battery_low"


# Status codes of the actions reported by the unit itself (dty 0002).
_UNIT_STATUS = {
    Action.CHECK_IN: "0088",  # presence, upon alarm
    Action.CHECK_OUT: "0111",  # intervention completed
    Action.MAINS_LOST: "0085",
    Action.MAINS_RESTORED: "0086",
    Action.BATTERY_LOW: "0016",
}


class Uplink(Protocol):
    """What a unit needs from the MQTT side; `simulator.link.DeviceLink` provides it."""

    async def publish(self, cid: str, frame: bytes) -> None: ...

    def expect(
        self, cid: str, ref: str
    ) -> contextlib.AbstractContextManager[asyncio.Queue[ScaipResponse]]: ...


@dataclass
class UnitTally:
    """What one unit has done so far; the runner sums these into the report."""

    # Keyed by action: an `Action` of a unit, a `LockAction` of a lock (both strings).
    sent: Counter[str] = field(default_factory=Counter)  # message sessions begun
    answered: Counter[str] = field(default_factory=Counter)  # got a final (non-HOLD) answer
    refused: int = 0  # final answers whose snu was not OK
    transmissions: int = 0  # copies the broker accepted, first ones and resends
    resends: int = 0  # of those, the repeats
    holds: int = 0  # HOLD answers received
    publish_failures: int = 0  # copies the link could not publish (broker away)


_SPOKEN: dict[str, str] = {Action.CHECK_IN: "check in", Action.CHECK_OUT: "check out"}


class SimulatedDevice:
    """What every simulated SCAIP device shares: message sessions, resent until answered."""

    def __init__(
        self,
        cid: str,
        link: Uplink,
        *,
        resend_after_s: float = 5.0,
        give_up_after_s: float = 1800.0,
    ) -> None:
        self.cid = cid
        self.tally = UnitTally()
        self._link = link
        self._resend_after_s = resend_after_s
        self._give_up_after_s = give_up_after_s
        # A random prefix keeps refs unique across simulator runs with the same cids,
        # so the gateway's (cid, ref) idempotency never mistakes a new press for a resend.
        self._ref_prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def _next_ref(self) -> str:
        return f"{self._ref_prefix}{next(self._counter):x}"

    async def _session(self, action: str, request: ScaipRequest) -> ScaipResponse:
        self.tally.sent[action] += 1
        bound = log.bind(cid=self.cid, ref=request.ref, action=str(action))
        with self._link.expect(self.cid, request.ref) as answers:
            response = await self._resend_until_answered(action, request, answers, bound)
        self.tally.answered[action] += 1
        if response.snu != Snu.OK:
            self.tally.refused += 1
        bound.info("simulator.unit.answered", snu=response.snu)
        if response.snu == Snu.OK and action in _SPOKEN:
            # A real unit speaks once the centre has taken the kvittering.
            bound.info("simulator.unit.says", words=_SPOKEN[action])
        return response

    async def _resend_until_answered(
        self,
        action: str,
        request: ScaipRequest,
        answers: asyncio.Queue[ScaipResponse],
        bound: structlog.typing.FilteringBoundLogger,
    ) -> ScaipResponse:
        frame = encode_request(request)  # once: every resend is byte-for-byte the same
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._give_up_after_s
        next_send = loop.time()
        copies = 0
        while True:
            if loop.time() >= give_up_at:
                bound.warning("simulator.unit.gave_up", transmissions=copies)
                raise Unanswered(self.cid, request.ref, str(action), copies)
            if loop.time() >= next_send:
                copies += await self._transmit(frame, is_resend=copies > 0, bound=bound)
                next_send = loop.time() + self._resend_after_s
            try:
                async with asyncio.timeout_at(min(next_send, give_up_at)):
                    response = await answers.get()
            except TimeoutError:
                continue
            if response.snu != Snu.HOLD:
                return response
            self.tally.holds += 1
            # The centre is working on it and wants to be asked again later.
            next_send = loop.time() + self._resend_after_s

    async def _transmit(
        self, frame: bytes, *, is_resend: bool, bound: structlog.typing.FilteringBoundLogger
    ) -> int:
        """Publish one copy; return 1 if the broker took it, 0 if the link was down."""
        try:
            await self._link.publish(self.cid, frame)
        except LinkDown:
            self.tally.publish_failures += 1
            bound.warning("simulator.unit.link_down")
            return 0
        self.tally.transmissions += 1
        if is_resend:
            self.tally.resends += 1
            bound.info("simulator.unit.resent")
        return 1


class SimulatedBaseUnit(SimulatedDevice):
    """One base unit with pendant, as the alarm centre sees it over MQTT."""

    async def press(self, pendant: str = "1") -> ScaipResponse:
        """The customer pressed the pendant: an alarm (no status code)."""
        request = ScaipRequest(
            ref=self._next_ref(), cid=self.cid, dty=DTY_PENDANT, did=pendant, dco=DCO_BUTTON_1
        )
        return await self._session(Action.PRESS, request)

    async def check_in(self) -> ScaipResponse:
        """Staff on site pressed yellow then green: "check in"."""
        return await self._report_status(Action.CHECK_IN)

    async def check_out(self) -> ScaipResponse:
        """Staff leaving: "check out"."""
        return await self._report_status(Action.CHECK_OUT)

    async def heartbeat(self) -> ScaipResponse:
        request = ScaipRequest(ref=self._next_ref(), cid=self.cid, dty=DTY_UNIT, mty="PI")
        return await self._session(Action.HEARTBEAT, request)

    async def mains_lost(self) -> ScaipResponse:
        return await self._report_status(Action.MAINS_LOST)

    async def mains_restored(self) -> ScaipResponse:
        return await self._report_status(Action.MAINS_RESTORED)

    async def battery_low(self) -> ScaipResponse:
        return await self._report_status(Action.BATTERY_LOW)

    async def perform(self, action: Action, *, pendant: str = "1") -> ScaipResponse:
        """Do `action` by name, as a scenario step asks."""
        if action is Action.PRESS:
            return await self.press(pendant)
        if action is Action.HEARTBEAT:
            return await self.heartbeat()
        return await self._report_status(action)

    async def _report_status(self, action: Action) -> ScaipResponse:
        request = ScaipRequest(
            ref=self._next_ref(), cid=self.cid, dty=DTY_UNIT, stc=_UNIT_STATUS[action]
        )
        return await self._session(action, request)
