"""Simulated base units that talk SCAIP over MQTT, driven by scenario files, simulated
digital locks that obey the alarm centre's unlock commands, and a simulated DC-09 alarm
receiver on a pseudo-terminal.

`run_simulation` plays a scenario (`load_scenario("demo")` or a file path) with one
simulated unit per cid over one shared MQTT link, and returns a `SimulationReport`.
`simulated_locks` keeps the registry's locks listening for unlocks (`trygg run --simulate`).
`SimulatedReceiver` passes DC-09 accounts' events on over a pty whose slave the gateway
opens as a serial line; `play_receiver_traffic` is its demo traffic.
`SimulatedResponders` play the teams' responders: they answer call-outs through the API
with their `ResponderAccount`s and check in on the simulated units (`run_simulation`
plays them for a scenario with `responders`, given the accounts).
"""

from simulator.errors import LinkDown, ScenarioError, SimulatorError, Unanswered
from simulator.link import DeviceLink
from simulator.lock import LockAction, SimulatedLock, simulated_locks
from simulator.receiver import (
    ReceiverEvent,
    ReceiverTally,
    SimulatedReceiver,
    play_receiver_traffic,
)
from simulator.responders import ResponderAccount, SimulatedResponders
from simulator.runner import SimulationReport, run_simulation
from simulator.scenario import ResponderBehaviour, Scenario, load_scenario, shipped_scenarios
from simulator.unit import Action, SimulatedBaseUnit

__all__ = [
    "Action",
    "DeviceLink",
    "LinkDown",
    "LockAction",
    "ReceiverEvent",
    "ReceiverTally",
    "ResponderAccount",
    "ResponderBehaviour",
    "Scenario",
    "ScenarioError",
    "SimulatedBaseUnit",
    "SimulatedLock",
    "SimulatedReceiver",
    "SimulatedResponders",
    "SimulationReport",
    "SimulatorError",
    "Unanswered",
    "load_scenario",
    "play_receiver_traffic",
    "run_simulation",
    "shipped_scenarios",
    "simulated_locks",
]
