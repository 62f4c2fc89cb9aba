"""Errors of the gateway.

TryggError
 └── GatewayError
      └── GatewayUnavailable   the broker connection is down; the device will resend
                               (also a core.errors.LinkDown, which dispatch catches)
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
