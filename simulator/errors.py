"""Errors the simulator raises on purpose.

TryggError
 └── SimulatorError
      ├── LinkDown         the MQTT link to the broker is down; `host`, `port`
      ├── Unanswered       a message session got no `<mrs>` before the unit gave up;
      │                    `cid`, `ref`, `action`, `transmissions`
      └── ScenarioError    a scenario name, file or content is not usable; `source`, `problems`
"""

from __future__ import annotations

from core.errors import TryggError


class SimulatorError(TryggError):
    """Base of the simulator's errors."""


class LinkDown(SimulatorError):
    """The shared MQTT link has no connection to the broker right now."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"no MQTT connection to {host}:{port}")
        self.host = host
        self.port = port


class Unanswered(SimulatorError):
    """A device resent a message until it gave up without an answer accepting it: a base
    unit's `<mrq>` (no `<mrs>` with its ref) or a receiver's DC-09 frame (no ACK; then
    `cid` is the account and `ref` the sequence number)."""

    def __init__(self, cid: str, ref: str, action: str, transmissions: int) -> None:
        super().__init__(
            f"{cid} got no answer to {action} ref {ref} after {transmissions} transmissions"
        )
        self.cid = cid
        self.ref = ref
        self.action = action
        self.transmissions = transmissions


class ScenarioError(SimulatorError):
    """A scenario could not be found or did not validate.

    `source` is the name or path asked for; `problems` holds one line per problem,
    each starting with where in the file it is (e.g. "alarms.mean_interval: ...").
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"scenario {source!r} is not usable:\n{lines}")
        self.source = source
        self.problems = problems
