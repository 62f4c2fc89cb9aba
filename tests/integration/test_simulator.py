"""The simulator against a real Mosquitto, with a tiny bare responder as the alarm centre."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from core.settings import SHIPPED_CONFIG
from devices.scaip import ScaipRequest, Snu, parse_request
from dispatch.config import load_config
from simulator import (
    DeviceLink,
    ScenarioError,
    SimulatedBaseUnit,
    Unanswered,
    load_scenario,
    run_simulation,
)
from simulator.scenario import parse_scenario
from tests.brokers import Broker, free_port, mosquitto
from trygg.cli import base_unit_areas

pytestmark = pytest.mark.mqtt

CID = "4600123"
RESEND_S = 0.2
MAINS_LOST = "0085"
# As in the demo registry (config/municipality.yaml).
BRO = ["100002", "100102", "100004", "100005", "100008"]
KUNGSANGEN = ["100001", "100003", "100006", "100007"]
AREAS = {**dict.fromkeys(BRO, "bro"), **dict.fromkeys(KUNGSANGEN, "kungsangen")}


@pytest.fixture
def topic_root() -> str:
    return f"test/{secrets.token_hex(4)}/trygg"


class Responder:
    """Plays the alarm centre: records every <mrq> and answers it by ref.

    The n-th copy of a ref gets `script[n]` as its snu (None: no answer, to make the
    unit resend); copies after the script get `then`.
    """

    def __init__(
        self, client: aiomqtt.Client, root: str, script: tuple[int | None, ...], then: int | None
    ) -> None:
        self.frames: list[bytes] = []
        self.arrived: list[float] = []  # loop time of each frame
        self.got_frame = asyncio.Condition()
        self._client = client
        self._root = root
        self._script = script
        self._then = then
        self._seen: dict[str, int] = {}

    @property
    def requests(self) -> list[ScaipRequest]:
        return [parse_request(f) for f in self.frames]

    async def serve(self) -> None:
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            await self._answer(message.topic.value.split("/")[-2], message.payload)

    async def wait_for(self, count: int, timeout_s: float = 3.0) -> None:
        async with asyncio.timeout(timeout_s), self.got_frame:
            await self.got_frame.wait_for(lambda: len(self.frames) >= count)

    async def _answer(self, cid: str, frame: bytes) -> None:
        async with self.got_frame:
            self.frames.append(frame)
            self.arrived.append(asyncio.get_running_loop().time())
            self.got_frame.notify_all()
        ref = parse_request(frame).ref
        copy = self._seen[ref] = self._seen.get(ref, 0) + 1
        snu = self._script[copy - 1] if copy <= len(self._script) else self._then
        if snu is not None:
            mrs = f"<mrs><ref>{ref}</ref><snu>{snu}</snu></mrs>".encode()
            await self._client.publish(f"{self._root}/dev/{cid}/mrs", mrs, qos=1)


@asynccontextmanager
async def responder(
    broker: Broker, root: str, script: tuple[int | None, ...] = (), then: int | None = Snu.OK
) -> AsyncIterator[Responder]:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{root}/dev/+/mrq", qos=1)
        centre = Responder(client, root, script, then)
        task = asyncio.create_task(centre.serve(), name="test.responder")
        try:
            yield centre
        finally:
            task.cancel()


async def test_pressed_pendant_is_answered_with_snu_ok(broker: Broker, topic_root: str) -> None:
    async with (
        responder(broker, topic_root) as centre,
        DeviceLink(broker.host, broker.port, root=topic_root) as link,
    ):
        unit = SimulatedBaseUnit(CID, link, resend_after_s=RESEND_S)
        response = await unit.press(pendant="2")

    assert response.snu == Snu.OK
    [request] = centre.requests
    assert response.ref == request.ref
    assert (request.cid, request.dty, request.did, request.dco, request.stc) == (
        CID,
        "0003",
        "2",
        "002",
        None,
    )


async def test_unit_resends_identical_bytes_until_answered(broker: Broker, topic_root: str) -> None:
    async with (
        responder(broker, topic_root, script=(None,)) as centre,
        DeviceLink(broker.host, broker.port, root=topic_root) as link,
    ):
        unit = SimulatedBaseUnit(CID, link, resend_after_s=RESEND_S)
        response = await unit.check_in()
        await asyncio.sleep(3 * RESEND_S)  # long enough for more resends, were there any

    assert response.snu == Snu.OK
    assert len(centre.frames) == 2
    assert centre.frames[0] == centre.frames[1]
    assert (unit.tally.transmissions, unit.tally.resends) == (2, 1)


async def test_unit_keeps_resending_after_hold_until_a_final_answer(
    broker: Broker, topic_root: str
) -> None:
    async with (
        responder(broker, topic_root, script=(Snu.HOLD,)) as centre,
        DeviceLink(broker.host, broker.port, root=topic_root) as link,
    ):
        unit = SimulatedBaseUnit(CID, link, resend_after_s=RESEND_S)
        response = await unit.press()

    assert response.snu == Snu.OK
    assert len(centre.frames) == 2
    assert (unit.tally.holds, unit.tally.resends) == (1, 1)


async def test_unit_gives_up_when_never_answered(broker: Broker, topic_root: str) -> None:
    async with (
        responder(broker, topic_root, then=None) as centre,
        DeviceLink(broker.host, broker.port, root=topic_root) as link,
    ):
        unit = SimulatedBaseUnit(CID, link, resend_after_s=RESEND_S, give_up_after_s=0.5)
        with pytest.raises(Unanswered) as caught:
            await unit.press()

    assert caught.value.cid == CID
    assert caught.value.transmissions == len(centre.frames) == 3
    assert len(set(centre.frames)) == 1


async def test_steps_scenario_sends_press_check_in_check_out_in_order(
    broker: Broker, topic_root: str
) -> None:
    scenario = parse_scenario(
        """
        speed: 10
        unit: {resend_after: 0.2s}
        steps:
          - {at: 0s, unit: 0, action: press}
          - {at: 3s, unit: 0, action: check_in}
          - {at: 6s, unit: 1, action: check_out}
        """,
        source="inline",
        default_name="visit",
    )

    async with responder(broker, topic_root) as centre:
        report = await run_simulation(
            broker.host, broker.port, ["1001", "1002"], scenario, root=topic_root
        )

    assert [(r.cid, r.dty, r.stc) for r in centre.requests] == [
        ("1001", "0003", None),
        ("1001", "0002", "0088"),
        ("1002", "0002", "0111"),
    ]
    assert len({r.ref for r in centre.requests}) == 3
    assert (report.alarms_sent, report.alarms_answered, report.messages_sent) == (1, 1, 3)
    assert report.messages_unanswered == 0


async def test_demo_scenario_runs_until_stopped(broker: Broker, topic_root: str) -> None:
    scenario = load_scenario("demo").with_speed(600)  # heartbeats every 0.1 s, alarms ~0.2 s
    stop = asyncio.Event()
    cids = ["2001", "2002", "2003"]
    areas = {"2001": "bro", "2002": "bro", "2003": "kungsangen"}

    async with responder(broker, topic_root) as centre:
        asyncio.get_running_loop().call_later(1.5, stop.set)
        report = await run_simulation(
            broker.host,
            broker.port,
            cids,
            scenario,
            root=topic_root,
            stop=stop,
            seed=7,
            areas=areas,
        )

    assert report.sent["heartbeat"] >= len(cids)
    # The power cut in Bro at 0.1 s, restored at 0.4 s, again at 1.1 s.
    assert {r.cid for r in centre.requests if r.stc == MAINS_LOST} == {"2001", "2002"}
    assert report.sent["mains_restored"] >= 2
    assert report.alarms_sent >= 1
    assert report.alarms_answered >= 1
    assert {r.cid for r in centre.requests} == set(cids)
    assert 1.4 < report.elapsed_s < 2.5


async def test_link_reconnects_after_the_broker_restarts(topic_root: str) -> None:
    port = free_port()
    with mosquitto(port) as first:
        link = DeviceLink(first.host, port, root=topic_root, retry_min_s=0.1, retry_max_s=0.2)
        await link.__aenter__()
    try:
        await asyncio.sleep(0.3)  # the broker is gone; the link keeps retrying
        assert not link.connected
        with mosquitto(port) as second:
            async with responder(second, topic_root) as centre:
                unit = SimulatedBaseUnit(CID, link, resend_after_s=RESEND_S)
                response = await asyncio.wait_for(unit.press(), 5)
    finally:
        await link.__aexit__(None, None, None)

    assert response.snu == Snu.OK
    assert len(centre.frames) >= 1


def test_bad_scenario_file_names_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "speed: 0\n"
        "steps:\n"
        "  - {at: soon, unit: 0, action: press}\n"
        "  - {at: 2s, unit: 0, action: presss}\n"
    )

    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(bad))

    assert caught.value.source == str(bad)
    text = str(caught.value)
    assert "speed: Input should be greater than 0" in text
    assert "steps.0.at: 'soon' is not a duration" in text
    assert "steps.1.action:" in text and "'presss'" in text


async def test_area_step_cuts_mains_at_every_unit_of_the_area_and_no_other(
    broker: Broker, topic_root: str
) -> None:
    scenario = parse_scenario(
        "speed: 10\nsteps: [{at: 0s, area: bro, action: mains_lost, spread: 8s}]",
        source="inline",
        default_name="cut",
    )
    loop = asyncio.get_running_loop()

    async with responder(broker, topic_root) as centre:
        started = loop.time()
        report = await run_simulation(
            broker.host,
            broker.port,
            BRO + KUNGSANGEN,
            scenario,
            root=topic_root,
            seed=6,
            areas=AREAS,
        )

    assert sorted(r.cid for r in centre.requests) == sorted(BRO)
    assert {(r.dty, r.stc) for r in centre.requests} == {("0002", MAINS_LOST)}
    assert report.sent == report.answered == {"mains_lost": len(BRO)}
    # Spread over the 0.8 s the 8 s of scenario time take, not all in one instant.
    assert max(centre.arrived) - min(centre.arrived) > 0.3
    assert max(centre.arrived) - started < 0.8 + 0.3


async def test_repeating_area_step_comes_again_until_the_scenario_ends(
    broker: Broker, topic_root: str
) -> None:
    scenario = parse_scenario(
        """
        speed: 10
        duration: 11s
        steps:
          - {at: 0s, area: bro, action: mains_lost, spread: 1s, repeat_every: 4s}
        """,
        source="inline",
        default_name="cuts",
    )

    async with responder(broker, topic_root) as centre:
        report = await run_simulation(
            broker.host, broker.port, BRO + KUNGSANGEN, scenario, root=topic_root, areas=AREAS
        )
        await centre.wait_for(3 * len(BRO))

    # At 0 s, 4 s and 8 s; the next would be at 12 s, after the end.
    assert sorted(r.cid for r in centre.requests) == sorted(BRO * 3)
    assert report.sent == {"mains_lost": 3 * len(BRO)}
    assert 1.0 < report.elapsed_s < 1.6


async def test_area_and_unit_steps_due_together_start_in_file_order(
    broker: Broker, topic_root: str
) -> None:
    scenario = parse_scenario(
        """
        speed: 10
        steps:
          - {at: 1s, unit: 0, action: press}
          - {at: 1s, area: kungsangen, action: mains_restored}
        """,
        source="inline",
        default_name="mixed",
    )

    async with responder(broker, topic_root) as centre:
        await run_simulation(
            broker.host, broker.port, ["100002", "100001"], scenario, root=topic_root, areas=AREAS
        )

    assert [(r.cid, r.stc) for r in centre.requests] == [("100002", None), ("100001", "0086")]


async def test_step_naming_an_area_without_given_units_is_refused_before_connecting() -> None:
    scenario = parse_scenario(
        "steps: [{at: 1s, area: bro, action: mains_lost}, {at: 2s, area: uppsala, action: press}]",
        source="inline",
        default_name="cut",
    )

    with pytest.raises(ScenarioError) as caught:
        await run_simulation("127.0.0.1", 1, KUNGSANGEN, scenario, areas=AREAS)

    assert caught.value.problems == [
        "the steps use area 'bro' but none of the 4 unit(s) is in it (their areas: kungsangen)",
        "the steps use area 'uppsala' but none of the 4 unit(s) is in it (their areas: kungsangen)",
    ]


async def test_area_step_without_areas_for_the_units_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"area 'bro' .* \(none of them has a known area\)"):
        await run_simulation("127.0.0.1", 1, ["2001"], load_scenario("demo"))


def test_demo_power_cut_finds_its_units_in_the_shipped_registry() -> None:
    areas = base_unit_areas(load_config(SHIPPED_CONFIG))

    assert areas == AREAS
    assert load_scenario("demo").areas_used <= set(areas.values())
