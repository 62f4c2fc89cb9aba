"""Simulated base units that talk SCAIP over MQTT, driven by scenario files.

`run_simulation` plays a scenario (`load_scenario("demo")` or a file path) with one
simulated unit per cid over one shared MQTT link, and returns a `SimulationReport`.
"""

from simulator.errors import LinkDown, ScenarioError, SimulatorError, Unanswered
from simulator.link import DeviceLink
from simulator.runner import SimulationReport, run_simulation
from simulator.scenario import Scenario, load_scenario, shipped_scenarios
from simulator.unit import Action, SimulatedBaseUnit

__all__ = [
    "Action",
    "DeviceLink",
    "LinkDown",
    "Scenario",
    "ScenarioError",
    "SimulatedBaseUnit",
    "SimulationReport",
    "SimulatorError",
    "Unanswered",
    "load_scenario",
    "run_simulation",
    "shipped_scenarios",
]
