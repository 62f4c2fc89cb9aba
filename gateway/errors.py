"""Errors of the gateway.

TryggError
 └── GatewayError
      ├── GatewayUnavailable   the broker connection is down; the device will resend
      │                        (also a core.errors.LinkDown, which dispatch catches)
      ├── LineDown             a serial line or DC-09 TCP connection cannot take the
      │                        answer; the receiver will resend (also a LinkDown)
      └── LineConfigError      the serial line settings are invalid (also a ValueError)
"""

from __future__ import annotations

from core.errors import LinkDown, TryggError


class GatewayError(TryggError):
    """Something went wrong in device I/O."""


class GatewayUnavailable(GatewayError, LinkDown):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"MQTT broker {host}:{port} is not connected")
        self.host = host
        self.port = port


class LineDown(GatewayError, LinkDown):
    """An answer could not be written to the line or connection its frame came on.

    `line` is the configured line name (or "tcp"), never a device path or peer address;
    `reason` a short label such as "closed" or "write_failed".
    """

    def __init__(self, line: str, reason: str) -> None:
        super().__init__(f"line {line} cannot take an answer: {reason}")
        self.line = line
        self.reason = reason


class LineConfigError(GatewayError, ValueError):
    """A serial line's settings are invalid; `where` names the setting at fault."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"serial settings, {where}: {problem}")
        self.where = where
        self.problem = problem
