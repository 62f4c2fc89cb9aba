"""The base of every error Trygg raises on purpose; each package's errors derive from it.

TryggError
 ├── devices.errors.FrameError      a device frame could not be decoded
 ├── gateway.errors.GatewayError    device I/O went wrong
 ├── dispatch.*                     business rules refused an action
 └── simulator.errors.SimulatorError
"""

from __future__ import annotations


class TryggError(Exception):
    """Base of every error Trygg raises on purpose."""


class LinkDown(TryggError):
    """A message could not be handed to the broker because the link is down.

    Not the message's fault: whoever sends (the team outbox) keeps it for the next try
    without counting the failure against it. Defined here so dispatch can catch it
    without importing the gateway.
    """
